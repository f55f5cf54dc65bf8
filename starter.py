"""The ingress, for the panel, the payments back office, people and scripts.

    python starter.py serve                         the signed HTTP API on INGRESS_PORT, and the
                                                    OpenAPI document and /metrics on INGRESS_ADMIN_PORT
    python starter.py event JSON                    a panel event, signed with PANEL_SECRET (its first value)
    python starter.py payment JSON                  a payment event, signed with PAYMENTS_SECRET (its first value)
    python starter.py status USERNAME               the current or latest renewal
    python starter.py service USERNAME              which button the panel shows
    python starter.py services import FILE.json     load service records (all or nothing)
    python starter.py invoice NUMBER                an invoice's SdI record: state, files sent, SdI's notifications
    python starter.py invoice NUMBER --xml          its FatturaPA XML (NUMBER may be the order's FE-…)
    python starter.py invoice ORDER --issue         issue a paid order's missing invoice (billing data added since)
    python starter.py invoice resend NUMBER [--late]  resend a rejected invoice, corrected, same number and date
    python starter.py invoice close NUMBER --reason TEXT   ops decided about a rejected invoice
    python starter.py invoice attention             deliveries that need a person, refused SdI callbacks
    python starter.py invoice send-pending          start the delivery of issued invoices that have none
    python starter.py ops cancel USERNAME --reason TEXT
    python starter.py ops extend USERNAME --days N --reason TEXT
    python starter.py ops pay JSON                  register a payment by hand (ledger first)
    python starter.py ops day [--day YYYY-MM-DD]    run a day of the service's year now (notices, automatic orders)
    python starter.py ops legacy                    open renewals that still need each patch or legacy flag
    python starter.py payments import FILE...       import bank statements (camt.053): one line of counts per file
    python starter.py payments unmatched            the credits no order was found for, with suggested orders
    python starter.py payments assign ENTRY ORDER   apply an unmatched credit to an order (once)

`event`, `payment`, `status` and `service` go through the HTTP API, signed like the panel's
requests; `services`, `ops` and `payments` talk to PostgreSQL and Temporal directly. JSON is an argument,
`-` for standard input, or `@FILE`. Answers print as JSON (`--pretty` for people); a refusal
prints its message and exits non-zero.
"""

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Generator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import uvicorn
from pydantic import BaseModel, TypeAdapter, ValidationError

from activities.store import Store
from client.renewals import Renewals, RenewalsError
from ingress.ratelimit import RateLimiter
from renewals import DAILY_SCHEDULE_ID
from renewals.dates import rome_today
from renewals.events import PaymentRegistered
from renewals.messages import DayRun
from renewals.records import ServiceImport, ServiceRecord
from renewals.signing import signed_headers
from settings import Settings, load_settings, require_safe_exposure


class CliError(Exception):
    """A refusal: printed as the message, exit status 1."""


def read_json(argument: str) -> bytes:
    if argument == "-":
        return sys.stdin.buffer.read()
    if argument.startswith("@"):
        return Path(argument[1:]).read_bytes()
    return argument.encode()


