"""The signed HTTP API (docs/api.md) on FastAPI: the two apps, built from the routers of ingress/api/.

`create_app` is the public one, the API and nothing else: panel events, payment events, reads,
invoices, `/healthz`, SdI's SOAP callback and the customer's pages; no OpenAPI document, no
`/metrics`. `create_admin_app` serves those (`/docs`, `/redoc`, `/openapi.json`, `/metrics`,
`/healthz`) on the admin port, loopback unless configured otherwise (starter.py serves both).

Every route of /panel/* and /payments/* is signed (P21, ingress/api/deps.py); every refusal answers
`{"error": CODE, "message": TEXT}` (ingress/api/errors.py); every answer comes within the deadline
of ingress/bounds.py (P14). `python -m ingress.http > docs/openapi.json` prints the public app's
OpenAPI document (ingress/openapi.py), without a running stack.
"""

import json
import time
from collections.abc import Sequence
from typing import cast

from fastapi import FastAPI

from client.renewals import Renewals
from db.signatures import SeenSignatures
from ingress import openapi, pages
from ingress.api import admin, health, invoices, panel, payments, reads, sdi, statements
from ingress.api.deps import Api
from ingress.api.errors import HANDLERS
from ingress.bounds import REQUEST_DEADLINE_SECONDS, ConcurrencyLimit, Deadline
from ingress.idempotency import IdempotencyKeys
from ingress.metrics import instrument
from ingress.ratelimit import RateLimiter

ROUTERS = (
    panel.router,
    payments.router,
    statements.router,
    reads.router,
    invoices.router,
    health.router,
    sdi.router,
)


def wall_clock() -> float:
    """The clock signatures are checked against; `time` is looked up at each call, so a test moves
    it (tests/test_signing_properties.py)."""
    return time.time()


def _values(secret: str | Sequence[str]) -> tuple[str, ...]:
    return (secret,) if isinstance(secret, str) else tuple(secret)


def create_app(
    ingress: Renewals,
    panel_secret: str | Sequence[str],
    payments_secret: str | Sequence[str],
    limiter: RateLimiter | None = None,
    *,
    idempotency: IdempotencyKeys | None = None,
    deadline: float = REQUEST_DEADLINE_SECONDS,
    max_concurrency: int | None = None,
    sdi_signing_cert: bytes | None = None,
    accept_v1_signatures: bool = True,
    seen_signatures: SeenSignatures | None = None,
) -> FastAPI:
    """The public API. Each secret is one value or several (the current first, then the previous
    one during a rotation): a request signed with any is accepted. `sdi_signing_cert`: the PEM
    certificate SdI's notifications must verify against (P18); without it every one is refused.
    `accept_v1_signatures`: SIGNING_ACCEPT_V1, the form signed before P21 still accepted."""
    app = FastAPI(
        title="Renewals ingress",
        version="1",
        description=openapi.DESCRIPTION,
        openapi_tags=openapi.TAGS,
        # Each operation is named after its route's function: the name clients generate from.
        generate_unique_id_function=lambda route: route.name,
        exception_handlers=HANDLERS,
        # The document is served by the admin app only (create_admin_app).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = Api(
        ingress,
        {"panel": _values(panel_secret), "payments": _values(payments_secret)},
        limiter,
        accept_v1=accept_v1_signatures,
        clock=wall_clock,
        sdi_signing_cert=sdi_signing_cert,
        idempotency=idempotency,
        seen=seen_signatures,
    )
    app.state.health = health.HealthCheck(ingress)
    for router in ROUTERS:
        app.include_router(router)
    # The customer's pages, /ui/ (ingress/pages): either secret of a rotation verifies, the current signs.
    pages.include(app, ingress, _values(panel_secret))
    openapi.serve(app)
    app.add_middleware(Deadline, seconds=deadline)
    if max_concurrency is not None:
        app.add_middleware(ConcurrencyLimit, limit=max_concurrency)
    app.state.metrics = instrument(app)  # the counters and the request log line, outermost
    return app


def create_admin_app(public: FastAPI) -> FastAPI:
    """What the public port does not show: the public app's OpenAPI document (`/openapi.json`,
    `/docs`, `/redoc`), its `/metrics`, and `/healthz`. Unsigned: keep it off the network."""
    admin_app = FastAPI(title=f"{public.title} (admin)", openapi_url=None, docs_url=None, redoc_url=None)
    admin_app.state.public = public
    admin_app.state.health = public.state.health
    admin_app.include_router(admin.router)
    admin_app.include_router(health.router)
    return admin_app


def main() -> None:
    """`python -m ingress.http > docs/openapi.json`: the public app's document; the document depends
    on the routes alone, so nothing here reaches Temporal or PostgreSQL."""
    app = create_app(cast(Renewals, None), "document-only-panel-secret", "document-only-payments-secret")
    print(json.dumps(app.openapi(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
