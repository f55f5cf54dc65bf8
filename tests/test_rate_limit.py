"""One runaway panel cannot flood a renewal: a token bucket per username on /panel/events."""

import json

import httpx

from ingress.http import create_app
from ingress.ratelimit import RateLimiter
from renewals.signing import signed_headers

PANEL, PAYMENTS = "rate-panel-secret", "rate-payments-secret"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.retry_after("anna") for _ in range(3)] == [None, None, None]
    assert limiter.retry_after("anna") == 0.5  # one token every half second
    assert limiter.retry_after("bruno") is None  # each username has its own bucket
    clock.now += 0.5
    assert limiter.retry_after("anna") is None
    assert limiter.retry_after("anna") is not None


def test_bucket_memory_stays_bounded():
    clock = FakeClock()
    limiter = RateLimiter(rate=10.0, burst=1, clock=clock)
    for n in range(10_001):
        limiter.retry_after(f"user-{n}")
        clock.now += 0.2  # every bucket is full again after 0.1 s
    assert len(limiter._buckets) < 10


async def test_panel_events_over_the_limit_get_429_with_retry_after(ingress):
    app = create_app(ingress, PANEL, PAYMENTS, RateLimiter(rate=0.1, burst=3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:

        async def renew(username: str) -> httpx.Response:
            body = json.dumps({"type": "renew_requested", "username": username}).encode()
            headers = signed_headers(PANEL, "POST", "/panel/events", body)
            return await client.post("/panel/events", content=body, headers=headers)

        answers = [await renew("flood-user") for _ in range(4)]
        assert [a.status_code for a in answers] == [404, 404, 404, 429]  # unknown user: refused, but counted
        limited = answers[-1]
        assert limited.json() == {"error": "rate_limited", "message": "too many events for flood-user; retry in 10 s"}
        assert limited.headers["Retry-After"] == "10"
        assert (await renew("other-user")).status_code == 404
