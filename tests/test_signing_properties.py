"""Security of the ingress (issue 6): properties of the signature scheme of DESIGN.md §5.

First on renewals/signing.py alone: any change to the body, the timestamp or the signature is
refused, a timestamp more than 300 s from the clock is refused, a correct signature within the
window passes, and a refusal never tells the secret; so is any change to what P21 adds (the
method, the path and query, Idempotency-Key, the nonce). Then over HTTP, against the real app and
stack: a request replayed after 5 minutes is refused as stale and within them as already received
(P21), the panel secret cannot sign payments nor the payments secret panel events, and neither
secret appears in any answer or log line.

Time is moved, never waited for: a stale request carries an old X-Timestamp, and the exact replay
of a captured request runs against the app's clock moved forward (`ingress.http.time`).
"""

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

import ingress.http
from activities.store import Store
from client.renewals import Renewals
from ingress.http import create_app
from renewals.signing import TOLERANCE_SECONDS, Received, SignatureError, Verified, sign, signed_headers, verify
from renewals.types import Stage
from tests.conftest import handle_of, new_service, payment, unique, view

NONCE_FORM = re.compile(r"[A-Za-z0-9_-]{16,64}")
PROPERTY = settings(max_examples=300, deadline=None, database=None)
HTTP_PROPERTY = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

secrets = st.text(min_size=1, max_size=64)
bodies = st.binary(max_size=512)
# Unix seconds as the scheme allows them: up to 12 digits.
timestamps = st.integers(0, 10**12 - 1)


NONCE = "n0nce-of-the-tests-22c"
EVENTS = "/panel/events"


def v2(secret: str, timestamp: int, body: bytes, **what: Any) -> str:
    """The v2 signature of a POST to /panel/events (or of `what`: method, target, key, nonce)."""
    return signed_headers(
        secret,
        what.get("method", "POST"),
        what.get("target", EVENTS),
        body,
        idempotency_key=what.get("key"),
        timestamp=timestamp,
        nonce=what.get("nonce", NONCE),
    )["X-Signature"]


def check(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float, **what: Any) -> Verified:
    """renewals/signing.py's verdict on a request to /panel/events (or as `what` says it came)."""
    received = Received(
        what.get("method", "POST"),
        what.get("target", EVENTS),
        what.get("key"),
        body,
        timestamp,
        what.get("nonce", NONCE),
        signature,
    )
    return verify(secret, received, now, accept_v1=what.get("accept_v1", False))


def refused(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float, **what: Any) -> str:
    with pytest.raises(SignatureError) as raised:
        check(secret, timestamp, signature, body, now, **what)
    return str(raised.value)


# ---------------------------------------------------------------------------- renewals/signing.py


@PROPERTY
@given(secret=secrets, timestamp=timestamps, body=bodies, skew=st.floats(-TOLERANCE_SECONDS, TOLERANCE_SECONDS))
def test_a_correct_signature_within_300_s_passes(secret: str, timestamp: int, body: bytes, skew: float) -> None:
    check(secret, str(timestamp), v2(secret, timestamp, body), body, timestamp + skew)


@PROPERTY
@given(secret=secrets, timestamp=timestamps, body=bodies, other=bodies)
def test_any_change_to_the_body_is_refused(secret: str, timestamp: int, body: bytes, other: bytes) -> None:
    assume(other != body)
    message = refused(secret, str(timestamp), v2(secret, timestamp, body), other, timestamp)
    assert "does not match" in message


@PROPERTY
@given(secret=secrets, body=bodies, data=st.data())
def test_a_one_byte_change_to_the_body_is_refused(secret: str, body: bytes, data: st.DataObject) -> None:
    assume(body)
    timestamp = int(time.time())
    at = data.draw(st.integers(0, len(body) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda value: value != body[at]))
    tampered = body[:at] + bytes([byte]) + body[at + 1 :]
    refused(secret, str(timestamp), v2(secret, timestamp, body), tampered, timestamp)


