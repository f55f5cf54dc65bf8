"""The charge of a card or PayPal automatic order (P16): a signed `charge_requested` event POSTed to
the payments back office (PAYMENTS_WEBHOOK_URL), which charges the customer's stored card or PayPal
account and then registers the payment like any other (`POST /payments/events`).

The request is written to `charge_requests` first (one row per attempt, P20: a retried activity
never makes a second), then POSTed, signed as the ingress verifies every event (P21, renewals/signing.py: v2 with
the first PAYMENTS_SECRET, over the method, the URL's path and query, the Idempotency-Key and the
body), until the back office answers 2xx; each attempt is counted and its error kept on the row
for ops. Every POST carries `Idempotency-Key: <attempt id>`, the one charge it asks for, and
is signed anew (a fresh timestamp and nonce), so a receiver that accepts each signature once and
answers a known key with its first answer sees a retry as the same charge, never a second.
With no URL set (the local stack) the row is the whole request.
"""

import json

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import charges
from renewals.calls import ChargeRequested, RequestCharge
from renewals.signing import signed_headers

EVENT_TYPE = "charge_requested"
NOT_ACKNOWLEDGED = "ChargeNotAcknowledged"  # retryable: the activity's retry policy tries again


def idempotency_key(request: RequestCharge) -> str:
    """One charge per key: the attempt's id; the order number for a request recorded before
    attempts had ids (what its first POSTs carried)."""
    return request.attempt or request.order_number


def charge_event(request: RequestCharge) -> bytes:
    """The event's body: the same bytes on every POST of an attempt (only the signature's timestamp
    changes). `attempt` names the charge its outcome (charge_succeeded, charge_failed) answers."""
    return json.dumps(
        {
            "type": EVENT_TYPE,
            "attempt": request.attempt_id,
            "order_number": request.order_number,
            "username": request.username,
            "amount_cents": request.amount_cents,
            "currency": request.currency,
            "method": request.method,
            "charge_on": request.charge_on.isoformat(),
        },
        separators=(",", ":"),
    ).encode()


def target_of(url: str) -> str:
    """The path with its query exactly as httpx sends `url` (percent-encoded): what the signature covers."""
    return httpx.URL(url).raw_path.decode("ascii")


class Charges:
    """Holds the pool, the back office's URL (None: record only) and the secret it verifies with."""

    def __init__(self, pool: asyncpg.Pool, url: str | None, secret: str, *, timeout: float = 10.0) -> None:
        self.pool = pool
        self.url = url
        self.secret = secret
        self.timeout = timeout

    @activity.defn
    async def request_charge(self, request: RequestCharge) -> ChargeRequested:
        attempt = request.attempt_id
        row = await charges.record_request(
            self.pool,
            attempt=attempt,
            order_number=request.order_number,
            username=request.username,
            amount_cents=request.amount_cents,
            currency=request.currency,
            method=request.method,
            charge_on=request.charge_on,
            url=self.url,
        )
        if row.acknowledged or self.url is None:
            return ChargeRequested(acknowledged=row.acknowledged, attempts=row.attempts)
        body = charge_event(request)
        signed = signed_headers(
            self.secret, "POST", target_of(self.url), body, idempotency_key=idempotency_key(request)
        )
        headers = {"Content-Type": "application/json", **signed}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(self.url, content=body, headers=headers)
            error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:300]
        attempts = await charges.record_post(self.pool, attempt, error)
        if error is not None:
            raise ApplicationError(
                f"the payments back office did not acknowledge charge {attempt}: {error}",
                type=NOT_ACKNOWLEDGED,
            )
        return ChargeRequested(acknowledged=True, attempts=attempts)
