"""A process that dies with its parent and takes the given processes with it.

For servers we did not start ourselves, where no preexec_fn of ours could ask for a parent-death
signal: the Temporal dev server the SDK starts for the tests' `env` fixture. `guard(pids)` starts
`python -m stack.guardian PID...`; when the starter dies (or the guardian is terminated), it stops
those processes as the supervisor stops its servers (SIGTERM, SIGKILL at the deadline) — if they
are still the processes it was given.
"""

import asyncio
import signal
import subprocess
import sys

from stack.children import Recorded, die_with_parent, start_time, stop_in_order

_WAKE = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def guard(pids: list[int]) -> subprocess.Popen[bytes]:
    parent_death = die_with_parent(signal.SIGTERM)

    def prepare() -> None:
        # Blocked before exec, so a parent-death signal that comes early waits for sigwait below.
        signal.pthread_sigmask(signal.SIG_BLOCK, _WAKE)
        if parent_death is not None:
            parent_death()

    return subprocess.Popen(
        [sys.executable, "-m", "stack.guardian", *map(str, pids)],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=prepare,
    )


def main() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAKE)
    targets = [Recorded("guarded", pid, start_time(pid), "") for pid in map(int, sys.argv[1:])]
    signal.sigwait(_WAKE)

    def say(line: str) -> None:
        print(f"guardian: {line}", file=sys.stderr, flush=True)

    # A name of no part: stopped in the servers' phase (SIGTERM, SIGKILL at its deadline).
    asyncio.run(stop_in_order(targets, say))


if __name__ == "__main__":
    main()
