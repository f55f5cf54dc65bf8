"""The ingress's Prometheus metrics, and its one log line per request.

`instrument(app)` counts the requests of the public app of ingress/http.py and logs each; the
admin app serves the counts as `GET /metrics` (ingress/api/admin.py), never the public port:

- `renewals_ingress_requests_total{endpoint, method, status}`: requests by route template
  (`/panel/services/{username}`, never the raw path, so a username is never a label) and status;
  `renewals_ingress_request_seconds{endpoint}`: how long they took;
- `renewals_ingress_payments_total{status}`: payment events answered, by outcome (`applied`,
  `partial`, `overpaid`, `duplicate`, `unmatched`).

The log line carries the renewal (`renewal_id`, the workflow id of the username in the request)
and the order number when the request or its answer names one. Each app has its own registry,
so several apps (tests) never clash. `/metrics` is unsigned: the admin port is loopback unless
configured otherwise (docs/production.md).
"""

import json
import logging
import time
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from renewals import workflow_id

log = logging.getLogger("renewals.ingress.requests")

PAYMENTS_ENDPOINT = "/payments/events"
# Bodies are small (the ingress refuses more than 64 KiB); only this much is kept for the log line.
MAX_KEPT_BYTES = 64 * 1024


class IngressMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "renewals_ingress_requests",
            "HTTP requests answered by the ingress, by route template, method and status.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "renewals_ingress_request_seconds",
            "Time to answer an ingress request, by route template.",
            ["endpoint"],
            registry=registry,
        )
        self.payments = Counter(
            "renewals_ingress_payments",
            "Payment events answered, by outcome (applied, partial, overpaid, duplicate, unmatched).",
            ["status"],
            registry=registry,
        )


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else None
    except (ValueError, RecursionError):  # a body nested deeper than Python recurses
        return {}
    return value if isinstance(value, dict) else {}


class ObserveRequests:
    """Pure ASGI middleware: counts and times each request, and logs it once answered."""

    def __init__(self, app: ASGIApp, metrics: IngressMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        request_body: list[bytes] = []
        response_body: list[bytes] = []
        status = 500  # an exception that escapes the app is answered by its last-resort handler

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request" and sum(map(len, request_body)) < MAX_KEPT_BYTES:
                request_body.append(message.get("body", b""))
            return message

        async def send_and_keep(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and sum(map(len, response_body)) < MAX_KEPT_BYTES:
                response_body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_keep)
        finally:
            self._observe(scope, status, time.monotonic() - started, b"".join(request_body), b"".join(response_body))

    def _observe(self, scope: Scope, status: int, seconds: float, request: bytes, answer: bytes) -> None:
        route = scope.get("route")
        # An unknown path (a 404) is one label, not one per path a scanner tries.
        endpoint = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.requests.labels(endpoint, method, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(seconds)
        answered = _json(answer)
        if endpoint == PAYMENTS_ENDPOINT and status == 200 and isinstance(answered.get("status"), str):
            self.metrics.payments.labels(answered["status"]).inc()
        context: dict[str, Any] = {
            "method": method,
            "endpoint": endpoint,
            "status": status,
            "duration_ms": round(seconds * 1000),
        }
        # A request refused for its signature proves nothing about who it names: no context from it.
        if status != 401:
            asked = _json(request)
            username = (scope.get("path_params") or {}).get("username") or asked.get("username")
            if isinstance(username, str):
                context["renewal_id"] = workflow_id(username)
            order_number = asked.get("order_number") or answered.get("order_number")
            if isinstance(order_number, str):
                context["order_number"] = order_number
            if isinstance(asked.get("type"), str):
                context["event"] = asked["type"]
            if endpoint == PAYMENTS_ENDPOINT and isinstance(answered.get("status"), str):
                context["payment_status"] = answered["status"]
        log.log(
            logging.WARNING if status >= 500 else logging.INFO,
            "%s %s %s",
            method,
            endpoint,
            status,
            extra=context,
        )


def instrument(app: FastAPI) -> CollectorRegistry:
    """Add the counting, logging middleware to `app`; returns the registry it counts in."""
    registry = CollectorRegistry()
    app.add_middleware(ObserveRequests, metrics=IngressMetrics(registry))
    return registry
