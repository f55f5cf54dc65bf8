"""P14: every HTTP answer within 15 s. Temporal or PostgreSQL hanging (a TCP listener that accepts
and never answers, used as its address) gets a 503 `unavailable` with `Retry-After`; requests
beyond the concurrency cap get the same at once; /healthz is a cached answer without detail."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.store import Store
from client.renewals import Renewals
from ingress.bounds import REQUEST_DEADLINE_SECONDS
from ingress.http import create_admin_app, create_app
from renewals.signing import signed_headers
from settings import load_settings
from starter import server_configs
from tests.conftest import POLICY, eventually, new_service

PANEL = "panel-test-secret"
PAYMENTS = "payments-test-secret"
P14_LIMIT_SECONDS = 15.0


class Silent:
    """A TCP server that accepts every connection and never says a word: a dependency that hangs."""

    def __init__(self) -> None:
        self.accepted = 0
        self._held: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> "Silent":
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._held.append(writer)
        await reader.read()  # until the client gives up

    async def __aexit__(self, *exc: Any) -> None:
        for writer in self._held:
            writer.close()
        self.server.close()


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    async with Silent() as server:
        yield server


async def hanging_temporal(silent: Silent) -> Client:
    return await Client.connect(
        f"127.0.0.1:{silent.port}", namespace="default", data_converter=pydantic_data_converter, lazy=True
    )


async def hanging_store(silent: Silent) -> Store:
    # min_size=0: the pool connects on first use, and that connection is the one that hangs.
    return Store(await asyncpg.create_pool(f"postgresql://x@127.0.0.1:{silent.port}/renewals", min_size=0))


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60)


async def signed_get(http: httpx.AsyncClient, path: str) -> httpx.Response:
    return await http.get(path, headers=signed_headers(PANEL, "GET", path))


async def signed_post(http: httpx.AsyncClient, path: str, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json", **signed_headers(PANEL, "POST", path, body)}
    return await http.post(path, content=body, headers=headers)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable" and response.json()["message"]
    assert int(response.headers["Retry-After"]) >= 1


async def test_p14_temporal_hanging_answers_503_with_retry_after_within_15_s(store: Store, silent: Silent):
    # The production deadline, not a shortened one: this is the figure P14 promises.
    ingress = Renewals(await hanging_temporal(silent), store, POLICY, "renewals")
    service = await new_service(store)
    async with client_of(create_app(ingress, PANEL, PAYMENTS)) as http:
        started = time.monotonic()
        response = await signed_get(http, f"/panel/renewals/{service.username}")
        took = time.monotonic() - started
    assert_unavailable(response)
    assert silent.accepted >= 1  # it did reach the hanging "Temporal"
    assert REQUEST_DEADLINE_SECONDS - 0.5 <= took < P14_LIMIT_SECONDS, took


async def test_p14_temporal_hanging_on_an_update_answers_503(store: Store, silent: Silent):
    ingress = Renewals(await hanging_temporal(silent), store, POLICY, "renewals")
    service = await new_service(store)
    body = f'{{"type":"renew_requested","username":"{service.username}"}}'.encode()
    async with client_of(create_app(ingress, PANEL, PAYMENTS, deadline=2)) as http:
        started = time.monotonic()
        response = await signed_post(http, "/panel/events", body)
    assert_unavailable(response)
    assert time.monotonic() - started < 2 + 2


async def test_p14_postgres_hanging_answers_503_with_retry_after(ingress: Renewals, silent: Silent):
    hanging = Renewals(ingress.client, await hanging_store(silent), POLICY, "renewals")
    async with client_of(create_app(hanging, PANEL, PAYMENTS, deadline=2)) as http:
        started = time.monotonic()
        read = await signed_get(http, "/panel/services/anyone")
        event = await signed_post(http, "/panel/events", b'{"type":"renew_requested","username":"anyone"}')
        took = time.monotonic() - started
    assert_unavailable(read)
    assert_unavailable(event)
    assert silent.accepted >= 1 and took < 2 * 2 + 2


async def test_p14_postgres_waiting_on_a_lock_answers_503(ingress: Renewals, store: Store):
    # A real PostgreSQL that does not answer in time: a session holds a lock the read needs.
    service = await new_service(store)
    async with store.pool.acquire() as blocker, blocker.transaction():
        await blocker.execute("LOCK TABLE services IN ACCESS EXCLUSIVE MODE")
        async with client_of(create_app(ingress, PANEL, PAYMENTS, deadline=1)) as http:
            response = await signed_get(http, f"/panel/services/{service.username}")
    assert_unavailable(response)
    async with client_of(create_app(ingress, PANEL, PAYMENTS, deadline=1)) as http:
        assert (await signed_get(http, f"/panel/services/{service.username}")).status_code == 200


async def test_p14_beyond_the_concurrency_cap_answers_503_with_retry_after_at_once(store: Store, silent: Silent):
    ingress = Renewals(await hanging_temporal(silent), store, POLICY, "renewals")
    service = await new_service(store)
    async with client_of(create_app(ingress, PANEL, PAYMENTS, deadline=2, max_concurrency=1)) as http:
        first = asyncio.create_task(signed_get(http, f"/panel/renewals/{service.username}"))
        await eventually(lambda: silent.accepted >= 1, what="the first request to be in flight")
        started = time.monotonic()
        second = await signed_get(http, f"/panel/renewals/{service.username}")
        assert time.monotonic() - started < 1.0
        assert_unavailable(second)
        assert second.headers["Retry-After"] == "1"
        assert_unavailable(await first)  # the first one met the deadline


def test_p14_uvicorn_caps_connections_above_the_apps_own_cap():
    settings = load_settings(ingress_max_concurrency=50, ingress_admin_port=9100)
    public, admin = server_configs(settings, object(), object())
    assert public.limit_concurrency is not None and public.limit_concurrency > 50
    assert (public.host, public.port) == ("127.0.0.1", 8000)
    assert (admin.host, admin.port) == ("127.0.0.1", 9100)


async def test_p14_healthz_is_a_cached_answer_without_exception_text(store: Store, silent: Silent):
    ingress = Renewals(await hanging_temporal(silent), store, POLICY, "renewals")
    app = create_app(ingress, PANEL, PAYMENTS)
    async with client_of(app) as http, client_of(create_admin_app(app)) as admin:
        first = await http.get("/healthz")
        assert first.status_code == 503
        assert first.json() == {"status": "down", "postgres": "ok", "temporal": "down"}
        asked = silent.accepted
        started = time.monotonic()
        for _ in range(20):
            again = await http.get("/healthz")
            assert again.json() == first.json()
        assert (await admin.get("/healthz")).json() == first.json()
        # Twenty probes, no new check of the hanging server, and no wait for one.
        assert silent.accepted == asked and time.monotonic() - started < 1.0
    for word in ("Error", "Exception", "Timeout", "RPC"):
        assert word not in first.text