@PROPERTY
@given(
    secret=secrets,
    body=bodies,
    timestamp=st.integers(TOLERANCE_SECONDS, 10**12 - 1 - TOLERANCE_SECONDS),
    shift=st.integers(-TOLERANCE_SECONDS, TOLERANCE_SECONDS).filter(bool),
)
def test_any_change_to_the_timestamp_is_refused(secret: str, body: bytes, timestamp: int, shift: int) -> None:
    # The new timestamp is inside the window: only the signature can refuse it.
    message = refused(secret, str(timestamp + shift), v2(secret, timestamp, body), body, timestamp)
    assert "does not match" in message


@PROPERTY
@given(
    secret=secrets,
    body=bodies,
    spelling=st.text(max_size=14).filter(lambda text: not (text.isascii() and text.isdigit() and len(text) <= 12)),
)
def test_a_timestamp_that_is_not_unix_seconds_is_refused(secret: str, body: bytes, spelling: str) -> None:
    now = int(time.time())
    refused(secret, spelling, v2(secret, now, body), body, now)


@PROPERTY
@given(secret=secrets, timestamp=timestamps, body=bodies, data=st.data())
def test_any_change_to_the_signature_is_refused(secret: str, timestamp: int, body: bytes, data: st.DataObject) -> None:
    right = v2(secret, timestamp, body)
    at = data.draw(st.integers(0, len(right) - 1))
    edit = data.draw(
        st.sampled_from(["replace", "insert", "delete", "upper", "prefix", "whitespace", "anything"]),
        label="edit",
    )
    if edit == "replace":
        wrong = right[:at] + data.draw(st.characters().filter(lambda c: c != right[at])) + right[at + 1 :]
    elif edit == "insert":
        wrong = right[:at] + data.draw(st.characters()) + right[at:]
    elif edit == "delete":
        wrong = right[:at] + right[at + 1 :]
    elif edit == "upper":
        wrong = right.upper()
    elif edit == "prefix":
        wrong = data.draw(st.sampled_from(["", "V2=", "v2:", "v1=", "v3=", "sha256=", "v2=v2="])) + right[3:]
    elif edit == "whitespace":
        wrong = data.draw(st.sampled_from([" ", "\t", "\n"])) + right
    else:
        wrong = data.draw(st.text(max_size=80))
    assume(wrong != right)
    refused(secret, str(timestamp), wrong, body, timestamp)


@PROPERTY
@given(secret=secrets, other=secrets, timestamp=timestamps, body=bodies)
def test_another_secret_cannot_sign(secret: str, other: str, timestamp: int, body: bytes) -> None:
    assume(other.encode() != secret.encode())
    refused(secret, str(timestamp), v2(other, timestamp, body), body, timestamp)


@PROPERTY
@given(
    secret=secrets,
    timestamp=timestamps,
    body=bodies,
    # A millisecond past the window at least: closer than that, float rounding decides, not the rule.
    away=st.floats(TOLERANCE_SECONDS + 0.001, 10**9),
    late=st.booleans(),
)
def test_a_timestamp_more_than_300_s_away_is_refused_even_when_signed(
    secret: str, timestamp: int, body: bytes, away: float, late: bool
) -> None:
    now = timestamp + away if late else timestamp - away
    message = refused(secret, str(timestamp), v2(secret, timestamp, body), body, now)
    assert "5 minutes" in message


@PROPERTY
@given(
    secret=st.text(min_size=8, max_size=64).map(lambda text: f"s3cr3t-{text}"),
    timestamp=timestamps,
    body=bodies,
    attempt=st.text(max_size=80),
)
def test_a_refusal_never_tells_the_secret_or_the_right_signature(
    secret: str, timestamp: int, body: bytes, attempt: str
) -> None:
    right = v2(secret, timestamp, body)
    assume(attempt != right)
    for spelling, now in ((str(timestamp), timestamp), (str(timestamp), timestamp + 10_000), ("x", timestamp)):
        message = refused(secret, spelling, attempt, body, now)
        assert secret not in message
        assert right[3:] not in message and right[3:11] not in message


# P21: what the signature covers beyond the body and the timestamp.
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"])
TARGETS = st.from_regex(r"/[A-Za-z0-9/._%-]{0,40}(\?[A-Za-z0-9=&%._-]{0,20})?", fullmatch=True)
KEYS = st.none() | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40)
NONCES = st.from_regex(r"[A-Za-z0-9_-]{16,64}", fullmatch=True)


