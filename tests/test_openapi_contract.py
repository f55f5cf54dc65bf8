"""The OpenAPI document is the contract, and schemathesis holds the running ingress to it (issue 20).

Schemathesis drives every operation of the document the ingress serves, over HTTP against the real
app (uvicorn on a local port, the conftest Temporal dev server, PostgreSQL, worker and SMTP sink),
each request signed like the panel or the payments back office would sign it. Every default check
runs on every answer: no server error, status code, content type, headers and body as documented,
negative data rejected, authentication enforced. `make test` sends a bounded number of examples
(CONTRACT_EXAMPLES per operation and mode); `make contract-soak` sends many more.
"""

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import hypothesis
import pytest
import requests
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from activities.store import Store
from client.renewals import Renewals
from ingress.api.deps import MAX_BODY_BYTES
from ingress.http import create_app
from ingress.openapi import constraints, documented_routes
from ingress.ratelimit import RateLimiter
from renewals.invoice import schema_problems
from renewals.signing import signed_headers
from renewals.statements import StatementRefused, read_statement
from stack.demo import demo_services
from stack.postgres import free_port
from tests.conftest import eventually, today

PANEL = "panel-contract-secret"
PAYMENTS = "payments-contract-secret"
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "50"))


SIGNING_HEADERS = {"x-timestamp", "x-nonce", "x-signature"}


class Signed(requests.auth.AuthBase):
    """Signs each request on the wire, as renewals/signing.py checks it (P21): the method, the path
    and query as sent, the Idempotency-Key and the exact body bytes; the payments secret on
    /payments/*, the panel secret elsewhere.

    A requests auth runs after the body is serialized, so the signature covers what is sent. A
    request schemathesis sent without the headers the security schemes name (negative data, the
    `ignored_auth` probes) goes unsigned, and must be refused with 401."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not SIGNING_HEADERS <= {name.lower() for name in request.headers}:
            return request
        target = request.path_url  # the path and query as requests puts them on the wire
        secret = PAYMENTS if urlsplit(target).path.startswith("/payments/") else PANEL
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        key = request.headers.get("Idempotency-Key")
        request.headers.update(signed_headers(secret, request.method or "GET", target, body, idempotency_key=key))
        return request


class CountRequests:
    """ASGI wrapper: how many requests the ingress answered, by status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.statuses: Counter[int] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
            await send(message)

        await self.app(scope, receive, counting if scope["type"] == "http" else send)


def whole_float(value: Any) -> bool:
    """A float with nothing after the point (3050.0) anywhere in a body."""
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(whole_float(item) for item in value.values())
    if isinstance(value, list):
        return any(whole_float(item) for item in value)
    return False


def in_the_future(value: Any) -> bool:
    """A `registered_at` more than 5 minutes ahead of our clock: the document says so in words
    (P17), which JSON Schema cannot check."""
    if not isinstance(value, dict) or not isinstance(value.get("registered_at"), str):
        return False
    try:
        when = datetime.fromisoformat(value["registered_at"])
    except ValueError:
        return False
    return when.tzinfo is not None and when > datetime.now(UTC) + timedelta(minutes=4)


def not_a_statement(case: schemathesis.Case) -> bool:
    """A body for `POST /payments/statements` that is not a camt.053 statement: the document's schema
    for it is any bytes (XML validity is the official XSD's, P19), so a fuzzed one is a 422."""
    if case.path != "/payments/statements":
        return False
    body = case.body if isinstance(case.body, bytes) else str(case.body).encode()
    try:
        read_statement(body, today=date.today())
    except StatementRefused:
        return True
    return False


