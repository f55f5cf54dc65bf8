"""Processes of the local stack: each dies with whoever started it, each leaves a pid file under
the data dir, and a later run (or `make stop`) finds by those files what an earlier one left.

A pid file holds the process's start time as well as its pid, so a pid the kernel has since
given to some other program is never taken for ours (Linux; elsewhere the pid alone).
"""

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to send `signum` to the child when its parent dies, however it
    dies (SIGKILL included), or None where that cannot be had.

    Linux keeps the setting across exec and after `Popen(user=...)`, which drops privileges
    before calling preexec_fn (a change of credentials after prctl would clear it). It follows the
    thread that forked, not the process: only the main thread's children get it, since a
    short-lived thread's exit would otherwise kill them.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody will tell us
            os.kill(os.getpid(), signum)

    return set_parent_death_signal


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None if it is not running
    (a zombie is not running) or there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and brackets
    return None if fields[0] in ("Z", "X") else fields[19]


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        child = int(stat.parent.name)
        if parent_of(child) == pid:
            found.append(child)
    return found


def command_of(pid: int, limit: int = 100) -> str:
    """The command line of a process, shortened for a one-line message."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    # Newlines and runs of blanks (`python -c "..."`) folded, so the message stays one line.
    text = " ".join(raw.replace(b"\0", b" ").decode(errors="replace").split()) or "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _has_proc() -> bool:
    return Path("/proc/self/stat").exists()


@dataclass(frozen=True)
class Recorded:
    """What a pid file says: which part, which process, and the command it ran."""

    name: str
    pid: int
    started: str | None
    command: str

    def running(self) -> bool:
        if _has_proc():
            return self.started is not None and start_time(self.pid) == self.started
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class PidFiles:
    """`<data dir>/pids/<name>.pid`, one per running part plus `stack.pid` for the supervisor."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "pids"

    def record(self, name: str, pid: int, command: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        content = json.dumps({"pid": pid, "started": start_time(pid), "command": command})
        temporary = self.directory / f".{name}.pid.tmp"
        temporary.write_text(content + "\n")
        temporary.replace(self.directory / f"{name}.pid")

    def forget(self, name: str) -> None:
        (self.directory / f"{name}.pid").unlink(missing_ok=True)

    def read(self, name: str) -> Recorded | None:
        try:
            data = json.loads((self.directory / f"{name}.pid").read_text())
            return Recorded(name, int(data["pid"]), data.get("started"), str(data.get("command", "?")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def running(self) -> list[Recorded]:
        """Every recorded process still running; files of processes long gone are removed."""
        found = []
        for path in sorted(self.directory.glob("*.pid")):
            recorded = self.read(path.stem)
            if recorded is not None and recorded.running():
                found.append(recorded)
            else:
                path.unlink(missing_ok=True)
        return found


def spawn(
    command: list[str],
    *,
    log: Path | None,
    death_signal: int = signal.SIGTERM,
    user: int | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start one part in a session of its own (a terminal's Ctrl-C reaches only the supervisor,
    which stops the parts in order), dying with us if we are killed."""
    output = open(log, "ab") if log else None  # noqa: SIM115 - the child keeps it; we close our copy
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
            preexec_fn=die_with_parent(death_signal),
            user=user,
            env=env,
            cwd=cwd,
        )
    finally:
        if output:
            output.close()


# The stop order, and by when (seconds after the stop began) each phase must be down before
# SIGKILL; docs/local-stack.md. The ingress goes first, while the worker still runs, so requests in
# flight (an update waits for the worker) can finish; then the worker, until its graceful
# shutdown is up; then the servers. Everything is down 34 s after the signal at the latest.
INGRESS_BY = 5.0
WORKER_BY = 30.0  # worker.GRACEFUL_SHUTDOWN: running activities may finish
SERVERS_BY = WORKER_BY + 4.0
STOP_PHASES: tuple[tuple[frozenset[str], float], ...] = (
    (frozenset({"ingress"}), INGRESS_BY),
    (frozenset({"worker"}), WORKER_BY),
    (frozenset({"smtp-sink", "temporal", "postgres", "initdb"}), SERVERS_BY),
)


def _phase(name: str) -> int:
    return next((i for i, (names, _) in enumerate(STOP_PHASES) if name in names), len(STOP_PHASES) - 1)


def stop_signal(name: str) -> int:
    """PostgreSQL's fast shutdown is SIGINT (its SIGTERM waits for every client to leave)."""
    return signal.SIGINT if name == "postgres" else signal.SIGTERM


def death_signal(name: str) -> int:
    """What a part gets when the supervisor is killed outright. Nobody is left to escalate, so
    the apps, which may wait on each other (an ingress request on the worker), are killed; the
    servers get their own clean and quick stop."""
    return signal.SIGKILL if name in ("ingress", "worker") else stop_signal(name)


class Stoppable(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def pid(self) -> int: ...

    def running(self) -> bool: ...


def _send(part: Stoppable, signum: int) -> None:
    try:
        os.kill(part.pid, signum)
    except ProcessLookupError:
        pass


async def stop_in_order(
    parts: Sequence[Stoppable], say: Callable[[str], None], kill_now: asyncio.Event | None = None
) -> None:
    """Stop `parts` phase by phase (STOP_PHASES), each part with its own signal, SIGKILL for what
    is still up at its phase's deadline, or at once for everything once `kill_now` is set."""
    kill_now = kill_now or asyncio.Event()
    began = time.monotonic()
    for index, (_, by) in enumerate(STOP_PHASES):
        alive = [p for p in parts if _phase(p.name) == index and p.running()]
        if not kill_now.is_set():
            for part in alive:
                _send(part, stop_signal(part.name))
            while any(p.running() for p in alive) and time.monotonic() < began + by and not kill_now.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(kill_now.wait(), 0.05)
        for part in alive:
            if part.running():
                if not kill_now.is_set():
                    say(f"{part.name} (pid {part.pid}) still up {by:g} s after the stop began; killing it")
                _send(part, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(p.running() for p in alive) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
