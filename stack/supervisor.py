"""The supervisor behind `make run` / `make servers`, and `make stop`.

It starts each part as its own process (PostgreSQL, the Temporal dev server, the SMTP sink, then
the worker and the ingress), prints where everything is, and stops them all on SIGINT (Ctrl-C),
SIGTERM or SIGHUP (a closed terminal), or when one of them exits. Signals are handled by the
asyncio loop (`add_signal_handler`), never in a signal handler that takes a lock, so a stop cannot
deadlock. Every part dies with the supervisor if it is killed outright (Linux's parent-death
signal), and leaves a pid file under `<data dir>/pids/`, so the next run stops what a crash left
and names, in one line, whatever else holds a port it needs.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import urlsplit

from settings import ConfigurationError, Settings, load_settings
from stack.children import (
    SERVERS_BY,
    PidFiles,
    command_of,
    death_signal,
    spawn,
    stop_in_order,
)
from stack.ports import Port, port_is_free
from stack.postgres import EmbeddedPostgres
from stack.temporal import dev_server_command, wait_for_temporal

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Parts whose exit is their job, not a failure.
ONE_SHOT = frozenset({"initdb"})


class Console:
    """Lines for the terminal and `<data dir>/stack.log`. A closed terminal (SIGHUP) must not stop
    the stop: once writing to it fails, only the log gets the lines."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.terminal: IO[str] | None = sys.stdout

    def say(self, line: str, *, error: bool = False) -> None:
        with contextlib.suppress(OSError):
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("a") as file:
                file.write(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ} {line}\n")
        stream = sys.stderr if error else self.terminal
        if stream is None:
            return
        try:
            print(line, file=stream, flush=True)
        except OSError:
            self.terminal = None
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the interpreter's exit


@dataclass
class Part:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None


class PartExited(Exception):
    pass


def stop_hint(data_dir: Path) -> str:
    """The command that stops a stack running in the background on `data_dir`."""
    if "RENEWALS_DATA_DIR" in os.environ:
        return f"RENEWALS_DATA_DIR={os.environ['RENEWALS_DATA_DIR']} make stop"
    return "make stop"


