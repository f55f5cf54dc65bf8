"""The customer's pages (/ui/) on the real stack: the help page's journey in headless Chromium, and
the sign-in, CSRF and ownership refusals over plain HTTP.

The app is the ingress's own (`create_app`), served by uvicorn on a free port in the test's event
loop, on the conftest fixtures: Temporal dev server, worker, PostgreSQL, SMTP sink. The browser
tests skip with one line where Debian's Chromium or Playwright is missing. Screenshots go to a
temporary directory, or to docs/ with `SCREENSHOTS_DIR=docs` (the README shows those).
"""

import asyncio
import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from activities.store import Store
from client.renewals import Renewals
from ingress.http import create_app
from ingress.pages.session import sign_in_link, sign_in_query
from ingress.pages.words import italian_time
from renewals.creditor_reference import causale, order_number_of
from renewals.dates import add_years
from renewals.events import RenewRequested
from renewals.pricing import euro
from renewals.types import Stage
from stack.dev_pages import include as include_dev_pages
from stack.postgres import free_port
from stack.screenshot import CHROMIUM, CHROMIUM_ARGS, browser_missing
from tests.conftest import ROOT, MailSink, eventually, new_service, today, unique, view, wait_stage

PANEL = "panel-pages-secret"
PAYMENTS = "payments-pages-secret"
ORDER_NUMBER = re.compile(r"FE-\d{4}-\d{6}")
NO_BROWSER = browser_missing()
browser_test = pytest.mark.skipif(NO_BROWSER is not None, reason=f"browser: {NO_BROWSER}")


def italian(day: Any) -> str:
    return f"{day:%d/%m/%Y}"


# What the confirmation quotes beside the IBAN (P19): the printed RF reference, then the number.
CAUSALE = re.compile(r"RF\d{2}(?: \d{4})+(?: \d{1,3})? - (FE-\d{4}-\d{6})")


def build_app(ingress: Renewals, *, dev: bool) -> FastAPI:
    """The ingress's app as `starter.py serve` builds it: with PANEL_UI_DEV_LOGIN=1 (the local
    stack) it mounts the dev pages too (stack/dev_pages.py)."""
    app = create_app(ingress, PANEL, PAYMENTS)
    if dev:
        include_dev_pages(app)
    return app


# ---------------------------------------------------------------------------- plain HTTP


@pytest.fixture(scope="module")
async def http(ingress: Renewals) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(ingress, dev=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def fresh(http: httpx.AsyncClient, cookies: dict[str, str] | None = None) -> httpx.AsyncClient:
    """Another browser on the same app: a cookie jar of its own."""
    return httpx.AsyncClient(transport=http._transport, base_url="http://test", cookies=cookies)


def hidden_fields(page: httpx.Response) -> dict[str, str]:
    return dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', page.text))


# Each link signs in once, and two made for one username in the same second are the same link:
# the tests' links expire one second later each time, as links made a second apart would.
LINKS_MADE = itertools.count()


async def follow_link(client: httpx.AsyncClient, username: str) -> httpx.Response:
    """As a customer follows the panel's link: its page, then Entra (a POST bound to this browser)."""
    page = await client.get(sign_in_link(PANEL, username, time.time(), seconds=60 + next(LINKS_MADE) % 240))
    assert page.status_code == 200, page.text
    return await client.post("/ui/accesso", data=hidden_fields(page))


async def signed_in(http: httpx.AsyncClient, username: str) -> httpx.AsyncClient:
    """A client holding `username`'s session cookie, as after following the panel's link."""
    client = fresh(http)
    answer = await follow_link(client, username)
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found, page.text
    return found[1]


async def test_sign_in_link_sets_an_httponly_samesite_strict_session(http: httpx.AsyncClient, store: Store) -> None:
    service = await new_service(store)
    answer = await follow_link(fresh(http), service.username)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("renewals_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    client = await signed_in(http, service.username)
    home = await client.get("/ui/")
    assert home.status_code == 200
    assert "Stato servizio" in home.text and italian(service.expires_on) in home.text and ">Rinnova<" in home.text
    # Esci ends the session in this browser.
    out = await client.post("/ui/esci", data={"csrf": csrf_of(home)})
    assert out.status_code == 200 and "Sessione chiusa" in out.text
    assert (await client.get("/ui/")).status_code == 401


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda q: {**q, "u": "demo-other"}, id="another-username"),
        pytest.param(lambda q: {**q, "sig": "f" * 64}, id="wrong-signature"),
        pytest.param(lambda q: sign_in_query("not-the-panel-secret", q["u"], time.time()), id="other-secret"),
        pytest.param(lambda q: sign_in_query(PANEL, q["u"], time.time() - 400), id="expired"),
        pytest.param(lambda q: sign_in_query(PANEL, q["u"], time.time(), seconds=86400), id="long-lived"),
        pytest.param(lambda q: {"u": q["u"]}, id="unsigned"),
    ],
)
async def test_a_forged_or_expired_sign_in_link_is_refused(http: httpx.AsyncClient, forge: Any) -> None:
    query = forge(sign_in_query(PANEL, "demo-active", time.time()))
    answer = await http.get("/ui/accesso", params=query)
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    assert "Link di accesso non valido" in answer.text and "Traceback" not in answer.text