@PROPERTY
@given(
    secret=secrets,
    body=bodies,
    signed=st.fixed_dictionaries({"method": METHODS, "target": TARGETS, "key": KEYS, "nonce": NONCES}),
    sent=st.fixed_dictionaries({"method": METHODS, "target": TARGETS, "key": KEYS, "nonce": NONCES}),
    part=st.sampled_from(["method", "target", "key", "nonce"]),
)
def test_p21_any_change_to_the_method_path_query_key_or_nonce_is_refused(
    secret: str, body: bytes, signed: dict[str, Any], sent: dict[str, Any], part: str
) -> None:
    timestamp = int(time.time())
    right = v2(secret, timestamp, body, **signed)
    assert check(secret, str(timestamp), right, body, timestamp, **signed).form == "v2"
    changed = {**signed, part: sent[part]}
    # An absent key and an empty one are the same line; no sender can tell them apart either.
    assume(changed[part] != signed[part] and {changed["key"], signed["key"]} != {None, ""})
    assert "does not match" in refused(secret, str(timestamp), right, body, timestamp, **changed)


@PROPERTY
@given(nonce=st.text(max_size=80).filter(lambda text: not NONCE_FORM.fullmatch(text)))
def test_p21_a_nonce_that_is_not_16_to_64_safe_characters_is_refused(nonce: str) -> None:
    now = int(time.time())
    assert "X-Nonce" in refused("secret", str(now), v2("secret", now, b"{}", nonce=nonce), b"{}", now, nonce=nonce)


@PROPERTY
@given(secret=secrets, timestamp=timestamps, body=bodies, reading=st.booleans())
def test_p21_the_sha256_form_passes_only_while_accepted(
    secret: str, timestamp: int, body: bytes, reading: bool
) -> None:
    method, target = ("GET", "/panel/services/demo-active") if reading else ("POST", EVENTS)
    signed = b"GET /panel/services/demo-active" if reading else body
    old = sign(secret, timestamp, signed)
    verified = check(secret, str(timestamp), old, body, timestamp, method=method, target=target, accept_v1=True)
    assert verified.form == "v1" and verified.expires_at == timestamp + TOLERANCE_SECONDS
    message = refused(secret, str(timestamp), old, body, timestamp, method=method, target=target)
    assert "v2=" in message


@pytest.mark.parametrize("timestamp, signature", [(None, "v2=00"), ("1", None), ("", "v2=00"), ("1", ""), (None, None)])
def test_a_missing_timestamp_or_signature_is_refused(timestamp: str | None, signature: str | None) -> None:
    assert "missing" in refused("secret", timestamp, signature, b"{}", 1)


# ---------------------------------------------------------------------------- over HTTP

PANEL = f"panel-{uuid.uuid4().hex}"
PAYMENTS = f"payments-{uuid.uuid4().hex}"


class Recorder:
    """The real ingress, noting each call: a refused request must reach none of it."""

    def __init__(self, real: Renewals) -> None:
        self.real = real
        self.store = real.store
        self.client = real.client
        self.calls: list[str] = []

    async def panel(self, event: Any) -> Any:
        self.calls.append("panel")
        return await self.real.panel(event)

    async def payment(self, event: Any) -> Any:
        self.calls.append("payment")
        return await self.real.payment(event)

    async def service(self, username: str) -> Any:
        self.calls.append("service")
        return await self.real.service(username)

    async def renewal(self, username: str) -> Any:
        self.calls.append("renewal")
        return await self.real.renewal(username)


class Broken:
    """An ingress whose every operation fails unexpectedly: the 503 path and its log.exception. Its
    store is the real one: the signature is checked and recorded (P21) before an operation runs."""

    client = None

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _fail(self, *args: Any) -> Any:
        raise RuntimeError("the backend fell over")

    panel = payment = service = renewal = _fail


