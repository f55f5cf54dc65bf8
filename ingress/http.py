"""The signed HTTP API (DESIGN.md §5) on FastAPI: panel events, payment events, reads, health.

The signature is checked on the raw body, against the endpoint's own secret, before anything is
parsed. Every refusal answers `{"error": CODE, "message": TEXT}`; never a traceback.
"""

import logging
import math
import time
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from activities.invoicing import invoice_by_number  # P17 (issue 17)
from ingress import openapi, ui
from ingress.operations import Ingress, RenewalsError
from ingress.ratelimit import RateLimiter
from ingress.signing import SignatureError, read_payload, verify
from renewals.models import PanelEvent, PaymentRegistered, Username

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = "5"  # on a 503 (P14): a dependency that did not answer, asked again shortly
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


def parse(adapter: TypeAdapter[Any], body: bytes) -> Any:
    try:
        # Strict: a wrongly typed field ("3050", true, 3050.0 for cents) is an error, not a guess.
        return adapter.validate_json(body, strict=True)
    except ValidationError as error:
        if any(problem["type"] == "json_invalid" for problem in error.errors()):
            raise ApiError(400, "bad_request", "the body is not valid JSON") from None
        raise ApiError(422, "invalid_request", describe(error)) from None


def create_app(
    ingress: Ingress, panel_secret: str, payments_secret: str, limiter: RateLimiter | None = None
) -> FastAPI:
    app = FastAPI(
        title="Renewals ingress",
        version="1",
        description="Signed panel and payment events for the e-invoicing renewal workflow.",
    )

    async def signed_body(request: Request, secret: str) -> bytes:
        body = await read_body(request)
        signed = body
        if request.method == "GET":
            if body:
                raise ApiError(400, "bad_request", "a read has no body")
            # The path as it came over the wire (not re-encoded by the framework), decoded once.
            raw_path = request.scope.get("raw_path") or request.url.path.encode()
            signed = read_payload("GET", raw_path.split(b"?", 1)[0].decode("latin-1"))
        try:
            verify(secret, request.headers.get("x-timestamp"), request.headers.get("x-signature"), signed, time.time())
        except SignatureError as error:
            raise ApiError(401, "bad_signature", str(error)) from None
        return body

    def answer(model: BaseModel) -> JSONResponse:
        return JSONResponse(model.model_dump(mode="json"))

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
    async def panel_event(request: Request) -> JSONResponse:
        event = parse(PANEL_EVENTS, await signed_body(request, panel_secret))
        wait = limiter.retry_after(event.username) if limiter else None
        if wait is not None:
            response = error_response(
                429, "rate_limited", f"too many events for {event.username}; retry in {math.ceil(wait)} s"
            )
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
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

    # P17 (issue 17): an invoice's FatturaPA XML, by its number (FT-2026-000001).
    @app.get("/panel/invoices/{number}", response_class=Response)
    async def invoice(number: str, request: Request) -> Response:
        await signed_body(request, panel_secret)
        found = await invoice_by_number(ingress.store.pool, number)
        if found is None or found.xml is None:
            raise ApiError(404, "not_found", f"no invoice numbered {number[:40]!r}")
        disposition = f'attachment; filename="{found.file_name}"'
        return Response(found.xml, media_type="application/xml", headers={"Content-Disposition": disposition})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await ingress.store.pool.fetchval("SELECT 1")
            checks["postgres"] = "ok"
        except Exception as error:  # noqa: BLE001 - health reports, it does not raise
            checks["postgres"] = f"down: {type(error).__name__}"
        try:
            await ingress.client.service_client.check_health(timeout=timedelta(seconds=3))
            checks["temporal"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks["temporal"] = f"down: {type(error).__name__}"
        healthy = all(value == "ok" for value in checks.values())
        body = {"status": "ok" if healthy else "down", **checks}
        return JSONResponse(body, 200) if healthy else JSONResponse(body, 503, {"Retry-After": RETRY_AFTER_SECONDS})

    app.include_router(ui.pages_for(ingress, panel_secret))  # the customer's pages, /ui/ (ingress/ui.py)
    openapi.serve(app)
    from ingress.metrics import instrument  # GET /metrics and the request log line, outermost

    instrument(app)
    return app
