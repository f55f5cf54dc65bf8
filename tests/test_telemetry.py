"""Logs and metrics of worker and ingress (telemetry.py, ingress/metrics.py): one JSON object per
line with the renewal and the order as fields, the ingress's /metrics, the worker's Prometheus
endpoint, and a worker that stops on SIGTERM once its activities are done."""

import asyncio
import dataclasses
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio import activity
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.store import Store
from client.renewals import Renewals
from ingress.http import create_admin_app, create_app
from renewals import workflow_id
from renewals.events import CheckoutSubmitted, RenewRequested
from renewals.signing import signed_headers
from settings import ConfigurationError, Settings, load_settings
from stack.postgres import free_port
from telemetry import JsonFormatter, worker_runtime
from tests.conftest import POLICY, ROOT, MailSink, new_service, payment, unique
from worker import tls_config

PANEL = "panel-test-secret"
PAYMENTS = "payments-test-secret"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed on its own: a line that is not one JSON object fails here."""
    entries = []
    for line in text.splitlines():
        if line.strip():
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            entries.append(entry)
    return entries


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged during the test, formatted by the production JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


# ---------------------------------------------------------------------- the JSON lines


def test_a_log_line_is_one_json_object_with_renewal_and_order_fields(json_log):
    logging.getLogger("renewals.test").info(
        "payment of %s applied",
        "FE-2026-000042",
        extra={"renewal_id": "renewal-mario", "order_number": "FE-2026-000042"},
    )
    [entry] = json_lines(json_log.getvalue())
    assert entry["message"] == "payment of FE-2026-000042 applied"
    assert entry["renewal_id"] == "renewal-mario" and entry["order_number"] == "FE-2026-000042"
    assert entry["level"] == "INFO" and entry["logger"] == "renewals.test"
    assert entry["time"].endswith("+00:00")


def test_a_traceback_and_a_multiline_message_stay_on_one_line(json_log):
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        logging.getLogger("renewals.test").exception("failed:\nwhile settling", extra={"order_number": "FE-2026-1"})
    [entry] = json_lines(json_log.getvalue())
    assert entry["message"] == "failed:\nwhile settling"
    assert "Traceback" in entry["exception"] and "second line" in entry["exception"]
    assert entry["order_number"] == "FE-2026-1"


async def test_lines_logged_inside_an_activity_carry_its_renewal_id(json_log):
    @activity.defn
    async def settle(order_number: str) -> None:
        activity.logger.info("settling", extra={"order_number": order_number})
        logging.getLogger("asyncpg.example").warning("a library's own line")

    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, workflow_id="renewal-anna", activity_type="settle")
    await environment.run(settle, "FE-2026-000007")
    settled, library = json_lines(json_log.getvalue())
    assert settled["renewal_id"] == "renewal-anna" and settled["order_number"] == "FE-2026-000007"
    assert settled["activity_type"] == "settle"
    # A library knows nothing of renewals; the line still says which one it was working for.
    assert library["renewal_id"] == "renewal-anna" and library["logger"] == "asyncpg.example"


# ---------------------------------------------------------------------- the ingress's /metrics


@pytest.fixture
async def http(ingress: Renewals) -> AsyncIterator[httpx.AsyncClient]:
    """The public app; `/metrics` is on its admin app, the client's `admin` attribute."""
    app = create_app(ingress, PANEL, PAYMENTS)
    transport = httpx.ASGITransport(app=app)
    admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_admin_app(app)), base_url="http://test")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client, admin:
        client.admin = admin  # type: ignore[attr-defined]
        yield client


