"""Figures out of runs: percentiles, the markdown tables (printed, and pasted into docs/benchmark.md), the
PNG plot of throughput and p99 latency against concurrency, the JSON file."""

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.drive import EVENTS, Run

MB = 1024 * 1024


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; None when there is nothing to rank."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_stats(run: Run, events: Iterable[str] = EVENTS) -> dict[str, dict[str, float | int | None]]:
    stats: dict[str, dict[str, float | int | None]] = {}
    for event in events:
        values = [outcome.latencies[event] for outcome in run.ok if event in outcome.latencies]
        if values:
            stats[event] = {
                "n": len(values),
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "p99": percentile(values, 99),
                "max": max(values),
            }
    return stats


def run_summary(run: Run, concurrency: int | None = None) -> dict[str, Any]:
    """`per_second` is the steady rate of a closed loop at `concurrency` (the whole run's rate
    otherwise, also kept as `overall_per_second`)."""
    return {
        "completed": len(run.ok),
        "failed": len(run.errors),
        "errors": sorted(set(run.errors))[:5],
        "seconds": round(run.seconds, 3),
        "per_second": round(run.steady_per_second(concurrency) if concurrency else run.per_second, 3),
        "overall_per_second": round(run.per_second, 3),
        "latency_s": latency_stats(run),
    }


# ---------------------------------------------------------------------- markdown


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f}"


def _triple(stats: dict[str, Any], event: str) -> str:
    found = stats.get(event)
    if not found:
        return "–"
    return f"{_ms(found['p50'])} / {_ms(found['p95'])} / {_ms(found['p99'])}"


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / MB:.0f} MB"