class Supervisor:
    def __init__(self, settings: Settings, command: str) -> None:
        self.settings = settings
        self.command = command
        self.data_dir = settings.data_dir.resolve()
        self.postgres = EmbeddedPostgres.for_url(settings.database_url, self.data_dir / "postgres")
        self.pids = PidFiles(self.data_dir)
        self.console = Console(self.data_dir / "stack.log")
        self.parts: list[Part] = []
        self.stop_requested = asyncio.Event()
        self.kill_now = asyncio.Event()

    def say(self, line: str, *, error: bool = False) -> None:
        self.console.say(line, error=error)

    # ------------------------------------------------------------------ signals

    def on_signal(self, signum: int) -> None:
        """Runs in the event loop, after the signal: it may print, log and set events."""
        name = signal.Signals(signum).name
        if not self.stop_requested.is_set():
            self.say(f"stopping… ({name}; a second Ctrl-C kills what is left at once)")
            self.stop_requested.set()
        elif not self.kill_now.is_set():
            self.say(f"{name} again: killing what is left")
            self.kill_now.set()

    # ------------------------------------------------------------------ before starting

    def ports(self) -> list[Port]:
        s = self.settings
        temporal_host, _, temporal_port = s.temporal_address.rpartition(":")
        database = urlsplit(s.database_url)
        ports = [
            Port(database.port or 5432, database.hostname or "127.0.0.1", "PostgreSQL", "DATABASE_URL"),
            Port(int(temporal_port), temporal_host or "127.0.0.1", "Temporal gRPC", "TEMPORAL_ADDRESS"),
            Port(s.temporal_ui_port, temporal_host or "127.0.0.1", "Temporal Web UI", "TEMPORAL_UI_PORT"),
            Port(s.smtp_port, s.smtp_host, "SMTP sink", "SMTP_PORT"),
        ]
        if self.command == "run":
            ports.append(Port(s.ingress_port, s.ingress_host, "ingress HTTP API", "INGRESS_PORT"))
            ports.append(Port(s.ingress_admin_port, s.ingress_admin_host, "ingress admin", "INGRESS_ADMIN_PORT"))
            if self.local_sdi:
                ports.append(Port(s.sdi_local_port, "127.0.0.1", "local SdI", "SDI_LOCAL_PORT"))
        return ports

    @property
    def local_sdi(self) -> bool:
        """P18: the local SdI, unless the environment points the stack at another one."""
        return self.settings.sdi_url is None or self.settings.sdi_signing_cert is None

    def start_local_sdi(self) -> None:
        """The local SdI on loopback, calling back the ingress; the worker and the ingress are
        pointed at it through the environment they inherit."""
        from stack.sdi import ensure_certificate

        s, directory = self.settings, self.data_dir / "sdi"
        _, certificate = ensure_certificate(directory)
        callback = f"http://127.0.0.1:{s.ingress_port}/sdi/TrasmissioneFatture"
        url = f"http://127.0.0.1:{s.sdi_local_port}/SdIRiceviFile"
        command = ["--host", "127.0.0.1", "--port", str(s.sdi_local_port), "--dir", str(directory)]
        self.spawn("sdi", [sys.executable, "-m", "stack.sdi", *command, "--callback", callback])
        os.environ.update({"SDI_URL": url, "SDI_SIGNING_CERT": str(certificate)})
        self.say(f"local SdI  {url} → {callback} (certificate {certificate})")

    async def take_over(self) -> str | None:
        """Stop what a previous run on this data dir left; the refusal line if we cannot start."""
        supervisor = self.pids.read("stack")
        if supervisor is not None and supervisor.pid != os.getpid() and supervisor.running():
            return (
                f"a stack is already running on {self.data_dir} (supervisor pid {supervisor.pid}: "
                f"{command_of(supervisor.pid)}); stop it with `{stop_hint(self.data_dir)}`"
            )
        leftovers = [r for r in self.pids.running() if r.name != "stack"]
        if leftovers:
            listed = ", ".join(f"{r.name} (pid {r.pid})" for r in leftovers)
            self.say(f"stopping what the last run on {self.data_dir} left running: {listed}")
            await stop_in_order(leftovers, self.say, self.kill_now)
            for recorded in leftovers:
                self.pids.forget(recorded.name)
        for port in self.ports():
            if not port_is_free(port.host, port.number):
                return port.refusal()
        return None

    # ------------------------------------------------------------------ starting

    def spawn(self, name: str, command: list[str], *, log: Path | None = None, user: int | None = None) -> Part:
        log = log or self.data_dir / f"{name}.log"
        process = spawn(command, log=log, death_signal=death_signal(name), user=user)
        part = Part(name, process, log)
        self.parts.append(part)
        self.pids.record(name, process.pid, " ".join(command))
        return part

    def exited(self) -> Part | None:
        return next((p for p in self.parts if p.name not in ONE_SHOT and not p.running()), None)

    async def until(self, check: Callable[[], Awaitable[T]], what: str) -> T:
        """Await `check()` while watching the parts: one that exits meanwhile fails the start."""
        task = asyncio.ensure_future(check())
        try:
            while not task.done():
                part = self.exited()
                if part is not None:
                    raise PartExited(
                        f"{part.name} exited with {part.process.returncode} while waiting for {what}; see {part.log}"
                    )
                await asyncio.wait({task}, timeout=0.1)
            return task.result()
        finally:
            task.cancel()

    async def start_postgres(self) -> None:
        postgres = self.postgres
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if postgres.needs_initdb():
            target = postgres.initdb_target()
            initdb = self.spawn("initdb", postgres.initdb_command(target), log=postgres.log_path, user=postgres.uid)
            while initdb.running():
                await asyncio.sleep(0.1)
            self.pids.forget("initdb")
            if initdb.process.returncode != 0:
                raise PartExited(f"initdb exited with {initdb.process.returncode}; see {postgres.log_path}")
            postgres.initdb_done(target)
        postgres.grant_access()
        self.spawn("postgres", postgres.server_command(), log=postgres.log_path, user=postgres.uid)

        async def answers() -> None:
            while not await postgres.answers():
                await asyncio.sleep(0.1)

        await self.until(answers, "PostgreSQL")

    async def start(self) -> None:
        from stack.database import prepare

        s = self.settings
        await self.start_postgres()
        applied = await self.until(lambda: prepare(s.database_url), "the migrations")
        self.say(f"postgres   {s.database_url}  (migrations applied now: {applied or 'none'})")
        db_file = self.data_dir / "temporal.db"
        temporal = dev_server_command(s.temporal_address, s.temporal_namespace, s.temporal_ui_port, db_file)
        self.spawn("temporal", temporal)
        sink = ["--host", s.smtp_host, "--port", str(s.smtp_port), "--dir", str(s.mail_sink_dir)]
        self.spawn("smtp-sink", [sys.executable, "-m", "stack.smtp_sink", *sink])
        await self.until(lambda: wait_for_temporal(s.temporal_address, s.temporal_namespace), "Temporal")
        self.say(f"temporal   {s.temporal_address}  namespace {s.temporal_namespace}")
        self.say(f"web UI     http://127.0.0.1:{s.temporal_ui_port}")
        self.say(f"smtp sink  {s.smtp_host}:{s.smtp_port} → {s.mail_sink_dir.resolve()}")
        if self.command == "run":
            seeded = await self.until(lambda: seed_demo_services(s.database_url), "the demo data")
            self.say(f"demo data  services seeded now: {', '.join(seeded) or 'none (kept from last run)'}")
            if self.local_sdi:
                self.start_local_sdi()
            self.spawn("worker", [sys.executable, "worker.py"])
            self.spawn("ingress", [sys.executable, "starter.py", "serve"])
            self.say(f"ingress    http://127.0.0.1:{s.ingress_port}")
            self.say(f"admin      http://127.0.0.1:{s.ingress_admin_port}/docs  (OpenAPI; /metrics)")
        self.say(f"logs       {self.data_dir}/*.log")

    # ------------------------------------------------------------------ running, stopping

    async def watch(self) -> str | None:
        """Until a signal (None) or a part's exit (what happened)."""
        while not self.stop_requested.is_set():
            part = self.exited()
            if part is not None:
                return f"{part.name} exited with {part.process.returncode}; see {part.log}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), 0.2)
        return None

    async def stop(self) -> None:
        began = time.monotonic()
        await stop_in_order(self.parts, self.say, self.kill_now)
        for part in self.parts:
            part.process.wait()  # every part is gone by now: this only reaps it
            self.pids.forget(part.name)
        self.say(f"stopped in {time.monotonic() - began:.1f} s")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            # `nohup` (SIGHUP) and a script's background job (SIGINT) start us ignoring a signal:
            # it stays ignored, as it would for any other program.
            if signal.getsignal(signum) is not signal.SIG_IGN:
                loop.add_signal_handler(signum, self.on_signal, signum)
        refusal = await self.take_over()
        if refusal is not None:
            self.say(refusal, error=True)
            return 1
        if self.stop_requested.is_set():
            self.say("stopped (nothing was started)")
            return 0
        self.pids.record("stack", os.getpid(), f"python -m stack {self.command}")
        failure: str | None = None
        try:
            starting = asyncio.create_task(self.start())
            signalled = asyncio.create_task(self.stop_requested.wait())
            await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
            signalled.cancel()
            if not starting.done():
                starting.cancel()
            try:
                await starting
            except asyncio.CancelledError:
                pass
            except PartExited as error:
                failure = str(error)
            except Exception as error:  # noqa: BLE001 - one line for the newcomer; the detail is in the logs
                failure = f"start failed: {type(error).__name__}: {error}"
            else:
                self.say("running; Ctrl-C stops everything")
                failure = await self.watch()
            if failure is not None:
                self.say(failure, error=True)
            await self.stop()
        finally:
            self.pids.forget("stack")
        return 1 if failure else 0


