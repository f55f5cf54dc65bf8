"""The signed HTTP ingress (DESIGN.md §5), driven over HTTP against the real stack.

Every request goes through the FastAPI app with its signature checked, into the real Temporal
dev server, worker, PostgreSQL and SMTP sink of conftest.py. Each test opens its own service.
"""

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from activities.store import Store
from client.renewals import Renewals
from ingress.api.deps import MAX_BODY_BYTES
from ingress.http import create_admin_app, create_app
from renewals import workflow_id
from renewals.signing import signed_headers
from renewals.types import Stage
from tests.conftest import (
    MailSink,
    eventually,
    handle_of,
    new_service,
    payment,
    today,
    unique,
    view,
    wait_stage,
)

PANEL = "panel-test-secret"
PAYMENTS = "payments-test-secret"

ORDER_NUMBER = re.compile(r"^FE-\d{4}-\d{6}$")
CART_FIELDS = {
    "stage",
    "mode",
    "username",
    "expires_on",
    "active_addons",
    "cart_addons",
    "available_addons",
    "discount",
    "allowed_years",
    "storage_alert",
    "quote",
}
ORDER_FIELDS = {
    "order_number",
    "stage",
    "years",
    "payment_method",
    "net_cents",
    "discount_cents",
    "vat_cents",
    "total_cents",
    "paid_cents",
    "due_by",
    "payment_instructions",
}
QUOTE_FIELDS = {"net_cents", "discount_cents", "vat_cents", "total_cents"}
# The demo price list: the service alone for one year, 2500 net + 22 % VAT.
SERVICE_ONE_YEAR_CENTS = 3050


@pytest.fixture(scope="module")
async def http(ingress: Renewals) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ingress, PANEL, PAYMENTS))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


# ---------------------------------------------------------------------------- helpers


