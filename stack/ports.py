"""Which ports the stack needs are free, and who holds the ones that are not.

Free means we could bind it ourselves. The holder is found the way `ss -ltnp` finds it on Linux:
the listening socket's inode in /proc/net/tcp{,6}, then the process with that socket among its
open files in /proc/*/fd (another user's processes are visible to root only).
"""

import socket
from dataclasses import dataclass
from pathlib import Path

from stack.children import command_of, parent_of

_LISTEN = "0A"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "held"
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port and inode != "0":
                inodes.add(inode)
    return inodes


def holder_of(port: int) -> int | None:
    """The pid of a process listening on `port`, if this user can see it."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not sockets:
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                if fd.readlink().as_posix() in sockets:
                    return int(fd_dir.parent.name)
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return None


def supervisor_of(pid: int) -> int | None:
    """The `python -m stack` supervisor a process was started by, if it still runs."""
    current = parent_of(pid)
    while current and current > 1:
        if " -m stack " in f" {command_of(current, 10_000)} ":
            return current
        current = parent_of(current)
    return None


@dataclass(frozen=True)
class Port:
    number: int
    host: str
    what: str  # "temporal gRPC", and which variable moves it
    variable: str

    def refusal(self) -> str:
        """One line: the port, who holds it, and how to free it."""
        pid = holder_of(self.number)
        if pid is None:
            return (
                f"port {self.number} ({self.what}) is in use by a process this user cannot see "
                f"(`ss -ltnp 'sport = :{self.number}'` names it); stop it, or move the stack with {self.variable}"
            )
        supervisor = supervisor_of(pid)
        held = f"port {self.number} ({self.what}) is in use by pid {pid} ({command_of(pid)})"
        if supervisor is not None:
            return (
                f"{held}, part of the stack supervised by pid {supervisor}; stop that stack with "
                f"`kill {supervisor}`, or move this one with {self.variable}"
            )
        return f"{held}; stop it with `kill {pid}`, or move the stack with {self.variable}"