def markdown(results: dict[str, Any]) -> str:
    out: list[str] = []
    meta = results["meta"]
    out.append(
        f"Renewals benchmark, {meta['started_at']} — {meta['cpus']} CPUs, load average at start "
        f"{meta['loadavg_start']}, commit {meta['commit']}{' (dirty tree)' if meta['dirty'] else ''}; "
        f"Temporal dev server on SQLite ({', '.join(meta['sqlite_pragmas']) or 'default pragmas'}), "
        f"PostgreSQL {'fsync off' if meta['pg_fast'] else 'default durability'}."
    )
    out.append("")
    sweep = results.get("sweep", [])
    if sweep:
        out.append(
            "| concurrency | floor/s | renewals/s | renewal/floor | payment→activation p50 / p95 / p99 ms | failed |"
        )
        out.append("|---:|---:|---:|---:|---:|---:|")
        for level in sweep:
            floor, renewal = level["floor"], level["renewal"]
            out.append(
                f"| {level['concurrency']} | {_num(floor['per_second'])} | {_num(renewal['per_second'])} | "
                f"{_num(level['ratio'], 2)} | {_triple(renewal['latency_s'], 'payment_to_activation')} | "
                f"{renewal['failed']} + {floor['failed']} floor |"
            )
        out.append("")
        out.append("Latency of each event of a renewal, p50 / p95 / p99 in ms:")
        out.append("")
        out.append("| event | " + " | ".join(f"c = {level['concurrency']}" for level in sweep) + " |")
        out.append("|---|" + "---:|" * len(sweep))
        for event in EVENTS:
            cells = [_triple(level["renewal"]["latency_s"], event) for level in sweep]
            out.append(f"| {event} | " + " | ".join(cells) + " |")
        out.append("")
    half = results.get("half_peak")
    if half:
        out.append(
            f"At half the peak ({half['target_per_second']:.1f} renewals/s offered, open loop, "
            f"{half['run']['completed']} renewals, {half['run']['failed']} failed): payment→activation "
            f"p50 / p95 / p99 = {_triple(half['run']['latency_s'], 'payment_to_activation')} ms; "
            f"checkout p99 {_ms((half['run']['latency_s'].get('checkout_submitted') or {}).get('p99'))} ms."
        )
        out.append("")
    cost = results.get("cost")
    if cost:
        out.append("| per renewal | renewal | floor |")
        out.append("|---|---:|---:|")
        out.append(
            f"| history events | {_num(cost['history']['renewal']['events'], 0)} | "
            f"{_num(cost['history']['floor']['events'], 0)} |"
        )
        db = cost.get("database")
        if db:
            by = db["round_trips_by_process"]
            out.append(
                f"| PostgreSQL round trips (on the wire; worker + ingress) | {_num(db['round_trips_per_renewal'])} "
                f"({_num(by['worker']['per_renewal'])} + {_num(by['ingress']['per_renewal'])}) | 0 |"
            )
            out.append(f"| … of which asyncpg pool resets on release | {_num(db['pool_resets_per_renewal'])} | 0 |")
            out.append(f"| SQL statements (pg_stat_statements) | {_num(db['statements_per_renewal'])} | 0 |")
            out.append(f"| explicit transactions (BEGIN … COMMIT) | {_num(db['transactions_per_renewal'])} | 0 |")
        differs = cost["history"].get("differences")
        if differs:
            out.append(
                "| history events that differ (renewal / floor) | "
                + ", ".join(f"{kind} {pair['renewal']} / {pair['floor']}" for kind, pair in differs.items())
                + " | |"
            )
        best = cost.get("cpu_ms_at_best")
        if best:
            for name in ("worker", "temporal", "postgres", "bench", "smtp-sink"):
                renewal_ms = best["renewal"].get(name)
                floor_name = "floor-worker" if name == "worker" else name
                floor_ms = best["floor"].get(floor_name)
                out.append(
                    f"| CPU ms in {name} (c = {best['concurrency']}) | {_num(renewal_ms, 0)} | {_num(floor_ms, 0)} |"
                )
        out.append("")
    pending = results.get("pending")
    if pending:
        out.append("| pending renewals | value |")
        out.append("|---|---:|")
        rows = [
            ("renewals parked awaiting payment", f"{pending['parked']} (c = {pending['concurrency']})"),
            ("time to park them", f"{pending['park']['seconds']:.1f} s ({pending['park']['per_second']:.1f}/s)"),
            (
                "worker RSS at rest (started / warm)",
                f"{_mb(pending['worker_rss_at_rest'])} / {_mb(pending['worker_rss_warm'])}",
            ),
            ("worker RSS with all parked", _mb(pending["worker_rss_parked"])),
            (
                "worker RSS growth per parked renewal (the workflow cache is bounded: WORKER_MAX_CACHED_WORKFLOWS)",
                f"{pending['worker_rss_per_parked'] / 1024:.0f} KB",
            ),
            ("Temporal server RSS with all parked", _mb(pending["temporal_rss_parked"])),
            ("PostgreSQL PSS with all parked", _mb(pending["postgres_pss_parked"])),
            ("database size (pg_database_size)", _mb(pending["database_bytes"])),
            ("Temporal SQLite file (with -wal, -shm)", _mb(pending["temporal_db_bytes"])),
            (
                "drain: pay all until all ACTIVATED",
                f"{pending['drain']['seconds']:.1f} s ({pending['drain']['per_second']:.1f}/s)",
            ),
            (
                "drain payment→activation p50 / p95 / p99 ms",
                _triple(pending["drain"]["latency_s"], "payment_to_activation"),
            ),
            ("worker RSS peak while draining", _mb(pending["worker_rss_drain_peak"])),
        ]
        out += [f"| {name} | {value} |" for name, value in rows]
        out.append("")
    sqlite = results.get("sqlite")
    if sqlite:
        out.append(
            f"| dev server SQLite (c = {sqlite['concurrency']}) | floor/s | renewals/s | renewal p99 "
            "payment→activation ms |"
        )
        out.append("|---|---:|---:|---:|")
        for row in sqlite["variants"]:
            out.append(
                f"| {row['label']} ({', '.join(row['pragmas']) or 'SQLite defaults'}) | "
                f"{_num(row['floor']['per_second'])} | {_num(row['renewal']['per_second'])} | "
                f"{_ms((row['renewal']['latency_s'].get('payment_to_activation') or {}).get('p99'))} |"
            )
        out.append("")
    targets = results.get("targets")
    if targets:
        out.append("Targets:")
        out.append("")
        out += [f"- {line}" for line in targets]
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------- plot and files


def plot(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sweep = results.get("sweep") or []
    if not sweep:
        return None
    levels = [level["concurrency"] for level in sweep]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(levels, [level["floor"]["per_second"] for level in sweep], "o--", label="engine floor")
    left.plot(levels, [level["renewal"]["per_second"] for level in sweep], "o-", label="renewals")
    left.set_xscale("log", base=2)
    left.set_xticks(levels, [str(level) for level in levels])
    left.set_xlabel("concurrency (customers in flight)")
    left.set_ylabel("completed per second")
    left.set_title("Throughput")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    left.legend()
    for event, style in (("payment_to_activation", "o-"), ("checkout_submitted", "s--"), ("renew_requested", "^:")):
        values = [(level["renewal"]["latency_s"].get(event) or {}).get("p99") for level in sweep]
        right.plot(
            levels,
            [value * 1000 if value is not None else float("nan") for value in values],
            style,
            label=f"renewal {event}",
        )
    floor_p99 = [(level["floor"]["latency_s"].get("payment_to_activation") or {}).get("p99") for level in sweep]
    right.plot(
        levels,
        [value * 1000 if value is not None else float("nan") for value in floor_p99],
        "o:",
        color="grey",
        label="floor payment_to_activation",
    )
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xticks(levels, [str(level) for level in levels])
    right.set_xlabel("concurrency (customers in flight)")
    right.set_ylabel("p99 latency (ms)")
    right.set_title("p99 latency")
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=8)
    meta = results["meta"]
    figure.suptitle(f"Renewals vs engine floor — {meta['cpus']} CPUs, {meta['started_at']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_json(results: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path