async def test_pages_without_a_session_are_refused(http: httpx.AsyncClient) -> None:
    for path in ("/ui/", "/ui/carrello", "/ui/ordine", "/ui/rinnovo", "/ui/ordini/FE-2026-000001"):
        answer = await http.get(path)
        assert answer.status_code == 401, path
        assert "Accesso richiesto" in answer.text
    forged = await fresh(http, {"renewals_session": "demo-active|9999999999|00|" + "0" * 64}).get("/ui/")
    assert forged.status_code == 401


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    http: httpx.AsyncClient, store: Store, ingress: Renewals
) -> None:
    service = await new_service(store)
    client = await signed_in(http, service.username)
    home = await client.get("/ui/")
    token = csrf_of(home)
    # No token, then another session's token: nothing opens.
    other = await signed_in(http, service.username)
    foreign = csrf_of(await other.get("/ui/"))
    for fields in ({"azione": "renew"}, {"azione": "renew", "csrf": foreign}, {"azione": "renew", "csrf": ""}):
        refused = await client.post("/ui/rinnova", data=fields)
        assert refused.status_code == 403, fields
        assert "token di sicurezza" in refused.text
    assert (await client.get("/ui/rinnovo")).text.count("Non hai ancora avviato un rinnovo") == 1
    # With its token it works (plain POST, redirect: no JavaScript needed).
    opened = await client.post("/ui/rinnova", data={"azione": "renew", "csrf": token})
    assert opened.status_code == 303 and opened.headers["location"] == "/ui/carrello"
    # A cart change without the token is refused too, and the cart is as it was.
    refused = await client.post("/ui/carrello/aggiungi", data={"addon": "extra_users", "quantita": "1"})
    assert refused.status_code == 403
    # Odd input with the token is a message in Italian, not a failure.
    token = csrf_of(await client.get("/ui/carrello"))
    for fields, said in (
        ({"addon": "extra_users", "quantita": "²"}, "La quantità deve essere un numero intero da 1 a 100."),
        ({"addon": "gold", "addon_name": "x"}, "Servizio aggiuntivo sconosciuto."),
    ):
        odd = await client.post("/ui/carrello/aggiungi", data={**fields, "csrf": token})
        assert odd.status_code == 422 and said in odd.text, odd.text
    assert (await view(ingress.client, service.username)).cart.cart_addons == []  # type: ignore[union-attr]


