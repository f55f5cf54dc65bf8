"""The signed HTTP API (docs/api.md) on FastAPI: panel events, payment events, reads, health.

Two apps. `create_app` is the public one, the API and nothing else: every route but `/healthz`
(a cached answer, no detail) is signed; no OpenAPI document, no `/metrics`. `create_admin_app`
serves those (`/docs`, `/redoc`, `/openapi.json`, `/metrics`, `/healthz`) on the admin port,
loopback unless configured otherwise (starter.py serves both).

The signature (ingress/signing.py: method, path and query, Idempotency-Key, raw body) is checked
against the endpoint's own secrets before anything is parsed, and each is accepted once (P21,
db/signatures.py). Every refusal answers `{"error": CODE, "message": TEXT}`; never a traceback.
Every answer comes within the deadline of ingress/bounds.py (P14); a panel event may carry an
`Idempotency-Key` (ingress/idempotency.py, P13).
"""

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from db.invoices import invoice_by_number
from db.sdi import receipts_of
from db.signatures import SeenSignatures
from ingress import openapi, sdi, ui
from ingress.bounds import REQUEST_DEADLINE_SECONDS, RETRY_AFTER_DEADLINE, ConcurrencyLimit, Deadline
from ingress.idempotency import HEADER as IDEMPOTENCY_HEADER
from ingress.idempotency import REPLAYED_HEADER, Answer, IdempotencyKeys, KeyRefused
from ingress.operations import Ingress, RenewalsError
from ingress.ratelimit import RateLimiter
from ingress.signing import Received, SignatureError, verify
from renewals.events import PanelEvent, PaymentRegistered
from renewals.types import Username

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = str(RETRY_AFTER_DEADLINE)  # on a 503 (P14): a dependency that did not answer
PANEL_EVENTS: TypeAdapter[Any] = TypeAdapter(PanelEvent)
PAYMENT_EVENTS: TypeAdapter[PaymentRegistered] = TypeAdapter(PaymentRegistered)
USERNAME: TypeAdapter[str] = TypeAdapter(Username)

