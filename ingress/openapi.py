"""The ingress's OpenAPI 3.1 document (docs/api.md, *The OpenAPI document*): FastAPI's own, from the
routes and the models (`app.openapi()`), plus what FastAPI cannot infer, all of it here: the signing
rule (P21) and the three security schemes per secret that carry it (required together on every route
behind a `Signature` dependency, ingress/api/deps.py); the request bodies that `JsonBody` dependencies
read themselves, strictly and after the signature; the `Error` answers with their examples
(`refusals`, for a route's `responses=`; the payloads are in ingress/api/examples.py); Retry-After.

FastAPI's own 422 body is dropped (every refusal here is an `Error`), and the examples are kept as
written (FastAPI's encoding drops their nulls). `python -m ingress.http > docs/openapi.json` refreshes
the committed copy; tests/test_openapi_contract.py fails while the two differ.
"""

from collections.abc import Iterator, Mapping
from typing import Any, cast

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from ingress.api.deps import JsonBody, Signature
from ingress.api.errors import Error

REF = "#/components/schemas/{model}"
SECRETS = {"panel": ("PANEL_SECRET", "`/panel/*`"), "payments": ("PAYMENTS_SECRET", "`/payments/events`")}

SIGNING_RULE = (
    "Every request is signed (P21) with three headers: `X-Timestamp: <unix seconds>`, `X-Nonce: <a fresh "
    "random value, 16 to 64 characters of A-Z a-z 0-9 _ ->` and `X-Signature: v2=<hex HMAC-SHA256>`, the HMAC "
    "keyed with the endpoint's secret, of the string "
    '`"<timestamp>\\n<nonce>\\n<METHOD>\\n<path?query>\\n<Idempotency-Key>\\n<raw body>"`: '
    "the lines joined by a newline (\\n), the path with its query exactly as sent (percent-encoding kept; no "
    "`?` when there is no query), the `Idempotency-Key` header's value or an empty line without one, and "
    "the body's exact bytes (empty for a read), e.g. for a read "
    '`"1795780000\\nq1w2e3r4t5y6u7i8o9p0\\nGET\\n/panel/services/demo-active\\n\\n"`. '
    "A timestamp more than 5 minutes from the server's clock is refused, and within them each signature is "
    'accepted once: the same signed request again is a 409 `not_allowed` ("this signed request was already '
    'received") and changes nothing. A retry is signed anew (a new timestamp and nonce); with the same '
    "`Idempotency-Key` it gets the first answer back (P13). Neither secret works on the other's endpoint. "
    "Any other failure of the signature is a 401 `bad_signature`. The form signed before, "
    '`X-Signature: sha256=<hex of "<timestamp>.<raw body>">` (a read: `"<timestamp>.GET <path>"`), is '
    "deprecated: accepted, once, only while the server's SIGNING_ACCEPT_V1 is on."
)
DESCRIPTION = (
    "Signed panel and payment events for the e-invoicing renewal workflow.\n\n"
    f"{SIGNING_RULE}\n\nEvery refusal answers the `Error` body, "
    '`{"error": CODE, "message": TEXT}`, with the status of its kind; 429 and 503 carry `Retry-After`.'
)
TAGS = [
    {"name": "panel", "description": "The control panel's events and reads, signed with PANEL_SECRET."},
    {"name": "payments", "description": "The payments back office's events, signed with PAYMENTS_SECRET."},
    {"name": "ops", "description": "Unsigned probes for the operator."},
]
RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
    "example": 3,
}

ERROR_EXAMPLES: dict[int, tuple[str, str, str]] = {
    # status: (when, error, message)
    400: ("The body is not JSON, or a read carries a body.", "bad_request", "the body is not valid JSON"),
    401: (
        "Missing, wrong or stale signature, or the other endpoint's secret.",
        "bad_signature",
        "X-Signature does not match the request (method, path and query, Idempotency-Key, body) and timestamp",
    ),
    404: ("No service with that username.", "unknown_service", "no service with username 'nobody'"),
    409: (
        "Not allowed now: auto-renew on (R1), ceased (R2), wrong stage, no renewal open, a transaction id "
        "reused for another payment.",
        "not_allowed",
        "auto-renew is on: the service renews by itself at expiry, so Renew is not offered (R1)",
    ),
    413: ("The body is over 64 KiB.", "payload_too_large", "the body must be at most 65536 bytes"),
    422: (
        "A field breaks the contract or a rule (an unknown field, a wrong type, an expired code, a term out of range).",
        "invalid_request",
        "years must be 1 or 2 for a promotional product (R5), got 3",
    ),
    429: (
        "More panel events for one username than PANEL_RATE_PER_MINUTE allows; retry after `Retry-After` seconds.",
        "rate_limited",
        "too many events for demo-active; retry in 3 s",
    ),
    503: (
        "Temporal or PostgreSQL did not answer; retry after `Retry-After` seconds.",
        "unavailable",
        "the renewal service could not answer; try again shortly",
    ),
}
# P21: the 409 of every signed operation, alone on a read, beside the rules' refusals on an event.
REPLAY = (
    "This signed request was already received (P21): a replay, refused, changing nothing. Sign every "
    "request anew, a retry included.",
    "already_received",
    {"error": "not_allowed", "message": "this signed request was already received"},
)


