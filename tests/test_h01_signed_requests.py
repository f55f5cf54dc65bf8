"""P21, issue 26 item 1: a signed request is accepted once, and its signature covers the method, the
path with its query, the `Idempotency-Key` and the body.

Each test plays the attacker who captured one signed request off the wire (its headers and its
body, exactly) and sends it again within the 5 minutes the timestamp allows, against the real app
(the conftest Temporal dev server, PostgreSQL and worker) over httpx's ASGI transport. The
requests are signed here from the README's words (`readme_headers`), not by renewals/signing.py,
so the server is held to the string the README publishes.
"""

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from activities.store import Store
from client.renewals import Renewals
from ingress.http import create_app
from renewals.signing import read_payload, sign
from settings import Settings
from tests.conftest import new_service

PANEL = "panel-h01-secret"
PAYMENTS = "payments-h01-secret"


def readme_headers(
    secret: str, method: str, target: str, body: bytes = b"", idempotency_key: str | None = None
) -> dict[str, str]:
    """The README's v2 signature: HMAC-SHA256 with the endpoint's secret of
    "<timestamp>\\n<nonce>\\n<METHOD>\\n<path?query>\\n<Idempotency-Key or empty>\\n<raw body>"."""
    timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
    signed = "\n".join((timestamp, nonce, method, target, idempotency_key or "")).encode() + b"\n" + body
    headers = {
        "Content-Type": "application/json",
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature": "v2=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest(),
    }
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def v1_headers(secret: str, method: str, target: str, body: bytes = b"") -> dict[str, str]:
    """The form signed before P21 (`sha256=` of "<timestamp>.<body>", a read's "GET <path>")."""
    timestamp = int(time.time())
    signed = read_payload(method, target) if method == "GET" else body
    return {
        "Content-Type": "application/json",
        "X-Timestamp": str(timestamp),
        "X-Signature": sign(secret, timestamp, signed),
    }


FORMS = {"v2": readme_headers, "v1": v1_headers}


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture(scope="module")
async def http(ingress: Renewals) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(create_app(ingress, PANEL, PAYMENTS)) as client:
        yield client


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


async def panel(
    http: httpx.AsyncClient, payload: dict[str, Any], key: str | None = None, form: str = "v2"
) -> httpx.Response:
    body = body_of(payload)
    headers = (
        readme_headers(PANEL, "POST", "/panel/events", body, key)
        if key
        else FORMS[form](PANEL, "POST", "/panel/events", body)
    )
    return await http.post("/panel/events", content=body, headers=headers)


async def read(http: httpx.AsyncClient, target: str, form: str = "v2") -> dict[str, Any]:
    response = await http.get(target, headers=FORMS[form](PANEL, "GET", target))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def add_storage(username: str) -> dict[str, Any]:
    return {"type": "addon_added", "username": username, "addon": "extra_storage", "quantity": 1}


