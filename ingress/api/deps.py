"""What the API's routes depend on, each an `Annotated` type a route or a router names: the app's
state (`app.state.api`), the raw body within its bound, the signature (P21) and the body read
strictly once the signature is accepted (docs/api.md).

The order is the contract's: a router's `dependencies=[Depends(...signature)]` run before the
route's own parameters (FastAPI solves a router's dependencies first), so an unsigned request is a
401 whatever its body, and only a signed one has its body parsed (400, 422) or its path checked.
The raw body is read once per request: FastAPI caches `RawBody` for every dependency that names it.
"""

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from pydantic import TypeAdapter, ValidationError

from client.renewals import Renewals
from db.signatures import SeenSignatures
from ingress import bodies
from ingress.api.errors import ApiError, invalid
from ingress.idempotency import HEADER as IDEMPOTENCY_HEADER
from ingress.idempotency import IdempotencyKeys
from ingress.ratelimit import RateLimiter
from renewals.signing import Received, SignatureError, Verified, verify

log = logging.getLogger("renewals.ingress")

MAX_BODY_BYTES = 64 * 1024
Endpoint = Literal["panel", "payments"]


@dataclass
class Api:
    """The public app's state, set once by ingress/http.py `create_app`: the operations, each
    endpoint's secrets (the current first, then the previous during a rotation), the panel's rate
    limit, the P13 keys and the P21 signatures seen (both on the ingress's own pool, built on first
    use), whether the pre-P21 form is accepted, and the clock signatures are checked against."""

    ingress: Renewals
    secrets: Mapping[Endpoint, tuple[str, ...]]
    limiter: RateLimiter | None = None
    accept_v1: bool = True
    clock: Callable[[], float] = time.time
    sdi_signing_cert: bytes | None = None  # SdI's certificate (P18), for ingress/api/sdi.py
    idempotency: IdempotencyKeys | None = field(default=None, repr=False)
    seen: SeenSignatures | None = field(default=None, repr=False)

    def keys(self) -> IdempotencyKeys:
        if self.idempotency is None:
            self.idempotency = IdempotencyKeys(self.ingress.store.pool)
        return self.idempotency

    def seen_signatures(self) -> SeenSignatures:
        if self.seen is None:
            self.seen = SeenSignatures(self.ingress.store.pool)
        return self.seen


def api_of(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


ApiDep = Annotated[Api, Depends(api_of)]


def ingress_of(api: ApiDep) -> Renewals:
    return api.ingress


IngressDep = Annotated[Renewals, Depends(ingress_of)]


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body as sent, refused with 413 past `limit` bytes."""
    too_large = ApiError(413, "payload_too_large", f"the body must be at most {limit} bytes")
    return await bodies.read_bounded(request, limit, too_large)


async def raw_body(request: Request) -> bytes:
    return await read_bounded(request, MAX_BODY_BYTES)


RawBody = Annotated[bytes, Depends(raw_body)]


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


class Signature:
    """The dependency of every route of one endpoint (`panel`: /panel/*, `payments`:
    /payments/*): the request verified against that endpoint's own secrets (renewals/signing.py),
    then accepted once (P21, db/signatures.py). ingress/openapi.py documents it as the endpoint's
    three security schemes."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, request: Request, body: RawBody, api: ApiDep) -> Verified:
        if request.method == "GET" and body:
            raise ApiError(400, "bad_request", "a read has no body")
        try:
            verified = verify(api.secrets[self.endpoint], received(request, body), api.clock(), accept_v1=api.accept_v1)
        except SignatureError as error:
            raise ApiError(401, "bad_signature", str(error)) from None
        if verified.form == "v1":
            # Ops read these to know when SIGNING_ACCEPT_V1 can be turned off: none left.
            log.warning(
                "accepted a v1 (sha256=) signature on %s %s; its sender must sign v2=", request.method, request.url.path
            )
        # Only now, a signature known to be ours: junk is never stored.
        if not await api.seen_signatures().first_use(verified.digest, verified.expires_at):
            raise ApiError(409, "not_allowed", "this signed request was already received")
        return verified


panel_signature = Signature("panel")
payments_signature = Signature("payments")


class JsonBody:
    """The dependency that gives a route its body as `model` (a model, or a union of models on
    `type`), read from the raw bytes by the model's strict JSON rules: `"3050"`, `true` or `3050.0`
    for cents is a 422, never a guess. It runs after the router's signature dependency.

    FastAPI does not parse this body itself (it would before any dependency, and leniently), so
    it does not see it: ingress/openapi.py documents the route's request body from here, under
    `name` (a model's own name by default; a union without a name is described in place), with
    `examples`, the `descriptions` of its schemas and the words for their `fields` (both by schema
    name) that the models (renewals/events.py) do not carry, each field's followed by what it
    accepts when `accepted`."""

    def __init__(
        self,
        model: Any,
        examples: Mapping[str, Any],
        *,
        name: str | None = None,
        descriptions: Mapping[str, str] | None = None,
        fields: Mapping[str, Mapping[str, str]] | None = None,
        accepted: bool = False,
    ) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(model)
        self.examples = dict(examples)
        self.name = name or (model.__name__ if isinstance(model, type) else None)
        self.descriptions = dict(descriptions or {})
        self.fields = dict(fields or {})
        self.accepted = accepted

    async def __call__(self, body: RawBody) -> Any:
        try:
            return self.adapter.validate_json(body, strict=True)
        except ValidationError as error:
            raise invalid(error) from None