async def signed(http: httpx.AsyncClient, path: str, payload: Any = None, secret: str = PANEL) -> httpx.Response:
    body = b"" if payload is None else json.dumps(payload).encode()
    method = "GET" if payload is None else "POST"
    headers = {"Content-Type": "application/json", **signed_headers(secret, method, path, body)}
    if payload is None:
        return await http.get(path, headers=headers)
    return await http.post(path, content=body, headers=headers)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_ingress_metrics_count_requests_by_endpoint_and_payments_by_outcome(http, store, json_log):
    service = await new_service(store)
    username = service.username
    assert (await signed(http, "/panel/events", {"type": "renew_requested", "username": username})).status_code == 200
    checkout = {"type": "checkout_submitted", "username": username, "payment_method": "bank_transfer", "years": 1}
    order = (await signed(http, "/panel/events", checkout)).json()
    paid = payment(order["order_number"], order["total_cents"]).model_dump(mode="json")
    assert (await signed(http, "/payments/events", paid, PAYMENTS)).json()["status"] == "applied"
    stray = payment("FE-2099-999999", 100).model_dump(mode="json")
    assert (await signed(http, "/payments/events", stray, PAYMENTS)).json()["status"] == "unmatched"
    assert (await signed(http, f"/panel/services/{username}")).status_code == 200
    assert (await http.post("/panel/events", content=b"{}")).status_code == 401
    assert (await http.get("/no/such/path")).status_code == 404

    assert (await http.get("/metrics")).status_code == 404  # never on the public port
    response = await http.admin.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    def requests(endpoint: str, method: str, status: str) -> float:
        labels = (("endpoint", endpoint), ("method", method), ("status", status))
        return found.get(("renewals_ingress_requests_total", labels), 0)

    assert requests("/panel/events", "POST", "200") == 2
    assert requests("/panel/events", "POST", "401") == 1
    assert requests("/payments/events", "POST", "200") == 2
    # The route's template is the label, never the username in the path.
    assert requests("/panel/services/{username}", "GET", "200") == 1
    assert requests("unmatched", "GET", "404") == 2  # /no/such/path and the public /metrics
    assert not any(username in str(labels) for _, labels in found)
    assert found[("renewals_ingress_payments_total", (("status", "applied"),))] == 1
    assert found[("renewals_ingress_payments_total", (("status", "unmatched"),))] == 1
    assert found[("renewals_ingress_request_seconds_count", (("endpoint", "/panel/events"),))] == 3

    # One log line per request, naming the renewal and the order it was about.
    lines = [e for e in json_lines(json_log.getvalue()) if e["logger"] == "renewals.ingress.requests"]
    by_event = {e.get("event"): e for e in lines}
    assert by_event["checkout_submitted"]["renewal_id"] == workflow_id(username)
    assert by_event["checkout_submitted"]["order_number"] == order["order_number"]
    applied = [e for e in lines if e.get("payment_status") == "applied"]
    assert applied and applied[0]["order_number"] == order["order_number"] and applied[0]["status"] == 200
    read = [e for e in lines if e["endpoint"] == "/panel/services/{username}"]
    assert read[0]["renewal_id"] == workflow_id(username)
    refused = [e for e in lines if e["status"] == 401]
    assert refused and "renewal_id" not in refused[0]


