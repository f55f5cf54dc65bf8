"""The ingress's OpenAPI 3.1 document: the whole contract (docs/api.md), as clients generate from it.

Every operation lists every status it can answer, each with its body (the `{"error", "message"}`
model defined once, referenced everywhere), `Retry-After` on 429 and 503, and an example. The
signature is a security scheme per secret (the panel's on `/panel/*`, the payments back office's
on `/payments/events`), with the signing rule in its description. Request and answer schemas are
generated from the models (renewals/events.py, renewals/views.py), so they follow the models;
this module only adds the words a client needs (what each field means, P11's rule of what is
checked and what is free text).

`document(app)` builds it from the app's routes: a route with no entry in OPERATIONS is an error,
so no endpoint can reach the app without its contract.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, get_args

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from renewals import errors
from renewals.billing import Address, BillingData, Seller
from renewals.delivery import ReceiptsView
from renewals.events import PanelEvent, PaymentRegistered
from renewals.invoice import InvoiceOrder, build_invoice
from renewals.payments import IBAN
from renewals.pricing import quote
from renewals.records import OrderLine
from renewals.types import Username
from renewals.views import CartView, OrderView, PaymentOutcome, RenewalView, ServiceStatusView

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
Secret = Literal["panel", "payments"]

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

# The contract's error codes: the ingress's own, and those of the refusals a renewal raises.
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
REPLAY_EXAMPLE = (
    "This signed request was already received (P21): a replay, refused, changing nothing. Sign every "
    "request anew, a retry included.",
    "already_received",
    "this signed request was already received",
)
RETRY_AFTER_STATUSES = (429, 503)


@dataclass(frozen=True)
class Operation:
    """One operation's contract: what it reads, what it answers, which secret signs it."""

    operation_id: str
    summary: str
    description: str
    ok: dict[str, Any]  # the 200 response
    refusals: tuple[int, ...]  # the error statuses it can answer
    secret: Secret | None = None
    tags: tuple[str, ...] = ()
    request: dict[str, Any] | None = None
    parameters: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------- schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _panel_events() -> list[type[BaseModel]]:
    union = get_args(PanelEvent)[0]
    return list(get_args(union))


def _event_type(model: type[BaseModel]) -> str:
    (value,) = get_args(model.model_fields["type"].annotation)
    return str(value)


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


def _describe_payment(schema: dict[str, Any]) -> None:
    """P11 in the payment event's schema: money is never refused; what is checked, what is free text."""
    schema["description"] = (
        "A payment the payments back office registered (P5, P11). Money is never refused: an event with a "
        "valid signature, a valid `transaction_id` and a positive integer `amount_cents` is written to the "
        "ledger whatever its `order_number` or `currency`; what cannot be applied to an open order is answered "
        "`unmatched` and kept for ops, never dropped. Only a bad signature (401), a body that is not JSON (400), "
        "or a missing or invalid field (422) is refused."
    )
    properties = schema["properties"]
    words = {
        "type": "Always `payment_registered`.",
        "order_number": (
            "The order the payment quotes, as the bank statement or slip carries it. Not required to name a real "
            "or open order: one that matches no order, or an order that lapsed or was cancelled, is `unmatched` "
            "(P10, P11)."
        ),
        "transaction_id": (
            "Checked. The back office's unique id of this payment: the ledger's key. Sent again with the same "
            "payment it changes nothing (`duplicate`); reused for a different payment it is a 409."
        ),
        "amount_cents": (
            'Checked. Euro cents, a positive JSON integer as written (`3050`; `3050.0`, `"3050"` and `true` '
            "are 422). A partial payment accumulates (`partial`), an overpayment activates and is flagged for "
            "refund (`overpaid`)."
        ),
        "currency": (
            "The currency of the amount. Only EUR is applied to an order; a payment in any other currency is "
            "written to the ledger as `unmatched` for ops (P11)."
        ),
        "method": "How the customer paid.",
        "registered_at": (
            "When the back office registered the payment (RFC 3339, with its offset); at most 5 minutes ahead of "
            "our clock, else 422: the invoice is dated by it (P17)."
        ),
    }
    for name, text in words.items():
        if name in properties:
            properties[name]["description"] = f"{text} Accepted: {constraints(properties[name])}."


