#!/bin/sh
# Run once by the postgres image, on an empty data volume (docker-entrypoint-initdb.d): a role and
# databases for Temporal (its store and its visibility store), and a role and a database for ours.
# Each role owns only its own databases. Passwords come from the environment (.env).
set -eu
: "${TEMPORAL_DB_PASSWORD:?}" "${RENEWALS_DB_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v temporal_password="$TEMPORAL_DB_PASSWORD" -v renewals_password="$RENEWALS_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE ROLE renewals LOGIN PASSWORD :'renewals_password';
CREATE DATABASE renewals OWNER renewals;
REVOKE CONNECT ON DATABASE temporal, temporal_visibility, renewals FROM PUBLIC;
GRANT CONNECT ON DATABASE temporal, temporal_visibility TO temporal;
GRANT CONNECT ON DATABASE renewals TO renewals;
SQL