def encode(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


async def post(
    http: httpx.AsyncClient,
    path: str,
    payload: Any,
    *,
    secret: str = PANEL,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Sign the raw body as the panel (or the payments office) would, then POST it.

    `headers` replaces the signed ones, so a test can send a tampered or missing signature.
    """
    body = encode(payload)
    signed = signed_headers(secret, "POST", path, body, timestamp=timestamp)
    sent = {"Content-Type": "application/json", **(signed if headers is None else headers)}
    return await http.post(path, content=body, headers=sent)


async def panel(http: httpx.AsyncClient, payload: Any, **kwargs: Any) -> httpx.Response:
    return await post(http, "/panel/events", payload, **kwargs)


async def pay_http(http: httpx.AsyncClient, order_number: str, amount_cents: int, **kwargs: Any) -> httpx.Response:
    event = payment(order_number, amount_cents, **kwargs).model_dump(mode="json")
    return await post(http, "/payments/events", event, secret=PAYMENTS)


async def get(http: httpx.AsyncClient, path: str, *, secret: str = PANEL) -> httpx.Response:
    """Reads are signed too, over the method and path."""
    return await http.get(path, headers=signed_headers(secret, "GET", path))


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(response: httpx.Response, status: int, code: str | None = None) -> str:
    """The contract's error body, exactly `{"error", "message"}`, and no traceback; the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["error"] == code, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    message: str = body["message"]
    return message


def assert_cart_view(cart: dict[str, Any], username: str, mode: str, expires_on: date) -> None:
    assert CART_FIELDS <= set(cart), CART_FIELDS - set(cart)
    assert cart["stage"] == Stage.CART
    assert cart["mode"] == mode
    assert cart["username"] == username
    assert cart["expires_on"] == expires_on.isoformat()
    for field in ("active_addons", "cart_addons", "available_addons"):
        assert isinstance(cart[field], list)
        for line in cart[field]:
            assert set(line) >= {"addon", "quantity"}
    assert set(cart["quote"]) >= QUOTE_FIELDS


async def open_cart(http: httpx.AsyncClient, username: str, mode: str = "renew") -> dict[str, Any]:
    return ok(await panel(http, {"type": f"{mode}_requested", "username": username}))


async def checkout(
    http: httpx.AsyncClient, username: str, years: int = 1, method: str = "bank_transfer"
) -> dict[str, Any]:
    event = {"type": "checkout_submitted", "username": username, "payment_method": method, "years": years}
    return ok(await panel(http, event))


async def ordered(http: httpx.AsyncClient, store: Store, **fields: Any) -> tuple[str, dict[str, Any]]:
    """A fresh service with a one-year order awaiting payment: (username, order view)."""
    service = await new_service(store, **fields)
    await open_cart(http, service.username)
    return service.username, await checkout(http, service.username)


async def ledger_status(store: Store, transaction_id: str) -> str | None:
    status: str | None = await store.pool.fetchval(
        "SELECT status FROM payments WHERE transaction_id = $1", transaction_id
    )
    return status


async def runs_of(client: Client, username: str) -> list[str]:
    return [run.run_id async for run in client.list_workflows(f"WorkflowId = '{workflow_id(username)}'")]


# ---------------------------------------------------------------------------- panel events


async def test_r3_renew_requested_answers_the_cart_view(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store, addons=[{"addon": "extra_users", "quantity": 2}])
    cart = await open_cart(http, service.username)
    assert_cart_view(cart, service.username, "renew", service.expires_on)
    assert cart["active_addons"] == [{"addon": "extra_users", "quantity": 2}]
    assert cart["cart_addons"] == []
    assert [line["addon"] for line in cart["available_addons"]] == ["extra_storage"]
    assert cart["discount"] is None
    assert cart["allowed_years"] == list(range(1, 11))
    assert cart["storage_alert"] is None  # 40 % of the quota
    # Service 2500 + 2 users × 500 = 3500 net, VAT 770.
    assert cart["quote"] == {"net_cents": 3500, "discount_cents": 0, "vat_cents": 770, "total_cents": 4270}


async def test_r4_renew_requested_carries_the_storage_alert(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store, storage_used_mb=800)
    cart = await open_cart(http, service.username)
    alert = cart["storage_alert"]
    assert alert is not None and set(alert) >= {"level", "usage_percent", "estimated_extra_mb", "suggested_packs"}
    assert alert["level"] in ("yellow", "red")
    assert alert["usage_percent"] == 80.0


async def test_r2_reactivate_requested_on_expired_service_answers_the_cart_view(
    http: httpx.AsyncClient, store: Store
) -> None:
    service = await new_service(store, expires_on=today() - timedelta(days=30))
    cart = await open_cart(http, service.username, "reactivate")
    assert_cart_view(cart, service.username, "reactivate", service.expires_on)
    assert cart["quote"]["total_cents"] == SERVICE_ONE_YEAR_CENTS


async def test_r3_addon_added_puts_it_in_the_cart(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    await open_cart(http, service.username)
    cart = ok(
        await panel(
            http,
            {
                "type": "addon_added",
                "username": service.username,
                "addon": "extra_storage",
                "quantity": 2,
            },
        )
    )
    assert_cart_view(cart, service.username, "renew", service.expires_on)
    assert cart["cart_addons"] == [{"addon": "extra_storage", "quantity": 2}]
    assert [line["addon"] for line in cart["available_addons"]] == ["extra_users"]
    # Service 2500 + 2 packs × 1000 = 4500 net, VAT 990.
    assert cart["quote"]["total_cents"] == 5490


async def test_r3_addon_removed_takes_it_out_of_the_cart(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    await open_cart(http, service.username)
    ok(await panel(http, {"type": "addon_added", "username": service.username, "addon": "extra_users"}))
    cart = ok(await panel(http, {"type": "addon_removed", "username": service.username, "addon": "extra_users"}))
    assert_cart_view(cart, service.username, "renew", service.expires_on)
    assert cart["cart_addons"] == []
    assert {line["addon"] for line in cart["available_addons"]} == {"extra_storage", "extra_users"}
    assert cart["quote"]["total_cents"] == SERVICE_ONE_YEAR_CENTS


async def test_r3_discount_code_applied_partner10(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    await open_cart(http, service.username)
    cart = ok(await panel(http, {"type": "discount_code_applied", "username": service.username, "code": "PARTNER10"}))
    assert_cart_view(cart, service.username, "renew", service.expires_on)
    assert cart["discount"]["code"] == "PARTNER10"
    assert cart["discount"]["percent_off"] == 10
    # 2500 − 250 = 2250, VAT 495.
    assert cart["quote"] == {"net_cents": 2500, "discount_cents": 250, "vat_cents": 495, "total_cents": 2745}


async def test_r6_checkout_submitted_answers_the_order_view(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    await open_cart(http, service.username)
    order = await checkout(http, service.username, years=2, method="postal_slip")
    assert ORDER_FIELDS <= set(order), ORDER_FIELDS - set(order)
    number = order["order_number"]
    assert ORDER_NUMBER.match(number), number
    assert order["stage"] == Stage.AWAITING_PAYMENT
    assert order["years"] == 2 and order["payment_method"] == "postal_slip"
    assert order["total_cents"] == 2 * SERVICE_ONE_YEAR_CENTS and order["paid_cents"] == 0
    assert datetime.fromisoformat(order["due_by"]) > datetime.fromisoformat("2000-01-01T00:00:00+00:00")
    instructions = order["payment_instructions"]
    assert instructions["order_number"] == number
    assert instructions["amount_cents"] == order["total_cents"]
    assert number in instructions["bank_transfer"]["reason"]
    assert number in instructions["postal_slip"]["reason"]
    row = await store.pool.fetchrow("SELECT username, status, total_cents FROM orders WHERE order_number = $1", number)
    assert (row["username"], row["status"], row["total_cents"]) == (service.username, "awaiting_payment", 6100)


# ---------------------------------------------------------------------------- payment events


async def test_p5_payment_registered_in_full_is_applied_and_activates(
    http: httpx.AsyncClient, store: Store, env: Any
) -> None:
    username, order = await ordered(http, store)
    before = (await store.services.get(username)).expires_on  # type: ignore[union-attr]
    outcome = ok(await pay_http(http, order["order_number"], order["total_cents"]))
    assert outcome["status"] == "applied"
    assert outcome["order_number"] == order["order_number"]
    assert outcome["paid_cents"] == order["total_cents"] and outcome["balance_cents"] == 0
    done = await wait_stage(env.client, username, Stage.ACTIVATED)
    assert done.order is not None and done.order.new_expires_on == before.replace(year=before.year + 1)
    after = await store.services.get(username)
    assert after is not None and after.expires_on == done.order.new_expires_on


async def test_p5_payment_registered_partial_leaves_a_balance(http: httpx.AsyncClient, store: Store, env: Any) -> None:
    username, order = await ordered(http, store)
    outcome = ok(await pay_http(http, order["order_number"], 1000))
    assert outcome["status"] == "partial"
    assert outcome["paid_cents"] == 1000
    assert outcome["balance_cents"] == order["total_cents"] - 1000
    current = await view(env.client, username)
    assert current.stage == Stage.AWAITING_PAYMENT
    assert current.order is not None and current.order.paid_cents == 1000


async def test_p5_same_payment_twice_is_duplicate_and_changes_nothing(
    http: httpx.AsyncClient, store: Store, env: Any
) -> None:
    username, order = await ordered(http, store)
    event = payment(order["order_number"], 1000).model_dump(mode="json")
    first = ok(await post(http, "/payments/events", event, secret=PAYMENTS))
    assert first["status"] == "partial"
    second = ok(await post(http, "/payments/events", event, secret=PAYMENTS))
    assert second["status"] == "duplicate"
    assert second["transaction_id"] == event["transaction_id"]
    assert (second["paid_cents"], second["balance_cents"]) == (first["paid_cents"], first["balance_cents"])
    current = await view(env.client, username)
    assert current.stage == Stage.AWAITING_PAYMENT
    assert current.order is not None and current.order.paid_cents == 1000
    assert [seen.transaction_id for seen in current.payments] == [event["transaction_id"]]

    async def settled() -> list[str] | None:
        # The renewal writes what P5 decided to the ledger just after it answers.
        rows = await store.pool.fetch("SELECT status FROM payments WHERE order_number = $1", order["order_number"])
        statuses = [row["status"] for row in rows]
        return None if "received" in statuses else statuses

    assert await eventually(settled, what="the ledger to settle") == ["partial"]


async def test_p5_overpayment_activates_and_is_flagged_for_refund(
    http: httpx.AsyncClient, store: Store, env: Any
) -> None:
    username, order = await ordered(http, store)
    event = payment(order["order_number"], order["total_cents"] + 500).model_dump(mode="json")
    outcome = ok(await post(http, "/payments/events", event, secret=PAYMENTS))
    assert outcome["status"] == "overpaid"
    assert outcome["refund_cents"] == 500 and outcome["balance_cents"] == 0
    await wait_stage(env.client, username, Stage.ACTIVATED)
    assert (
        await store.pool.fetchval(
            "SELECT refund_cents FROM payments WHERE transaction_id = $1", event["transaction_id"]
        )
        == 500
    )


async def test_p5_payment_for_unknown_order_is_kept_unmatched(http: httpx.AsyncClient, store: Store) -> None:
    event = payment("FE-2026-999999", 3050).model_dump(mode="json")
    outcome = ok(await post(http, "/payments/events", event, secret=PAYMENTS))
    assert outcome["status"] == "unmatched"
    assert await ledger_status(store, event["transaction_id"]) == "unmatched"


async def test_p10_payment_after_the_order_lapsed_is_unmatched(http: httpx.AsyncClient, store: Store, env: Any) -> None:
    username, order = await ordered(http, store)
    await env.fast_forward(handle_of(env.client, username), timedelta(days=31))
    await wait_stage(env.client, username, Stage.ORDER_EXPIRED)
    event = payment(order["order_number"], order["total_cents"]).model_dump(mode="json")
    outcome = ok(await post(http, "/payments/events", event, secret=PAYMENTS))
    assert outcome["status"] == "unmatched"

    async def kept_unmatched() -> bool:
        return await ledger_status(store, event["transaction_id"]) == "unmatched"

    await eventually(kept_unmatched, what="the late payment to be kept as unmatched")
    assert (
        await store.pool.fetchval("SELECT status FROM orders WHERE order_number = $1", order["order_number"])
        == "expired"
    )
    assert (await view(env.client, username)).stage == Stage.ORDER_EXPIRED


# ---------------------------------------------------------------------------- 400 and 401


async def test_400_body_not_json(http: httpx.AsyncClient) -> None:
    refused(await panel(http, b'{"type": "renew_requested", "username": '), 400)
    refused(await post(http, "/payments/events", b"not json at all", secret=PAYMENTS), 400)


async def test_401_bad_signature(http: httpx.AsyncClient, store: Store, env: Any) -> None:
    service = await new_service(store)
    body = encode({"type": "renew_requested", "username": service.username})
    headers = signed_headers(PANEL, "POST", "/panel/events", body)
    tampered = body.replace(service.username.encode(), unique().encode())
    refused(await panel(http, tampered, headers=headers), 401, "bad_signature")
    headers["X-Signature"] = "v2=" + "0" * 64
    refused(await panel(http, body, headers=headers), 401, "bad_signature")
    # Refused before anything ran: no renewal was opened.
    with pytest.raises(RPCError):
        await handle_of(env.client, service.username).describe()


@pytest.mark.parametrize("seconds_off", [-301, -3600, 301], ids=["stale-5min", "stale-1h", "future-5min"])
async def test_401_timestamp_more_than_5_minutes_from_server_clock(
    http: httpx.AsyncClient, store: Store, seconds_off: int
) -> None:
    service = await new_service(store)
    event = {"type": "renew_requested", "username": service.username}
    message = refused(await panel(http, event, timestamp=int(time.time()) + seconds_off), 401, "bad_signature")
    assert "5 minutes" in message


async def test_401_timestamp_not_unix_seconds(ingress: Renewals) -> None:
    # Its own client: the module's re-raises app exceptions, and this asserts what a caller would see.
    transport = httpx.ASGITransport(app=create_app(ingress, PANEL, PAYMENTS), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for timestamp in (b"-5", b"12.5", "\u00b2".encode("latin-1")):
            headers = {"X-Timestamp": timestamp, "X-Signature": "sha256=" + "0" * 64}
            response = await client.post("/panel/events", content=b"{}", headers=headers)  # type: ignore[arg-type]
            refused(response, 401, "bad_signature")


@pytest.mark.parametrize(
    "keep",
    [set(), {"X-Timestamp", "X-Nonce"}, {"X-Signature", "X-Nonce"}, {"X-Timestamp", "X-Signature"}],
    ids=["no-headers", "no-signature", "no-timestamp", "no-nonce"],
)
async def test_401_missing_signature_headers(http: httpx.AsyncClient, store: Store, keep: set[str]) -> None:
    service = await new_service(store)
    body = encode({"type": "renew_requested", "username": service.username})
    signed = signed_headers(PANEL, "POST", "/panel/events", body)
    headers = {name: value for name, value in signed.items() if name in keep}
    refused(await panel(http, body, headers=headers), 401, "bad_signature")


async def test_401_payments_secret_refused_on_panel_events(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    event = {"type": "renew_requested", "username": service.username}
    refused(await panel(http, event, secret=PAYMENTS), 401, "bad_signature")


async def test_401_panel_secret_refused_on_payment_events(http: httpx.AsyncClient, store: Store) -> None:
    event = payment("FE-2026-999998", 3050).model_dump(mode="json")
    refused(await post(http, "/payments/events", event, secret=PANEL), 401, "bad_signature")
    # Refused before the ledger: the payment was never recorded.
    assert await ledger_status(store, event["transaction_id"]) is None


async def test_401_reads_are_signed_with_the_panel_secret(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    refused(await http.get(f"/panel/services/{service.username}"), 401, "bad_signature")
    refused(await get(http, f"/panel/services/{service.username}", secret=PAYMENTS), 401, "bad_signature")


# ---------------------------------------------------------------------------- 404 and 409


async def test_404_renew_for_unknown_username(http: httpx.AsyncClient) -> None:
    refused(await panel(http, {"type": "renew_requested", "username": unique("nobody")}), 404)


async def test_404_service_read_for_unknown_username(http: httpx.AsyncClient) -> None:
    refused(await get(http, f"/panel/services/{unique('nobody')}"), 404)


async def test_404_renewal_read_for_unknown_username(http: httpx.AsyncClient) -> None:
    refused(await get(http, f"/panel/renewals/{unique('nobody')}"), 404)


async def test_r1_409_renew_refused_when_auto_renew_is_on(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store, auto_renew=True)
    message = refused(await panel(http, {"type": "renew_requested", "username": service.username}), 409)
    assert "auto-renew" in message


async def test_r2_409_reactivate_refused_on_ceased_service(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store, expires_on=today() - timedelta(days=120))
    message = refused(await panel(http, {"type": "reactivate_requested", "username": service.username}), 409)
    assert "ceased" in message


async def test_409_addon_added_with_no_renewal_open(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    event = {"type": "addon_added", "username": service.username, "addon": "extra_storage", "quantity": 1}
    refused(await panel(http, event), 409)


# ---------------------------------------------------------------------------- 413 and 422


async def test_413_body_over_64_kib(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    event = {"type": "renew_requested", "username": service.username, "padding": "x" * MAX_BODY_BYTES}
    body = encode(event)
    assert len(body) > 64 * 1024
    refused(await panel(http, body), 413)


async def test_422_unknown_event_type(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    refused(await panel(http, {"type": "renewal_exploded", "username": service.username}), 422)


async def test_r5_422_years_11(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    await open_cart(http, service.username)
    event = {"type": "checkout_submitted", "username": service.username, "payment_method": "card", "years": 11}
    refused(await panel(http, event), 422)


async def test_r5_422_years_3_on_promotional_service(http: httpx.AsyncClient, store: Store, env: Any) -> None:
    service = await new_service(store, promotional=True)
    cart = await open_cart(http, service.username)
    assert cart["allowed_years"] == [1, 2]
    event = {"type": "checkout_submitted", "username": service.username, "payment_method": "card", "years": 3}
    message = refused(await panel(http, event), 422)
    assert "1 or 2" in message
    assert (await view(env.client, service.username)).stage == Stage.CART


async def test_422_username_with_a_quote_character(http: httpx.AsyncClient) -> None:
    refused(await panel(http, {"type": "renew_requested", "username": "mario'rossi"}), 422)
    refused(await get(http, "/panel/services/mario'rossi"), 422)


async def test_r3_422_expired_discount_code_old20(http: httpx.AsyncClient, store: Store, env: Any) -> None:
    service = await new_service(store)
    await open_cart(http, service.username)
    message = refused(
        await panel(http, {"type": "discount_code_applied", "username": service.username, "code": "OLD20"}), 422
    )
    assert "OLD20" in message and "expired" in message
    current = await view(env.client, service.username)
    assert current.cart is not None and current.cart.discount is None


# ---------------------------------------------------------------------------- P8 and reads


async def test_p8_renew_twice_returns_the_cart_already_open(http: httpx.AsyncClient, store: Store, env: Any) -> None:
    service = await new_service(store)
    first = await open_cart(http, service.username)
    run_id = (await handle_of(env.client, service.username).describe()).run_id
    again = await open_cart(http, service.username)
    assert again == first
    # The cart already open, not a fresh one: a change made in between is still there.
    changed = ok(await panel(http, {"type": "addon_added", "username": service.username, "addon": "extra_users"}))
    third = await open_cart(http, service.username)
    assert third == changed and third["cart_addons"] == [{"addon": "extra_users", "quantity": 1}]
    assert (await handle_of(env.client, service.username).describe()).run_id == run_id
    runs = await eventually(lambda: runs_of(env.client, service.username), what="the renewal to be listed")
    assert runs == [run_id]


@pytest.mark.parametrize(
    ("fields", "status", "action"),
    [
        ({}, "active", "renew"),
        ({"expires_on": today() - timedelta(days=30)}, "expired", "reactivate"),
        ({"expires_on": today() - timedelta(days=120)}, "ceased", None),
        ({"auto_renew": True}, "active", None),
    ],
    ids=["active-renew", "expired-reactivate", "ceased-none", "auto-renew-none"],
)
async def test_r1_r2_service_read_shows_which_button(
    http: httpx.AsyncClient, store: Store, fields: dict[str, Any], status: str, action: str | None
) -> None:
    service = await new_service(store, **fields)
    shown = ok(await get(http, f"/panel/services/{service.username}"))
    assert shown["username"] == service.username
    assert shown["status"] == status
    assert shown["expires_on"] == service.expires_on.isoformat()
    assert shown["auto_renew"] is service.auto_renew
    assert "action" in shown and shown["action"] == action


async def test_r6_renewal_read_after_checkout_shows_payment_instructions_email(
    http: httpx.AsyncClient, store: Store, mail_sink: MailSink
) -> None:
    username, order = await ordered(http, store)
    number = order["order_number"]
    key = f"{number}:payment_instructions"

    async def emailed() -> dict[str, Any] | None:
        current = ok(await get(http, f"/panel/renewals/{username}"))
        return current if key in current["emails"] else None

    renewal = await eventually(emailed, what="the payment instructions email")
    assert renewal["stage"] == Stage.AWAITING_PAYMENT
    assert renewal["username"] == username
    assert renewal["order"]["order_number"] == number
    assert renewal["cart"]["username"] == username
    assert renewal["payments"] == []
    received = mail_sink.to(f"{username}@example.com")
    assert any(number in (message["Subject"] or "") or number in message.as_string() for message in received)


async def test_healthz_ok(http: httpx.AsyncClient) -> None:
    health = ok(await http.get("/healthz"))
    assert health == {"status": "ok", "postgres": "ok", "temporal": "ok"}


async def test_openapi_lists_the_event_endpoints_on_the_admin_app_only(
    http: httpx.AsyncClient, ingress: Renewals
) -> None:
    refused(await http.get("/openapi.json"), 404, "not_found")
    admin = create_admin_app(create_app(ingress, PANEL, PAYMENTS))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin), base_url="http://test") as client:
        document = ok(await client.get("/openapi.json"))
    assert "/panel/events" in document["paths"]
    assert "/payments/events" in document["paths"]


async def test_401_a_read_signature_is_bound_to_its_path(http: httpx.AsyncClient, store: Store) -> None:
    mine, theirs = await new_service(store), await new_service(store)
    headers = signed_headers(PANEL, "GET", f"/panel/services/{mine.username}")
    assert (await http.get(f"/panel/services/{mine.username}", headers=headers)).status_code == 200
    refused(await http.get(f"/panel/services/{theirs.username}", headers=headers), 401, "bad_signature")


async def test_p20_charge_outcomes_are_payment_events_signed_by_the_back_office(http: httpx.AsyncClient) -> None:
    """`charge_failed` and `charge_succeeded` on `POST /payments/events` (P20): signed with the
    payments secret, strict like any event; an outcome for no order is recorded and answered."""
    failed = {
        "type": "charge_failed",
        "order_number": "FE-1999-000042",
        "attempt": "FE-1999-000042/1",
        "decline": "soft",
        "code": "insufficient_funds",
        "message": "Insufficient funds",
    }
    answer = ok(await post(http, "/payments/events", failed, secret=PAYMENTS))
    assert answer == {**answer, "status": "ignored", "attempt": "FE-1999-000042/1"}
    assert "no order" in answer["note"]
    assert ok(await post(http, "/payments/events", failed, secret=PAYMENTS))["status"] == "duplicate"
    wrong = await post(http, "/payments/events", {**failed, "decline": "maybe"}, secret=PAYMENTS)
    assert wrong.status_code == 422 and "decline" in wrong.json()["message"]
    assert (await post(http, "/payments/events", failed, secret=PANEL)).status_code == 401
    paid = payment("FE-1999-000042", 3050).model_dump(mode="json")
    succeeded = {**paid, "type": "charge_succeeded", "attempt": "FE-1999-000042/2"}
    assert ok(await post(http, "/payments/events", succeeded, secret=PAYMENTS))["status"] == "unmatched"