def _describe_panel_events(components: dict[str, Any]) -> None:
    words = {
        "username": "The service's username (the panel's login).",
        "addon": "`extra_storage` (a pack of 1024 MB) or `extra_users` (one user).",
        "quantity": "How many packs or users to add.",
        "code": 'A partner/discount code ("codice convenzione"), applied only when valid (R3).',
        "payment_method": "`card` and `paypal` are paid at once; `bank_transfer` and `postal_slip` get an email "
        "with the order number to quote (R6).",
        "years": "The renewal term, 1 to 10 years; 1 or 2 for a product on promotion (R5, a 422 otherwise).",
        "auto_renew": "Auto-renew on or off (P16). Off cancels an unpaid automatic order; on is refused (409) "
        "while an order of the customer's own awaits payment.",
        "method": "How the automatic order is paid, required when turning auto-renew on (a 422 otherwise): "
        "`card` and `paypal` are charged by the payments back office (a `charge_requested` event), "
        "`bank_transfer` and `postal_slip` get the instructions email and reminders (P16).",
    }
    for model in _panel_events():
        schema = components[model.__name__]
        for name, prop in schema["properties"].items():
            if name in words:
                prop["description"] = words[name]


def schemas() -> dict[str, Any]:
    """components.schemas: the models' own JSON Schemas, the panel union, the error and health bodies."""
    requests = [(model, "validation") for model in (*_panel_events(), PaymentRegistered)]
    answers = [
        (model, "serialization")
        for model in (CartView, OrderView, PaymentOutcome, ServiceStatusView, RenewalView, ReceiptsView)
    ]
    _, generated = models_json_schema([*requests, *answers], ref_template=REF)  # type: ignore[list-item]
    components: dict[str, Any] = generated["$defs"]
    events = _panel_events()
    components["PanelEvent"] = {
        "title": "PanelEvent",
        "description": "A panel event; `type` selects which.",
        "oneOf": [_ref(model.__name__) for model in events],
        "discriminator": {
            "propertyName": "type",
            "mapping": {_event_type(model): REF.format(model=model.__name__) for model in events},
        },
    }
    components["PanelAnswer"] = {
        "title": "PanelAnswer",
        "description": "The cart view (renew, reactivate, cart changes), the order view (checkout) or the "
        "service view (auto_renew_changed).",
        "oneOf": [_ref("CartView"), _ref("OrderView"), _ref("ServiceStatusView")],
    }
    components["Error"] = {
        "title": "Error",
        "description": "Every refusal: a stable code to branch on, and a message naming the field and the rule.",
        "type": "object",
        "additionalProperties": False,
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "enum": ERROR_CODES, "description": "What kind of refusal."},
            "message": {"type": "string", "description": "What is wrong, in words a person can act on."},
        },
    }
    components["Health"] = {
        "title": "Health",
        "type": "object",
        "additionalProperties": False,
        "required": ["status", "postgres", "temporal"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "down"]},
            "postgres": {"type": "string", "description": "`ok`, or `down: <error>`."},
            "temporal": {"type": "string", "description": "`ok`, or `down: <error>`."},
        },
    }
    _describe_payment(components["PaymentRegistered"])
    _describe_panel_events(components)
    return components


# ---------------------------------------------------------------------------- examples