async def test_another_customers_order_and_renewal_are_refused(
    http: httpx.AsyncClient, store: Store, ingress: Renewals
) -> None:
    mine, theirs = await new_service(store), await new_service(store)
    await ingress.panel(RenewRequested(type="renew_requested", username=theirs.username))
    their_client = await signed_in(http, theirs.username)
    order = await their_client.post(
        "/ui/ordine",
        data={"pagamento": "bank_transfer", "anni": "1", "csrf": csrf_of(await their_client.get("/ui/ordine"))},
    )
    assert order.status_code == 303
    number = order.headers["location"].rsplit("/", 1)[1]
    assert ORDER_NUMBER.fullmatch(number)
    confirmation = (await their_client.get(order.headers["location"])).text
    assert number in confirmation
    # P19: the payment reason beside the IBAN (and on the postal slip): the order's ISO 11649
    # creditor reference, then its number.
    reason = causale(number)
    assert CAUSALE.fullmatch(reason) and order_number_of(reason.split(" - ")[0]) == number, reason
    assert re.search(rf"<dt>IBAN</dt><dd>IT\w+</dd><dt>Causale</dt><dd>{re.escape(reason)}</dd>", confirmation)
    assert confirmation.count(f"<dt>Causale</dt><dd>{reason}</dd>") == 2, confirmation

    client = await signed_in(http, mine.username)
    stolen = await client.get(f"/ui/ordini/{number}")
    assert stolen.status_code == 404
    assert "non è tra gli ordini del tuo servizio" in stolen.text
    assert theirs.username not in stolen.text and "IBAN" not in stolen.text
    # The status page and the cart are the session's own: a username in the URL is not a way in.
    for path in (f"/ui/rinnovo?username={theirs.username}", f"/ui/carrello?u={theirs.username}"):
        answer = await client.get(path, follow_redirects=True)
        assert number not in answer.text and theirs.username not in answer.text
    # A session cookie re-signed for the other username without the secret is no session.
    cookie = client.cookies["renewals_session"].replace(mine.username, theirs.username, 1)
    assert (await fresh(http, {"renewals_session": cookie}).get(f"/ui/ordini/{number}")).status_code == 401


async def test_r5_the_order_form_offers_one_or_two_years_on_promotion_and_refuses_three(
    http: httpx.AsyncClient, store: Store, ingress: Renewals
) -> None:
    service = await new_service(store, promotional=True)
    client = await signed_in(http, service.username)
    opened = await client.post("/ui/rinnova", data={"azione": "renew", "csrf": csrf_of(await client.get("/ui/"))})
    assert opened.status_code == 303
    form = await client.get("/ui/ordine")
    assert re.findall(r'<option value="(\d+)"', form.text) == ["1", "2"]
    assert "Prodotto in promozione: uno o due anni" in form.text
    refused = await client.post("/ui/ordine", data={"pagamento": "postal_slip", "anni": "3", "csrf": csrf_of(form)})
    assert refused.status_code == 422
    assert "Per un prodotto in promozione la durata del rinnovo può essere di uno o due anni." in refused.text
    assert 'value="postal_slip" required checked' in refused.text  # the choice is kept
    assert (await view(ingress.client, service.username)).stage == Stage.CART


async def test_dev_pages_are_off_unless_panel_ui_dev_login(http: httpx.AsyncClient, ingress: Renewals) -> None:
    for path in ("/ui/dev/accesso", "/ui/dev/pagamenti"):
        assert (await http.get(path)).status_code == 404
    # The production app never mounts them, whatever the environment says: only the local stack
    # does (stack/dev_pages.py), and no page links to them.
    before = os.environ.get("PANEL_UI_DEV_LOGIN")
    os.environ["PANEL_UI_DEV_LOGIN"] = "1"
    try:
        app = create_app(ingress, PANEL, PAYMENTS)
    finally:
        if before is None:
            del os.environ["PANEL_UI_DEV_LOGIN"]
        else:
            os.environ["PANEL_UI_DEV_LOGIN"] = before
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for path in ("/ui/dev/accesso", "/ui/dev/pagamenti"):
            assert (await client.get(path)).status_code == 404
        refused = await client.get("/ui/")
        assert refused.status_code == 401 and "/ui/dev/" not in refused.text


async def test_htmx_is_served_pinned_from_the_ingress(http: httpx.AsyncClient) -> None:
    answer = await http.get("/ui/static/htmx.min.js")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/javascript")
    assert answer.content == (ROOT / "ingress" / "pages" / "static" / "htmx.min.js").read_bytes()
    assert 'version:"2.0.11"' in answer.text


# ---------------------------------------------------------------------------- in the browser


@dataclass
class Journey:
    """Each step's name and how long it took in the browser, for the report."""

    steps: list[tuple[str, float]] = field(default_factory=list)
    _since: float = field(default_factory=time.perf_counter)

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self.steps.append((name, (now - self._since) * 1000))
        self._since = now

    def report(self) -> str:
        lines = [f"  {index:2}. {name:<58} {ms:7.0f} ms" for index, (name, ms) in enumerate(self.steps, 1)]
        total = sum(ms for _, ms in self.steps)
        return "\n".join(["customer journey in Chromium:", *lines, f"      {'total':<58} {total:7.0f} ms"])


