"""The ops view in a real browser: the Temporal Web UI of a `make run` stack finds a renewal by
its search attribute and shows its summary and current details. Skips where Chromium or
Playwright is missing (CI may skip it); `make screenshot` refreshes docs/renewal-ui.png."""

import signal
import subprocess
import sys

import httpx
import pytest

from stack.screenshot import browser_missing, screenshot
from tests.conftest import ROOT, eventually, stack_env, start_stack, unique

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=f"browser check: {browser_missing()}")


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "starter.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


async def test_ui_finds_a_renewal_by_search_attribute_and_shows_its_details(tmp_path):
    import os

    settings = stack_env(tmp_path / "var")
    env = {**os.environ, **settings}
    process, banner = start_stack(settings)
    try:
        assert "running" in banner, banner
        await eventually(lambda: _healthy(settings["INGRESS_PORT"]), 60, "the ingress")
        cli(env, "event", '{"type":"renew_requested","username":"demo-storage95"}')
        order = cli(
            env, "event", '{"type":"checkout_submitted","username":"demo-storage95","payment_method":"card","years":1}'
        )
        assert "FE-" in order
        out = tmp_path / f"{unique('shot')}.png"
        text = await screenshot(f"http://127.0.0.1:{settings['TEMPORAL_UI_PORT']}", "default", "demo-storage95", out)
        assert out.stat().st_size > 10_000
        assert "renewal-demo-storage95" in text
        assert "Renew e-invoicing receive-only service of demo-storage95" in text
        assert "AWAITING_PAYMENT" in text and "FE-" in text
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def _healthy(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