ORDER_EXAMPLE: dict[str, Any] = {
    "order_number": "FE-2026-000123",
    "stage": "AWAITING_PAYMENT",
    "years": 1,
    "payment_method": "bank_transfer",
    "lines": [
        {
            "product": "service",
            "label": "Fatturazione Elettronica Solo Ricezione",
            "quantity": 1,
            "years": 1,
            "unit_price_cents": 2500,
            "net_cents": 2500,
        }
    ],
    "net_cents": 2500,
    "discount_cents": 0,
    "vat_cents": 550,
    "total_cents": 3050,
    "paid_cents": 0,
    "balance_cents": 3050,
    "due_by": "2026-12-29T10:00:00Z",
    "payment_instructions": {
        "order_number": "FE-2026-000123",
        "amount_cents": 3050,
        "bank_transfer": {
            "beneficiary": "Renewals S.p.A.",
            "iban": "IT60X0542811101000000123456",
            "reason": "Rinnovo ordine FE-2026-000123",
        },
        "postal_slip": {
            "account": "123456789",
            "beneficiary": "Renewals S.p.A.",
            "reason": "Rinnovo ordine FE-2026-000123",
        },
    },
    "new_expires_on": None,
}
CART_EXAMPLE: dict[str, Any] = {
    "stage": "CART",
    "mode": "renew",
    "username": "demo-active",
    "expires_on": "2027-02-01",
    "active_addons": [{"addon": "extra_users", "quantity": 2}],
    "cart_addons": [],
    "available_addons": [{"addon": "extra_storage", "quantity": 1}],
    "discount": None,
    "allowed_years": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    "storage_alert": None,
    "quote": {"net_cents": 3500, "discount_cents": 0, "vat_cents": 770, "total_cents": 4270},
    "order": None,
}
PANEL_EVENT_EXAMPLES: dict[str, dict[str, Any]] = {
    "renew_requested": {"type": "renew_requested", "username": "demo-active"},
    "reactivate_requested": {"type": "reactivate_requested", "username": "demo-expired"},
    "addon_added": {"type": "addon_added", "username": "demo-active", "addon": "extra_storage", "quantity": 1},
    "addon_removed": {"type": "addon_removed", "username": "demo-active", "addon": "extra_storage"},
    "discount_code_applied": {"type": "discount_code_applied", "username": "demo-active", "code": "PARTNER10"},
    "checkout_submitted": {
        "type": "checkout_submitted",
        "username": "demo-active",
        "payment_method": "bank_transfer",
        "years": 1,
    },
    "auto_renew_changed": {
        "type": "auto_renew_changed",
        "username": "demo-active",
        "auto_renew": True,
        "method": "card",
    },
}
PAYMENT_EXAMPLE: dict[str, Any] = {
    "type": "payment_registered",
    "order_number": "FE-2026-000123",
    "transaction_id": "BT-7781",
    "amount_cents": 3050,
    "currency": "EUR",
    "method": "bank_transfer",
    "registered_at": "2026-11-27T10:00:00Z",
}
OUTCOME_EXAMPLE: dict[str, Any] = {
    "status": "applied",
    "order_number": "FE-2026-000123",
    "transaction_id": "BT-7781",
    "paid_cents": 3050,
    "balance_cents": 0,
    "refund_cents": 0,
}
SERVICE_EXAMPLE: dict[str, Any] = {
    "username": "demo-active",
    "status": "active",
    "expires_on": "2027-02-01",
    "auto_renew": False,
    "action": "renew",
    "reason": None,
    "auto_renew_method": None,
    "auto_renew_years": 1,
    "next_notice_on": "2027-01-02",
    "next_notice_kind": "before-30",
    "next_auto_order_on": None,
}
SERVICE_AUTO_RENEW_EXAMPLE: dict[str, Any] = {
    **SERVICE_EXAMPLE,
    "auto_renew": True,
    "action": None,
    "reason": "auto-renew is on: the service renews by itself at expiry, so Renew is not offered (R1)",
    "auto_renew_method": "card",
    "next_notice_on": "2027-02-02",
    "next_notice_kind": "expired",
    "next_auto_order_on": "2027-01-02",
}
RENEWAL_EXAMPLE: dict[str, Any] = {
    "stage": "AWAITING_PAYMENT",
    "mode": "renew",
    "username": "demo-active",
    "reason": None,
    "cart": {**CART_EXAMPLE, "stage": "AWAITING_PAYMENT", "order": ORDER_EXAMPLE},
    "order": ORDER_EXAMPLE,
    "payments": [],
    "emails": ["FE-2026-000123:payment_instructions"],
}


