"""Every refusal of the signed API answers `{"error": CODE, "message": TEXT}` with the status of its
kind (docs/api.md, *Errors*), never a traceback: the `Error` body, and the exception handlers that
turn each refusal into it. A route refuses by raising; nothing answers an error by hand.
"""

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException
from starlette.responses import Response

from client.renewals import RenewalsError
from ingress.bounds import RETRY_AFTER_DEADLINE
from ingress.idempotency import KeyRefused
from renewals import errors

log = logging.getLogger("renewals.ingress")

# The ingress's own codes, by status; a renewal's refusals add theirs (renewals/errors.py).
INGRESS_ERRORS = {
    "bad_request": 400,
    "bad_signature": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "invalid_request": 422,
    "rate_limited": 429,
    "unavailable": 503,
}
ERROR_CODES = sorted({*INGRESS_ERRORS, *(code for _, code in errors.HTTP.values())})
# On a 503 (P14): a dependency that did not answer.
RETRY_AFTER_SECONDS = str(RETRY_AFTER_DEADLINE)


class Error(BaseModel):
    """Every refusal: a stable code to branch on, and a message naming the field and the rule."""

    model_config = ConfigDict(extra="forbid")

    error: str = Field(description="What kind of refusal.", json_schema_extra={"enum": list[JsonValue](ERROR_CODES)})
    message: str = Field(description="What is wrong, in words a person can act on.")


class ApiError(Exception):
    """A refusal of the API: its status, code and message, and the headers it carries (Retry-After)."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(Error(error=code, message=message).model_dump(), status_code=status, headers=headers)


def describe(problems: list[ErrorDetails] | list[Any], skip: int = 0) -> str:
    """`field.path: what is wrong` for each problem, without echoing long inputs back; `skip` drops
    the first parts of each location (FastAPI's `path`, `query`)."""
    parts = []
    for problem in problems:
        where = ".".join(str(part) for part in problem["loc"][skip:]) or "body"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def invalid(error: ValidationError) -> ApiError:
    """A body that is not JSON is a 400; JSON that breaks the contract is a 422 naming each field."""
    problems = error.errors(include_url=False, include_input=False)
    if any(problem["type"] == "json_invalid" for problem in problems):
        return ApiError(400, "bad_request", "the body is not valid JSON")
    return ApiError(422, "invalid_request", describe(problems))


# ---------------------------------------------------------------------------- the handlers


async def api_error(request: Request, error: ApiError) -> Response:
    return error_response(error.status, error.code, error.message, error.headers)


async def refused_by_the_renewal(request: Request, error: RenewalsError) -> Response:
    return error_response(error.status, error.code, error.message)


async def key_refused(request: Request, error: KeyRefused) -> Response:
    """P13: a key still being answered (409, with Retry-After) or reused for another request (422)."""
    code = "not_allowed" if error.status == 409 else "invalid_request"
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return error_response(error.status, code, error.message, headers)


async def http_error(request: Request, error: HTTPException) -> Response:
    """Starlette's own: no such route (404), a method it does not take (405, with its `Allow`)."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
    return error_response(error.status_code, code, str(error.detail), error.headers)


async def invalid_parameter(request: Request, error: RequestValidationError) -> Response:
    """A path parameter FastAPI refused (a username that is not one): `username: what is wrong`."""
    return error_response(422, "invalid_request", describe(list(error.errors()), skip=1))


async def unexpected(request: Request, error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    message = "the renewal service could not answer; try again shortly"
    return error_response(503, "unavailable", message, {"Retry-After": RETRY_AFTER_SECONDS})


HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    ApiError: api_error,
    RenewalsError: refused_by_the_renewal,
    KeyRefused: key_refused,
    HTTPException: http_error,
    RequestValidationError: invalid_parameter,
    Exception: unexpected,
}