log = logging.getLogger("renewals.ingress")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def describe(error: ValidationError) -> str:
    """`field.path: what is wrong` for each problem, without echoing long inputs back."""
    parts = []
    for problem in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(413, "payload_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    return body


def received(request: Request, body: bytes) -> Received:
    """What the signature covers, as it came over the wire: the path as sent (never re-encoded by
    the framework) and its query."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    target = raw_path.split(b"?", 1)[0]
    query = request.scope.get("query_string") or b""
    if query:
        target += b"?" + query
    headers = request.headers
    return Received(
        method=request.method,
        target=target.decode("latin-1"),
        idempotency_key=headers.get(IDEMPOTENCY_HEADER),
        body=body,
        timestamp=headers.get("x-timestamp"),
        nonce=headers.get("x-nonce"),
        signature=headers.get("x-signature"),
    )


def parse(adapter: TypeAdapter[Any], body: bytes) -> Any:
    try:
        # Strict: a wrongly typed field ("3050", true, 3050.0 for cents) is an error, not a guess.
        return adapter.validate_json(body, strict=True)
    except ValidationError as error:
        if any(problem["type"] == "json_invalid" for problem in error.errors()):
            raise ApiError(400, "bad_request", "the body is not valid JSON") from None
        raise ApiError(422, "invalid_request", describe(error)) from None


class Health:
    """`/healthz`: the last check of PostgreSQL and Temporal, redone at most every `ttl` seconds
    whoever asks, so a flood of probes costs nothing; the answer says up or down, never why."""

    def __init__(self, ingress: Ingress, ttl: float = 5.0, timeout: float = 3.0) -> None:
        self.ingress, self.ttl, self.timeout = ingress, ttl, timeout
        self._checked_at = -math.inf
        self._answer: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def answer(self) -> dict[str, str]:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl:
                postgres, temporal = await asyncio.gather(self._postgres(), self._temporal())
                healthy = postgres == temporal == "ok"
                self._answer = {"status": "ok" if healthy else "down", "postgres": postgres, "temporal": temporal}
                self._checked_at = time.monotonic()
            return self._answer

    async def _postgres(self) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                await self.ingress.store.pool.fetchval("SELECT 1")
            return "ok"
        except Exception:  # noqa: BLE001 - health reports, it does not raise; the log says why
            log.warning("health: PostgreSQL did not answer", exc_info=True)
            return "down"

    async def _temporal(self) -> str:
        try:
            # Both bounds: the RPC's own timeout does not cover a connection that never completes.
            async with asyncio.timeout(self.timeout):
                await self.ingress.client.service_client.check_health(timeout=timedelta(seconds=self.timeout))
            return "ok"
        except Exception:  # noqa: BLE001
            log.warning("health: Temporal did not answer", exc_info=True)
            return "down"


def create_app(
    ingress: Ingress,
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
        description="Signed panel and payment events for the e-invoicing renewal workflow.",
        # The document is served by the admin app only (create_admin_app).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    health = Health(ingress)
    app.state.health = health
    app.state.ingress = ingress
    app.state.sdi_signing_cert = sdi_signing_cert
    keys: list[IdempotencyKeys] = [idempotency] if idempotency else []

    def idempotency_keys() -> IdempotencyKeys:
        if not keys:  # built on first use: the pool is the ingress's own
            keys.append(IdempotencyKeys(ingress.store.pool))
        return keys[0]

    seen: list[SeenSignatures] = [seen_signatures] if seen_signatures else []

    def seen_before() -> SeenSignatures:
        if not seen:
            seen.append(SeenSignatures(ingress.store.pool))
        return seen[0]

    async def signed_body(request: Request, secret: str | Sequence[str]) -> bytes:
        """The raw body, once its signature is verified and seen for the first time (P21)."""
        body = await read_body(request)
        if request.method == "GET" and body:
            raise ApiError(400, "bad_request", "a read has no body")
        try:
            verified = verify(secret, received(request, body), time.time(), accept_v1=accept_v1_signatures)
        except SignatureError as error:
            raise ApiError(401, "bad_signature", str(error)) from None
        if verified.form == "v1":
            # Ops read these to know when SIGNING_ACCEPT_V1 can be turned off: none left.
            log.warning(
                "accepted a v1 (sha256=) signature on %s %s; its sender must sign v2=", request.method, request.url.path
            )
        # Only now, a signature known to be ours: junk is never stored.
        if not await seen_before().first_use(verified.digest, verified.expires_at):
            raise ApiError(409, "not_allowed", "this signed request was already received")
        return body

    def answer(model: BaseModel) -> JSONResponse:
        return JSONResponse(model.model_dump(mode="json"))

    async def panel_answer(event: Any, key: str) -> Answer:
        """The event's answer, a refusal included: both are what a retry with its key gets back.
        The key is the update's id too: a retry after a timeout whose update did reach the renewal
        gets that update's outcome from Temporal, never a second change (P13)."""
        try:
            response = answer(await ingress.panel(event, update_id=f"idempotency-key:{key}"))
        except RenewalsError as error:
            response = error_response(error.status, error.code, error.message)
        return Answer(response.status_code, bytes(response.body))

    async def once(event: Any, key: str) -> Response:
        try:
            done = await idempotency_keys().answer_once(
                event.username, key, event.model_dump_json().encode(), lambda: panel_answer(event, key)
            )
        except KeyRefused as refusal:
            code = "not_allowed" if refusal.status == 409 else "invalid_request"
            response = error_response(refusal.status, code, refusal.message)
            if refusal.retry_after is not None:
                response.headers["Retry-After"] = str(refusal.retry_after)
            return response
        replayed = {REPLAYED_HEADER: "true"} if done.replayed else None
        return Response(done.body, status_code=done.status, media_type="application/json", headers=replayed)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(RenewalsError)
    async def _refusal(request: Request, error: RenewalsError) -> JSONResponse:
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
        response = error_response(error.status_code, code, str(error.detail))
        response.headers.update(error.headers or {})  # a 405's `Allow` (RFC 9110)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", "; ".join(str(e.get("msg")) for e in error.errors()))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        response = error_response(503, "unavailable", "the renewal service could not answer; try again shortly")
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response

    # Each route's contract (statuses, bodies, signature, examples) is in ingress/openapi.py.
    @app.post("/panel/events")
    async def panel_event(request: Request) -> Response:
        event = parse(PANEL_EVENTS, await signed_body(request, panel_secret))
        wait = limiter.retry_after(event.username) if limiter else None
        if wait is not None:
            response = error_response(
                429, "rate_limited", f"too many events for {event.username}; retry in {math.ceil(wait)} s"
            )
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None:
            return await once(event, key)
        return answer(await ingress.panel(event))

    @app.post("/payments/events")
    async def payment_event(request: Request) -> JSONResponse:
        event = parse(PAYMENT_EVENTS, await signed_body(request, payments_secret))
        return answer(await ingress.payment(event))

    def username_of(raw: str) -> str:
        try:
            return USERNAME.validate_python(raw)
        except ValidationError as error:
            raise ApiError(422, "invalid_request", "username: " + describe(error).split(": ", 1)[-1]) from None

    @app.get("/panel/services/{username}")
    async def service(username: str, request: Request) -> JSONResponse:
        await signed_body(request, panel_secret)
        return answer(await ingress.service(username_of(username)))

    @app.get("/panel/renewals/{username}")
    async def renewal(username: str, request: Request) -> JSONResponse:
        await signed_body(request, panel_secret)
        return answer(await ingress.renewal(username_of(username)))

    # P17: an invoice's FatturaPA XML, by its number (FT-2026-000001).
    @app.get("/panel/invoices/{number}", response_class=Response)
    async def invoice(number: str, request: Request) -> Response:
        await signed_body(request, panel_secret)
        found = await invoice_by_number(ingress.store.pool, number)
        if found is None or found.xml is None:
            raise ApiError(404, "not_found", f"no invoice numbered {number[:40]!r}")
        disposition = f'attachment; filename="{found.file_name}"'
        return Response(found.xml, media_type="application/xml", headers={"Content-Disposition": disposition})

    # P18: the invoice's SdI record, every notification as SdI signed it.
    @app.get("/panel/invoices/{number}/receipts")
    async def receipts(number: str, request: Request) -> JSONResponse:
        await signed_body(request, panel_secret)
        found = await receipts_of(ingress.store.pool, number)
        if found is None:
            raise ApiError(404, "not_found", f"no invoice numbered {number[:40]!r}")
        return answer(found)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        checks = await health.answer()
        if checks["status"] == "ok":
            return JSONResponse(checks, 200)
        return JSONResponse(checks, 503, {"Retry-After": RETRY_AFTER_SECONDS})

    # The customer's pages, /ui/ (ingress/ui.py): either secret of a rotation verifies, the current signs.
    app.include_router(ui.pages_for(ingress, panel_secret))
    app.include_router(sdi.router)  # SdI's callbacks (P18): SOAP, outside the signed API
    openapi.serve(app)
    from ingress.metrics import instrument  # the counters and the request log line, outermost

    app.add_middleware(Deadline, seconds=deadline)
    if max_concurrency is not None:
        app.add_middleware(ConcurrencyLimit, limit=max_concurrency)
    app.state.metrics = instrument(app)
    return app


def create_admin_app(public: FastAPI) -> FastAPI:
    """What the public port does not show: the public app's OpenAPI document (`/openapi.json`,
    `/docs`, `/redoc`), its `/metrics`, and `/healthz`. Unsigned: keep it off the network."""
    from ingress.metrics import mount_metrics

    admin = FastAPI(title=f"{public.title} (admin)", openapi_url=None, docs_url=None, redoc_url=None)

    @admin.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(public.openapi())

    @admin.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=public.title)

    @admin.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=public.title)

    @admin.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        checks = await public.state.health.answer()
        if checks["status"] == "ok":
            return JSONResponse(checks, 200)
        return JSONResponse(checks, 503, {"Retry-After": RETRY_AFTER_SECONDS})

    mount_metrics(admin, public.state.metrics)
    return admin