@pytest.fixture(scope="module")
async def site(ingress: Renewals) -> AsyncIterator[str]:
    """The ingress's app with the dev pages, served by uvicorn on a free port in this event loop."""
    port = free_port()
    config = uvicorn.Config(build_app(ingress, dev=True), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, 20, "uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if NO_BROWSER is not None:
        pytest.skip(f"browser: {NO_BROWSER}")
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        chromium = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Path]:
    chosen = os.environ.get("SCREENSHOTS_DIR")
    yield (ROOT / chosen) if chosen else tmp_path


async def new_page(browser: Any, site: str, *, javascript: bool = True) -> Any:
    context = await browser.new_context(
        base_url=site, java_script_enabled=javascript, locale="it-IT", viewport={"width": 1100, "height": 900}
    )
    context.set_default_timeout(20_000)
    return await context.new_page()


async def sign_in_as(page: Any, username: str) -> None:
    """As the control panel sends the customer: its signed link, Entra, then the home page."""
    await page.goto(sign_in_link(PANEL, username, time.time()))
    await page.get_by_role("button", name="Entra").click()
    await page.wait_for_url("**/ui/")


def mail_body(message: Any) -> str:
    return str(message.get_payload(decode=True).decode())


@browser_test
async def test_r3_r4_r5_r6_r7_the_help_pages_journey_in_the_browser(
    browser: Any, site: str, store: Store, ingress: Renewals, mail_sink: MailSink, shots: Path
) -> None:
    from playwright.async_api import expect

    # Like demo-storage75: 1536 MB of 2048 in use (75 %), bought 300 days ago.
    service = await new_service(
        store,
        username=unique("storage75"),
        storage_quota_mb=2048,
        storage_used_mb=1536,
        expires_on=today() + timedelta(days=65),
    )
    page = await new_page(browser, site)
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    journey = Journey()

    # 1. Sign in on the local stack's page (the panel's signed link behind it).
    await page.goto("/ui/dev/accesso")
    await expect(page.get_by_role("link", name="Accedi come demo-storage75")).to_be_visible()
    await page.get_by_label("Altro username").fill(service.username)
    await page.get_by_role("button", name="Accedi").click()
    await expect(page.locator("#cliente")).to_have_text(service.username)
    await page.get_by_role("button", name="Entra").click()
    await page.wait_for_url("**/ui/")
    status = page.get_by_role("region", name="Stato servizio")
    await expect(status).to_contain_text(italian(service.expires_on))
    await expect(status.get_by_role("button", name="Rinnova", exact=True)).to_be_visible()
    journey.step("sign in: dev page → signed link → Entra → home with Rinnova")

    # 2. Rinnova → the cart: username, expiry, the yellow alert with its estimate.
    await status.get_by_role("button", name="Rinnova", exact=True).click()
    await page.wait_for_url("**/ui/carrello")
    cart = page.locator("#carrello")
    await expect(cart).to_contain_text(service.username)
    await expect(cart).to_contain_text(italian(service.expires_on))
    alert = page.get_by_role("region", name=re.compile("Avviso giallo"))
    await expect(alert).to_contain_text("75 %")
    await expect(alert).to_contain_text("Stima dello spazio aggiuntivo necessario")
    assert "alert-yellow" in (await alert.get_attribute("class") or "")
    journey.step("Rinnova → cart with the yellow storage alert")

    # 3. + Aggiungi al carrello, in place (no navigation): the total moves.
    loaded = len(navigations)
    await expect(page.locator("#totale")).to_have_text(euro(3050))
    await page.get_by_role("button", name="+ Aggiungi al carrello: Utenti aggiuntivi").click()
    await expect(page.get_by_role("status").filter(has_text="aggiunto al carrello")).to_be_visible()
    await expect(page.get_by_role("region", name="Aggiunti al carrello")).to_contain_text("Utenti aggiuntivi: 1")
    await expect(page.locator("#totale")).to_have_text(euro(3660))  # (2500 + 500) + 22 % VAT
    journey.step("+ Aggiungi al carrello (htmx, in place)")

    # 4. A bad code shows its message beside the field, in place.
    await page.get_by_role("textbox", name="Codice convenzione", exact=True).fill("NOPE")
    await page.get_by_role("button", name="Ok", exact=True).click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("Il codice convenzione «NOPE» non esiste"))
    await expect(page.get_by_role("textbox", name="Codice convenzione", exact=True)).to_have_attribute(
        "aria-invalid", "true"
    )
    journey.step("bad code NOPE → message in place")

    # 5. PARTNER10, in place: 10 % off the year's net.
    await page.get_by_role("textbox", name="Codice convenzione", exact=True).fill("PARTNER10")
    await page.get_by_role("button", name="Ok", exact=True).click()
    await expect(page.locator("#sconto")).to_have_text(re.compile("PARTNER10 applicato: sconto del 10 %"))
    await expect(page.locator("#totale")).to_have_text(euro(3294))  # 3000 − 300 + 22 %
    await expect(page.get_by_role("alert")).to_have_count(0)
    assert len(navigations) == loaded, f"the cart changes navigated: {navigations[loaded:]}"
    await page.screenshot(path=str(shots / "customer-cart.png"), full_page=True)
    journey.step("PARTNER10 → Ok (htmx, in place)")

    # 6. Prosegui e completa l'ordine → Modulo d'ordine: 2 years by bank transfer.
    await page.get_by_role("link", name="Prosegui e completa l'ordine").click()
    await expect(page.get_by_role("heading", name="Modulo d'ordine")).to_be_visible()
    assert await page.get_by_label("Durata del rinnovo (anni)").locator("option").count() == 10
    await page.get_by_label("Bonifico bancario").check()
    await page.get_by_label("Durata del rinnovo (anni)").select_option("2")
    journey.step("Prosegui → Modulo d'ordine, bank transfer, 2 years")
    await page.get_by_role("button", name="Conferma l'ordine").click()

    # 7. The confirmation: the order number and how to pay it.
    await expect(page.get_by_role("heading", name="L'ordine è confermato")).to_be_visible()
    number = (await page.locator("#numero-ordine").inner_text()).strip()
    assert ORDER_NUMBER.fullmatch(number), number
    total = euro(6588)  # 2 years: 6000 − 600 + 22 % VAT
    await expect(page.locator("#totale-ordine")).to_have_text(total)
    instructions = page.get_by_role("region", name="Come pagare")
    await expect(instructions).to_contain_text("IBAN")
    await expect(instructions).to_contain_text(number)
    # P19: beside the IBAN, "Causale: RF.. .... - FE-....-......", the order's creditor reference.
    bank_reason = instructions.locator("dt:text-is('IBAN') + dd + dt:text-is('Causale') + dd")
    await expect(bank_reason).to_have_text(causale(number))
    await expect(bank_reason).to_have_text(CAUSALE)
    await page.screenshot(path=str(shots / "customer-confirmation.png"), full_page=True)
    journey.step("Conferma l'ordine → confirmation with the order number")

    # 8. The payment-instructions email quotes the same number and total.
    def instructions_email() -> Any:
        return [m for m in mail_sink.to(service.holder_email) if number in (m["Subject"] or "")]

    mail = (await eventually(instructions_email, 20, "the payment-instructions email"))[0]
    assert number in mail_body(mail) and total in mail_body(mail)
    journey.step("email with the order number (SMTP sink)")

    # 9. The status page: awaiting payment, the balance and the deadline.
    await page.get_by_role("link", name="Vedi lo stato del rinnovo").click()
    await expect(page.locator("#fase")).to_have_text("In attesa di pagamento")
    await expect(page.locator("#saldo")).to_have_text(total)
    order = (await ingress.renewal(service.username)).order
    assert order is not None
    await expect(page.locator("#termine")).to_have_text(italian_time(order.due_by))
    journey.step("status page: awaiting payment, balance, deadline")

    # 10. The payments back office registers the transfer (dev page, through Renewals.payment).
    await page.goto(f"/ui/ordini/{number}")
    await page.get_by_role("link", name=re.compile("Registra il pagamento")).click()
    await expect(page.get_by_label("Numero d'ordine")).to_have_value(number)
    await expect(page.get_by_label("Importo in euro (es. 98,82)")).to_have_value("65,88")
    await page.get_by_role("button", name="Registra il pagamento").click()
    await expect(page.locator("#esito-pagamento")).to_contain_text("ordine saldato")
    journey.step("back office: register the payment")

    # 11. Activated: the new expiry, two years on (P1), on the status page and the home page.
    await wait_stage(ingress.client, service.username, Stage.ACTIVATED)
    new_expiry = italian(add_years(service.expires_on, 2))
    await page.goto("/ui/rinnovo")
    await expect(page.locator("#fase")).to_have_text("Rinnovo completato")
    await expect(page.locator("#nuova-scadenza")).to_have_text(new_expiry)
    await page.goto("/ui/")
    await expect(page.locator("#scadenza")).to_have_text(new_expiry)
    journey.step("activated: new expiry on status and home")

    print("\n" + journey.report())
    await page.context.close()