def _invoice_example() -> str:
    """P17: a whole invoice as `GET /panel/invoices/{number}` answers it, built and checked by the
    same code (renewals/invoice.py), for the demo order of one year paid by bank transfer."""
    line = OrderLine(
        product="service",
        label="Fatturazione Elettronica Solo Ricezione",
        quantity=1,
        years=1,
        unit_price_cents=2500,
        net_cents=2500,
    )
    address = Address(street="Via Nazionale 10", cap="00184", comune="Roma", provincia="RM")
    invoice = build_invoice(
        InvoiceOrder(
            order_number="FE-2026-000123",
            username="demo-active",
            lines=[line],
            quote=quote([line], None),
            payment_method="bank_transfer",
            period_start=date(2027, 2, 2),
            period_end=date(2028, 2, 1),
        ),
        BillingData(
            holder_type="company",
            company_name="Demo Active S.r.l.",
            vat_number="09876540015",
            address=address,
            pec="demo-active@pec.example.it",
        ),
        Seller(name="Renewals S.p.A.", vat_number="12345670017", address=address, iban=IBAN),
        year=2026,
        progressive=1,
        issued_on=date(2026, 11, 27),
        file_id=1,
    )
    return invoice.xml.decode()


# ---------------------------------------------------------------------------- operations


