"""`python -m bench` (`make bench`): how fast renewals flow, how close to the engine's own limit,
how far they scale — on a local stack of its own, in one process tree.

Phases, in order: warm-up and history counts (renewal against floor, event type by event type);
PostgreSQL round trips per renewal, counted on the wire (bench/pgwire.py) with a worker started for
it; the sweep (engine floor, then renewals, at each concurrency); half the peak throughput offered
open loop; the worker profiled with py-spy at the best concurrency; N renewals parked awaiting
payment, then all paid; the dev server on SQLite with and without WAL, each on a fresh server.
Results go to bench/results/ (JSON, markdown, PNG, profile) and the tables to stdout.

Full run for docs/benchmark.md (quiet machine): `make bench BENCH_ARGS='--pending 10000'`.
"""

import argparse
import asyncio
import os
import platform
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from activities.store import Store
from bench import profile, report
from bench.drive import Driver, Run, closed_loop, history_counts, open_loop, park_all, pay_all
from bench.pgwire import WireCounter
from bench.stack import ROOT, BenchStack, pss_bytes, rss_bytes
from renewals import workflow_id
from settings import load_settings
from stack.temporal import SQLITE_PRAGMAS
from worker import connect

RESULTS = ROOT / "bench" / "results"
SQLITE_VARIANTS: dict[str, tuple[str, ...]] = {"wal": SQLITE_PRAGMAS, "plain": ()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="1,8,32,128", help="concurrency levels of the sweep")
    parser.add_argument(
        "--renewals",
        type=int,
        default=48,
        help="renewals (and floor workflows) per level, at least 16 × the concurrency (each in two halves, "
        "each half stopping after half of --level-seconds)",
    )
    parser.add_argument(
        "--level-seconds", type=float, default=60.0, help="stop starting new ones in a level after this long"
    )
    parser.add_argument(
        "--count-renewals",
        type=int,
        default=10,
        help="renewals run one at a time to count PostgreSQL round trips (0 skips)",
    )
    parser.add_argument(
        "--half-peak-seconds",
        type=float,
        default=30.0,
        help="length of the open-loop run at half the peak renewals/s (0 skips it)",
    )
    parser.add_argument("--pending", type=int, default=2000, help="renewals parked awaiting payment (0 skips)")
    parser.add_argument("--pending-concurrency", type=int, default=32)
    parser.add_argument("--sqlite", default="wal,plain", help="dev server SQLite variants to compare ('' skips)")
    parser.add_argument("--sqlite-renewals", type=int, default=40)
    parser.add_argument("--sqlite-concurrency", type=int, default=8)
    parser.add_argument("--sqlite-seconds", type=float, default=45.0)
    parser.add_argument(
        "--profile-seconds", type=float, default=30.0, help="py-spy on the worker at the best concurrency (0 skips)"
    )
    parser.add_argument("--pg-fast", action="store_true", help="PostgreSQL with fsync off (the tests' setting)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir and its logs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    unknown = {label.strip() for label in args.sqlite.split(",") if label.strip()} - set(SQLITE_VARIANTS)
    if unknown:
        parser.error(f"--sqlite takes {', '.join(SQLITE_VARIANTS)}; got {', '.join(sorted(unknown))}")
    return args


def shown(path: Path) -> str:
    """A results path as docs/benchmark.md would quote it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# ---------------------------------------------------------------------- what a phase costs


class Sampler(threading.Thread):
    """RSS of the processes we care about every half second; the peak since the last `reset`."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peaks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.5):
            for name, pid in list(self.pids.items()):
                value = rss_bytes(pid)
                with self._lock:
                    self.peaks[name] = max(self.peaks.get(name, 0), value)

    def reset(self) -> dict[str, int]:
        with self._lock:
            peaks, self.peaks = self.peaks, {}
        return peaks

    def stop(self) -> None:
        self._stop_event.set()


@dataclass
class Tally:
    """Stretches of load of one kind, measured apart and summed: their runs, the CPU seconds each
    process spent during them, the peak RSS."""

    runs: list[Run] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)

    async def measure(self, stack: BenchStack, sampler: Sampler, work: Awaitable[Run]) -> None:
        sampler.reset()
        before = stack.cpu()
        run = await work
        after = stack.cpu()
        self.runs.append(run)
        for name in after:
            self.cpu[name] = self.cpu.get(name, 0.0) + after[name] - before[name]
        for name, value in sampler.reset().items():
            self.rss[name] = max(self.rss.get(name, 0), value)

    def summary(self, concurrency: int | None = None, per: str = "renewal") -> dict[str, Any]:
        """One summary of all the stretches; `per_second` is their steady rates combined (all
        completions over the time each stretch took to make its own at its steady rate)."""
        merged = Run([outcome for run in self.runs for outcome in run.outcomes], sum(run.seconds for run in self.runs))
        summary = report.run_summary(merged)
        if concurrency:
            parts = [(len(run.ok), run.steady_per_second(concurrency)) for run in self.runs]
            busy = sum(done / rate for done, rate in parts if rate > 0)
            summary["per_second"] = round(sum(done for done, _ in parts) / busy, 3) if busy else 0.0
        done = max(summary["completed"], 1)
        summary["cpu_seconds"] = {name: round(value, 3) for name, value in self.cpu.items()}
        summary[f"cpu_ms_per_{per}"] = {name: round(1000 * value / done, 1) for name, value in self.cpu.items()}
        summary["cpu_busy_of_machine"] = round(
            sum(self.cpu.values()) / max(merged.seconds, 1e-9) / (os.cpu_count() or 1), 3
        )
        summary["rss_peak_bytes"] = dict(self.rss)
        return summary


