"""Issue 26, the customer's pages (items 6–9 and 11): what a customer, an attacker and ops see on
the real stack once each path is closed.

The app is the ingress's own (`create_app`), on the conftest fixtures (Temporal dev server,
worker, PostgreSQL), over httpx's ASGI transport, or served by uvicorn with `starter.py`'s own
settings where the proxy headers matter. The pages read their settings from the environment when
the app is built: `app_with` sets the variables for that moment only.
"""

import ast
import asyncio
import contextlib
import html
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from temporalio.api.enums.v1 import EventType

from activities.store import Store
from client.renewals import Renewals, RenewalsError
from ingress.http import create_admin_app, create_app
from ingress.pages.session import read_session, sign_in_link
from renewals.events import AddonAdded, AddonRemoved, CheckoutSubmitted, DiscountCodeApplied, RenewRequested
from renewals.types import Stage
from renewals.views import OrderView
from settings import Settings, exposure_problems, load_settings
from stack.postgres import free_port
from starter import server_configs
from tests.conftest import ROOT, eventually, handle_of, new_service, pay, wait_stage

PANEL = "h-pages-panel-secret-current"
PANEL_BEFORE = "h-pages-panel-secret-previous"
PAYMENTS = "h-pages-payments-secret"
# The cart changes one renewal accepts (workflows/state.py): far below Temporal's 2,000 updates per run.
CART_CHANGE_BUDGET = 500
SESSION_COOKIES = ("renewals_session", "__Host-renewals_session")


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def app_with(ingress: Renewals, panel_secret: Any = PANEL, **values: str) -> FastAPI:
    """The ingress's app as `starter.py serve` builds it, with these environment variables."""
    with environment(**values):
        return create_app(ingress, panel_secret, PAYMENTS)


def browser(app: FastAPI, base_url: str = "http://test") -> httpx.AsyncClient:
    """A browser of its own (its own cookie jar) on the app."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def hidden_fields(page: httpx.Response) -> dict[str, str]:
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', page.text)
    }


async def follow_link(client: httpx.AsyncClient, link: str) -> httpx.Response:
    """As a customer follows the panel's link: the page, then its Entra button when it has one."""
    page = await client.get(link)
    if page.status_code != 200 or 'action="/ui/accesso"' not in page.text:
        return page
    return await client.post("/ui/accesso", data=hidden_fields(page))


def session_cookie_of(client: httpx.AsyncClient) -> tuple[str, str] | None:
    for name in SESSION_COOKIES:
        value = client.cookies.get(name)
        if value:
            return name, value
    return None


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found, page.text
    return found[1]


# ---------------------------------------------------------------------------- item 6


def strong() -> str:
    return secrets.token_hex(32)


def test_h06_dev_pages_on_a_public_address_refuse_to_start_in_one_line() -> None:
    env = {
        **os.environ,
        "PANEL_UI_DEV_LOGIN": "1",
        "INGRESS_HOST": "0.0.0.0",
        "PANEL_SECRET": strong(),
        "PAYMENTS_SECRET": strong(),
        "INGRESS_PORT": str(free_port()),
        "INGRESS_ADMIN_PORT": str(free_port()),
        # Nothing listens here: a start that got past the check would fail on these, not hang.
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/renewals",
    }
    try:
        done = subprocess.run(
            [sys.executable, "starter.py", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=40
        )
    except subprocess.TimeoutExpired as started:
        raise AssertionError(f"serve started with the dev pages on 0.0.0.0: {started.stderr!r}") from None
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr
    assert "INGRESS_HOST=0.0.0.0" in lines[0] and "PANEL_UI_DEV_LOGIN" in lines[0], lines[0]
    # On loopback the dev pages start (make run), and a public address starts without them.
    assert exposure_problems(Settings(PANEL_UI_DEV_LOGIN=True, INGRESS_HOST="127.0.0.1")) == []
    public = Settings(INGRESS_HOST="0.0.0.0", PANEL_SECRET=strong(), PAYMENTS_SECRET=strong())
    assert exposure_problems(public) == []
    assert exposure_problems(public.model_copy(update={"panel_ui_dev_login": True})) != []


def test_h06_the_dev_pages_are_not_part_of_the_ingress() -> None:
    """Only the local stack mounts the dev pages (stack/dev_pages.py): no module under ingress/
    imports `stack`, and the production pages hold none of their templates."""
    importers = []
    for path in sorted((ROOT / "ingress").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            importers += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] == "stack"]
    assert importers == []
    assert not list((ROOT / "ingress").rglob("dev_*.html"))


# ---------------------------------------------------------------------------- item 7


async def accepted_updates(ingress: Renewals, username: str) -> int:
    history = await handle_of(ingress.client, username).fetch_history()
    return sum(
        1 for event in history.events if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )


