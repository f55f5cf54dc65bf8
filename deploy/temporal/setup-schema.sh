#!/bin/sh
# One-shot job `temporal-schema` of docker-compose.yml (image temporalio/admin-tools): Temporal's
# schema in its two databases, which deploy/postgres/init-databases.sh created. Safe to run again:
# setup-schema keeps a schema already there, update-schema applies only the versions not applied.
# The password comes from SQL_PASSWORD in the environment.
set -eu
: "${SQL_PASSWORD:?}"

sql() {
  temporal-sql-tool --plugin postgres12 --ep postgresql -p 5432 -u temporal --db "$@"
}

sql temporal setup-schema -v 0.0
sql temporal update-schema -d /etc/temporal/schema/postgresql/v12/temporal/versioned
sql temporal_visibility setup-schema -v 0.0
sql temporal_visibility update-schema -d /etc/temporal/schema/postgresql/v12/visibility/versioned
echo "temporal schema: up to date"