async def seed_demo_services(database_url: str) -> list[str]:
    """Insert the demo services that are not there yet; never overwrite what a renewal changed."""
    from activities.store import Store
    from renewals.dates import rome_today
    from stack.demo import demo_services

    store = await Store.connect(database_url, max_size=2)
    try:
        missing = [
            record
            for record in demo_services(rome_today(datetime.now(UTC)))
            if await store.services.get(record.username) is None
        ]
        await store.services.upsert(missing)
        return [record.username for record in missing]
    finally:
        await store.close()


async def stop_background(settings: Settings) -> int:
    """`make stop`: SIGTERM to the supervisor of this data dir, which stops its parts in order;
    then whatever a killed supervisor's parts left (there should be none)."""
    data_dir = settings.data_dir.resolve()
    pids = PidFiles(data_dir)
    console = Console(data_dir / "stack.log")
    began = time.monotonic()
    supervisor = pids.read("stack")
    stopped_any = False
    if supervisor is not None and supervisor.running():
        console.say(f"stopping the stack on {data_dir} (supervisor pid {supervisor.pid})…")
        os.kill(supervisor.pid, signal.SIGTERM)
        # It stops its parts within SERVERS_BY; killed after that, its parts follow it (the
        # parent-death signal).
        deadline = time.monotonic() + SERVERS_BY + 5
        while supervisor.running() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if supervisor.running():
            console.say(f"the supervisor (pid {supervisor.pid}) did not stop in time; killing it")
            os.kill(supervisor.pid, signal.SIGKILL)
        stopped_any = True
    leftovers = [r for r in pids.running() if r.name != "stack"]
    if leftovers:
        console.say("stopping what is left: " + ", ".join(f"{r.name} (pid {r.pid})" for r in leftovers))
        await stop_in_order(leftovers, console.say)
        for recorded in leftovers:
            pids.forget(recorded.name)
        stopped_any = True
    if stopped_any:
        console.say(f"stopped in {time.monotonic() - began:.1f} s")
    else:
        console.say(f"no stack is running on {data_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=["servers", "run", "stop"])
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(error, file=sys.stderr)
        return 2
    if args.command == "stop":
        return asyncio.run(stop_background(settings))
    return asyncio.run(Supervisor(settings, args.command).run())
