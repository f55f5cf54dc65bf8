#!/bin/sh
# Run once by the postgres image, on an empty data volume (docker-entrypoint-initdb.d): a role and
# databases for Temporal (its store and its visibility store), and for ours two roles:
#   renewals      owns the database and its tables: the `migrate` one-shot runs as it (DDL);
#   renewals_app  what worker and ingress run as: reads and writes rows (DML), nothing else;
#                 no CREATE, ALTER, DROP or TRUNCATE, so a flaw in them cannot change the schema.
# Each role reaches only its own databases. Passwords come from the environment (.env).
# Idempotent: on a volume made before renewals_app existed, run it again by hand (README
# "Running in production"); what exists already is kept.
set -eu
: "${TEMPORAL_DB_PASSWORD:?}" "${RENEWALS_DB_PASSWORD:?}" "${RENEWALS_APP_DB_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v temporal_password="$TEMPORAL_DB_PASSWORD" -v renewals_password="$RENEWALS_DB_PASSWORD" \
  -v app_password="$RENEWALS_APP_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE temporal LOGIN PASSWORD %L', :'temporal_password')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'temporal') \gexec
SELECT 'CREATE DATABASE temporal OWNER temporal'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'temporal') \gexec
SELECT 'CREATE DATABASE temporal_visibility OWNER temporal'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'temporal_visibility') \gexec
SELECT format('CREATE ROLE renewals LOGIN PASSWORD %L', :'renewals_password')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'renewals') \gexec
SELECT 'CREATE DATABASE renewals OWNER renewals'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'renewals') \gexec
SELECT format('CREATE ROLE renewals_app LOGIN PASSWORD %L', :'app_password')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'renewals_app') \gexec
REVOKE CONNECT ON DATABASE temporal, temporal_visibility, renewals FROM PUBLIC;
GRANT CONNECT ON DATABASE temporal, temporal_visibility TO temporal;
GRANT CONNECT ON DATABASE renewals TO renewals, renewals_app;
SQL

# In our database: renewals_app may use the schema, not create in it; it gets the rows of every
# table and the sequences the owner creates, now (an existing volume) and in every later migration.
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname renewals <<'SQL'
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO renewals_app;
ALTER DEFAULT PRIVILEGES FOR ROLE renewals IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO renewals_app;
ALTER DEFAULT PRIVILEGES FOR ROLE renewals IN SCHEMA public
  GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO renewals_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO renewals_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO renewals_app;
-- Issued invoices and the payments ledger are append-only (migrations/008_append_only.sql): the
-- grant above must not give DELETE back on a volume the migrations have already run on.
DO $$
BEGIN
  IF to_regclass('public.payments') IS NOT NULL THEN REVOKE DELETE, TRUNCATE ON payments FROM renewals_app; END IF;
  IF to_regclass('public.invoices') IS NOT NULL THEN REVOKE DELETE, TRUNCATE ON invoices FROM renewals_app; END IF;
  IF to_regclass('public.statement_imports') IS NOT NULL THEN REVOKE DELETE, TRUNCATE ON statement_imports FROM renewals_app; END IF;
  IF to_regclass('public.statement_entries') IS NOT NULL THEN REVOKE DELETE, TRUNCATE ON statement_entries FROM renewals_app; END IF;
  IF to_regclass('public.statement_allocations') IS NOT NULL THEN REVOKE DELETE, TRUNCATE ON statement_allocations FROM renewals_app; END IF;
  IF to_regclass('public.charge_outcomes') IS NOT NULL THEN REVOKE DELETE, TRUNCATE ON charge_outcomes FROM renewals_app; END IF;
END
$$;
SQL