def examples(
    named: Mapping[str, Any], media_type: str = "application/json", schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A response's (or request's) named examples, for `responses=`; its `schema` when FastAPI has none."""
    content = {"schema": schema} if schema else {}
    content["examples"] = {name: {"value": value} for name, value in named.items()}
    return {"content": {media_type: content}}


def one_of(schema: dict[str, Any]) -> None:
    """An answer that is exactly one of its views says so (`json_schema_extra` of a RootModel union)."""
    schema["oneOf"] = schema.pop("anyOf")


def refusals(*statuses: int, read: bool = False) -> dict[int | str, dict[str, Any]]:
    """The `Error` answers of a signed route, for its `responses=`: one example each, the replay's
    409 (P21) beside the rules' on an event or alone on a `read`, Retry-After on 429 and 503."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        when, code, message = ERROR_EXAMPLES[status]
        named: dict[str, Any] = {code: {"error": code, "message": message}}
        if status == 409:
            replay, name, value = REPLAY
            when, named = (replay, {name: value}) if read else (f"{when} Or: {replay}", {**named, name: value})
        answers[status] = {"model": Error, "description": when, **examples(named)}
        if status in (429, 503):
            answers[status]["headers"] = RETRY_AFTER
    return answers


# ---------------------------------------------------------------------------- the document


def _security_schemes() -> dict[str, Any]:
    schemes: dict[str, Any] = {}
    for secret, (variable, where) in SECRETS.items():
        signed = f"signed by `{secret}Signature` ({variable}, on {where})."
        for name, header, text in (
            (
                "Timestamp",
                "X-Timestamp",
                f"Unix seconds of the request, within 5 minutes of the server's clock; {signed}",
            ),
            ("Nonce", "X-Nonce", f"A fresh random value per request, 16 to 64 characters of A-Z a-z 0-9 _ -; {signed}"),
            ("Signature", "X-Signature", f"`v2=<hex>`: the HMAC-SHA256 with {variable}, on {where}. {SIGNING_RULE}"),
        ):
            schemes[secret + name] = {"type": "apiKey", "in": "header", "name": header, "description": text}
    return schemes


def constraints(schema: dict[str, Any]) -> str:
    """What a field's schema checks, in words, so a description stays true when the model changes."""
    if "const" in schema:
        return f"exactly `{schema['const']}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    parts = []
    if "pattern" in schema:
        parts.append(f"matching `{schema['pattern']}`")
    if "maxLength" in schema:
        parts.append(f"at most {schema['maxLength']} characters")
    if "minimum" in schema or "maximum" in schema:
        parts.append(f"from {schema.get('minimum', '-∞')} to {schema.get('maximum', '∞')}")
    return ", ".join(parts) or f"any {schema.get('type', 'value')}"


def _request_body(body: JsonBody, schemas: dict[str, Any]) -> dict[str, Any]:
    """A `JsonBody`'s request body; its schemas join `schemas` (an existing name must be the same)."""
    schema = body.adapter.json_schema(ref_template=REF)
    definitions: dict[str, Any] = schema.pop("$defs", {})
    if body.name:
        definitions[body.name] = {"title": body.name, **schema}
        schema = {"$ref": REF.format(model=body.name)}
    for name, text in body.descriptions.items():
        definitions[name]["description"] = text
    for model, words in body.fields.items():
        properties = definitions[model]["properties"]
        for name in words.keys() & properties.keys():
            accepted = f" Accepted: {constraints(properties[name])}." if body.accepted else ""
            properties[name]["description"] = words[name] + accepted
    for name, definition in definitions.items():
        if schemas.setdefault(name, definition) != definition:
            raise ValueError(f"two schemas named {name} in the OpenAPI document")
    return {"required": True, **examples(body.examples, schema=schema)}


def _calls(dependant: Dependant) -> Iterator[Any]:
    """Every dependency a route solves, its dependencies' included."""
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def _operations(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """(method, path, route) of every operation `app` publishes in its document."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            for method in sorted((context.methods or set()) - {"HEAD"}):
                yield method, str(context.path_format), cast(APIRoute, context)


def documented_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every operation in `app`'s document."""
    for method, path, _ in _operations(app):
        yield method, path


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of `app`, with what it cannot infer."""
    built = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = built.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for method, path, route in _operations(app):
        operation = built["paths"][path][method.lower()]
        responses = operation["responses"]
        if responses.get("422", {}).get("description") == "Validation Error":
            del responses["422"]  # FastAPI's own body, never answered here
        for status, declared in route.responses.items():
            # As written: FastAPI's encoding of the document drops every null, an example's too.
            for media_type, content in declared.get("content", {}).items():
                responses[str(status)]["content"][media_type]["examples"] = content["examples"]
        operation["security"] = []  # unsigned, unless a Signature says otherwise
        for call in _calls(route.dependant):
            if isinstance(call, Signature):
                secret = call.endpoint
                operation["security"] = [{f"{secret}Timestamp": [], f"{secret}Nonce": [], f"{secret}Signature": []}]
            elif isinstance(call, JsonBody):
                operation["requestBody"] = _request_body(call, schemas)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["headers"] = {"RetryAfter": RETRY_AFTER_HEADER}
    components["securitySchemes"] = _security_schemes()
    return built


def serve(app: FastAPI) -> None:
    """`app.openapi()` (and so the admin app's `/openapi.json` and `/docs`) answers `document(app)`,
    built once (FastAPI's "Extending OpenAPI")."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