def already_received(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.json() == {"error": "not_allowed", "message": "this signed request was already received"}


def bad_signature(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "bad_signature"
    message: str = response.json()["message"]
    return message


async def opened(http: httpx.AsyncClient, store: Store, form: str = "v2") -> str:
    username = (await new_service(store)).username
    assert (await panel(http, {"type": "renew_requested", "username": username}, form=form)).status_code == 200
    return username


@pytest.mark.parametrize("form", FORMS)
async def test_h01_a_replayed_addon_added_is_refused_409_and_the_cart_keeps_one_addon(http, store, form):
    username = await opened(http, store, form)
    body = body_of(add_storage(username))
    captured = FORMS[form](PANEL, "POST", "/panel/events", body)
    assert (await http.post("/panel/events", content=body, headers=captured)).status_code == 200
    # The attacker sends the captured request again, once, then many times at once.
    already_received(await http.post("/panel/events", content=body, headers=captured))
    again = await asyncio.gather(*(http.post("/panel/events", content=body, headers=captured) for _ in range(5)))
    assert {response.status_code for response in again} == {409}
    cart = (await read(http, f"/panel/renewals/{username}", form))["cart"]
    assert cart["cart_addons"] == [{"addon": "extra_storage", "quantity": 1}]


async def test_h01_two_copies_sent_at_once_are_accepted_once(http, store):
    username = await opened(http, store)
    body = body_of(add_storage(username))
    captured = readme_headers(PANEL, "POST", "/panel/events", body)
    both = await asyncio.gather(*(http.post("/panel/events", content=body, headers=captured) for _ in range(2)))
    assert sorted(response.status_code for response in both) == [200, 409]
    cart = (await read(http, f"/panel/renewals/{username}"))["cart"]
    assert cart["cart_addons"] == [{"addon": "extra_storage", "quantity": 1}]


@pytest.mark.parametrize("form", FORMS)
async def test_h01_a_replayed_auto_renew_changed_does_not_flip_the_setting_back(http, store, form):
    username = (await new_service(store, auto_renew=True, auto_renew_method="card")).username
    off = body_of({"type": "auto_renew_changed", "username": username, "auto_renew": False})
    captured = FORMS[form](PANEL, "POST", "/panel/events", off)
    assert (await http.post("/panel/events", content=off, headers=captured)).status_code == 200
    # The customer turns it on again, by a request of its own.
    on = {"type": "auto_renew_changed", "username": username, "auto_renew": True, "method": "card"}
    assert (await panel(http, on, form=form)).status_code == 200
    already_received(await http.post("/panel/events", content=off, headers=captured))
    assert (await read(http, f"/panel/services/{username}", form))["auto_renew"] is True
    assert (await store.services.get(username)).auto_renew is True


async def test_h01_the_idempotency_key_cannot_be_swapped_under_a_captured_signature(http, store):
    username = await opened(http, store)
    body = body_of(add_storage(username))
    key = str(uuid.uuid4())
    captured = readme_headers(PANEL, "POST", "/panel/events", body, key)
    swapped = {**captured, "Idempotency-Key": str(uuid.uuid4())}
    assert "does not match" in bad_signature(await http.post("/panel/events", content=body, headers=swapped))
    dropped = {name: value for name, value in captured.items() if name != "Idempotency-Key"}
    bad_signature(await http.post("/panel/events", content=body, headers=dropped))
    # Refused, so not spent: the request as signed is still accepted, once.
    first = await http.post("/panel/events", content=body, headers=captured)
    assert first.status_code == 200, first.text
    already_received(await http.post("/panel/events", content=body, headers=captured))
    # P13 still holds: the panel's retry after a timeout is signed anew (a new timestamp and nonce)
    # with the same key, and gets the first answer back, changing nothing.
    retry = await panel(http, add_storage(username), key)
    assert (retry.status_code, retry.content, retry.headers["Idempotent-Replayed"]) == (200, first.content, "true")
    cart = (await read(http, f"/panel/renewals/{username}"))["cart"]
    assert cart["cart_addons"] == [{"addon": "extra_storage", "quantity": 1}]


async def test_h01_the_method_the_path_and_the_query_are_signed(http, store):
    mine, other = (await new_service(store)).username, (await new_service(store)).username
    target = f"/panel/services/{mine}?view=full"
    captured = readme_headers(PANEL, "GET", target)
    for elsewhere in (
        f"/panel/services/{other}?view=full",  # another customer's service
        f"/panel/renewals/{mine}?view=full",  # another resource of the same customer
        f"/panel/services/{mine}",  # the query dropped
        f"/panel/services/{mine}?view=brief",  # the query changed
    ):
        assert "does not match" in bad_signature(await http.get(elsewhere, headers=captured)), elsewhere
    # The same path under another method: signed as a POST, it is not a read.
    posted = readme_headers(PANEL, "POST", target)
    assert "does not match" in bad_signature(await http.get(target, headers=posted))
    response = await http.get(target, headers=captured)
    assert response.status_code == 200, response.text
    assert response.json()["username"] == mine


async def test_h01_the_old_sha256_form_is_accepted_while_signing_accept_v1_is_on_and_refused_when_off(
    ingress: Renewals, store: Store, monkeypatch: pytest.MonkeyPatch
):
    assert Settings().signing_accept_v1 is True
    monkeypatch.setenv("SIGNING_ACCEPT_V1", "false")
    assert Settings().signing_accept_v1 is False
    username = (await new_service(store)).username
    target = f"/panel/services/{username}"
    async with client_of(create_app(ingress, PANEL, PAYMENTS, accept_v1_signatures=True)) as accepting:
        response = await accepting.get(target, headers=v1_headers(PANEL, "GET", target))
        assert response.status_code == 200, response.text
    async with client_of(create_app(ingress, PANEL, PAYMENTS, accept_v1_signatures=False)) as refusing:
        message = bad_signature(await refusing.get(target, headers=v1_headers(PANEL, "GET", target)))
        assert "v2=" in message
        body = body_of({"type": "renew_requested", "username": username})
        message = bad_signature(
            await refusing.post("/panel/events", content=body, headers=v1_headers(PANEL, "POST", "/panel/events", body))
        )
        assert "v2=" in message
        # The new form is the one that passes.
        response = await refusing.get(target, headers=readme_headers(PANEL, "GET", target))
        assert response.status_code == 200, response.text