def _content(schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    """A JSON body (a request's or a response's): its schema and named examples."""
    return {
        "content": {
            "application/json": {
                "schema": schema,
                "examples": {name: {"value": value} for name, value in examples.items()},
            }
        }
    }


def _json(schema: dict[str, Any], description: str, examples: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, **_content(schema, examples)}


def _username_parameter() -> dict[str, Any]:
    schema = TypeAdapter(Username).json_schema()
    schema.pop("title", None)
    return {
        "name": "username",
        "in": "path",
        "required": True,
        "description": "The service's username.",
        "schema": schema,
    }


READ_ERRORS = (400, 401, 404, 409, 413, 422, 503)
INVOICE_NUMBER_PARAMETER = {
    "name": "number",
    "in": "path",
    "required": True,
    "description": "The invoice's number, `FT-<year>-<progressive>` (e.g. `FT-2026-000001`).",
    "schema": {"type": "string"},
}
RECEIPTS_EXAMPLE = {
    "number": "FT-2026-000001",
    "order_number": "FE-2026-000123",
    "state": "delivered",
    "delivered_at": "2026-12-01T10:00:07Z",
    "note": None,
    "transmissions": [
        {
            "file_name": "IT12345670017_00001.xml",
            "state": "accepted",
            "sdi_id": "111",
            "received_at": "2026-12-01T10:00:02Z",
            "attempts": 1,
            "last_error": None,
        }
    ],
    "receipts": [
        {
            "kind": "RC",
            "sdi_id": "111",
            "file_name": "IT12345670017_00001.xml",
            "notification_name": "IT12345670017_00001_RC_001.xml",
            "message_id": "1",
            "received_at": "2026-12-01T10:00:08Z",
            "file": "PD94bWwgdmVyc2lvbj0iMS4wIj8+Li4u",
            "detail": {"delivered_at": "2026-12-01T10:00:07Z"},
        }
    ],
}

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/panel/events"): Operation(
        operation_id="panel_event",
        summary="A panel event: renew, reactivate, cart changes, checkout, the auto-renew switch",
        description=(
            "Renew and reactivate open the cart, or return the one already open (P8); the cart changes and "
            "checkout are applied to it synchronously; `auto_renew_changed` answers the service view (P16). "
            "Up to PANEL_RATE_PER_MINUTE events per username."
        ),
        tags=("panel",),
        secret="panel",
        request={"required": True, **_content(_ref("PanelEvent"), PANEL_EVENT_EXAMPLES)},
        ok=_json(
            _ref("PanelAnswer"),
            "The cart view, the order view after checkout, or the service view after auto_renew_changed.",
            {"cart": CART_EXAMPLE, "order": ORDER_EXAMPLE, "service": SERVICE_AUTO_RENEW_EXAMPLE},
        ),
        refusals=(400, 401, 404, 409, 413, 422, 429, 503),
    ),
    ("POST", "/payments/events"): Operation(
        operation_id="payment_event",
        summary="A payment registered by the payments back office",
        description=(
            "Written to the ledger (unique on `transaction_id`) before the renewal hears of it. The answer's "
            "`status`: `applied`, `partial`, `overpaid`, `duplicate` (a repeated transaction id: nothing changes) "
            "or `unmatched` (kept for ops: P10, P11)."
        ),
        tags=("payments",),
        secret="payments",
        request={"required": True, **_content(_ref("PaymentRegistered"), {"payment_registered": PAYMENT_EXAMPLE})},
        ok=_json(_ref("PaymentOutcome"), "What the payment did (P5).", {"applied": OUTCOME_EXAMPLE}),
        refusals=(400, 401, 409, 413, 422, 503),
    ),
    ("GET", "/panel/services/{username}"): Operation(
        operation_id="service_status",
        summary="Which button the panel shows",
        description=(
            "`action`: `renew`, `reactivate` or null (R1, R2), with the reason when null; auto-renew's method and "
            "the term of the next automatic renewal (P16, R5); the next notice and automatic order dates (P15, P16)."
        ),
        tags=("panel",),
        secret="panel",
        parameters=[_username_parameter()],
        ok=_json(
            _ref("ServiceStatusView"),
            "The service and its button.",
            {"active": SERVICE_EXAMPLE, "auto_renew": SERVICE_AUTO_RENEW_EXAMPLE},
        ),
        refusals=READ_ERRORS,
    ),
    ("GET", "/panel/renewals/{username}"): Operation(
        operation_id="renewal",
        summary="The current or latest renewal",
        description="Stage, cart, order, payments and the emails sent; 404 when the service never had one.",
        tags=("panel",),
        secret="panel",
        parameters=[_username_parameter()],
        ok=_json(_ref("RenewalView"), "The renewal.", {"awaiting_payment": RENEWAL_EXAMPLE}),
        refusals=READ_ERRORS,
    ),
    # P17: the invoice of a paid renewal, as issued.
    ("GET", "/panel/invoices/{number}"): Operation(
        operation_id="invoice",
        summary="An invoice's FatturaPA XML",
        description=(
            "The electronic invoice of a paid renewal (P17): FatturaPA 1.2.2, format FPR12, type TD01, as issued "
            "and validated. `Content-Disposition` names the file as SdI names it, `IT<partita iva>_<progressivo>.xml`. "
            "404 `not_found` for a number never issued."
        ),
        tags=("panel",),
        secret="panel",
        parameters=[INVOICE_NUMBER_PARAMETER],
        ok={
            "description": "The invoice's FatturaPA XML document.",
            "headers": {
                "Content-Disposition": {
                    "description": 'attachment; filename="IT<partita iva>_<progressivo>.xml"',
                    "schema": {"type": "string"},
                }
            },
            "content": {
                "application/xml": {
                    "schema": {"type": "string"},
                    "examples": {"FT-2026-000001": {"value": _invoice_example()}},
                }
            },
        },
        refusals=(400, 401, 404, 409, 413, 503),
    ),
    ("GET", "/panel/invoices/{number}/receipts"): Operation(
        operation_id="invoice_receipts",
        summary="An invoice's delivery through SdI and SdI's notifications",
        description=(
            "P18: the invoice's state (`issued`, `sent`, `delivered`, `not_delivered`, `rejected`), every file "
            "handed to SdI (a corrected resend is a new file with the same number and date) and every notification "
            "SdI sent back (RC, MC, NS, ...), each `file` exactly as SdI signed it, base64-encoded. "
            "404 `not_found` for a number never issued."
        ),
        tags=("panel",),
        secret="panel",
        parameters=[INVOICE_NUMBER_PARAMETER],
        ok=_json(_ref("ReceiptsView"), "The invoice's SdI record.", {"delivered": RECEIPTS_EXAMPLE}),
        refusals=(400, 401, 404, 409, 413, 503),
    ),
    ("GET", "/healthz"): Operation(
        operation_id="health",
        summary="200 when Temporal and PostgreSQL answer",
        description="Unsigned; keep it off the public route of a reverse proxy.",
        tags=("ops",),
        ok=_json(_ref("Health"), "Both answer.", {"ok": {"status": "ok", "postgres": "ok", "temporal": "ok"}}),
        refusals=(503,),
    ),
}


# ---------------------------------------------------------------------------- the document