@browser_test
async def test_r2_riattiva_on_an_expired_service_without_javascript(
    browser: Any, site: str, store: Store, ingress: Renewals
) -> None:
    from playwright.async_api import expect

    service = await new_service(store, expires_on=today() - timedelta(days=30))
    page = await new_page(browser, site, javascript=False)
    await sign_in_as(page, service.username)
    status = page.get_by_role("region", name="Stato servizio")
    await expect(page.locator("#stato")).to_have_text("Scaduto")
    await expect(status).to_contain_text(f"puoi riattivarlo fino al {italian(service.expires_on + timedelta(days=90))}")
    await expect(status.get_by_role("button", name="Rinnova", exact=True)).to_have_count(0)
    await status.get_by_role("button", name="Riattiva").click()
    await page.wait_for_url("**/ui/carrello")
    await expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("^Riattivazione"))
    # Plain form posts and redirects: the add-on and the expired code work without htmx.
    await page.get_by_role("button", name="+ Aggiungi al carrello: Utenti aggiuntivi").click()
    await page.wait_for_url("**/ui/carrello")
    await expect(page.get_by_role("region", name="Aggiunti al carrello")).to_contain_text("Utenti aggiuntivi: 1")
    await page.get_by_role("textbox", name="Codice convenzione", exact=True).fill("OLD20")
    await page.get_by_role("button", name="Ok", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("Il codice convenzione «OLD20» è scaduto il")
    await expect(page.get_by_role("textbox", name="Codice convenzione", exact=True)).to_have_value("OLD20")
    renewal = await view(ingress.client, service.username)
    assert renewal.mode == "reactivate" and renewal.cart is not None and renewal.cart.discount is None
    await page.context.close()


@browser_test
@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        pytest.param({"expires_on_days": -120}, "Cessato", "è cessato e non può più essere rinnovato", id="ceased"),
        pytest.param({"auto_renew": True}, "Attivo", "L'opzione Rinnovo automatico è attiva", id="auto-renew"),
    ],
)
async def test_r1_r2_no_button_and_the_reason_on_a_ceased_or_auto_renew_service(
    browser: Any, site: str, store: Store, fields: dict[str, Any], status: str, reason: str
) -> None:
    from playwright.async_api import expect

    days = fields.pop("expires_on_days", 60)
    service = await new_service(store, expires_on=today() + timedelta(days=days), **fields)
    page = await new_page(browser, site)
    await sign_in_as(page, service.username)
    card = page.get_by_role("region", name="Stato servizio")
    await expect(page.locator("#stato")).to_have_text(status)
    await expect(page.locator("#motivo")).to_contain_text(reason)
    await expect(card.get_by_role("button")).to_have_count(0)
    await page.context.close()