@pytest.fixture(scope="module")
async def loop() -> asyncio.AbstractEventLoop:
    """The session's event loop, where the pool, the Temporal client and the worker live."""
    return asyncio.get_running_loop()


def runner(loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[Any]], Any]:
    def run(awaitable: Awaitable[Any]) -> Any:
        return loop.run_until_complete(awaitable)

    return run


@pytest.fixture(scope="module")
def recorder(ingress: Renewals) -> Recorder:
    return Recorder(ingress)


@pytest.fixture(scope="module")
async def http(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(recorder, PANEL, PAYMENTS)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture(scope="module")
async def broken_http(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Broken(store), PANEL, PAYMENTS)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def headers_for(
    secret: str, body: bytes, timestamp: int | None = None, *, method: str = "POST", path: str = EVENTS
) -> dict[str, str]:
    return {"Content-Type": "application/json", **signed_headers(secret, method, path, body, timestamp=timestamp)}


def bad_signature(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    answer = response.json()
    assert set(answer) == {"error", "message"} and answer["error"] == "bad_signature", answer
    message: str = answer["message"]
    return message


def renew(username: str) -> bytes:
    return json.dumps({"type": "renew_requested", "username": username}).encode()


def payment_body(order_number: str = "FE-2026-999997") -> tuple[str, bytes]:
    event = payment(order_number, 3050, txn=unique("sig-txn")).model_dump(mode="json")
    return event["transaction_id"], json.dumps(event).encode()


async def no_workflow(env: WorkflowEnvironment, username: str) -> None:
    with pytest.raises(RPCError) as raised:
        await handle_of(env.client, username).describe()
    assert raised.value.status == RPCStatusCode.NOT_FOUND


async def ledger_has(store: Store, transaction_id: str) -> bool:
    found: int = await store.pool.fetchval("SELECT count(*) FROM payments WHERE transaction_id = $1", transaction_id)
    return found > 0


@pytest.fixture(scope="module")
async def quiet_username(store: Store) -> str:
    """A real service that nothing in this module may open a renewal for."""
    return (await new_service(store)).username


def test_http_a_request_replayed_after_5_minutes_is_refused(
    loop: asyncio.AbstractEventLoop, http: httpx.AsyncClient, recorder: Recorder, store: Store, env: WorkflowEnvironment
) -> None:
    """The exact bytes and headers of an accepted request, sent again with the app's clock moved:
    stale beyond 5 minutes, already received within them (P21)."""
    run = runner(loop)
    username = run(new_service(store)).username
    body = renew(username)
    captured = headers_for(PANEL, body)
    assert run(http.post("/panel/events", content=body, headers=captured)).status_code == 200
    handle = handle_of(env.client, username)
    run_id = run(handle.describe()).run_id
    real_time = time.time

    @settings(HTTP_PROPERTY)
    @given(later=st.floats(TOLERANCE_SECONDS + 2, 10**8), within=st.floats(0, TOLERANCE_SECONDS - 10))
    def replay(later: float, within: float) -> None:
        recorder.calls.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ingress.http, "time", SimpleNamespace(time=lambda: real_time() + later))
            response = run(http.post("/panel/events", content=body, headers=captured))
        assert "5 minutes" in bad_signature(response)
        assert recorder.calls == []
        # The same capture inside the window: accepted once already, so refused, reaching nothing (P21).
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ingress.http, "time", SimpleNamespace(time=lambda: real_time() + within))
            response = run(http.post("/panel/events", content=body, headers=captured))
        assert response.status_code == 409, response.text
        assert response.json() == {"error": "not_allowed", "message": "this signed request was already received"}
        assert recorder.calls == []

    replay()
    assert run(handle.describe()).run_id == run_id
    assert run(view(env.client, username)).stage == Stage.CART


