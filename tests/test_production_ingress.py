"""Issue 19 end to end: `python starter.py serve` on 0.0.0.0 refuses weak secrets with one line;
with two good ones it starts, its public port serves the API only (no /docs, /openapi.json,
/metrics) and the admin port serves those; a rotated secret's previous value is accepted, a
removed one refused, and the CLI signs with the first value."""

import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.store import Store
from client.renewals import Renewals
from ingress.http import create_admin_app, create_app
from renewals.signing import signed_headers
from stack.postgres import free_port
from tests.conftest import ROOT, eventually, new_service

GOOD_PANEL = "3f9c1a7e5b2d8f4061c9e7a3b5d2f8e1"
GOOD_PAYMENTS = "b71e4c09a8d3f6e25c1b7a9d4e0f3c86"
OLD_PANEL = "9e2d7c4b1a0f8e6d5c3b2a1908f7e6d5"
REMOVED_PANEL = "5c0ffee5c0ffee1234abcdef98765432"
SECRET_NAMES = ("PANEL_SECRET", "PAYMENTS_SECRET")


def process_env(**settings: str) -> dict[str, str]:
    clean = {key: value for key, value in os.environ.items() if key not in SECRET_NAMES}
    return {**clean, "INGRESS_PORT": str(free_port()), "INGRESS_ADMIN_PORT": str(free_port()), **settings}