def check(case: schemathesis.Case, base_url: str, session: requests.Session) -> None:
    """One request, signed, and every default check on its answer.

    Three deliberate exceptions, where valid data by JSON Schema is a 422 by a rule it cannot express:
    JSON Schema counts 3050.0 as an integer, while the ingress reads JSON strictly (a float for cents
    is a 422, tests/test_hostile_input.py); a `registered_at` more than 5 minutes ahead of our clock
    is refused (P17, the description says so); and a statement must be camt.053 by its official
    schema (P19). For such a body the answer must be exactly that 422, and positive_data_acceptance
    alone is set aside."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    lenient = positive and (whole_float(case.body) or in_the_future(case.body) or not_a_statement(case))
    excluded = [positive_data_acceptance] if lenient else []
    response = case.call_and_validate(
        base_url=base_url, session=session, auth=Signed(), timeout=20, excluded_checks=excluded
    )
    if lenient:
        assert response.status_code == 422 and response.json()["error"] == "invalid_request", response.text


def fuzz(document: dict[str, Any], base_url: str, examples: int) -> list[str]:
    """Every operation: the document's own examples, then generated valid data, then invalid data;
    returns the failures schemathesis reported (none when the ingress keeps its contract)."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    session = requests.Session()
    settings = hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    for result in schema.get_all_operations():
        operation = result.ok()
        raw = document["paths"][operation.path][operation.method.lower()]
        strategies = [*schema.get_strategies_from_examples(operation), operation.as_strategy()]
        if "requestBody" in raw or "parameters" in raw:  # something to get wrong
            strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        # The coverage phase: schemathesis's deterministic boundary cases (lengths, bounds, missing
        # and extra fields, wrong types), valid and invalid.
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        config = schema.config.generation_for(operation=operation)
        for case in schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=config):
            try:
                check(case, base_url, session)
            except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001
                failures.append(f"{operation.label} [coverage]: {error}")
        for strategy in strategies:

            @settings
            @given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                check(case, base_url, session)

            try:
                run()
            except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - all reported, then the test fails
                failures.append(f"{operation.label}: {error}")
    return failures