async def test_h07_code_guessing_is_refused_long_before_the_cap_and_the_renewal_still_activates(
    ingress: Renewals, store: Store
) -> None:
    app = app_with(
        ingress,
        PANEL_UI_CODE_TRIES="3",
        PANEL_UI_CODE_LOCKOUT="15m",
        PANEL_UI_RATE_PER_MINUTE="60",
        PANEL_UI_BURST="30",
    )
    service = await new_service(store)
    client = browser(app)
    assert (await follow_link(client, sign_in_link(PANEL, service.username, time.time()))).status_code in (200, 303)
    opened = await client.post("/ui/rinnova", data={"azione": "renew", "csrf": csrf_of(await client.get("/ui/"))})
    assert opened.status_code == 303
    token = csrf_of(await client.get("/ui/carrello"))

    said = []
    for attempt in range(40):
        answer = await client.post("/ui/carrello/codice", data={"codice": f"NOPE{attempt}", "csrf": token})
        said.append((answer.status_code, answer.text))
    statuses = [status for status, _ in said]
    assert statuses[:3] == [422, 422, 422], statuses
    assert "non esiste" in said[0][1]
    # The fourth wrong code in the window is refused without reaching the renewal, and so is the
    # rest of the run: the code lockout, then the page's own rate limit once the burst is spent.
    assert all(status == 429 for status in statuses[3:]), statuses
    assert "Troppi codici convenzione non validi" in said[3][1], said[3][1]
    assert any("Troppe richieste" in text for _, text in said[30:]), [text[:200] for _, text in said[30:]]
    # A right code during the lockout is refused too: guessing cannot go on between tries.
    right = await client.post("/ui/carrello/codice", data={"codice": "PARTNER10", "csrf": token})
    assert right.status_code == 429
    # The renewal heard of the press and the 3 wrong codes only: nowhere near Temporal's 2,000.
    assert await accepted_updates(ingress, service.username) == 4

    # Checkout (once a token of the rate limit is free again) and the payment still work.
    async def checked_out() -> httpx.Response | None:
        form = await client.get("/ui/ordine")
        answer = await client.post(
            "/ui/ordine", data={"pagamento": "bank_transfer", "anni": "1", "csrf": csrf_of(form)}
        )
        return answer if answer.status_code == 303 else None

    confirmed = await eventually(checked_out, 20, "the checkout to pass the rate limit")
    number = confirmed.headers["location"].rsplit("/", 1)[1]
    order = (await ingress.renewal(service.username)).order
    assert order is not None and order.order_number == number
    assert (await pay(ingress, number, order.total_cents)).status == "applied"
    await wait_stage(ingress.client, service.username, Stage.ACTIVATED)


async def test_h07_cart_changes_past_the_budget_are_refused_and_never_the_payment(
    ingress: Renewals, store: Store
) -> None:
    service = await new_service(store)
    username = service.username
    await ingress.panel(RenewRequested(type="renew_requested", username=username))  # counts: 1
    add = AddonAdded(type="addon_added", username=username, addon="extra_users", quantity=1)
    remove = AddonRemoved(type="addon_removed", username=username, addon="extra_users")
    for change in range(CART_CHANGE_BUDGET - 1):
        await ingress.panel(add if change % 2 == 0 else remove)
    for refused in (add, DiscountCodeApplied(type="discount_code_applied", username=username, code="NOPE")):
        with pytest.raises(RenewalsError) as error:
            await ingress.panel(refused)
        assert error.value.status == 409 and "changes" in error.value.message, error.value.message
    assert await accepted_updates(ingress, username) == CART_CHANGE_BUDGET
    from workflows.state import CART_CHANGE_BUDGET as configured

    assert configured == CART_CHANGE_BUDGET
    # Checkout is no cart change and a payment never counts: the renewal activates.
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=username, payment_method="bank_transfer", years=1)
    )
    assert isinstance(order, OrderView)
    assert (await pay(ingress, order.order_number, order.total_cents)).status == "applied"
    await wait_stage(ingress.client, username, Stage.ACTIVATED)


# ---------------------------------------------------------------------------- item 8


async def test_h08_links_and_sessions_signed_before_a_rotation_still_work(ingress: Renewals, store: Store) -> None:
    before, rotated = app_with(ingress, PANEL_BEFORE), app_with(ingress, (PANEL, PANEL_BEFORE))
    service = await new_service(store)
    # A customer signed in before the rotation keeps the session.
    earlier = browser(before)
    await follow_link(earlier, sign_in_link(PANEL_BEFORE, service.username, time.time() - 1))
    kept = session_cookie_of(earlier)
    assert kept is not None
    after = browser(rotated)
    after.cookies.set(*kept)
    assert (await after.get("/ui/")).status_code == 200
    # A link the panel signed with the previous secret (made just before it switched) signs in.
    late = browser(rotated)
    await follow_link(late, sign_in_link(PANEL_BEFORE, service.username, time.time()))
    assert (await late.get("/ui/")).status_code == 200
    # New sessions are signed with the current secret only.
    made = session_cookie_of(late)
    assert made is not None
    assert read_session(PANEL, "customer", made[1], time.time()) is not None
    assert read_session(PANEL_BEFORE, "customer", made[1], time.time()) is None


# ---------------------------------------------------------------------------- item 9