def validate_services(raw: bytes) -> list[ServiceRecord]:
    """Every record valid, or none applied: the error names each bad record by index and field."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CliError(f"the file is not valid JSON: {error}") from None
    if not isinstance(data, list):
        raise CliError("the file must hold a JSON list of service records")
    records: list[ServiceRecord] = []
    problems: list[str] = []
    for index, item in enumerate(data):
        try:
            records.append(ServiceImport.model_validate(item))
        except ValidationError as error:
            for problem in error.errors(include_url=False):
                field = ".".join(str(part) for part in problem["loc"]) or "record"
                problems.append(f"record {index}: {field}: {problem['msg']}")
    names = [record.username for record in records]
    problems += [
        f"username {name!r} appears more than once" for name in sorted({n for n in names if names.count(n) > 1})
    ]
    if problems:
        raise CliError("nothing imported; invalid records:\n  " + "\n  ".join(problems))
    return records


async def import_services(settings: Settings, path: Path) -> dict[str, int]:
    records = validate_services(path.read_bytes())
    store = await Store.connect(settings.database_url, max_size=2)
    try:
        return await store.services.upsert(records)
    finally:
        await store.close()


async def read_invoice(settings: Settings, number: str, *, issue: bool = False) -> str:
    """P17: the XML of invoice NUMBER (FT-…), or of the invoice of order NUMBER (FE-…);
    with `issue`, first issue the missing invoice of paid order NUMBER."""
    from db.invoices import invoice_by_number, invoice_of_order, issue_for_paid_order
    from renewals.invoice import InvoiceError

    store = await Store.connect(settings.database_url, max_size=1, seller=settings.seller())
    try:
        if issue:
            try:
                await issue_for_paid_order(store.pool, number, seller=store.seller)
            except InvoiceError as error:
                raise CliError(str(error)) from None
        found = await invoice_by_number(store.pool, number) or await invoice_of_order(store.pool, number)
    finally:
        await store.close()
    if found is None:
        raise CliError(f"no invoice numbered {number!r} and no invoice for an order {number!r}")
    if found.xml is None:
        raise CliError(f"order {found.order_number} has no invoice: {found.state} ({found.note})")
    return found.xml


async def invoice_ops(settings: Settings, words: list[str], *, late: bool, reason: str | None) -> Any:
    """P18: `invoice NUMBER` (its SdI record), `invoice resend NUMBER [--late]`, `invoice close NUMBER
    --reason TEXT`, `invoice attention` (what needs a person), `invoice send-pending`."""
    from client.deliveries import Deliveries, DeliveryRefused
    from worker import connect

    if len(words) == 1 and words[0] not in ("attention", "send-pending"):
        action, number = "record", words[0]
    else:
        action, number = words[0], words[1] if len(words) > 1 else ""
    client = await connect(settings)
    store = await Store.connect(settings.database_url, max_size=2)
    deliveries = Deliveries(client, store.pool, settings.temporal_task_queue, settings.sdi_policy())
    try:
        if action == "record":
            return await deliveries.record(number)
        if action == "resend":
            return (await deliveries.resend(number, late=late)).model_dump(mode="json")
        if action == "close":
            if not reason:
                raise CliError("invoice close NUMBER needs --reason TEXT")
            return (await deliveries.close(number, reason)).model_dump(mode="json")
        if action == "attention":
            return await deliveries.attention()
        if action == "send-pending":
            return await deliveries.start_pending()
        raise CliError(f"unknown invoice command {action!r}: resend, close, attention, send-pending, or a number")
    except DeliveryRefused as refusal:
        raise CliError(str(refusal)) from None
    finally:
        await store.close()


# ---------------------------------------------------------------------- HTTP client side


def ingress_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.ingress_port}"


def signed_request(settings: Settings, method: str, path: str, secret: str, body: bytes = b"") -> Any:
    headers = signed_headers(secret, method, path, body)  # P21: the method, the path and the body
    headers["Content-Type"] = "application/json"
    try:
        response = httpx.request(method, ingress_url(settings) + path, content=body, headers=headers, timeout=60)
    except httpx.TransportError as error:
        raise CliError(f"the ingress at {ingress_url(settings)} does not answer ({error}); is `make run` up?") from None
    answer = response.json()
    if response.status_code >= 400:
        raise CliError(f"{response.status_code} {answer.get('error')}: {answer.get('message')}")
    return answer


# ---------------------------------------------------------------------- ops (direct)


async def with_ingress(settings: Settings, work: Callable[[Renewals], Awaitable[BaseModel]]) -> Any:
    from worker import connect  # the same client settings as the worker

    client = await connect(settings)
    store = await Store.connect(settings.database_url, max_size=2)
    try:
        # No HTTP deadline around the CLI's ops: bound each update itself (P14).
        ingress = Renewals(
            client, store, settings.policy(), settings.temporal_task_queue, update_timeout=timedelta(seconds=15)
        )
        result = await work(ingress)
        return result.model_dump(mode="json")
    except RenewalsError as error:
        raise CliError(f"{error.status} {error.code}: {error.message}") from None
    finally:
        await store.close()


class _AdminServer(uvicorn.Server):
    """The admin port's server: the public one owns the signals and stops it (PublicServer)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _PublicServer(uvicorn.Server):
    """The public port's server; SIGTERM or Ctrl-C stops the admin server with it."""

    def __init__(self, config: uvicorn.Config, admin: uvicorn.Server) -> None:
        super().__init__(config)
        self.admin = admin

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.admin.should_exit = True
        super().handle_exit(sig, frame)


