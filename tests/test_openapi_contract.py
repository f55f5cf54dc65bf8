"""The OpenAPI document is the contract, and schemathesis holds the running ingress to it (issue 20).

Schemathesis drives every operation of the document the ingress serves, over HTTP against the real
app (uvicorn on a local port, the conftest Temporal dev server, PostgreSQL, worker and SMTP sink),
each request signed like the panel or the payments back office would sign it. Every default check
runs on every answer: no server error, status code, content type, headers and body as documented,
negative data rejected, authentication enforced. `make test` sends a bounded number of examples
(CONTRACT_EXAMPLES per operation and mode); `make contract-soak` sends many more.
"""

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import hypothesis
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.types import ASGIApp, Receive, Scope, Send

from activities.store import Store
from ingress.http import create_app
from ingress.operations import Ingress
from ingress.ratelimit import RateLimiter
from ingress.signing import read_payload, signed_headers
from stack.demo import demo_services
from stack.postgres import free_port
from tests.conftest import eventually, today

PANEL = "panel-contract-secret"
PAYMENTS = "payments-contract-secret"
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "25"))


class Signed(requests.auth.AuthBase):
    """Signs each request on the wire, as ingress/signing.py checks it: the exact body bytes sent,
    or `GET <path>` for a read; the payments secret on /payments/*, the panel secret elsewhere.

    A requests auth runs after the body is serialized, so the signature covers what is sent. A
    request schemathesis sent without the two headers the security scheme names (negative data,
    the `ignored_auth` probes) goes unsigned, and must be refused with 401."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not {"x-timestamp", "x-signature"} <= {name.lower() for name in request.headers}:
            return request
        path = urlsplit(request.url or "").path
        secret = PAYMENTS if path.startswith("/payments/") else PANEL
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        signed = read_payload("GET", path) if request.method == "GET" else body
        request.headers.update(signed_headers(secret, int(time.time()), signed))
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


def check(case: schemathesis.Case, base_url: str, session: requests.Session) -> None:
    """One request, signed, and every default check on its answer.

    One deliberate exception: JSON Schema counts 3050.0 as an integer and schemathesis sends it as
    valid data, while the ingress reads JSON strictly (a float for cents is a 422, tests/
    test_hostile_input.py): for such a body the answer must be exactly that 422, and
    positive_data_acceptance alone is set aside."""
    lenient = case.meta is not None and case.meta.generation.mode.is_positive and whole_float(case.body)
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


@pytest.fixture(scope="module")
async def served(ingress: Ingress, store: Store) -> Any:
    await store.upsert_services(demo_services(today()))
    # The limiter as in production, with room for the fuzzer's bursts on one username; 429 stays
    # reachable when it hammers one.
    app = create_app(ingress, PANEL, PAYMENTS, RateLimiter(rate=20, burst=100))
    counted = CountRequests(app)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(counted, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, 20, "the ingress to listen")
    yield app, counted, f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_openapi_document_is_valid_openapi_3_1(served: Any) -> None:
    app, _, _ = served
    document = app.openapi()
    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_schemathesis_finds_no_breach_of_the_document(served: Any) -> None:
    app, counted, base_url = served
    before = sum(counted.statuses.values())
    run: Callable[[], list[str]] = lambda: fuzz(app.openapi(), base_url, EXAMPLES)  # noqa: E731
    failures = await asyncio.to_thread(run)
    sent = sum(counted.statuses.values()) - before
    print(f"\nschemathesis sent {sent} requests; statuses {dict(sorted(counted.statuses.items()))}")
    assert not failures, "\n\n".join(failures)