@asynccontextmanager
async def serving(app: ASGIApp, log_level: str = "warning") -> AsyncIterator[str]:
    """`app` on a local port, in this event loop (where the worker and the pools live)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="off"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, 20, "the ingress to listen")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="module")
async def served(ingress: Renewals, store: Store) -> AsyncIterator[tuple[FastAPI, CountRequests, str]]:
    # The demo services of `make run`, which the document's examples name.
    await store.services.upsert(demo_services(today()))
    # The production limiter, with room for the fuzzer's bursts; a 429 still comes when it hammers one username.
    app = create_app(ingress, PANEL, PAYMENTS, RateLimiter(rate=20, burst=100))
    counted = CountRequests(app)
    async with serving(counted) as base_url:
        yield app, counted, base_url


def validator(document: dict[str, Any], ref: str) -> Draft202012Validator:
    """A JSON Schema validator for one of the document's schemas (its $refs resolved in the document)."""
    return Draft202012Validator(
        {"$ref": ref, "components": document["components"]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


# ---------------------------------------------------------------------------- the document


async def test_openapi_document_is_valid_openapi_3_1_and_documents_every_route(served: Any) -> None:
    app, _, _ = served
    document = app.openapi()
    assert document["openapi"].startswith("3.1")
    validate(document)  # openapi-spec-validator: the OpenAPI 3.1 meta-schema and its references
    assert {(method, path) for method, path in documented_routes(app)} == {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    responses = {
        (method.upper(), path): set(operation["responses"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    refusals = {"400", "401", "404", "409", "413", "422", "429", "503"}
    assert responses[("POST", "/panel/events")] == {"200"} | refusals
    assert responses[("POST", "/payments/events")] == {"200"} | refusals - {"404", "429"}
    # P21: every signed operation may answer 409, a replay.
    assert responses[("GET", "/panel/services/{username}")] == {"200"} | refusals - {"429"}
    for item in document["paths"].values():
        for operation in item.values():
            if operation["security"]:
                replay = operation["responses"]["409"]["content"]["application/json"]["examples"]
                assert replay["already_received"]["value"]["message"] == "this signed request was already received"
    assert responses[("GET", "/healthz")] == {"200", "503"}


async def test_the_committed_copy_is_the_served_document(served: Any) -> None:
    app, _, _ = served
    committed = json.loads((Path(__file__).resolve().parent.parent / "docs" / "openapi.json").read_text())
    assert committed == app.openapi(), "docs/openapi.json is stale: python -m ingress.http > docs/openapi.json"


async def test_every_answer_carries_an_example_that_matches_its_schema(served: Any) -> None:
    app, _, _ = served
    document = app.openapi()
    seen = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            bodies = [(f"{status} answer", answer) for status, answer in operation["responses"].items()]
            if "requestBody" in operation:
                bodies.append(("request", operation["requestBody"]))
            for what, body in bodies:
                if "application/xml" in body["content"]:
                    # P17: the invoice, a FatturaPA document; P19: a bank statement, camt.053.
                    xml_examples = body["content"]["application/xml"]["examples"]
                    assert xml_examples, f"{method} {path} {what} has no example"
                    for name, example in xml_examples.items():
                        if path == "/payments/statements":
                            assert read_statement(example["value"].encode(), today=date(2026, 3, 3)).entries
                        else:
                            assert schema_problems(example["value"].encode()) == [], f"{method} {path} {what} {name}"
                        seen += 1
                    continue
                content = body["content"]["application/json"]
                assert content["examples"], f"{method} {path} {what} has no example"
                for name, example in content["examples"].items():
                    errors = [
                        e.message for e in validator(document, content["schema"]["$ref"]).iter_errors(example["value"])
                    ]
                    assert not errors, f"{method} {path} {what} example {name}: {errors}"
                    seen += 1
            for status in ("429", "503"):
                if status in operation["responses"]:
                    assert "Retry-After" in operation["responses"][status]["headers"], f"{method} {path} {status}"
    assert seen >= 30


async def test_panel_events_are_a_union_on_type_with_one_example_per_event(served: Any) -> None:
    app, _, _ = served
    document = app.openapi()
    union = document["components"]["schemas"]["PanelEvent"]
    events = set(union["discriminator"]["mapping"])
    assert union["discriminator"]["propertyName"] == "type" and len(union["oneOf"]) == len(events) == 7
    examples = document["paths"]["/panel/events"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert {example["value"]["type"] for example in examples.values()} == events


async def test_p11_the_payment_schema_says_what_is_checked_and_what_is_kept_as_unmatched(served: Any) -> None:
    app, _, _ = served
    document = app.openapi()
    payment = document["components"]["schemas"]["PaymentRegistered"]
    assert "Money is never refused" in payment["description"]
    fields = payment["properties"]
    assert fields["transaction_id"]["description"].startswith("Checked.")
    assert fields["amount_cents"]["description"].startswith("Checked.")
    assert "unmatched" in fields["order_number"]["description"] and "unmatched" in fields["currency"]["description"]
    # Each description ends with what the model itself accepts, so it follows renewals/events.py.
    assert fields["order_number"]["description"].endswith(f"Accepted: {constraints(fields['order_number'])}.")
    signature = document["components"]["securitySchemes"]
    assert document["paths"]["/payments/events"]["post"]["security"] == [
        {"paymentsTimestamp": [], "paymentsNonce": [], "paymentsSignature": []}
    ]
    assert document["paths"]["/panel/events"]["post"]["security"] == [
        {"panelTimestamp": [], "panelNonce": [], "panelSignature": []}
    ]
    # P21: the string to sign, as the README states it.
    rule = "<timestamp>\\n<nonce>\\n<METHOD>\\n<path?query>\\n<Idempotency-Key>\\n<raw body>"
    assert rule in signature["panelSignature"]["description"]
    assert signature["panelSignature"]["description"].startswith("`v2=<hex>`")


# ---------------------------------------------------------------------------- the fuzzer


async def test_schemathesis_finds_no_breach_of_the_document(served: Any) -> None:
    app, counted, base_url = served
    before = sum(counted.statuses.values())
    failures = await asyncio.to_thread(fuzz, app.openapi(), base_url, EXAMPLES)
    sent = sum(counted.statuses.values()) - before
    print(f"\nschemathesis sent {sent} requests; statuses {dict(sorted(counted.statuses.items()))}")
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------------------- refusals the fuzzer rarely meets

ANSWER_CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def answer_to(document: dict[str, Any], base_url: str, method: str, path: str, **case: Any) -> schemathesis.Response:
    """Send one hand-made case, signed, and hold its answer to the document."""
    schema = schemathesis.openapi.from_dict(document)
    operation = schema[path][method]
    # The headers the security scheme names, for Signed to fill in; none on an unsigned operation.
    signed = document["paths"][path][method.lower()]["security"]
    placeholders = {"X-Timestamp": "", "X-Nonce": "", "X-Signature": ""}
    made = operation.Case(headers=placeholders if signed else None, **case)
    response = made.call(base_url=base_url, auth=Signed(), timeout=20)
    made.validate_response(response, checks=ANSWER_CHECKS)
    return response


async def test_413_429_and_503_answer_as_documented(ingress: Renewals, served: Any) -> None:
    app, _, _ = served
    document = app.openapi()
    big = {"type": "renew_requested", "username": "x" * (MAX_BODY_BYTES + 1)}
    tight = create_app(ingress, PANEL, PAYMENTS, RateLimiter(rate=0.01, burst=1))
    # PostgreSQL that does not answer: a pool on a port where nothing listens (no connection at start).
    nowhere = Store(await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/renewals", min_size=0))
    down = create_app(Renewals(ingress.client, nowhere, ingress.policy, ingress.task_queue), PANEL, PAYMENTS)
    # (uvicorn logs the ingress's own 503s as errors: expected here, so not shown)
    async with serving(tight) as tight_url, serving(down, "critical") as down_url:

        def send() -> list[schemathesis.Response]:
            unknown = {"type": "renew_requested", "username": "nobody-here"}
            return [
                answer_to(document, tight_url, "POST", "/panel/events", body=big),
                answer_to(document, tight_url, "POST", "/panel/events", body=unknown),
                answer_to(document, tight_url, "POST", "/panel/events", body=unknown),
                answer_to(document, down_url, "POST", "/panel/events", body=unknown),
                answer_to(document, down_url, "GET", "/panel/services/{username}", path_parameters={"username": "x"}),
                answer_to(document, down_url, "GET", "/healthz"),
            ]

        answers = await asyncio.to_thread(send)
    await nowhere.close()
    assert [answer.status_code for answer in answers] == [413, 404, 429, 503, 503, 503]
    # (schemathesis's Response keeps headers lower-cased, as lists)
    assert all(answer.headers["retry-after"][0].isdigit() for answer in answers[2:])


# ---------------------------------------------------------------- found by the fuzzer, fixed in renewals/events.py


def pay(base_url: str, registered_at: str) -> requests.Response:
    event = {
        "type": "payment_registered",
        "order_number": "FE-2026-000123",
        "transaction_id": f"edge-{time.monotonic_ns()}",
        "amount_cents": 3050,
        "currency": "EUR",
        "method": "bank_transfer",
        "registered_at": registered_at,
    }
    # Placeholders the signing hook replaces with the real signature (it signs only what asks to be).
    headers = {"X-Timestamp": "0", "X-Nonce": "0", "X-Signature": "v2=0"}
    return requests.post(f"{base_url}/payments/events", json=event, auth=Signed(), headers=headers, timeout=20)


@pytest.mark.parametrize(
    "registered_at",
    [
        # Year 10000 in UTC, which the ledger write cannot encode (it was a 503).
        pytest.param("9999-12-31T23:59:59-23:59", id="past-year-9999-in-utc"),
        # Found by `make contract-soak`: before year 1 in UTC (it was a 503).
        pytest.param("0001-01-01T00:00:00+03:04", id="before-year-1-in-utc"),
        # No offset: the document's date-time (RFC 3339) refuses it (it was read as UTC).
        pytest.param("2026-11-27T10:00:00", id="without-an-offset"),
    ],
)
async def test_a_registered_at_the_document_refuses_is_a_422(served: Any, registered_at: str) -> None:
    _, _, base_url = served
    answer = await asyncio.to_thread(pay, base_url, registered_at)
    assert answer.status_code == 422, answer.text