async def measured(
    stack: BenchStack, sampler: Sampler, work: Awaitable[Run], concurrency: int | None = None, per: str = "renewal"
) -> dict[str, Any]:
    """A run with its CPU seconds per process (per completed workflow) and peak RSS; the steady
    rate of a closed loop when its concurrency is given."""
    tally = Tally()
    await tally.measure(stack, sampler, work)
    return tally.summary(concurrency, per)


async def statements_run(url: str) -> dict[str, int]:
    """pg_stat_statements of our database: calls by normalised statement."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT query, calls FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    finally:
        await conn.close()
    return {row["query"]: int(row["calls"]) for row in rows}


async def reset_statements(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


def statement_counts(statements: dict[str, int], renewals: int) -> dict[str, Any]:
    """Statements per renewal from pg_stat_statements. asyncpg's pool reset on release is one
    simple query of four statements (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`); explicit transactions are the COMMITs, every other statement commits alone."""
    ours = {query: calls for query, calls in statements.items() if "pg_stat_statements" not in query}
    per = max(renewals, 1)

    def calls(match: Callable[[str], bool]) -> int:
        return sum(count for query, count in ours.items() if match(query.strip().rstrip(";").upper()))

    top = sorted(ours.items(), key=lambda item: -item[1])
    return {
        "statements_per_renewal": round(sum(ours.values()) / per, 2),
        "pool_resets_per_renewal": round(calls(lambda q: "PG_ADVISORY_UNLOCK_ALL" in q) / per, 2),
        "transactions_per_renewal": round(calls(lambda q: q == "COMMIT") / per, 2),
        "statements": [
            {"per_renewal": round(count / per, 2), "query": " ".join(query.split())[:160]} for query, count in top
        ],
    }


def machine_meta(args: argparse.Namespace, pragmas: tuple[str, ...]) -> dict[str, Any]:
    def git(*command: str) -> str:
        found = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, check=False)
        return found.stdout.strip()

    return {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "loadavg_start": " ".join(f"{value:.2f}" for value in os.getloadavg()),
        "python": platform.python_version(),
        # Without .pyc files the sandbox compiles the workflow module's source for every new instance.
        "python_dont_write_bytecode": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "sqlite_pragmas": list(pragmas),
        "pg_fast": args.pg_fast,
        "arguments": {key: str(value) for key, value in vars(args).items()},
    }


# ---------------------------------------------------------------------- the phases


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stack = BenchStack(pg_fast=args.pg_fast, keep=args.keep)
        self.results: dict[str, Any] = {}
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.args.out.mkdir(parents=True, exist_ok=True)

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    async def connect(self) -> None:
        settings = load_settings(TEMPORAL_ADDRESS=self.stack.temporal_address, DATABASE_URL=self.stack.database_url)
        self.settings = settings
        self.client = await connect(settings)
        # As `starter.py serve` builds the ingress's store.
        self.store = await Store.connect(settings.database_url)
        self.driver = Driver(self.client, self.store, settings.policy(), settings.temporal_task_queue)
        self.sampler = Sampler(
            {
                "worker": self.stack.pid("worker"),
                "floor-worker": self.stack.pid("floor-worker"),
                "temporal": self.stack.pid("temporal"),
            }
        )
        self.sampler.start()

    async def disconnect(self) -> None:
        self.sampler.stop()
        await self.store.close()

    async def names(self, kind: str, label: str, count: int) -> list[str]:
        """Fresh usernames; for renewals, their services seeded (not timed)."""
        names = self.driver.usernames(label, count)
        if kind == "renewal":
            await self.driver.seed(names)
        return names

    async def level(self, kind: str, concurrency: int, count: int, max_seconds: float | None) -> dict[str, Any]:
        names = await self.names(kind, kind[:1] + str(concurrency), count)
        work = self.driver.renewal if kind == "renewal" else self.driver.floor
        summary = await measured(
            self.stack, self.sampler, closed_loop(work, names, concurrency, max_seconds), concurrency
        )
        summary["concurrency"] = concurrency
        return summary

    async def warm_up(self) -> None:
        self.say("warm-up: 4 floor workflows and 4 renewals (sandbox imports, pools, caches)")
        renewals = await self.level("renewal", 2, 4, None)
        floors = await self.level("floor", 2, 4, None)
        for name, run in (("renewal", renewals), ("floor", floors)):
            if run["failed"]:
                raise SystemExit(f"warm-up {name} failed: {run['errors']}; logs in {self.stack.root}")
        self.results["worker_rss_warm"] = rss_bytes(self.stack.pid("worker"))

    async def histories(self) -> dict[str, Any]:
        names = self.driver.usernames("hist", 3)
        await self.driver.seed(names)
        await closed_loop(self.driver.renewal, names, 1)
        await closed_loop(self.driver.floor, names, 1)
        renewal = await history_counts(self.client, [workflow_id(name) for name in names])
        floor = await history_counts(self.client, [f"floor-{name}" for name in names])
        # Workflow tasks vary with timing (an update landing during an activity shares its task or
        # not); every other event is a command or its outcome and must match.
        differs = {
            kind: {"renewal": renewal["by_type"].get(kind, 0), "floor": floor["by_type"].get(kind, 0)}
            for kind in sorted(set(renewal["by_type"]) | set(floor["by_type"]))
            if not kind.startswith("WORKFLOW_TASK_")
            and renewal["by_type"].get(kind, 0) != floor["by_type"].get(kind, 0)
        }
        if differs:
            self.say(f"note: the renewal's commands differ from the floor's: {differs}")
        return {"renewal": renewal, "floor": floor, "differences": differs}

    async def count_database(self, renewals: int) -> dict[str, Any]:
        """Round trips per renewal, exactly, through counting proxies in front of a worker and an
        ingress started for this; statements and transactions from PostgreSQL's own counters."""
        assert self.stack.postgres is not None
        port = self.stack.postgres.port
        wires = {"worker": WireCounter("127.0.0.1", port), "ingress": WireCounter("127.0.0.1", port)}
        for wire in wires.values():
            await wire.start()

        def via(wire: WireCounter) -> str:
            return self.stack.database_url.replace(f":{port}/", f":{wire.port}/")

        self.say(f"round trips: {renewals} renewals one at a time, worker and ingress behind counting proxies")
        await self.stack.replace_renewal_worker(via(wires["worker"]))
        store = await Store.connect(via(wires["ingress"]))
        driver = Driver(self.client, store, self.settings.policy(), self.settings.temporal_task_queue)
        try:
            warm = driver.usernames("rtw", 3)
            await driver.seed(warm)
            await closed_loop(driver.renewal, warm, 1)
            names = driver.usernames("rt", renewals)
            await driver.seed(names)
            await reset_statements(self.stack.database_url)
            for wire in wires.values():
                wire.reset()
            run = await closed_loop(driver.renewal, names, 1)
            counted = {name: dict(wire.counts) for name, wire in wires.items()}
            statements = await statements_run(self.stack.database_url)
        finally:
            await store.close()
            await self.stack.replace_renewal_worker()
            self.sampler.pids["worker"] = self.stack.pid("worker")
            for wire in wires.values():
                await wire.stop()
        done = max(len(run.ok), 1)
        result = {
            "renewals": len(run.ok),
            "failed": len(run.errors),
            "round_trips_per_renewal": round(
                sum(c.get("sync", 0) + c.get("query", 0) for c in counted.values()) / done, 2
            ),
            "round_trips_by_process": {
                name: {
                    "per_renewal": round((c.get("sync", 0) + c.get("query", 0)) / done, 2),
                    "extended_query_syncs": round(c.get("sync", 0) / done, 2),
                    "simple_queries": round(c.get("query", 0) / done, 2),
                    "connections_opened": c.get("connections", 0),
                }
                for name, c in counted.items()
            },
            **statement_counts(statements, len(run.ok)),
        }
        self.say(
            f"        {result['round_trips_per_renewal']} round trips per renewal "
            f"(worker {result['round_trips_by_process']['worker']['per_renewal']}, "
            f"ingress {result['round_trips_by_process']['ingress']['per_renewal']}), "
            f"{result['statements_per_renewal']} statements, {result['transactions_per_renewal']} BEGIN…COMMIT"
        )
        # The new worker imports the sandbox again on its first workflows.
        await closed_loop(self.driver.renewal, await self.names("renewal", "rewarm", 4), 2)
        return result

    async def sweep(self) -> None:
        """Each level in the order floor, renewals, renewals, floor (two halves of each): the
        server's SQLite file and caches grow through a run, and this order gives both kinds the
        same share of early and late, so neither pays for the other's history."""
        args = self.args
        levels = [int(value) for value in args.levels.split(",") if value.strip()]
        self.results["sweep"] = []
        for concurrency in levels:
            count = max(args.renewals, 16 * concurrency)
            self.say(f"c = {concurrency}: {count} floor workflows and {count} renewals, floor-renewal-renewal-floor")
            tallies = {"floor": Tally(), "renewal": Tally()}
            names = {kind: await self.names(kind, kind[:1] + str(concurrency), count) for kind in tallies}
            halves = {kind: (names[kind][: count // 2], names[kind][count // 2 :]) for kind in tallies}
            for kind, half in (("floor", 0), ("renewal", 0), ("renewal", 1), ("floor", 1)):
                work = self.driver.renewal if kind == "renewal" else self.driver.floor
                loop = closed_loop(work, halves[kind][half], concurrency, args.level_seconds / 2)
                await tallies[kind].measure(self.stack, self.sampler, loop)
            floor, renewal = (tallies[kind].summary(concurrency) for kind in ("floor", "renewal"))
            floor["concurrency"] = renewal["concurrency"] = concurrency
            ratio = renewal["per_second"] / floor["per_second"] if floor["per_second"] else None
            self.say(
                f"        floor {floor['per_second']:.2f}/s ({floor['failed']} failed), "
                f"renewals {renewal['per_second']:.2f}/s ({renewal['failed']} failed), "
                f"ratio {ratio or 0:.2f}, payment→activation p99 "
                f"{(renewal['latency_s'].get('payment_to_activation') or {}).get('p99') or 0:.3f} s"
            )
            self.results["sweep"].append(
                {"concurrency": concurrency, "floor": floor, "renewal": renewal, "ratio": ratio}
            )

    def best(self) -> dict[str, Any]:
        return max(self.results["sweep"], key=lambda level: level["renewal"]["per_second"])

    async def half_peak(self) -> None:
        peak = self.best()["renewal"]["per_second"]
        rate = peak / 2
        count = max(int(rate * self.args.half_peak_seconds), 10)
        self.say(f"half peak: {count} renewals arriving at {rate:.2f}/s (open loop)")
        names = self.driver.usernames("half", count)
        await self.driver.seed(names)
        run = await measured(self.stack, self.sampler, open_loop(self.driver.renewal, names, rate))
        self.results["half_peak"] = {"peak_per_second": peak, "target_per_second": rate, "run": run}
        p99 = (run["latency_s"].get("payment_to_activation") or {}).get("p99")
        self.say(f"        payment→activation p99 {p99 or 0:.3f} s, {run['failed']} failed")

    async def profiled(self) -> None:
        best = self.best()
        concurrency = best["concurrency"]
        rate = max(best["renewal"]["per_second"], 0.5)
        count = max(int(rate * self.args.profile_seconds), 2 * concurrency)
        raw = self.args.out / f"profile-{self.stamp}.collapsed"
        recording = profile.record(self.stack.pid("worker"), raw)
        if recording is None:
            self.say("profile skipped: py-spy is not installed (pip install -e '.[bench]')")
            return
        self.say(f"profile: py-spy on the worker, c = {concurrency}, {count} renewals")
        names = self.driver.usernames("prof", count)
        await self.driver.seed(names)
        run = await measured(
            self.stack, self.sampler, closed_loop(self.driver.renewal, names, concurrency), concurrency
        )
        if not recording.stop():
            self.say(f"profile failed: see {recording.log}")
            return
        summary = profile.summarize(raw)
        heading = (
            f"Worker profile (py-spy) at c = {concurrency}: {run['completed']} renewals, "
            f"{run['per_second']:.2f}/s while sampled, {run['cpu_ms_per_renewal']['worker']:.0f} ms of "
            f"worker CPU per renewal"
        )
        text_path = self.args.out / f"profile-{self.stamp}.txt"
        text_path.write_text(profile.as_text(summary, heading) + "\n")
        self.results["profile"] = {
            "concurrency": concurrency,
            "run": run,
            "summary": summary,
            "text": shown(text_path),
            "raw": shown(raw),
        }
        for row in summary["areas_inclusive"][:6]:
            self.say(f"        {row['percent']:5.1f} %  {row['name']}")

    async def pending(self, rss_at_rest: int) -> None:
        args = self.args
        count, concurrency = args.pending, args.pending_concurrency
        names = self.driver.usernames("pend", count)
        self.say(f"pending: seeding {count} services")
        await self.driver.seed(names)
        self.say(f"pending: parking {count} renewals awaiting payment at c = {concurrency}")
        rss_before = rss_bytes(self.stack.pid("worker"))
        self.sampler.reset()
        before = self.stack.cpu()
        park_run, parked = await park_all(self.driver, names, concurrency)
        park = report.run_summary(park_run)
        park["cpu_seconds"] = {name: round(value - before[name], 3) for name, value in self.stack.cpu().items()}
        park["rss_peak_bytes"] = self.sampler.reset()
        self.say(f"        parked {park['completed']} in {park['seconds']:.1f} s ({park['failed']} failed)")
        # Let the worker settle (activities done, caches as they stay) before reading memory.
        await asyncio.sleep(5)
        pid = self.stack.pid
        parked_state = {
            "worker_rss_parked": rss_bytes(pid("worker")),
            "temporal_rss_parked": rss_bytes(pid("temporal")),
            "postgres_pss_parked": pss_bytes(pid("postgres")),
            "database_bytes": await self.store.pool.fetchval("SELECT pg_database_size(current_database())"),
            "temporal_db_bytes": self.stack.temporal_db_bytes(),
        }
        self.say(
            f"        worker RSS {parked_state['worker_rss_parked'] / 2**20:.0f} MB, Temporal RSS "
            f"{parked_state['temporal_rss_parked'] / 2**20:.0f} MB, database "
            f"{parked_state['database_bytes'] / 2**20:.0f} MB"
        )
        self.say(f"pending: paying all {len(parked)} at c = {concurrency}")
        drain = await measured(self.stack, self.sampler, pay_all(self.driver, parked, concurrency))
        self.say(f"        drained in {drain['seconds']:.1f} s ({drain['failed']} failed)")
        self.results["pending"] = {
            "requested": count,
            "parked": len(parked),
            "concurrency": concurrency,
            "park": park,
            "worker_rss_at_rest": rss_at_rest,
            "worker_rss_before_park": rss_before,
            # The SDK keeps at most max_cached_workflows (1000 by default) in memory: past that,
            # RSS should stop growing and payments replay evicted histories instead.
            "worker_rss_per_parked": round((parked_state["worker_rss_parked"] - rss_before) / max(len(parked), 1)),
            "worker_rss_warm": self.results.get("worker_rss_warm"),
            **parked_state,
            "drain": drain,
            "worker_rss_drain_peak": drain["rss_peak_bytes"].get("worker"),
        }

    async def sqlite(self) -> None:
        args = self.args
        labels = [label.strip() for label in args.sqlite.split(",") if label.strip()]
        variants = []
        for label in labels:
            pragmas = SQLITE_VARIANTS[label]
            self.say(f"sqlite {label}: fresh dev server ({', '.join(pragmas) or 'SQLite defaults'})")
            await self.disconnect()
            await self.stack.restart_temporal(pragmas)
            await self.connect()
            # Fresh workers: their first workflows pay the sandbox's imports.
            await closed_loop(self.driver.floor, await self.names("floor", "sqlw", 4), 2)
            await closed_loop(self.driver.renewal, await self.names("renewal", "sqlw", 4), 2)
            floor = await self.level("floor", args.sqlite_concurrency, args.sqlite_renewals, args.sqlite_seconds)
            renewal = await self.level("renewal", args.sqlite_concurrency, args.sqlite_renewals, args.sqlite_seconds)
            self.say(f"        floor {floor['per_second']:.2f}/s, renewals {renewal['per_second']:.2f}/s")
            variants.append({"label": label, "pragmas": list(pragmas), "floor": floor, "renewal": renewal})
        self.results["sqlite"] = {"concurrency": args.sqlite_concurrency, "variants": variants}

    def targets(self) -> list[str]:
        lines = []
        sweep = self.results.get("sweep")
        if sweep:
            best = self.best()
            peak_floor = max(level["floor"]["per_second"] for level in sweep)
            lines.append(
                f"renewal/floor at the best concurrency (c = {best['concurrency']}): {best['ratio'] or 0:.2f} "
                f"(target ≥ 0.8: {'met' if (best['ratio'] or 0) >= 0.8 else 'NOT met'}); peak renewals / peak floor "
                f"{best['renewal']['per_second']:.1f} / {peak_floor:.1f} = "
                f"{best['renewal']['per_second'] / peak_floor if peak_floor else 0:.2f}"
            )
            cost = self.results.get("cost", {}).get("cpu_ms_at_best")
            if cost:
                # Each run with its own worker; the other worker idles and is left out.
                renewal_ms = sum(value for name, value in cost["renewal"].items() if name != "floor-worker")
                floor_ms = sum(value for name, value in cost["floor"].items() if name != "worker")
                lines.append(
                    f"CPU per completed workflow at c = {cost['concurrency']}, all processes: "
                    f"renewal {renewal_ms:.0f} ms, "
                    f"floor {floor_ms:.0f} ms: on {os.cpu_count()} CPUs a CPU-bound ceiling of "
                    f"{1000 * (os.cpu_count() or 1) / renewal_ms if renewal_ms else 0:.1f} vs "
                    f"{1000 * (os.cpu_count() or 1) / floor_ms if floor_ms else 0:.1f} per second "
                    f"(ratio {floor_ms / renewal_ms if renewal_ms else 0:.2f})"
                )
        half = self.results.get("half_peak")
        if half:
            p99 = (half["run"]["latency_s"].get("payment_to_activation") or {}).get("p99")
            lines.append(
                f"payment→activation p99 at half the peak: {p99 or 0:.3f} s "
                f"(target < 1 s: {'met' if p99 is not None and p99 < 1 else 'NOT met'})"
            )
        pending = self.results.get("pending")
        if pending:
            rss = pending["worker_rss_parked"]
            lines.append(
                f"worker RSS with {pending['parked']} parked: {rss / 2**20:.0f} MB "
                f"(target < 300 MB with 10,000: {'met' if rss < 300 * 2**20 else 'NOT met'}"
                f"{'' if pending['parked'] >= 10000 else ', measured with fewer'})"
            )
        return lines

    async def run(self) -> dict[str, Any]:
        args = self.args
        pragmas = SQLITE_VARIANTS["wal"]
        self.results["meta"] = machine_meta(args, pragmas)
        self.say(f"starting the stack under {self.stack.root}")
        await self.stack.start(pragmas)
        await asyncio.sleep(2)
        rss_at_rest = rss_bytes(self.stack.pid("worker"))
        self.results["worker_rss_at_rest"] = rss_at_rest
        await self.connect()
        try:
            await self.warm_up()
            history = await self.histories()
            self.say(
                f"history events: renewal {history['renewal']['events']:.0f}, floor {history['floor']['events']:.0f}"
            )
            if args.count_renewals > 0:
                self.results["database"] = await self.count_database(args.count_renewals)
            await self.sweep()
            best = self.best()
            self.results["cost"] = {
                "history": history,
                "database": self.results.get("database"),
                "cpu_ms_at_best": {
                    "concurrency": best["concurrency"],
                    "renewal": best["renewal"]["cpu_ms_per_renewal"],
                    "floor": best["floor"]["cpu_ms_per_renewal"],
                },
            }
            if args.half_peak_seconds > 0:
                await self.half_peak()
            if args.profile_seconds > 0:
                await self.profiled()
            if args.pending > 0:
                await self.pending(rss_at_rest)
            if args.sqlite:
                await self.sqlite()
        finally:
            await self.disconnect()
            self.stack.stop()
        self.results["meta"]["loadavg_end"] = " ".join(f"{value:.2f}" for value in os.getloadavg())
        self.results["targets"] = self.targets()
        return self.results

    def write(self) -> str:
        out = self.args.out
        json_path = report.write_json(self.results, out / f"bench-{self.stamp}.json")
        png_path = report.plot(self.results, out / f"bench-{self.stamp}.png")
        table = report.markdown(self.results)
        (out / f"bench-{self.stamp}.md").write_text(table + "\n")
        written = [json_path, out / f"bench-{self.stamp}.md"] + ([png_path] if png_path else [])
        return table + "\n\nwritten: " + ", ".join(shown(path) for path in written)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    started = time.monotonic()
    asyncio.run(bench.run())
    print()
    print(bench.write())
    print(f"\nbench took {(time.monotonic() - started) / 60:.1f} min")
    return 0
