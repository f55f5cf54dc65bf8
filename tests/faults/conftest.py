"""A real local stack of separate processes, for breaking things on purpose: PostgreSQL, the
Temporal dev server (SQLite state in a file), the SMTP sink and the worker. Each can be killed,
stopped and started again while renewals run."""

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from activities.store import Store
from client.renewals import Renewals
from renewals.records import ServiceRecord
from settings import Settings
from stack.database import prepare
from stack.postgres import EmbeddedPostgres, free_port
from stack.temporal import dev_server_command, wait_for_temporal
from tests.conftest import ROOT, company_billing, person_billing, today


class Stack:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.postgres = EmbeddedPostgres(base / "pg", free_port(), fast=False)
        self.temporal_address = f"127.0.0.1:{free_port()}"
        self.smtp_port = free_port()
        self.mail_dir = base / "mail"
        self.database_url = f"postgresql://postgres@127.0.0.1:{self.postgres.port}/renewals"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "SMTP_PORT": str(self.smtp_port),
            "MAIL_SINK_DIR": str(self.mail_dir),
        }

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115
        self.processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def start_temporal(self) -> None:
        command = dev_server_command(self.temporal_address, "default", free_port(), self.base / "temporal.db")
        self._spawn("temporal", [*command, "--headless"])

    def start_sink(self) -> None:
        self._spawn(
            "sink",
            [sys.executable, "-m", "stack.smtp_sink", "--port", str(self.smtp_port), "--dir", str(self.mail_dir)],
        )

    def start_worker(self) -> None:
        self._spawn("worker", [sys.executable, "worker.py"])

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name)
        process.send_signal(sig)
        process.wait(60)

    async def start(self) -> None:
        self.postgres.start()
        await prepare(self.database_url)
        self.start_temporal()
        self.start_sink()
        await wait_for_temporal(self.temporal_address, "default")
        self.start_worker()

    def shutdown(self) -> None:
        for name in list(self.processes):
            self.stop(name, signal.SIGKILL)
        self.postgres.stop()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = Stack(tmp_path)
    try:
        await stack.start()
        yield stack
    finally:
        stack.shutdown()


@pytest.fixture
async def fault_ingress(stack: Stack) -> AsyncIterator[Renewals]:
    from temporalio.contrib.pydantic import pydantic_data_converter

    client = await Client.connect(stack.temporal_address, data_converter=pydantic_data_converter)
    store = await Store.connect(stack.database_url, max_size=20)
    settings = Settings()
    yield Renewals(client, store, settings.policy(), settings.temporal_task_queue)
    await store.close()


async def pause(seconds: float) -> None:
    """The length of an outage: wall-clock time is the point of these tests."""
    await asyncio.sleep(seconds)


async def seed_batch(ingress: Renewals, name: str, count: int) -> list[ServiceRecord]:
    """`count` fresh services under a random prefix, expiring in 30 days, each with billing data
    (every activation invoices, P17), stored in one import."""
    prefix = f"{name}-{random.randrange(10**6):06d}"
    services = [
        ServiceRecord(
            username=f"{prefix}-{n:04d}",
            holder_name=f"Cliente {n}",
            holder_email=f"{prefix}-{n:04d}@example.com",
            purchased_on=today() - timedelta(days=200),
            expires_on=today() + timedelta(days=30),
            auto_renew=False,
            storage_quota_mb=1000,
            storage_used_mb=100,
            billing=company_billing() if n % 2 else person_billing(),
        )
        for n in range(count)
    ]
    await ingress.store.services.upsert(services)
    return services
