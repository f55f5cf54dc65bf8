"""`python -m stack servers` (make servers) and `python -m stack run` (make run).

Starts each part as its own process, prints where everything is, and on Ctrl-C / SIGTERM stops
the children in reverse order. State stays under RENEWALS_DATA_DIR between starts.
"""

import argparse
import asyncio
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime

from activities.store import Store
from renewals.config import Settings, load_settings
from renewals.dates import rome_today
from stack.database import prepare
from stack.demo import demo_services
from stack.postgres import EmbeddedPostgres
from stack.temporal import dev_server_command, wait_for_temporal


async def seed_demo_services(database_url: str) -> list[str]:
    """Insert the demo services that are not there yet; never overwrite what a renewal changed."""
    store = await Store.connect(database_url, max_size=2)
    try:
        missing = [
            record
            for record in demo_services(rome_today(datetime.now(UTC)))
            if await store.get_service(record.username) is None
        ]
        await store.upsert_services(missing)
        return [record.username for record in missing]
    finally:
        await store.close()


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.postgres = EmbeddedPostgres.for_url(settings.database_url, self.data_dir / "postgres")
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = threading.Event()

    def spawn(self, name: str, command: list[str], *, log: bool = True) -> None:
        output = open(self.data_dir / f"{name}.log", "ab") if log else None  # noqa: SIM115
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the children in order.
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        self.children.append((name, process))

    def start_servers(self) -> None:
        settings = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        applied = asyncio.run(prepare(settings.database_url))
        print(f"postgres   {settings.database_url}  (migrations applied now: {applied or 'none'})")
        self.spawn(
            "temporal",
            dev_server_command(
                settings.temporal_address,
                settings.temporal_namespace,
                settings.temporal_ui_port,
                self.data_dir / "temporal.db",
            ),
        )
        self.spawn(
            "smtp-sink",
            [
                sys.executable,
                "-m",
                "stack.smtp_sink",
                "--host",
                settings.smtp_host,
                "--port",
                str(settings.smtp_port),
                "--dir",
                str(settings.mail_sink_dir),
            ],
        )
        asyncio.run(self._wait_temporal())
        print(f"temporal   {settings.temporal_address}  namespace {settings.temporal_namespace}")
        print(f"web UI     http://127.0.0.1:{settings.temporal_ui_port}")
        print(f"smtp sink  {settings.smtp_host}:{settings.smtp_port} → {settings.mail_sink_dir.resolve()}")

    async def _wait_temporal(self) -> None:
        await wait_for_temporal(self.settings.temporal_address, self.settings.temporal_namespace)

    def start_apps(self) -> None:
        seeded = asyncio.run(seed_demo_services(self.settings.database_url))
        print(f"demo data  services seeded now: {', '.join(seeded) or 'none (kept from last run)'}")
        self.spawn("worker", [sys.executable, "worker.py"])
        self.spawn("ingress", [sys.executable, "starter.py", "serve"])
        print(f"ingress    http://127.0.0.1:{self.settings.ingress_port}")
        print(f"admin      http://127.0.0.1:{self.settings.ingress_admin_port}/docs  (OpenAPI; /metrics)")
        print(f"logs       {self.data_dir}/*.log")

    def watch(self) -> int:
        """Block until a signal or a child's exit, then stop everything."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.stopping.set())
        print("running; Ctrl-C stops everything", flush=True)
        failed = ""
        while not self.stopping.wait(0.5):
            for name, process in self.children:
                if process.poll() is not None:
                    failed = f"{name} exited with {process.returncode}; see {self.data_dir}/{name}.log"
                    self.stopping.set()
            if self.postgres.process and self.postgres.process.poll() is not None:
                failed = f"postgres exited; see {self.postgres.data_dir}.log"
                self.stopping.set()
        self.stop()
        if failed:
            print(failed, file=sys.stderr)
            return 1
        return 0

    def stop(self) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop in 30 s; killing it", file=sys.stderr)
                    process.kill()
                    process.wait()
        self.postgres.stop()
        print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=["servers", "run"])
    args = parser.parse_args(argv)
    supervisor = Supervisor(load_settings())
    try:
        supervisor.start_servers()
        if args.command == "run":
            supervisor.start_apps()
    except BaseException:
        supervisor.stop()
        raise
    return supervisor.watch()


if __name__ == "__main__":
    sys.exit(main())