def server_configs(settings: Settings, public: Any, admin: Any) -> tuple[uvicorn.Config, uvicorn.Config]:
    """uvicorn's settings for the public port and the admin port.

    The app caps requests in flight itself, answering 503 with Retry-After (ingress/bounds.py);
    limit_concurrency is the backstop above it, counted in requests by ingress/slow_clients.py,
    which also closes a client too slow to send its request (P14)."""
    from ingress.slow_clients import SlowClientsProtocol

    # log_config=None: uvicorn's lines go through our handler (JSON in production); the
    # per-request line is ingress/metrics.py's, with the renewal and the order in it.
    common: dict[str, Any] = {"log_config": None, "log_level": settings.log_level.lower(), "access_log": False}
    common["http"] = SlowClientsProtocol
    return (
        uvicorn.Config(
            public,
            host=settings.ingress_host,
            port=settings.ingress_port,
            limit_concurrency=settings.ingress_max_concurrency * 2 + 10,
            timeout_keep_alive=5,
            # Only the TLS proxy's word on the scheme and the client's address is believed (the
            # pages' Secure cookie follows the scheme); never uvicorn's FORWARDED_ALLOW_IPS by chance.
            forwarded_allow_ips=settings.ingress_trusted_proxies,
            **common,
        ),
        uvicorn.Config(admin, host=settings.ingress_admin_host, port=settings.ingress_admin_port, **common),
    )