def test_http_a_stale_or_future_timestamp_is_refused_on_both_endpoints(
    loop: asyncio.AbstractEventLoop,
    http: httpx.AsyncClient,
    recorder: Recorder,
    store: Store,
    env: WorkflowEnvironment,
    quiet_username: str,
) -> None:
    run = runner(loop)

    @settings(HTTP_PROPERTY)
    @given(away=st.integers(TOLERANCE_SECONDS + 2, 10**9), late=st.booleans())
    def stale(away: int, late: bool) -> None:
        recorder.calls.clear()
        stamped = int(time.time()) + (away if late else -away)
        body = renew(quiet_username)
        response = run(http.post("/panel/events", content=body, headers=headers_for(PANEL, body, stamped)))
        assert "5 minutes" in bad_signature(response)
        transaction_id, body = payment_body()
        headers = headers_for(PAYMENTS, body, stamped, path="/payments/events")
        response = run(http.post("/payments/events", content=body, headers=headers))
        assert "5 minutes" in bad_signature(response)
        assert recorder.calls == []
        assert not run(ledger_has(store, transaction_id))

    stale()
    run(no_workflow(env, quiet_username))


def test_http_reads_pass_within_300_s_and_are_refused_beyond(
    loop: asyncio.AbstractEventLoop, http: httpx.AsyncClient, quiet_username: str
) -> None:
    run = runner(loop)
    path = f"/panel/services/{quiet_username}"

    @settings(HTTP_PROPERTY)
    @given(skew=st.integers(-(TOLERANCE_SECONDS - 10), TOLERANCE_SECONDS - 10))
    def within(skew: int) -> None:
        response = run(http.get(path, headers=signed_headers(PANEL, "GET", path, timestamp=int(time.time()) + skew)))
        assert response.status_code == 200, response.text

    @settings(HTTP_PROPERTY)
    @given(away=st.integers(TOLERANCE_SECONDS + 2, 10**9), late=st.booleans())
    def beyond(away: int, late: bool) -> None:
        stamped = int(time.time()) + (away if late else -away)
        bad_signature(run(http.get(path, headers=signed_headers(PANEL, "GET", path, timestamp=stamped))))

    within()
    beyond()


def test_http_any_change_to_body_timestamp_or_signature_is_refused(
    loop: asyncio.AbstractEventLoop,
    http: httpx.AsyncClient,
    recorder: Recorder,
    env: WorkflowEnvironment,
    quiet_username: str,
) -> None:
    run = runner(loop)

    @settings(HTTP_PROPERTY, max_examples=150)
    @given(part=st.sampled_from(["body", "timestamp", "signature"]), data=st.data())
    def tampered(part: str, data: st.DataObject) -> None:
        recorder.calls.clear()
        body = renew(quiet_username)
        headers = headers_for(PANEL, body)
        if part == "body":
            at = data.draw(st.integers(0, len(body) - 1))
            byte = data.draw(st.integers(0, 255).filter(lambda value: value != body[at]))
            body = body[:at] + bytes([byte]) + body[at + 1 :]
        elif part == "timestamp":
            shift = data.draw(st.integers(-(TOLERANCE_SECONDS - 10), TOLERANCE_SECONDS - 10).filter(bool))
            headers["X-Timestamp"] = str(int(headers["X-Timestamp"]) + shift)
        else:
            right = headers["X-Signature"]
            at = data.draw(st.integers(0, len(right) - 1))
            replacement = data.draw(st.sampled_from("0123456789abcdefABCDEF=x").filter(lambda c: c != right[at]))
            headers["X-Signature"] = right[:at] + replacement + right[at + 1 :]
        bad_signature(run(http.post("/panel/events", content=body, headers=headers)))
        assert recorder.calls == []

    tampered()
    run(no_workflow(env, quiet_username))


def test_http_the_panel_secret_cannot_sign_payments_nor_the_payments_secret_panel_events(
    loop: asyncio.AbstractEventLoop,
    http: httpx.AsyncClient,
    recorder: Recorder,
    store: Store,
    env: WorkflowEnvironment,
    quiet_username: str,
) -> None:
    run = runner(loop)

    @settings(HTTP_PROPERTY)
    @given(
        order=st.from_regex(r"FE-20[0-9]{2}-[0-9]{6}", fullmatch=True), read=st.sampled_from(["services", "renewals"])
    )
    def crossed(order: str, read: str) -> None:
        recorder.calls.clear()
        transaction_id, body = payment_body(order)
        headers = headers_for(PANEL, body, path="/payments/events")
        bad_signature(run(http.post("/payments/events", content=body, headers=headers)))
        body = renew(quiet_username)
        bad_signature(run(http.post("/panel/events", content=body, headers=headers_for(PAYMENTS, body))))
        read_path = f"/panel/{read}/{quiet_username}"
        read_headers = signed_headers(PAYMENTS, "GET", read_path)
        bad_signature(run(http.get(read_path, headers=read_headers)))
        assert recorder.calls == []
        assert not run(ledger_has(store, transaction_id))

    crossed()
    run(no_workflow(env, quiet_username))


