"""The bench's own local stack on a temporary data dir and free ports: PostgreSQL (with
pg_stat_statements, to count round trips), the Temporal dev server (SQLite pragmas chosen per
run), the SMTP sink, the real worker (`python worker.py`) and the floor's worker, each a child
process we can measure (CPU seconds, RSS) and stop."""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil

from stack.database import prepare
from stack.postgres import EmbeddedPostgres, free_port
from stack.temporal import dev_server_command, wait_for_temporal

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "default"


@dataclass
class Child:
    """One process we started, its log, and how to read what it costs."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    # How many times a process of this name has started: its log is appended to, so readiness is
    # the n-th "polling" line.
    starts: int = 1

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _tree(pid: int, *, children: bool = True) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)] if children else [root]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of a process, with its live children for PostgreSQL's backends."""
    total = 0.0
    for process in _tree(pid, children=children):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_bytes(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.NoSuchProcess:
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size of a process tree: PostgreSQL's shared buffers counted once."""
    total = 0
    for process in _tree(pid):
        try:
            total += int(getattr(process.memory_full_info(), "pss", 0))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


@dataclass
class BenchStack:
    """Everything `python -m bench` starts; `stop()` ends exactly what `start()` started."""

    pg_fast: bool = False
    keep: bool = False
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="renewals-bench-")))
    children: dict[str, Child] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None
    database_url: str = ""
    temporal_address: str = ""
    temporal_db: Path | None = None
    sqlite_pragmas: tuple[str, ...] = ()
    smtp_port: int = 0
    _starts: dict[str, int] = field(default_factory=dict)

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    def env(self) -> dict[str, str]:
        """The environment of the worker processes: the same settings `make run` passes."""
        return {
            **os.environ,
            "RENEWALS_DATA_DIR": str(self.root),
            "MAIL_SINK_DIR": str(self.mail_dir),
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": NAMESPACE,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp_port),
        }

    # ------------------------------------------------------------ lifecycle

    async def start(self, sqlite_pragmas: Sequence[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        await self.start_postgres()
        self.start_sink()
        await self.start_temporal(sqlite_pragmas)
        await self.start_workers()

    async def start_postgres(self) -> None:
        port = free_port()
        self.postgres = EmbeddedPostgres(self.root / "postgres", port, fast=self.pg_fast)
        self.postgres.start()
        # pg_stat_statements must be preloaded: set it, then restart once.
        admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        try:
            await admin.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            await admin.execute("ALTER SYSTEM SET pg_stat_statements.track_utility = on")
        finally:
            await admin.close()
        self.postgres.stop()
        self.postgres.start()
        self.database_url = f"postgresql://postgres@127.0.0.1:{port}/renewals"
        await prepare(self.database_url)
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        finally:
            await conn.close()

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Child:
        log = self.root / f"{name}.log"
        output = open(log, "ab")  # noqa: SIM115 - the child owns it from here
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**self.env(), **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output.close()
        self._starts[name] = self._starts.get(name, 0) + 1
        child = Child(name, process, log, self._starts[name])
        self.children[name] = child
        return child

    def start_sink(self) -> None:
        self.smtp_port = free_port()
        self.spawn(
            "smtp-sink",
            [sys.executable, "-m", "stack.smtp_sink", "--port", str(self.smtp_port), "--dir", str(self.mail_dir)],
        )

    async def start_temporal(self, sqlite_pragmas: Sequence[str]) -> None:
        """A fresh dev server on a fresh SQLite file (headless: the engine, not the Web UI)."""
        self.sqlite_pragmas = tuple(sqlite_pragmas)
        self.temporal_address = f"127.0.0.1:{free_port()}"
        label = "wal" if self.sqlite_pragmas else "plain"
        self.temporal_db = self.root / f"temporal-{label}-{int(time.time())}.db"
        self.spawn(
            "temporal",
            dev_server_command(
                self.temporal_address,
                NAMESPACE,
                free_port(),
                self.temporal_db,
                headless=True,
                sqlite_pragmas=self.sqlite_pragmas,
            ),
        )
        await wait_for_temporal(self.temporal_address, NAMESPACE)

    async def start_workers(self) -> None:
        await asyncio.gather(self.start_renewal_worker(), self.start_floor_worker())

    async def start_renewal_worker(self, database_url: str | None = None) -> Child:
        """`python worker.py`, exactly as `make run` starts it (another DATABASE_URL to count round trips)."""
        env = {"DATABASE_URL": database_url} if database_url else None
        return await self._ready(self.spawn("worker", [sys.executable, "worker.py"], env), "worker polling task queue")

    async def start_floor_worker(self) -> Child:
        floor = self.spawn("floor-worker", [sys.executable, "-m", "bench.floor"])
        return await self._ready(floor, "floor worker polling task queue")

    async def replace_renewal_worker(self, database_url: str | None = None) -> Child:
        # In a thread: the counting proxy in front of its PostgreSQL runs on this event loop, and
        # the worker closes its pool through it on the way out.
        await asyncio.to_thread(self.children.pop("worker").stop)
        return await self.start_renewal_worker(database_url)

    async def restart_temporal(self, sqlite_pragmas: Sequence[str]) -> None:
        """Workers and dev server again, on a new SQLite file with other pragmas."""
        for name in ("floor-worker", "worker", "temporal"):
            self.children.pop(name).stop()
        await self.start_temporal(sqlite_pragmas)
        await self.start_workers()

    async def _ready(self, child: Child, needle: str, timeout: float = 60.0) -> Child:
        """Wait for `needle` in what the child wrote to its log (the log may hold an earlier run's)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}; see {child.log}")
            if child.log.read_text(errors="replace").count(needle) >= child.starts:
                return child
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{child.name} did not log {needle!r} in {timeout}s; see {child.log}")

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()
        self.children.clear()
        if self.postgres is not None:
            self.postgres.stop()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ what things cost

    def pid(self, name: str) -> int:
        if name == "postgres":
            assert self.postgres is not None and self.postgres.process is not None
            return self.postgres.process.pid
        if name == "bench":
            return os.getpid()
        return self.children[name].pid

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each part (PostgreSQL: postmaster and its live backends)."""
        names = ["worker", "floor-worker", "temporal", "postgres", "smtp-sink", "bench"]
        return {name: cpu_seconds(self.pid(name), children=name == "postgres") for name in names}

    def temporal_db_bytes(self) -> int:
        assert self.temporal_db is not None
        return sum(
            path.stat().st_size for path in self.temporal_db.parent.glob(self.temporal_db.name + "*") if path.is_file()
        )


def save_results(out: Path, prefix: str, results: dict[str, object], text: str) -> None:
    """`<prefix>-<UTC stamp>.json` and `.md` under `out`, and the markdown on standard output."""
    import json
    from datetime import UTC, datetime

    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"{prefix}-{stamp}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / f"{prefix}-{stamp}.md").write_text(text + "\n")
    print()
    print(text)