def serve(settings: Settings) -> None:
    # First of all: on anything but loopback, weak, dev or shared secrets stop the start (one line).
    require_safe_exposure(settings)
    from ingress.http import create_admin_app, create_app
    from ingress.idempotency import IdempotencyKeys
    from telemetry import configure_logging

    configure_logging(settings)

    async def main() -> None:
        from worker import connect

        client = await connect(settings)
        store = await Store.connect(settings.database_url)
        sdi_cert = settings.sdi_signing_cert.read_bytes() if settings.sdi_signing_cert else None
        public = create_app(
            Renewals(client, store, settings.policy(), settings.temporal_task_queue, year=settings.year()),
            settings.panel_secrets,
            settings.payments_secrets,
            RateLimiter(settings.panel_rate_per_minute / 60, settings.panel_burst),
            idempotency=IdempotencyKeys(store.pool, settings.panel_idempotency_ttl),
            max_concurrency=settings.ingress_max_concurrency,
            sdi_signing_cert=sdi_cert,
            accept_v1_signatures=settings.signing_accept_v1,
        )
        if settings.panel_ui_dev_login:
            # The local stack's dev pages (make run): loopback only, require_safe_exposure saw to it.
            from stack.dev_pages import include as include_dev_pages

            include_dev_pages(public)
        public_config, admin_config = server_configs(settings, public, create_admin_app(public))
        admin_server = _AdminServer(admin_config)
        try:
            await asyncio.gather(_PublicServer(public_config, admin_server).serve(), admin_server.serve())
        finally:
            await store.close()

    asyncio.run(main())


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python starter.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    root.add_argument("--pretty", action="store_true", help="indent the JSON answer")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the signed HTTP API")
    commands.add_parser("event", help="send a panel event").add_argument("json")
    commands.add_parser("payment", help="send a payment event").add_argument("json")
    commands.add_parser("status", help="the current or latest renewal").add_argument("username")
    commands.add_parser("service", help="which button the panel shows").add_argument("username")
    services = commands.add_parser("services", help="service records").add_subparsers(dest="action", required=True)
    services.add_parser("import", help="upsert records from a JSON file").add_argument("file", type=Path)
    invoice = commands.add_parser("invoice", help="an invoice's SdI record, its XML, its resend (P17, P18)")
    invoice.add_argument("words", nargs="+", metavar="[resend|close] NUMBER | attention | send-pending")
    invoice.add_argument("--xml", action="store_true", help="print the invoice's FatturaPA XML")
    invoice.add_argument("--issue", action="store_true", help="issue a paid order's missing invoice first (--xml)")
    invoice.add_argument("--late", action="store_true", help="resend after the 5 days, knowingly")
    invoice.add_argument("--reason", help="why ops close a rejected invoice's delivery")
    ops = commands.add_parser("ops", help="ops operations").add_subparsers(dest="action", required=True)
    cancel = ops.add_parser("cancel", help="cancel the order awaiting payment")
    cancel.add_argument("username")
    cancel.add_argument("--reason", required=True)
    extend = ops.add_parser("extend", help="extend the payment deadline")
    extend.add_argument("username")
    extend.add_argument("--days", type=int, required=True)
    extend.add_argument("--reason", required=True)
    ops.add_parser("pay", help="register a payment by hand").add_argument("json")
    ops.add_parser("legacy", help="how many open renewals still need each patch or legacy flag")
    day = ops.add_parser("day", help="run a day of the service's year now: its notices and automatic orders")
    day.add_argument("--day", type=date.fromisoformat, help="YYYY-MM-DD (Rome); today by default")
    payments = commands.add_parser("payments", help="bank statements (P19): import, unmatched credits, assign")
    statements = payments.add_subparsers(dest="action", required=True)
    imported = statements.add_parser("import", help="import camt.053 statement files, each once")
    imported.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imported.add_argument("--wait", type=float, default=600, help="seconds to wait for each import (default 600)")
    unmatched = statements.add_parser("unmatched", help="the credits no order was found for, oldest first")
    unmatched.add_argument("--limit", type=int, default=100)
    assign = statements.add_parser("assign", help="apply an unmatched credit to an order, once")
    assign.add_argument("entry", type=int, help="the entry's number, from `payments unmatched`")
    assign.add_argument("order", help="the order number, FE-<year>-<progressive>")
    return root


async def legacy(settings: Settings) -> dict[str, Any]:
    """docs/evolving-models.md: the open renewals each patch and legacy flag is still kept for."""
    from client.legacy import legacy_report
    from worker import connect

    return await legacy_report(await connect(settings))


async def run_day(settings: Settings, day: date | None) -> dict[str, Any]:
    """P15, P16: the daily Schedule's work for one day, run by hand (a re-run sends nothing twice)."""
    from worker import connect
    from workflows.year import ServiceYearDay

    day = day or rome_today(datetime.now(UTC))
    client = await connect(settings)
    report = await client.execute_workflow(
        ServiceYearDay.run,
        DayRun(day=day, year=settings.year(), action_url=settings.panel_ui_url),
        id=f"{DAILY_SCHEDULE_ID}-{day}-by-hand-{uuid.uuid4().hex[:6]}",
        task_queue=settings.temporal_task_queue,
    )
    return report.model_dump(mode="json")