# Requests that go wrong in every way the ingress can refuse, or fail, for the secrets check.
FLAWS = (
    "the-other-secret",
    "stale",
    "future",
    "tampered-body",
    "tampered-signature",
    "no-headers",
    "garbage-headers",
    "malformed-body",
    "backend-fails",
)


def test_http_secrets_never_appear_in_answers_or_logs(
    loop: asyncio.AbstractEventLoop,
    http: httpx.AsyncClient,
    broken_http: httpx.AsyncClient,
    store: Store,
    env: WorkflowEnvironment,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = runner(loop)
    username = run(new_service(store)).username
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    right_signatures: list[str] = []

    @settings(HTTP_PROPERTY, max_examples=120)
    @given(
        flaw=st.sampled_from(FLAWS),
        endpoint=st.sampled_from(["/panel/events", "/payments/events", "/panel/services/", "/panel/renewals/"]),
        junk=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")),
        payload=st.binary(max_size=200),
    )
    def send(flaw: str, endpoint: str, junk: str, payload: bytes) -> None:
        reading = endpoint.endswith("/")
        secret = PANEL if endpoint != "/payments/events" else PAYMENTS
        if reading:
            path, body = endpoint + username, b""
        elif endpoint == "/panel/events":
            path, body = endpoint, renew(username)
        else:
            path, body = endpoint, payment_body()[1]
        now = int(time.time())
        method = "GET" if reading else "POST"
        headers: dict[str, Any] = headers_for(secret, body, method=method, path=path)
        client = http
        if reading and flaw == "malformed-body":
            flaw = "stale"  # a read has no body to break
        if flaw == "the-other-secret":
            headers = headers_for(PAYMENTS if secret == PANEL else PANEL, body, method=method, path=path)
        elif flaw in ("stale", "future"):
            stamped = now + (-1 if flaw == "stale" else 1) * (TOLERANCE_SECONDS + 60)
            headers = headers_for(secret, body, stamped, method=method, path=path)
        elif flaw == "tampered-body":
            body = body + payload + b" "
        elif flaw == "tampered-signature":
            headers["X-Signature"] = headers["X-Signature"][:-1] + ("0" if headers["X-Signature"][-1] != "0" else "1")
        elif flaw == "no-headers":
            headers = {"Content-Type": "application/json"}
        elif flaw == "garbage-headers":
            headers = {"X-Timestamp": junk.encode("latin-1"), "X-Signature": (junk or "x").encode("latin-1")}
        elif flaw == "malformed-body":
            body = payload
            headers = headers_for(secret, body, method=method, path=path)
        elif flaw == "backend-fails":
            client = broken_http
        stamp = headers.get("X-Timestamp")
        if isinstance(stamp, str) and stamp.isdigit():  # what the server computes, were it to compute it
            nonce = str(headers.get("X-Nonce") or NONCE)
            right_signatures.append(v2(secret, int(stamp), body, method=method, target=path, nonce=nonce)[3:])
        response = run(client.request("GET" if reading else "POST", path, content=body, headers=headers))
        assert response.status_code >= 400, response.text
        answers.append(response.text + " " + " ".join(f"{k}: {v}" for k, v in response.headers.items()))

    send()
    run(no_workflow(env, username))
    logged = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    assert any("unexpected error" in record.getMessage() for record in caplog.records), "the 503 path was not hit"
    for secret in (PANEL, PAYMENTS):
        assert all(secret not in answer for answer in answers)
        assert secret not in logged
    for right in right_signatures:
        assert all(right not in answer for answer in answers)
        assert right not in logged
