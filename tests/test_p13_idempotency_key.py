"""P13: a panel event with an `Idempotency-Key` is answered once per key and username for 24 hours:
a retry gets the first answer (status and body) and changes nothing; the key with another request
is a 422; concurrent requests with one key never both run; an answer we could not give (5xx) is
not kept, and a claim whose request died is taken over."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from activities.store import Store
from client.renewals import Renewals
from ingress.http import create_app
from ingress.idempotency import Answer, IdempotencyKeys, KeyRefused, fingerprint
from renewals.events import AddonAdded
from renewals.signing import signed_headers
from tests.conftest import eventually, new_service

PANEL = "panel-test-secret"
PAYMENTS = "payments-test-secret"


@pytest.fixture(scope="module")
async def http(ingress: Renewals) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ingress, PANEL, PAYMENTS))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def event(http: httpx.AsyncClient, payload: dict[str, Any], key: str | bytes | None = None) -> httpx.Response:
    body = json.dumps(payload).encode()
    # The key is signed as it goes on the wire (P21): a header's bytes, one character each.
    signed_key = key.decode("latin-1") if isinstance(key, bytes) else key
    headers: dict[str, str | bytes] = {
        "Content-Type": "application/json",
        **signed_headers(PANEL, "POST", "/panel/events", body, idempotency_key=signed_key),
    }
    if key is not None:
        headers["Idempotency-Key"] = key
    return await http.post("/panel/events", content=body, headers=headers)


async def cart_addons(http: httpx.AsyncClient, username: str) -> list[dict[str, Any]]:
    path = f"/panel/renewals/{username}"
    response = await http.get(path, headers=signed_headers(PANEL, "GET", path))
    assert response.status_code == 200, response.text
    addons: list[dict[str, Any]] = response.json()["cart"]["cart_addons"]
    return addons


def add_storage(username: str, quantity: int = 1) -> dict[str, Any]:
    return {"type": "addon_added", "username": username, "addon": "extra_storage", "quantity": quantity}


async def opened(http: httpx.AsyncClient, store: Store) -> str:
    service = await new_service(store)
    assert (await event(http, {"type": "renew_requested", "username": service.username})).status_code == 200
    return service.username


async def test_p13_a_retry_with_the_same_key_gets_the_first_answer_and_changes_nothing(http, store):
    username = await opened(http, store)
    key = str(uuid.uuid4())
    first = await event(http, add_storage(username), key)
    again = await event(http, add_storage(username), key)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert await cart_addons(http, username) == [{"addon": "extra_storage", "quantity": 1}]
    # Without a key, or with another one, the event runs again: that is what the key is for.
    assert (await event(http, add_storage(username), str(uuid.uuid4()))).status_code == 200
    assert await cart_addons(http, username) == [{"addon": "extra_storage", "quantity": 2}]


async def test_p13_the_key_belongs_to_one_username(http, store):
    first, second = await opened(http, store), await opened(http, store)
    key = "panel-retry-1"
    assert (await event(http, add_storage(first), key)).status_code == 200
    assert (await event(http, add_storage(second), key)).status_code == 200
    assert (
        await cart_addons(http, first) == await cart_addons(http, second) == [{"addon": "extra_storage", "quantity": 1}]
    )


async def test_p13_a_key_reused_with_another_request_is_a_422_naming_it(http, store):
    username = await opened(http, store)
    key = str(uuid.uuid4())
    assert (await event(http, add_storage(username, 1), key)).status_code == 200
    reused = await event(http, add_storage(username, 2), key)
    assert reused.status_code == 422
    assert reused.json()["error"] == "invalid_request"
    assert "Idempotency-Key" in reused.json()["message"] and "another request" in reused.json()["message"]
    assert await cart_addons(http, username) == [{"addon": "extra_storage", "quantity": 1}]


async def test_p13_a_refusal_is_the_first_answer_too(http, store):
    service = await new_service(store)
    key = str(uuid.uuid4())
    refused = await event(http, add_storage(service.username), key)  # no renewal open yet
    assert refused.status_code == 409
    assert (await event(http, {"type": "renew_requested", "username": service.username})).status_code == 200
    again = await event(http, add_storage(service.username), key)
    assert again.status_code == 409 and again.content == refused.content
    assert await cart_addons(http, service.username) == []


async def test_p13_concurrent_requests_with_one_key_never_both_run(http, store):
    username = await opened(http, store)
    key = str(uuid.uuid4())
    answers = await asyncio.gather(*(event(http, add_storage(username), key) for _ in range(8)))
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {200, 409} and 200 in statuses, statuses
    for busy in (answer for answer in answers if answer.status_code == 409):
        assert busy.headers["Retry-After"] == "1" and "still being answered" in busy.json()["message"]
    oks = {answer.content for answer in answers if answer.status_code == 200}
    assert len(oks) == 1  # the one that ran, and replays of it
    assert await cart_addons(http, username) == [{"addon": "extra_storage", "quantity": 1}]


async def test_p13_after_24_hours_the_ingress_forgets_the_key_and_the_renewal_still_changes_once(http, store):
    username = await opened(http, store)
    key = str(uuid.uuid4())
    assert (await event(http, add_storage(username), key)).status_code == 200
    await store.pool.execute(
        "UPDATE idempotency_keys SET claimed_at = claimed_at - interval '24 hours 1 minute'"
        " WHERE username = $1 AND idempotency_key = $2",
        username,
        key,
    )
    later = await event(http, add_storage(username), key)
    # The stored answer is gone (no replay header), but the key is also the update's id: the
    # renewal answers a repeat of that update with its first outcome, never a second add-on.
    assert later.status_code == 200 and "Idempotent-Replayed" not in later.headers
    assert await cart_addons(http, username) == [{"addon": "extra_storage", "quantity": 1}]
    other = await event(http, add_storage(username), str(uuid.uuid4()))
    assert other.status_code == 200
    assert await cart_addons(http, username) == [{"addon": "extra_storage", "quantity": 2}]


@pytest.mark.parametrize(
    "key", [b"", b"x" * 256, "caffè".encode(), b"tab\there"], ids=["empty", "256", "non-ascii", "control"]
)
async def test_p13_a_key_is_1_to_255_printable_characters(http, store, key):
    username = await opened(http, store)
    response = await event(http, add_storage(username), key)
    assert response.status_code == 422 and "Idempotency-Key must be 1 to 255" in response.json()["message"]
    assert await cart_addons(http, username) == []
    assert (await event(http, add_storage(username), "k" * 255)).status_code == 200


async def test_p13_an_answer_we_could_not_give_is_not_kept(store):
    keys = IdempotencyKeys(store.pool)
    username, key = f"u-{uuid.uuid4().hex[:8]}", "retry-after-503"

    async def down() -> Answer:
        return Answer(503, b'{"error":"unavailable","message":"down"}')

    async def broken() -> Answer:
        raise RuntimeError("Temporal went away")

    async def works() -> Answer:
        return Answer(200, b'{"ok":true}')

    async def released() -> bool:
        found = await store.pool.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE username = $1 AND idempotency_key = $2", username, key
        )
        return found == 0

    assert (await keys.answer_once(username, key, b"same", down)).status == 503
    await eventually(released, what="the claim to be let go after a 503")
    with pytest.raises(RuntimeError):
        await keys.answer_once(username, key, b"same", broken)
    await eventually(released, what="the claim to be let go after an error")
    assert await keys.answer_once(username, key, b"same", works) == Answer(200, b'{"ok":true}')
    assert await keys.answer_once(username, key, b"same", down) == Answer(200, b'{"ok":true}', replayed=True)


async def test_p13_a_claim_whose_request_died_is_taken_over_after_its_lease(store):
    keys = IdempotencyKeys(store.pool)
    username, key = f"u-{uuid.uuid4().hex[:8]}", "died-mid-request"
    await store.pool.execute(
        "INSERT INTO idempotency_keys (username, idempotency_key, request_sha256, claim, claimed_at)"
        " VALUES ($1, $2, $3, $4, now())",
        username,
        key,
        fingerprint(b"x"),
        uuid.uuid4(),
    )

    async def works() -> Answer:
        return Answer(200, b"{}")

    with pytest.raises(KeyRefused) as busy:  # a live claim: the holder may still answer
        await keys.answer_once(username, key, b"x", works)
    assert busy.value.status == 409 and busy.value.retry_after == 1
    await store.pool.execute(
        "UPDATE idempotency_keys SET claimed_at = now() - interval '2 minutes' WHERE username = $1", username
    )
    assert (await keys.answer_once(username, key, b"x", works)).status == 200


async def test_p13_a_retry_whose_first_attempt_reached_the_renewal_changes_nothing(http, store, ingress: Renewals):
    """The gap a stored answer cannot close: the first attempt timed out (no answer kept, the key
    released) after its update reached the renewal. The key is the update's id, so the retry gets
    the first update's outcome from Temporal instead of adding the add-on again."""
    username = await opened(http, store)
    event = AddonAdded(type="addon_added", username=username, addon="extra_storage", quantity=1)
    first = await ingress.panel(event, update_id="idempotency-key:lost-answer")
    again = await ingress.panel(event, update_id="idempotency-key:lost-answer")
    assert first == again
    assert await cart_addons(http, username) == [{"addon": "extra_storage", "quantity": 1}]