@browser_test
async def test_the_pages_can_be_used_with_the_keyboard_alone(browser: Any, site: str, store: Store) -> None:
    from playwright.async_api import expect

    service = await new_service(store)
    page = await new_page(browser, site)
    await sign_in_as(page, service.username)
    # Tab from the top reaches Rinnova; Enter presses it.
    for _ in range(12):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.textContent.trim()") == "Rinnova":
            break
    else:
        raise AssertionError("Rinnova cannot be reached with Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/ui/carrello")
    await page.get_by_role("textbox", name="Codice convenzione", exact=True).focus()
    await page.keyboard.type("PARTNER10")
    await page.keyboard.press("Enter")
    await expect(page.locator("#sconto")).to_be_visible()
    # Every form field has a label.
    unlabelled = await page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden]), select')]
             .filter(e => !(e.labels && e.labels.length)).map(e => e.name)"""
    )
    assert unlabelled == []
    await page.context.close()


@browser_test
async def test_p16_p20_the_auto_renew_switch_and_a_declined_charges_link_in_the_browser(
    browser: Any, site: str, store: Store, ingress: Renewals, mail_sink: MailSink
) -> None:
    """The customer turns auto-renew on with card and 2 years, then off; a declined charge's email
    link signs them in to the order's payment page, where they switch to a bank transfer (P20)."""
    from playwright.async_api import expect

    from client.starts import start_auto_renewal
    from renewals import TASK_QUEUE, workflow_id
    from renewals.events import ChargeFailed
    from renewals.links import signed_link
    from tests.conftest import POLICY

    service = await new_service(store, expires_on=today() + timedelta(days=60))
    page = await new_page(browser, site)
    await sign_in_as(page, service.username)
    switch = page.get_by_role("region", name="Rinnovo automatico")
    await switch.get_by_role("radio", name="Sì").check()
    await switch.get_by_label("Pagamento").select_option("card")
    await switch.get_by_label("Durata").select_option("2")
    await switch.get_by_role("button", name="Salva").click()
    await expect(page.locator("#rinnovo-automatico")).to_have_text("attivo: Carta di credito, 2 anni")
    stored = await store.services.get(service.username)
    assert stored is not None and stored.auto_renew and stored.auto_renew_method == "card"
    assert stored.auto_renew_years == 2
    await page.get_by_role("region", name="Rinnovo automatico").get_by_role("radio", name="No").check()
    await page.get_by_role("region", name="Rinnovo automatico").get_by_role("button", name="Salva").click()
    await expect(page.locator("#rinnovo-automatico")).to_have_text("disattivato")
    assert not (await ingress.service(service.username)).auto_renew
    await page.context.close()

    # A card automatic order whose charge is declined for good: the email's link, then the page.
    auto = await new_service(store, auto_renew=True, auto_renew_method="card", expires_on=today() + timedelta(days=30))
    await start_auto_renewal(ingress.client, TASK_QUEUE, auto.username, POLICY)
    attempt = await eventually(
        lambda: store.pool.fetchrow(
            "SELECT attempt, order_number FROM charge_requests WHERE username = $1", auto.username
        ),
        what="the charge request",
    )
    number = attempt["order_number"]
    failed = ChargeFailed(
        type="charge_failed",
        order_number=number,
        attempt=attempt["attempt"],
        decline="hard",
        code="54",
        message="Expired card",
    )
    assert (await ingress.payment_event(failed)).status == "recorded"
    told = await eventually(
        lambda: [m for m in mail_sink.to(f"{auto.username}@example.com") if "non riuscito" in str(m["Subject"])],
        what="the declined charge's email",
    )
    path = re.search(rf"/ui/accesso/ordine/{number}", mail_body(told[0]))
    assert path is not None
    renewal = await view(ingress.client, auto.username)
    assert renewal.order is not None
    # The test's app verifies with its own panel secret: the same link, signed with it.
    link = signed_link(PANEL, f"{site}{path[0]}", auto.username, renewal.order.due_by)
    page = await new_page(browser, site)
    await page.goto(link)
    await page.get_by_role("button", name="Entra").click()
    await page.wait_for_url(f"**/ui/ordini/{number}/pagamento")
    await expect(page.locator("#modalita")).to_have_text("Carta di credito")
    await page.get_by_role("button", name="Paga con bonifico bancario").click()
    await page.wait_for_url(f"**/ui/ordini/{number}")
    await expect(page.get_by_text(CAUSALE).first).to_be_visible()
    shown = await view(ingress.client, auto.username)
    assert shown.order is not None and shown.order.payment_method == "bank_transfer"
    assert shown.dunning == "switched_to_transfer"
    await page.context.close()
    await ingress.client.get_workflow_handle(workflow_id(auto.username)).terminate("test over")