def _error_response(status: int, operation: Operation) -> dict[str, Any]:
    when, code, message = ERROR_EXAMPLES[status]
    examples = {code: {"value": {"error": code, "message": message}}}
    if status == 409 and operation.secret:
        replay, name, replay_message = REPLAY_EXAMPLE
        replayed = {name: {"value": {"error": "not_allowed", "message": replay_message}}}
        # A read refuses nothing else with a 409; an event's rules do.
        when, examples = (f"{when} Or: {replay}", {**examples, **replayed}) if operation.request else (replay, replayed)
    response: dict[str, Any] = {
        "description": when,
        "content": {"application/json": {"schema": _ref("Error"), "examples": examples}},
    }
    if status in RETRY_AFTER_STATUSES:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": operation.ok}
    for status in operation.refusals:
        if operation.operation_id == "health" and status == 503:
            responses["503"] = {
                **_json(
                    _ref("Health"),
                    "PostgreSQL or Temporal did not answer.",
                    {"down": {"status": "down", "postgres": "ok", "temporal": "down: RPCError"}},
                ),
                "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
            }
        else:
            responses[str(status)] = _error_response(status, operation)
    return responses


def _operation(operation: Operation) -> dict[str, Any]:
    built: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": operation.description,
        "tags": list(operation.tags),
        "responses": _responses(operation),
        # No secret: an empty requirement overrides nothing and says "unsigned".
        "security": [
            {f"{operation.secret}Timestamp": [], f"{operation.secret}Nonce": [], f"{operation.secret}Signature": []}
        ]
        if operation.secret
        else [],
    }
    if operation.parameters:
        built["parameters"] = operation.parameters
    if operation.request:
        built["requestBody"] = operation.request
    return built


def _security_schemes() -> dict[str, Any]:
    owners = {"panel": ("PANEL_SECRET", "`/panel/*`"), "payments": ("PAYMENTS_SECRET", "`/payments/events`")}
    schemes: dict[str, Any] = {}
    for secret, (variable, where) in owners.items():
        schemes[f"{secret}Timestamp"] = {
            "type": "apiKey",
            "in": "header",
            "name": "X-Timestamp",
            "description": f"Unix seconds of the request, within 5 minutes of the server's clock; signed by "
            f"`{secret}Signature` ({variable}, on {where}).",
        }
        schemes[f"{secret}Nonce"] = {
            "type": "apiKey",
            "in": "header",
            "name": "X-Nonce",
            "description": "A fresh random value per request, 16 to 64 characters of A-Z a-z 0-9 _ -; signed by "
            f"`{secret}Signature` ({variable}, on {where}).",
        }
        schemes[f"{secret}Signature"] = {
            "type": "apiKey",
            "in": "header",
            "name": "X-Signature",
            "description": f"`v2=<hex>`: the HMAC-SHA256 with {variable}, on {where}. {SIGNING_RULE}",
        }
    return schemes


def documented_routes(app: FastAPI) -> Iterable[tuple[str, str]]:
    """(method, path) of every route the app publishes in its document."""
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route.path


def document(app: FastAPI) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of `app`'s routes."""
    paths: dict[str, Any] = {}
    for method, path in documented_routes(app):
        try:
            operation = OPERATIONS[(method, path)]
        except KeyError:
            raise LookupError(f"{method} {path} has no contract in ingress/openapi.py OPERATIONS") from None
        paths.setdefault(path, {})[method.lower()] = _operation(operation)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": app.title,
            "version": app.version,
            "description": (
                f"{app.description}\n\n{SIGNING_RULE}\n\nEvery refusal answers the `Error` body, "
                '`{"error": CODE, "message": TEXT}`, with the status of its kind; 429 and 503 carry `Retry-After`.'
            ),
        },
        "tags": [
            {"name": "panel", "description": "The control panel's events and reads, signed with PANEL_SECRET."},
            {"name": "payments", "description": "The payments back office's events, signed with PAYMENTS_SECRET."},
            {"name": "ops", "description": "Unsigned probes for the operator."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before retrying.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                    "example": 3,
                }
            },
            "securitySchemes": _security_schemes(),
        },
    }


def serve(app: FastAPI) -> None:
    """Make `app.openapi()` (and so `/openapi.json` and `/docs`) answer this document, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def main() -> None:
    """`python -m ingress.openapi > docs/openapi.json`: the document, without a running stack."""
    import json
    from typing import cast

    from ingress.http import create_app
    from ingress.operations import Ingress

    # The document depends on the routes alone; nothing here reaches Temporal or PostgreSQL.
    app = create_app(cast(Ingress, None), "document-only-panel-secret", "document-only-payments-secret")
    print(json.dumps(document(app), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
