"""Edges a reviewer found: a payment racing the order's lapse (P10), and a mail server that
refuses an address for good (the renewal goes on; ops see the refusal)."""

import asyncio
from datetime import timedelta

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from temporalio import activity

from activities.mail import Mailer
from activities.store import Store
from client.renewals import Renewals
from renewals.calls import CloseOrder
from renewals.events import CheckoutSubmitted, RenewRequested
from renewals.types import Stage
from stack.postgres import free_port
from tests.conftest import POLICY, eventually, handle_of, new_service, pay, view
from worker import build_worker


class HeldClose(Store):
    """close_order waits for the test's word, holding the workflow mid-close."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.pool)
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    @activity.defn(name="close_order")
    async def close_order(self, request: CloseOrder) -> None:
        self.started.set()
        await self.release.wait()
        await super().close_order(request)


async def checkout(ingress: Renewals, username: str) -> str:
    await ingress.panel(RenewRequested(type="renew_requested", username=username))
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=username, payment_method="bank_transfer", years=1)
    )
    return str(order.order_number)


async def test_p10_a_payment_arriving_while_the_order_lapses_is_unmatched(env, store, mailer):
    held = HeldClose(store)
    task_queue = "renewals-held-close"
    ingress = Renewals(env.client, store, POLICY, task_queue)
    service = await new_service(store)
    async with build_worker(env.client, held, mailer, task_queue):
        try:
            order_number = await checkout(ingress, service.username)
            handle = handle_of(env.client, service.username)
            # Time only skips while no activity runs: the held close stops it, so the
            # fast-forward completes once the close is released.
            skipping = asyncio.create_task(env.fast_forward(handle, timedelta(days=31)))
            await asyncio.wait_for(held.started.wait(), 20)  # the lapse is under way
            late = await pay(ingress, order_number, 3050)
            assert late.status == "unmatched"
        finally:
            held.release.set()  # never leave the worker waiting on a held activity
        await skipping
        assert (await handle.result()).stage == Stage.ORDER_EXPIRED
    row = await store.pool.fetchrow("SELECT status FROM payments WHERE transaction_id = $1", late.transaction_id)
    assert row["status"] == "unmatched"


class RefuseEveryone:
    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list) -> str:
        return "550 5.1.1 no such mailbox"


async def test_an_address_the_mail_server_refuses_does_not_stop_the_renewal(env, store):
    port = free_port()
    refusing = Controller(RefuseEveryone(), hostname="127.0.0.1", port=port)
    refusing.start()
    task_queue = "renewals-refused-mail"
    ingress = Renewals(env.client, store, POLICY, task_queue)
    service = await new_service(store)
    try:
        mailer = Mailer(store, "127.0.0.1", port, "Rinnovi <rinnovi@renewals.localhost>")
        async with build_worker(env.client, store, mailer, task_queue):
            order_number = await checkout(ingress, service.username)

            async def refused() -> list[str]:
                return [key for key in (await view(env.client, service.username)).emails if "refused" in key]

            (note,) = await eventually(refused, what="the refusal in the renewal's view")
            assert note.startswith(f"{order_number}:payment_instructions refused") and "550" in note
            assert (await view(env.client, service.username)).stage == Stage.AWAITING_PAYMENT
            await pay(ingress, order_number, 3050)
            result = await handle_of(env.client, service.username).result()
    finally:
        refusing.stop()
    assert result.stage == Stage.ACTIVATED  # paid and extended, though no email could reach the holder