async def import_statements(settings: Settings, files: list[Path], wait: float) -> str:
    """P19: each file submitted and waited for; one line per file as it is done. A refused file
    (not a camt.053 statement, unreadable) is a line too, and the exit status is 1."""
    from client.statements import StatementRefused, submit_statement
    from worker import connect

    client = await connect(settings)
    store = await Store.connect(settings.database_url, max_size=2)
    refused = 0
    try:
        for path in files:
            try:
                raw = path.read_bytes()
                record = await submit_statement(
                    client,
                    store.pool,
                    raw,
                    "cli",
                    file_name=path.name,
                    task_queue=settings.temporal_task_queue,
                    wait=timedelta(seconds=wait),
                )
            except (StatementRefused, OSError) as error:
                refused += 1
                print(f"{path}: refused: {error}", flush=True)
                continue
            print(f"{path}: {record.line()}", flush=True)
    finally:
        await store.close()
    if refused:
        raise CliError(f"{refused} of {len(files)} files refused: nothing recorded for them")
    return ""


async def statement_ops(settings: Settings, args: argparse.Namespace) -> Any:
    """P19: `payments unmatched` (a JSON list) and `payments assign ENTRY ORDER`."""
    from client.statements import AssignRefused, assign_entry, unmatched_entries
    from worker import connect

    store = await Store.connect(settings.database_url, max_size=2)
    try:
        if args.action == "unmatched":
            return [entry.model_dump(mode="json") for entry in await unmatched_entries(store.pool, args.limit)]
        try:
            assigned = await assign_entry(await connect(settings), store, args.entry, args.order)
        except AssignRefused as refusal:
            raise CliError(str(refusal)) from None
        return assigned.model_dump(mode="json")
    finally:
        await store.close()


def run(args: argparse.Namespace, settings: Settings) -> Any:
    if args.command == "event":
        return signed_request(settings, "POST", "/panel/events", settings.panel_secrets[0], read_json(args.json))
    if args.command == "payment":
        return signed_request(settings, "POST", "/payments/events", settings.payments_secrets[0], read_json(args.json))
    if args.command == "status":
        return signed_request(settings, "GET", f"/panel/renewals/{args.username}", settings.panel_secrets[0])
    if args.command == "service":
        return signed_request(settings, "GET", f"/panel/services/{args.username}", settings.panel_secrets[0])
    if args.command == "services":
        return asyncio.run(import_services(settings, args.file))
    if args.command == "invoice" and (args.xml or args.issue):
        xml = asyncio.run(read_invoice(settings, args.words[-1], issue=args.issue))
        if args.issue:  # P18: an invoice issued by hand is delivered like any other
            asyncio.run(invoice_ops(settings, ["send-pending"], late=False, reason=None))
        return xml
    if args.command == "invoice":
        return asyncio.run(invoice_ops(settings, args.words, late=args.late, reason=args.reason))
    if args.command == "payments" and args.action == "import":
        return asyncio.run(import_statements(settings, args.files, args.wait))
    if args.command == "payments":
        return asyncio.run(statement_ops(settings, args))
    if args.action == "day":
        return asyncio.run(run_day(settings, args.day))
    if args.action == "legacy":
        return asyncio.run(legacy(settings))
    if args.action == "pay":
        try:
            event = TypeAdapter(PaymentRegistered).validate_json(read_json(args.json), strict=True)
        except ValidationError as error:
            raise CliError(str(error)) from None
        return asyncio.run(with_ingress(settings, lambda ingress: ingress.payment(event, by_hand=True)))
    if args.action == "cancel":
        return asyncio.run(with_ingress(settings, lambda ingress: ingress.cancel(args.username, args.reason)))
    return asyncio.run(with_ingress(settings, lambda ingress: ingress.extend(args.username, args.days, args.reason)))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --pretty may stand anywhere on the line, as people type it.
    pretty = "--pretty" in argv
    args = parser().parse_args([word for word in argv if word != "--pretty"])
    args.pretty = pretty
    settings = load_settings()
    if args.command == "serve":
        serve(settings)
        return 0
    try:
        answer = run(args, settings)
    except CliError as error:
        print(error, file=sys.stderr)
        return 1
    if isinstance(answer, str):  # an invoice's XML, as it is
        sys.stdout.write(answer)
        return 0
    print(json.dumps(answer, indent=2 if args.pretty else None, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