async def test_each_app_has_its_own_registry(ingress):
    # The tests build many apps: a process-wide registry would refuse the second one's metrics.
    first, second = create_app(ingress, PANEL, PAYMENTS), create_app(ingress, PANEL, PAYMENTS)
    for app in (create_admin_app(first), create_admin_app(second)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            assert (await client.get("/metrics")).status_code == 200


# ---------------------------------------------------------------------- the processes, for real


def process_env(env: WorkflowEnvironment, postgres_url: str, mail_sink: MailSink, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": env.client.namespace,
        "DATABASE_URL": postgres_url,
        "SMTP_HOST": mail_sink.host,
        "SMTP_PORT": str(mail_sink.port),
        "LOG_FORMAT": "json",
        **extra,
    }


async def get_until(url: str, predicate: Any, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                response = await client.get(url, timeout=2)
                if predicate(response):
                    return response
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {url}")
            await asyncio.sleep(0.2)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=60)
    return errors


async def test_worker_logs_json_serves_sdk_metrics_and_stops_on_sigterm(env, store: Store, postgres_url, mail_sink):
    queue, port = unique("queue"), free_port()
    worker = subprocess.Popen(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env=process_env(
            env,
            postgres_url,
            mail_sink,
            TEMPORAL_TASK_QUEUE=queue,
            WORKER_METRICS_ADDRESS=f"127.0.0.1:{port}",
            # The session's shared server and database: no daily run over other tests' services.
            RENEWALS_DAILY_AT="off",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A renewal on this worker's own task queue, so the worker under test runs its activities.
        ingress = Renewals(env.client, store, POLICY, queue)
        service = await new_service(store)
        await ingress.panel(RenewRequested(type="renew_requested", username=service.username))
        order = await ingress.panel(
            CheckoutSubmitted(
                type="checkout_submitted", username=service.username, payment_method="bank_transfer", years=1
            )
        )
        order_number = order.order_number  # type: ignore[union-attr]
        metrics = await get_until(
            f"http://127.0.0.1:{port}/metrics", lambda r: f'task_queue="{queue}"' in r.text and "activity" in r.text
        )
        assert "temporal_activity_execution_latency" in metrics.text
        assert "temporal_workflow_completed" in metrics.text or "temporal_workflow_task" in metrics.text
    finally:
        errors = stop(worker)
    assert worker.returncode == 0, errors
    entries = json_lines(errors)
    messages = [entry["message"] for entry in entries]
    assert f"worker polling task queue {queue}" in messages
    assert "stopping: letting running activities finish" in messages and messages[-1] == "worker stopped"
    created = [e for e in entries if e.get("activity_type") == "create_order" and e["message"].endswith("done")]
    assert created, messages
    assert created[0]["renewal_id"] == workflow_id(service.username)
    assert created[0]["order_number"] == order_number
    emailed = [e for e in entries if e.get("activity_type") == "send_email"]
    assert emailed and emailed[0]["order_number"] == order_number


async def test_ingress_process_logs_json_on_its_configured_host(env, postgres_url, mail_sink):
    port, admin_port = free_port(), free_port()
    ingress = subprocess.Popen(
        [sys.executable, "starter.py", "serve"],
        cwd=ROOT,
        env=process_env(
            env,
            postgres_url,
            mail_sink,
            INGRESS_HOST="127.0.0.1",
            INGRESS_PORT=str(port),
            INGRESS_ADMIN_PORT=str(admin_port),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await get_until(f"http://127.0.0.1:{port}/healthz", lambda r: r.status_code == 200)
        # The public port's requests, counted and served on the admin port.
        metrics = await get_until(f"http://127.0.0.1:{admin_port}/metrics", lambda r: r.status_code == 200)
        assert 'renewals_ingress_requests_total{endpoint="/healthz",method="GET",status="200"}' in metrics.text
        assert (await get_until(f"http://127.0.0.1:{port}/metrics", lambda r: True)).status_code == 404
    finally:
        errors = stop(ingress)
    # uvicorn finishes its requests, then re-raises the SIGTERM it caught: exit by that signal.
    assert ingress.returncode in (0, -signal.SIGTERM), errors
    entries = json_lines(errors)  # uvicorn's own lines included: every one is JSON
    assert [e["message"] for e in entries if e["logger"].startswith("uvicorn")][-1].startswith("Finished server")
    assert any(e.get("endpoint") == "/healthz" and e.get("status") == 200 for e in entries)


# ---------------------------------------------------------------------- production settings


def test_the_local_defaults_keep_the_local_stack_as_it_was():
    settings = Settings()
    assert settings.ingress_host == "127.0.0.1" and settings.log_format == "text"
    assert worker_runtime(settings) is None  # the SDK's default runtime, no metrics port opened
    assert tls_config(settings) is None and settings.temporal_api_key is None


def test_mtls_reads_the_certificate_files_and_an_empty_value_is_unset(tmp_path):
    (tmp_path / "client.pem").write_bytes(b"CERT")
    (tmp_path / "client.key").write_bytes(b"KEY")
    settings = load_settings(
        TEMPORAL_TLS_CLIENT_CERT_PATH=str(tmp_path / "client.pem"),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(tmp_path / "client.key"),
        TEMPORAL_TLS_SERVER_CA_CERT_PATH="",
        TEMPORAL_API_KEY="",
    )
    tls = tls_config(settings)
    assert tls is not None and tls.client_cert == b"CERT" and tls.client_private_key == b"KEY"
    assert tls.server_root_ca_cert is None and settings.temporal_api_key is None


def test_a_certificate_without_its_key_stops_the_process_naming_both():
    with pytest.raises(ConfigurationError) as refused:
        load_settings(TEMPORAL_TLS_CLIENT_CERT_PATH="/run/secrets/client.pem")
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH go together" in str(refused.value)


def test_a_metrics_address_must_be_host_and_port():
    with pytest.raises(ConfigurationError, match="WORKER_METRICS_ADDRESS"):
        load_settings(WORKER_METRICS_ADDRESS="9464")
