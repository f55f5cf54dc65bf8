"""An SMTP sink on loopback (aiosmtpd): every message it accepts is saved as one `.eml` file.

Files are named by arrival, not by Message-ID, so a doubled email shows up as two files.
Run alone with `python -m stack.smtp_sink --port 2525 --dir var/mail`.
"""

import argparse
import itertools
import os
import signal
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class SaveToFolder:
    """aiosmtpd handler: write each accepted message atomically under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count()
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self._lock:
            name = f"{time.time_ns()}-{os.getpid()}-{next(self._counter):06d}.eml"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(content)
        temporary.rename(self.directory / name)
        return "250 Message accepted for delivery"


def start_sink(directory: Path, host: str = "127.0.0.1", port: int = 2525) -> Controller:
    """Start the sink in a background thread; `controller.stop()` ends it."""
    controller = Controller(SaveToFolder(directory), hostname=host, port=port)
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    controller = start_sink(args.dir, args.host, args.port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"SMTP sink on {args.host}:{args.port}, saving to {args.dir}", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
