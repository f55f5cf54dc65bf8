"""The local stack's supervisor (`python -m stack run`, what `make run` starts) against signals at
random moments of its life: SIGINT, SIGTERM and SIGHUP stop it, SIGKILL takes its parts with it,
and afterwards no process of the stack is left and every port is free within the worker's graceful
shutdown plus 5 s. A second run over a data dir a killed run left starts cleanly, or refuses in one
line naming the port, its holder and the command that stops it.

"A process of the stack" is told apart from the supervisor's own bookkeeping: any process whose
environment names the run's data dir (the supervisor passes it to every part, and PostgreSQL's
backends inherit it), so a part the pid files missed would still count.

`make test` runs a sample (one signal of each kind); `make stack-signals` the full run of
STACK_SIGNALS (50) SIGINT/SIGTERM/SIGHUP and STACK_KILLS (10) SIGKILL, one line of figures.
"""

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from activities.store import Store
from renewals.records import ServiceRecord
from renewals.signing import signed_headers
from stack.children import WORKER_BY, PidFiles, command_of, die_with_parent, start_time
from stack.ports import port_is_free
from tests.conftest import ROOT, stack_env, today
from worker import GRACEFUL_SHUTDOWN

DOWN_WITHIN = GRACEFUL_SHUTDOWN.total_seconds() + 5
ANSWER_WITHIN = 2.0
STARTUP = 120.0  # a first start on a busy 2-core machine: initdb, the dev server, two Pythons
STARTS = [3.0]  # how long starts took (seconds to "running"), to aim signals inside the next one


# ---------------------------------------------------------------------- observing a stack


