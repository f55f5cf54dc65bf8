"""Every invoice reaches SdI once, whatever happens to the worker (P18): N renewals are paid at once
while the local SdI answers slowly (each RiceviFile answer held 2 s) and the worker is SIGKILLed at
random moments, several of them while a file is with SdI and its answer not yet stored. Afterwards
every invoice is `delivered`, the local SdI took each invoice's file exactly once (one
IdentificativoSdI per invoice), and no delivery was left in doubt.

The worker is `worker.py` as production runs it (SDI_URL pointed at the local SdI); SdI's callbacks
reach an ingress served in this test's process. Both sizes run in `make faults` (the bounded one
in a minute, the full size, 100 activations and 3 kills, in about two); `make test` leaves them
out for time and relies on tests/test_p18_sdi_delivery.py for the in-doubt path.
"""

import asyncio
import os
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn

from client.renewals import Renewals
from ingress.http import create_app
from renewals import delivery_id
from renewals.delivery import DeliveryView
from renewals.events import PaymentRegistered
from stack.postgres import free_port
from stack.sdi import SdiSimulator, start_sdi
from tests.conftest import eventually
from tests.faults.conftest import Stack, pause, seed_batch
from tests.faults.test_faults import retrying
from tests.faults.test_invoice_faults import checkout_all

FULL = int(os.environ.get("FAULTS_RENEWALS", "100"))
BOUNDED = 8
ANSWER_DELAY = 2.0


@pytest.fixture
async def local_sdi(stack: Stack, fault_ingress: Renewals, tmp_path: Path) -> AsyncIterator[SdiSimulator]:
    """The local SdI, the ingress it calls back, and a worker pointed at it."""
    port = free_port()
    simulator = start_sdi(
        tmp_path / "sdi", "127.0.0.1", free_port(), f"http://127.0.0.1:{port}/sdi/TrasmissioneFatture"
    )
    app = create_app(
        fault_ingress,
        "faults-panel-secret",
        "faults-payments-secret",
        sdi_signing_cert=simulator.cert_path.read_bytes(),
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, 20, "the callback's ingress")
    simulator.simulator.change(simulator.simulator.settings.model_copy(update={"answer_delay": ANSWER_DELAY}))
    stack.env.update(
        {"SDI_URL": simulator.url, "SDI_SIGNING_CERT": str(simulator.cert_path), "SDI_IN_DOUBT_WAIT": "10s"}
    )
    stack.stop("worker", signal.SIGKILL)
    stack.start_worker()
    yield simulator
    server.should_exit = True
    await task
    simulator.stop()


async def deliver_while_killing_the_worker(
    stack: Stack, ingress: Renewals, simulator: SdiSimulator, renewals: int, kills: int
) -> None:
    orders = await checkout_all(ingress, await seed_batch(ingress, "sdi", renewals))
    pool = ingress.store.pool

    async def kill_while_sending() -> int:
        """Each round: wait until a file is with SdI (a transmission `sending`), SIGKILL the worker
        then, start a new one."""
        killed_mid_send = 0
        for _ in range(kills):
            await pause(random.uniform(0.5, 3.0))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if await pool.fetchval("SELECT count(*) FROM sdi_transmissions WHERE state = 'sending'"):
                    killed_mid_send += 1
                    break
                await asyncio.sleep(0.05)
            stack.stop("worker", signal.SIGKILL)
            stack.start_worker()
        return killed_mid_send

    started = time.monotonic()
    payments = [retrying(lambda o=o: ingress.payment(_payment(o.order_number, o.total_cents))) for o in orders]
    killed_mid_send, *_ = await asyncio.gather(kill_while_sending(), *payments)

    numbers: list[str] = []
    for order in orders:
        number = await eventually(
            lambda o=order: pool.fetchval("SELECT number FROM invoices WHERE order_number = $1", o.order_number),
            120,
            f"the invoice of {order.order_number}",
        )
        numbers.append(number)
    views = await asyncio.gather(
        *(
            retrying(lambda n=n: ingress.client.get_workflow_handle(delivery_id(n), result_type=DeliveryView).result())
            for n in numbers
        )
    )
    elapsed = time.monotonic() - started
    assert Counter(v.state for v in views) == {"delivered": renewals}
    states = await pool.fetch("SELECT state FROM invoices WHERE number = ANY($1)", numbers)
    assert Counter(r["state"] for r in states) == {"delivered": renewals}

    taken = Counter(r["invoice_number"] for r in simulator.simulator.listing("received") if r["sdi_id"] is not None)
    assert {n: taken[n] for n in numbers} == {n: 1 for n in numbers}, "each invoice taken by SdI exactly once"
    transmissions = await pool.fetch("SELECT number, attempts FROM sdi_transmissions WHERE number = ANY($1)", numbers)
    assert len(transmissions) == renewals, "one file per invoice"
    retried = sum(r["attempts"] - 1 for r in transmissions)
    print(
        f"\nFAULT SdI under worker SIGKILL: {renewals} activations, SdI answering in {ANSWER_DELAY:.0f} s, worker "
        f"killed {kills} times ({killed_mid_send} while a file was with SdI), {renewals} delivered, each taken by "
        f"SdI once, send attempts retried {retried}, in {elapsed:.0f} s"
    )


def _payment(order_number: str, amount_cents: int) -> PaymentRegistered:
    return PaymentRegistered(
        type="payment_registered",
        order_number=order_number,
        transaction_id=f"txn-{order_number}",
        amount_cents=amount_cents,
        currency="EUR",
        method="bank_transfer",
        registered_at=datetime.now(UTC),
    )


@pytest.mark.slow
async def test_p18_each_invoice_delivered_once_when_the_worker_dies_mid_send(stack, fault_ingress, local_sdi):
    await deliver_while_killing_the_worker(stack, fault_ingress, local_sdi, BOUNDED, kills=1)


@pytest.mark.slow
async def test_p18_100_invoices_delivered_once_under_slow_sdi_and_worker_kills(stack, fault_ingress, local_sdi):
    await deliver_while_killing_the_worker(stack, fault_ingress, local_sdi, FULL, kills=3)