@pytest.mark.parametrize(
    ("secrets", "words"),
    [
        ({}, "PANEL_SECRET must be set"),
        ({"PANEL_SECRET": "dev-panel-secret", "PAYMENTS_SECRET": "dev-payments-secret"}, "must not be a dev value"),
        (
            {"PANEL_SECRET": "change-me-panel-secret", "PAYMENTS_SECRET": "change-me-payments-secret"},
            "must not be a placeholder",
        ),
        ({"PANEL_SECRET": GOOD_PANEL, "PAYMENTS_SECRET": GOOD_PANEL}, "PANEL_SECRET and PAYMENTS_SECRET must differ"),
        ({"PANEL_SECRET": "0123456789abcdef", "PAYMENTS_SECRET": GOOD_PAYMENTS}, "at least 32 bytes"),
    ],
    ids=["no-secrets", "dev-values", "change-me", "equal", "16-bytes"],
)
def test_ingress_on_0_0_0_0_with_weak_secrets_exits_with_a_one_line_reason(secrets: dict[str, str], words: str):
    # Unreachable Temporal and PostgreSQL: the refusal comes before any connection.
    env = process_env(
        INGRESS_HOST="0.0.0.0", TEMPORAL_ADDRESS="127.0.0.1:1", DATABASE_URL="postgresql://x@127.0.0.1:1/x"
    )
    env.update(secrets)
    done = subprocess.run(
        [sys.executable, "starter.py", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert words in lines[0] and "INGRESS_HOST=0.0.0.0" in lines[0]
    for value in secrets.values():
        assert value not in done.stderr


def signed_get(url: str, path: str, secret: str) -> httpx.Response:
    return httpx.get(url + path, headers=signed_headers(secret, "GET", path), timeout=10)


async def test_ingress_on_0_0_0_0_with_two_good_secrets_serves_the_api_only_on_its_public_port(
    env: WorkflowEnvironment, postgres_url: str, store: Store
):
    settings = process_env(
        INGRESS_HOST="0.0.0.0",
        PANEL_SECRET=GOOD_PANEL,
        PAYMENTS_SECRET=GOOD_PAYMENTS,
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=env.client.namespace,
        DATABASE_URL=postgres_url,
    )
    public = f"http://127.0.0.1:{settings['INGRESS_PORT']}"
    admin = f"http://127.0.0.1:{settings['INGRESS_ADMIN_PORT']}"
    server = subprocess.Popen(
        [sys.executable, "starter.py", "serve"], cwd=ROOT, env=settings, stderr=subprocess.PIPE, text=True
    )

    def answers() -> httpx.Response | None:
        try:
            return httpx.get(public + "/healthz", timeout=2)
        except httpx.TransportError:
            assert server.poll() is None, "the ingress exited"
            return None

    try:
        health = await eventually(answers, 60, "the ingress")
        assert health.status_code == 200 and health.json() == {"status": "ok", "postgres": "ok", "temporal": "ok"}
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
            assert httpx.get(public + path, timeout=5).status_code == 404, path
            assert httpx.get(admin + path, timeout=5).status_code == 200, path
        assert "/panel/events" in httpx.get(admin + "/openapi.json", timeout=5).json()["paths"]
        # The API itself, signed with the configured secret.
        service = await new_service(store)
        assert signed_get(public, f"/panel/services/{service.username}", GOOD_PANEL).status_code == 200
        assert signed_get(public, f"/panel/services/{service.username}", "dev-panel-secret").status_code == 401
        # The CLI signs with the first value of its PANEL_SECRET: the current one is accepted...
        cli = {**settings, "PANEL_SECRET": f"{GOOD_PANEL},{OLD_PANEL}", "INGRESS_HOST": "127.0.0.1"}
        done = subprocess.run(
            [sys.executable, "starter.py", "service", service.username],
            cwd=ROOT,
            env=cli,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        # ...and a list whose first value the server does not hold is refused.
        cli["PANEL_SECRET"] = f"{OLD_PANEL},{GOOD_PANEL}"
        done = subprocess.run(
            [sys.executable, "starter.py", "service", service.username],
            cwd=ROOT,
            env=cli,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1 and "401 bad_signature" in done.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    assert server.returncode in (0, -signal.SIGTERM)


# ---------------------------------------------------------------------- rotation, in process


async def signed(client: httpx.AsyncClient, path: str, secret: str) -> httpx.Response:
    return await client.get(path, headers=signed_headers(secret, "GET", path))


async def test_rotation_the_previous_value_is_accepted_a_removed_one_refused(ingress: Renewals, store: Store):
    service = await new_service(store)
    path = f"/panel/services/{service.username}"
    # PANEL_SECRET was OLD; now "GOOD,OLD" while the panel moves to GOOD; then "GOOD" alone.
    rotating = create_app(ingress, (GOOD_PANEL, OLD_PANEL), (GOOD_PAYMENTS,))
    rotated = create_app(ingress, (GOOD_PANEL,), (GOOD_PAYMENTS,))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rotating), base_url="http://test") as client:
        assert (await signed(client, path, GOOD_PANEL)).status_code == 200
        assert (await signed(client, path, OLD_PANEL)).status_code == 200
        assert (await signed(client, path, REMOVED_PANEL)).status_code == 401
        # Each endpoint keeps its own secrets: a payments value never signs a panel read.
        assert (await signed(client, path, GOOD_PAYMENTS)).status_code == 401
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rotated), base_url="http://test") as client:
        assert (await signed(client, path, GOOD_PANEL)).status_code == 200
        refused: Any = (await signed(client, path, OLD_PANEL)).json()
        assert refused["error"] == "bad_signature"


async def test_the_public_app_answers_404_for_docs_openapi_and_metrics(ingress: Renewals):
    public = create_app(ingress, GOOD_PANEL, GOOD_PAYMENTS)
    admin = create_admin_app(public)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=public), base_url="http://test") as client:
        for path in ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/metrics"):
            response = await client.get(path)
            assert response.status_code == 404 and response.json()["error"] == "not_found", path
        assert (await client.get("/healthz")).status_code == 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin), base_url="http://test") as client:
        assert "swagger" in (await client.get("/docs")).text.lower()
        assert "redoc" in (await client.get("/redoc")).text.lower()
        document = (await client.get("/openapi.json")).json()
        assert {"/panel/events", "/payments/events"} <= set(document["paths"])
        assert "/metrics" not in document["paths"]
        metrics = await client.get("/metrics")
        assert 'renewals_ingress_requests_total{endpoint="/healthz",method="GET",status="200"}' in metrics.text