def stack_processes(data_dir: Path) -> list[str]:
    """Every live process whose environment names `data_dir` ("pid command"); zombies are dead."""
    needle = f"RENEWALS_DATA_DIR={data_dir}\0".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if proc.name == str(os.getpid()) or (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                continue
            if needle in (proc / "environ").read_bytes():
                found.append(f"{proc.name} {command_of(int(proc.name))}")
        except OSError:
            continue
    return found


def ports_of(env: dict[str, str]) -> list[int]:
    return [
        int(env["DATABASE_URL"].rsplit(":", 1)[1].split("/")[0]),
        int(env["TEMPORAL_ADDRESS"].rsplit(":", 1)[1]),
        int(env["TEMPORAL_UI_PORT"]),
        int(env["SMTP_PORT"]),
        int(env["INGRESS_PORT"]),
        int(env["INGRESS_ADMIN_PORT"]),
    ]


def leftovers(data_dir: Path, env: dict[str, str]) -> list[str]:
    held = [f"port {port} held" for port in ports_of(env) if not port_is_free("127.0.0.1", port)]
    return stack_processes(data_dir) + held


def kill_leftovers(data_dir: Path) -> None:
    """After a failed trial: clear the ground for the next one (the failure is already recorded)."""
    for line in stack_processes(data_dir):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


class Supervisor:
    """`python -m stack <command>` under test, its output collected line by line with the time
    each line arrived."""

    def __init__(self, env: dict[str, str], command: str = "run", *, nohup: bool = False) -> None:
        parent_death = die_with_parent(signal.SIGTERM)

        def prepare() -> None:
            if parent_death is not None:
                parent_death()
            if nohup:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)

        self.process = subprocess.Popen(
            [sys.executable, "-m", "stack", command],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=prepare,
        )
        self.lines: list[tuple[float, str]] = []
        self.changed = threading.Condition()
        self.running = threading.Event()
        self.closed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.changed.notify_all()
            if line.startswith("running;"):
                self.running.set()
        self.closed.set()
        with self.changed:
            self.changed.notify_all()

    def first(self, text: str, since: float, timeout: float) -> float | None:
        """When a line containing `text` arrived after `since`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for at, line in self.lines:
                    if at >= since and text in line:
                        return at
                if self.closed.is_set() or time.monotonic() > deadline:
                    return None
                self.changed.wait(max(0.0, deadline - time.monotonic()))

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self.closed.wait(5)
        return code


# ---------------------------------------------------------------------- renewals while it runs


class RenewalDriver(threading.Thread):
    """Renew, check out and pay fresh services through the signed HTTP API, one after another,
    until the stack goes away; counts the steps that succeeded."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.env = env
        self.base = f"http://127.0.0.1:{env['INGRESS_PORT']}"
        self.steps = 0
        self.progress = threading.Condition()
        self.stop = threading.Event()

    def post(self, client: httpx.Client, path: str, secret: str, event: dict[str, object]) -> dict[str, object]:
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", **signed_headers(secret, "POST", path, body)}
        response = client.post(self.base + path, content=body, headers=headers, timeout=30)
        response.raise_for_status()
        with self.progress:
            self.steps += 1
            self.progress.notify_all()
        answer: dict[str, object] = response.json()
        return answer

    def wait_steps(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.progress:
            while self.steps < count:
                if time.monotonic() > deadline or not self.is_alive():
                    return False
                self.progress.wait(0.2)
            return True

    def run(self) -> None:
        usernames = [f"sig-{uuid.uuid4().hex[:10]}" for _ in range(50)]
        try:
            asyncio.run(self.seed(usernames))
            with httpx.Client() as client:
                for username in usernames:
                    if self.stop.is_set():
                        return
                    self.renew(client, username)
        except (httpx.HTTPError, OSError):
            return  # the stack is going down: that is the point
        except Exception:  # noqa: BLE001 - asyncpg while PostgreSQL stops, and the like
            return

    def renew(self, client: httpx.Client, username: str) -> None:
        panel, payments = "dev-panel-secret", "dev-payments-secret"
        self.post(client, "/panel/events", panel, {"type": "renew_requested", "username": username})
        order = self.post(
            client,
            "/panel/events",
            panel,
            {"type": "checkout_submitted", "username": username, "payment_method": "bank_transfer", "years": 1},
        )
        payment = {
            "type": "payment_registered",
            "order_number": order["order_number"],
            "transaction_id": f"txn-{uuid.uuid4().hex}",
            "amount_cents": order["total_cents"],
            "currency": "EUR",
            "method": "bank_transfer",
            "registered_at": datetime.now(UTC).isoformat(),
        }
        self.post(client, "/payments/events", payments, payment)

    async def seed(self, usernames: list[str]) -> None:
        deadline = time.monotonic() + 60
        while True:  # the ingress is up once /healthz answers 200
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.stop.is_set():
                raise OSError("the ingress never answered")
            await asyncio.sleep(0.1)
        store = await Store.connect(self.env["DATABASE_URL"], max_size=1)
        try:
            records = [
                ServiceRecord.model_validate(
                    {
                        "username": name,
                        "holder_name": "Segnali S.r.l.",
                        "holder_email": f"{name}@example.com",
                        "purchased_on": today() - timedelta(days=300),
                        "expires_on": today() + timedelta(days=60),
                        "auto_renew": False,
                        "storage_quota_mb": 1000,
                        "storage_used_mb": 100,
                    }
                )
                for name in usernames
            ]
            await store.services.upsert(records)
        finally:
            await store.close()


# ---------------------------------------------------------------------- one trial


@dataclass
class Trial:
    signal: str
    moment: str  # where it landed: "start", "idle", "renewals", or "exec" (before Python ran our code)
    answered_s: float | None  # signal → "stopping…" (or "stopped" when nothing had started)
    down_s: float  # signal → no process of the stack, every port free
    left: list[str] = field(default_factory=list)
    renewal_steps: int = 0


def trial(data_dir: Path, env: dict[str, str], signum: signal.Signals, moment: str, rng: random.Random) -> Trial:
    """Start the supervisor, send `signum` at a random instant of `moment`, measure the stop."""
    began = time.monotonic()
    supervisor = Supervisor(env)
    driver: RenewalDriver | None = None
    landed = moment
    if moment == "start":
        # A random instant of the start (as long as the last one took); it may turn out to be after.
        supervisor.running.wait(rng.uniform(0, STARTS[-1]))
        landed = "idle" if supervisor.running.is_set() else "start"
    else:
        assert supervisor.running.wait(STARTUP), supervisor.output
        STARTS.append(time.monotonic() - began)
        if moment == "renewals":
            driver = RenewalDriver(env)
            driver.start()
            assert driver.wait_steps(3, 90), f"no renewal got going\n{supervisor.output}"
        supervisor.closed.wait(rng.uniform(0, 3))  # a random instant; the supervisor must not exit
        assert not supervisor.closed.is_set(), supervisor.output
    sent = time.monotonic()
    supervisor.process.send_signal(signum)
    answered = None
    if signum != signal.SIGKILL:
        seen = supervisor.first("stopp", sent, ANSWER_WITHIN + 10)
        answered = None if seen is None else seen - sent
    deadline = sent + DOWN_WITHIN
    while leftovers(data_dir, env) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling with a deadline
    down = time.monotonic() - sent
    left = leftovers(data_dir, env)
    if driver is not None:
        driver.stop.set()
    code = supervisor.finish(10)
    if signum != signal.SIGKILL and answered is None and code == -signum and not supervisor.lines:
        # It landed before the interpreter ran our first line: the signal's default action ended
        # a process that had started nothing (the leftover check above still applies).
        landed = "exec"
    if left:
        kill_leftovers(data_dir)
    steps = driver.steps if driver is not None else 0
    return Trial(signum.name, landed, answered, down, left, steps)


def signal_run(base: Path, plan: list[tuple[signal.Signals, str]], rng: random.Random, per_dir: int) -> list[Trial]:
    """The trials in order; a fresh data dir every `per_dir` trials, so starts include initdb."""
    trials = []
    env: dict[str, str] = {}
    data_dir = base
    for index, (signum, moment) in enumerate(plan):
        if index % per_dir == 0:
            data_dir = base / f"var{index // per_dir}"
            env = stack_env(data_dir)
        trials.append(trial(data_dir, env, signum, moment, rng))
        last = trials[-1]
        print(
            f"  {index + 1:2}/{len(plan)} {last.signal:7} {last.moment:8} answered "
            f"{'-' if last.answered_s is None else f'{last.answered_s:.2f} s'} down {last.down_s:.1f} s"
            f" steps {last.renewal_steps} left {len(last.left)}",
            flush=True,
        )
    return trials


def figures(trials: list[Trial]) -> str:
    by_kind: dict[str, int] = {}
    by_moment: dict[str, int] = {}
    for t in trials:
        by_kind[t.signal] = by_kind.get(t.signal, 0) + 1
        by_moment[t.moment] = by_moment.get(t.moment, 0) + 1
    answers = [t.answered_s for t in trials if t.answered_s is not None]
    return (
        f"signals {len(trials)} {dict(sorted(by_kind.items()))} at {dict(sorted(by_moment.items()))}; "
        f"answered max {max(answers, default=0):.2f} s; down max {max(t.down_s for t in trials):.1f} s "
        f"(limit {DOWN_WITHIN:g} s); leftovers {sum(len(t.left) for t in trials)}"
    )


def check(trials: list[Trial]) -> None:
    for t in trials:
        assert not t.left, f"{t}: left behind {t.left}"
        assert t.down_s <= DOWN_WITHIN, t
        if t.signal != "SIGKILL" and t.moment != "exec":
            assert t.answered_s is not None and t.answered_s <= ANSWER_WITHIN, t


def plan_of(rng: random.Random, signals: int, kills: int) -> list[tuple[signal.Signals, str]]:
    moments = ("start", "idle", "renewals")
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    plan = [(stops[i % 3], moments[(i // 3) % 3]) for i in range(signals)]
    plan += [(signal.SIGKILL, moments[i % 3]) for i in range(kills)]
    rng.shuffle(plan)
    return plan


def test_worker_grace_is_the_supervisors_apps_limit():
    assert WORKER_BY == GRACEFUL_SHUTDOWN.total_seconds()


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory for data dirs outside /tmp/pytest-of-<user>: a pytest session starting
    meanwhile makes that private, and PostgreSQL runs as another user when we are root."""
    path = Path(tempfile.mkdtemp(prefix="renewals-stack-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_signals_sample_leave_nothing_behind(base):
    """One SIGINT, SIGTERM, SIGHUP and SIGKILL, each at a random moment of a different phase."""
    seed = int(os.environ.get("STACK_SIGNALS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    moments = ["start", "idle", "renewals", rng.choice(["start", "idle", "renewals"])]
    rng.shuffle(moments)
    kinds = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]
    trials = signal_run(base, list(zip(kinds, moments, strict=True)), rng, per_dir=4)
    print(f"seed {seed}: {figures(trials)}")
    check(trials)


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_fifty_signals_and_ten_kills_leave_nothing_behind(base):
    seed = int(os.environ.get("STACK_SIGNALS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    signals, kills = int(os.environ.get("STACK_SIGNALS", "50")), int(os.environ.get("STACK_KILLS", "10"))
    trials = signal_run(base, plan_of(rng, signals, kills), rng, per_dir=10)
    print(f"seed {seed}: {figures(trials)}")
    check(trials)


# ---------------------------------------------------------------------- a second run


def test_second_run_after_sigkill_starts_cleanly_stops_leftovers_or_refuses_in_one_line(base):
    data_dir = base / "var"
    env = stack_env(data_dir)
    first = Supervisor(env)
    assert first.running.wait(STARTUP), first.output
    first.process.send_signal(signal.SIGKILL)
    first.finish()

    # 1. Straight after the kill (its parts may still be on their way out): a clean start.
    second = Supervisor(env)
    assert second.running.wait(STARTUP), second.output
    assert "Traceback" not in second.output
    second.process.send_signal(signal.SIGTERM)
    assert second.finish() == 0 and not leftovers(data_dir, env), second.output

    # 2. A part an older run left running (recorded in its pid file) is stopped, then a clean start.
    sink = subprocess.Popen(
        [sys.executable, "-m", "stack.smtp_sink", "--port", env["SMTP_PORT"], "--dir", str(data_dir / "mail")],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while port_is_free("127.0.0.1", int(env["SMTP_PORT"])) and time.monotonic() < deadline:
        time.sleep(0.05)
    PidFiles(data_dir).record("smtp-sink", sink.pid, "python -m stack.smtp_sink")
    third = Supervisor(env)
    assert third.running.wait(STARTUP), third.output
    assert f"left running: smtp-sink (pid {sink.pid})" in third.output
    assert sink.wait(10) is not None

    # 3. `make stop` stops a stack running in the background of the same data dir.
    stop = subprocess.run(
        [sys.executable, "-m", "stack", "stop"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=DOWN_WITHIN + 10,
    )
    assert stop.returncode == 0 and "stopped in" in stop.stdout, stop.stdout + stop.stderr
    assert third.finish(10) == 0 and not leftovers(data_dir, env), third.output

    # 4. A port held by something that is not ours: one line naming it, its holder and the cure.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_PORT, env["TEMPORAL_ADDRESS"].rsplit(":", 1)[1]],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent(signal.SIGKILL),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "listening"
        refused = Supervisor(env)
        assert refused.finish() == 1
        port = env["TEMPORAL_ADDRESS"].rsplit(":", 1)[1]
        lines = refused.output.splitlines()
        assert len(lines) == 1, refused.output
        assert lines[0].startswith(f"port {port} (Temporal gRPC) is in use by pid {holder.pid} ({sys.executable} -c")
        assert lines[0].endswith(f"; stop it with `kill {holder.pid}`, or move the stack with TEMPORAL_ADDRESS")
        assert not stack_processes(data_dir)
    finally:
        holder.kill()
        holder.wait()


HOLD_PORT = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print("listening", flush=True)
time.sleep(600)
"""


def test_stop_with_nothing_running_says_so(tmp_path):
    env = stack_env(tmp_path / "var")
    done = subprocess.run(
        [sys.executable, "-m", "stack", "stop"], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0 and "no stack is running on" in done.stdout


# ---------------------------------------------------------------------- servers the tests start

KILLED_TEST_RUN = """
import os, subprocess, sys
from pathlib import Path
from stack.guardian import guard
from stack.postgres import EmbeddedPostgres, free_port

postgres = EmbeddedPostgres(Path(sys.argv[1]), free_port(), fast=True)
postgres.start()
# As the SDK starts its dev server: a child that was not asked to die with us.
stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
guard([stranger.pid])
print(postgres.process.pid, postgres.port, stranger.pid, flush=True)
sys.stdin.read()
"""


def test_a_killed_test_run_leaves_neither_its_postgres_nor_a_guarded_server(base):
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_TEST_RUN, str(base / "pg")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert run.stdout is not None
    postmaster, port, stranger = map(int, run.stdout.readline().split())
    started = {pid: start_time(pid) for pid in (postmaster, stranger)}
    assert all(started.values()) and not port_is_free("127.0.0.1", port)
    run.kill()
    run.wait()
    deadline = time.monotonic() + DOWN_WITHIN
    while time.monotonic() < deadline and (
        any(start_time(pid) == begun for pid, begun in started.items()) or not port_is_free("127.0.0.1", port)
    ):
        time.sleep(0.05)  # polling with a deadline
    assert not any(start_time(pid) == begun for pid, begun in started.items())
    assert port_is_free("127.0.0.1", port)


def test_closing_the_terminal_stops_the_stack(base):
    """SIGHUP after the terminal is gone: writing "stopping…" fails (EIO), the stop goes on."""
    data_dir = base / "var"
    env = stack_env(data_dir)
    terminal, line = os.openpty()
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "stack", "run"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=line,
        stderr=line,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )
    os.close(line)
    seen = b""
    deadline = time.monotonic() + STARTUP
    while b"running;" not in seen and time.monotonic() < deadline:
        seen += os.read(terminal, 4096)  # blocks until the supervisor writes
    assert b"running;" in seen, seen.decode()
    os.close(terminal)  # the terminal window closes ...
    supervisor.send_signal(signal.SIGHUP)  # ... and the kernel hangs up on its session
    assert supervisor.wait(DOWN_WITHIN) == 0
    deadline = time.monotonic() + 5
    while leftovers(data_dir, env) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling with a deadline
    assert not leftovers(data_dir, env)
    log = (data_dir / "stack.log").read_text()
    assert "stopping… (SIGHUP" in log and "stopped in" in log


def test_under_nohup_a_hangup_is_ignored_and_sigterm_still_stops_it(base):
    data_dir = base / "var"
    env = stack_env(data_dir)
    supervisor = Supervisor(env, nohup=True)
    assert supervisor.running.wait(STARTUP), supervisor.output
    sent = time.monotonic()
    supervisor.process.send_signal(signal.SIGHUP)
    assert supervisor.first("stopp", sent, 3) is None and supervisor.process.poll() is None
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.finish(DOWN_WITHIN) == 0
    assert "stopping… (SIGTERM" in supervisor.output and not leftovers(data_dir, env)
