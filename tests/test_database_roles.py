"""The runtime database role (issue 19): deploy/postgres/init-databases.sh, run by the real psql on
a PostgreSQL of its own, makes `renewals` the owner (the migrate one-shot, DDL) and `renewals_app`
the role of worker and ingress, which reads and writes rows and cannot change the schema."""

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from activities.store import Store
from ingress.idempotency import Answer, IdempotencyKeys
from stack.database import prepare
from stack.postgres import POSTGRES_BIN_PATH, EmbeddedPostgres, free_port
from tests.conftest import ROOT, new_service

INIT = ROOT / "deploy/postgres/init-databases.sh"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("roles") / "data", free_port(), fast=True)
    server.start()
    yield server
    server.stop()


def run_init(server: EmbeddedPostgres) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{POSTGRES_BIN_PATH}:{os.environ['PATH']}",
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "POSTGRES_USER": "postgres",
        "TEMPORAL_DB_PASSWORD": "t-password",
        "RENEWALS_DB_PASSWORD": "owner-password",
        "RENEWALS_APP_DB_PASSWORD": "app-password",
    }
    return subprocess.run(["sh", str(INIT)], env=env, capture_output=True, text=True, timeout=60)


def url(server: EmbeddedPostgres, role: str) -> str:
    return f"postgresql://{role}@{server.host}:{server.port}/renewals"


async def test_the_runtime_role_writes_rows_and_cannot_change_the_schema(server: EmbeddedPostgres):
    first = run_init(server)
    assert first.returncode == 0, first.stderr
    # Idempotent: a volume made before renewals_app existed gets it by running the script again.
    again = run_init(server)
    assert again.returncode == 0, again.stderr
    # The migrate one-shot, as the owner.
    assert "001_schema" in await prepare(url(server, "renewals"))

    store = await Store.connect(url(server, "renewals_app"), max_size=2)
    try:
        # DML of every kind the worker and the ingress use: upsert, sequence, the idempotency table.
        service = await new_service(store)
        assert (await store.services.get(service.username)) is not None
        assert await store.pool.fetchval("SELECT nextval('order_number_seq')") >= 1
        keys = IdempotencyKeys(store.pool)

        async def ok() -> Answer:
            return Answer(200, b"{}")

        assert (await keys.answer_once(service.username, "k", b"r", ok)).status == 200
        await store.pool.execute("DELETE FROM idempotency_keys WHERE username = $1", service.username)
        # No DDL, of any kind.
        for statement in (
            "CREATE TABLE intruder (id int)",
            "DROP TABLE payments",
            "ALTER TABLE services ADD COLUMN intruder int",
            "TRUNCATE payments",
            "CREATE INDEX intruder ON services (holder_name)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied|must be owner"):
                await store.pool.execute(statement)
    finally:
        await store.close()

    # A later migration's table is the runtime role's to use too (default privileges).
    owner = await asyncpg.connect(url(server, "renewals"))
    try:
        await owner.execute("CREATE TABLE later_migration (id serial PRIMARY KEY, note text)")
    finally:
        await owner.close()
    app = await asyncpg.connect(url(server, "renewals_app"))
    try:
        assert await app.fetchval("INSERT INTO later_migration (note) VALUES ('x') RETURNING id") == 1
    finally:
        await app.close()


def test_the_script_is_executable_and_needs_every_password():
    assert os.access(INIT, os.X_OK)
    text = Path(INIT).read_text()
    for variable in ("TEMPORAL_DB_PASSWORD", "RENEWALS_DB_PASSWORD", "RENEWALS_APP_DB_PASSWORD"):
        assert f'"${{{variable}:?}}"' in text