async def test_h09_a_sign_in_link_signs_in_once(ingress: Renewals, store: Store) -> None:
    app = app_with(ingress)
    service = await new_service(store)
    link = sign_in_link(PANEL, service.username, time.time())
    first = browser(app)
    await follow_link(first, link)
    assert (await first.get("/ui/")).status_code == 200
    # The same link again, in this browser or another one (a log, a shared history): refused.
    for again in (browser(app), first):
        again.cookies.clear()
        answer = await follow_link(again, link)
        assert answer.status_code == 401 and "già stato usato" in answer.text, answer.text
        assert session_cookie_of(again) is None
        assert (await again.get("/ui/")).status_code == 401


async def test_h09_sign_out_ends_the_session_on_the_server(ingress: Renewals, store: Store) -> None:
    app = app_with(ingress)
    service = await new_service(store)
    client = browser(app)
    await follow_link(client, sign_in_link(PANEL, service.username, time.time()))
    cookie = session_cookie_of(client)
    assert cookie is not None
    out = await client.post("/ui/esci", data={"csrf": csrf_of(await client.get("/ui/"))})
    assert out.status_code == 200 and "Sessione chiusa" in out.text
    # A copy of the cookie taken before (another tab, a stolen one) is no session any more.
    stolen = browser(app)
    stolen.cookies.set(*cookie)
    assert (await stolen.get("/ui/")).status_code == 401


async def test_h09_a_link_opened_in_another_browser_does_not_sign_that_browser_in(
    ingress: Renewals, store: Store
) -> None:
    app = app_with(ingress)
    attacker = await new_service(store)
    link = sign_in_link(PANEL, attacker.username, time.time())
    # The victim opens the attacker's link (an email, a page that navigates to it): no session.
    victim = browser(app)
    page = await victim.get(link)
    assert session_cookie_of(victim) is None
    assert page.status_code == 200 and attacker.username in page.text and "Entra" in page.text
    # The attacker's own page posts the sign-in form from the victim's browser: refused, since the
    # victim's browser never started that sign-in (its nonce cookie is not the one the form's token binds).
    attacker_browser = browser(app)
    form = hidden_fields(await attacker_browser.get(link))
    forged = await victim.post("/ui/accesso", data=form)
    assert forged.status_code == 403 and session_cookie_of(victim) is None
    forged_without_cookie = await browser(app).post("/ui/accesso", data=form)
    assert forged_without_cookie.status_code == 403
    # The browser that asked for it signs in (once).
    signed_in = await attacker_browser.post("/ui/accesso", data=form)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui/"
    assert (await attacker_browser.get("/ui/")).status_code == 200


# ---------------------------------------------------------------------------- item 11


async def test_h11_with_an_https_public_url_the_session_cookie_is_host_prefixed_secure_and_hsts(
    ingress: Renewals, store: Store
) -> None:
    service = await new_service(store)
    app = app_with(ingress, PANEL_UI_URL="https://rinnovi.example.it/ui/")
    client = browser(app, "https://rinnovi.example.it")
    answer = await follow_link(client, sign_in_link(PANEL, service.username, time.time()))
    cookie = answer.headers.get("set-cookie", "")
    assert cookie.startswith("__Host-renewals_session="), cookie
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "secure" in attributes and "path=/" in attributes and not any(a.startswith("domain") for a in attributes)
    home = await client.get("/ui/")
    assert home.status_code == 200
    assert home.headers["strict-transport-security"].startswith("max-age=")
    # The local stack on plain http loopback: no prefix (a browser would drop it), no HSTS.
    local = browser(app_with(ingress, PANEL_UI_URL="http://127.0.0.1:8000/ui/"))
    plain = await follow_link(local, sign_in_link(PANEL, (await new_service(store)).username, time.time()))
    assert plain.headers["set-cookie"].startswith("renewals_session=")
    assert "strict-transport-security" not in (await local.get("/ui/")).headers


@pytest.mark.parametrize(("trusted", "secure"), [("127.0.0.1", True), ("10.9.9.9", False)])
async def test_h11_the_proxies_trusted_with_the_scheme_are_a_setting(
    ingress: Renewals, store: Store, trusted: str, secure: bool
) -> None:
    settings = load_settings(
        INGRESS_TRUSTED_PROXIES=trusted, INGRESS_PORT=free_port(), PANEL_UI_URL="http://127.0.0.1/ui/"
    )
    app = app_with(ingress, PANEL_UI_URL="http://127.0.0.1/ui/")
    public, _ = server_configs(settings, app, create_admin_app(app))
    server = uvicorn.Server(public)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, 20, "uvicorn to start")
        service = await new_service(store)
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
        base = f"http://127.0.0.1:{settings.ingress_port}"
        async with httpx.AsyncClient(base_url=base, headers=proxied) as client:
            # The link's page sets the sign-in's cookie (the session's follows the same rule).
            answer = await client.get(sign_in_link(PANEL, service.username, time.time()))
        attributes = [part.strip().lower() for part in answer.headers.get("set-cookie", "").split(";")]
        # From a trusted proxy the scheme it reports is believed (the cookie is Secure); from any
        # other address the header is ignored.
        assert ("secure" in attributes) is secure, (trusted, answer.headers.get("set-cookie"))
    finally:
        server.should_exit = True
        await task
