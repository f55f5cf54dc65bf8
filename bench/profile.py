"""Sampling the worker with py-spy while it carries load, and the top of what it found.

py-spy attaches to the running `python worker.py` (no change to the worker), samples every
thread's Python stack (the event loop and the workflow-task threads alike) and writes collapsed
stacks; `summarize` turns them into the top functions by own and total samples and into shares
by area (the sandbox, data conversion, pydantic, asyncpg, our activities...).
"""

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# (area, a regular expression on a frame "function (file:line)"); a stack counts in every area
# one of its frames matches, so these shares are inclusive and overlap.
AREAS: list[tuple[str, str]] = [
    ("workflow tasks (temporalio/worker/_workflow.py and below)", r"temporalio/worker/_workflow\.py"),
    (
        "sandbox: a new workflow instance (the workflow module imported again)",
        r"SandboxedWorkflowRunner\.create_instance",
    ),
    (
        "sandbox: compiling workflow source again (no .pyc to load: PYTHONDONTWRITEBYTECODE)",
        r"SandboxedWorkflowRunner\.create_instance(.|\n)*source_to_code",
    ),
    ("sandbox: activations (workflow code run in the sandbox)", r"_Instance\.activate "),
    ("workflows/renewal.py (our workflow code)", r"workflows/renewal\.py"),
    ("activity tasks (temporalio/worker/_activity.py and below)", r"temporalio/worker/_activity\.py"),
    ("activities/store.py", r"activities/store\.py"),
    ("activities/mail.py", r"activities/mail\.py"),
    ("asyncpg", r"asyncpg/"),
    ("aiosmtplib and email", r"(aiosmtplib|email)/"),
    ("renewals/ (domain)", r"renewals/[a-z_]+\.py"),
    ("payload conversion (temporalio.converter, pydantic)", r"temporalio/converter|temporalio/contrib/pydantic"),
    ("pydantic validation and serialisation", r"pydantic(_core)?/"),
    ("calls into the Rust core (temporalio/bridge)", r"temporalio/bridge/"),
    ("module imports (importlib)", r"importlib\._bootstrap"),
]


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    process: subprocess.Popen[bytes]
    raw: Path
    log: Path

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGINT makes py-spy write what it has; True when the file is there."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.raw.exists() and self.raw.stat().st_size > 0


def record(pid: int, raw: Path, rate: int = 250) -> Recording | None:
    binary = py_spy()
    if binary is None:
        return None
    log = raw.with_suffix(".log")
    output = open(log, "wb")  # noqa: SIM115 - py-spy owns it from here
    process = subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(raw),
            "--gil",
            "--nonblocking",
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    output.close()
    return Recording(process, raw, log)


_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/lib/python3.12/", "/lib/python3.13/"):
        if marker in path:
            return path.split(marker, 1)[1]
    root = str(ROOT) + "/"
    return path.removeprefix(root)


def _frame(text: str) -> str:
    """`function (short/file.py)`: lines dropped so a function's samples add up."""
    found = _FRAME.match(text)
    if not found:
        return text
    return f"{found['function']} ({_short(found['file'])})"


def summarize(raw: Path, top: int = 30) -> dict[str, Any]:
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        stacks.append(([_frame(part) for part in stack.split(";")], int(samples)))
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
        joined = "\n".join(frames)
        for area, pattern in AREAS:
            if re.search(pattern, joined):
                areas[area] += count
        leaf_file = frames[-1].rpartition("(")[2].rstrip(")")
        packages[leaf_file.split("/")[0] if "/" in leaf_file else leaf_file] += count

    def share(counter: Counter[str], limit: int) -> list[dict[str, Any]]:
        return [
            {"name": name, "samples": count, "percent": round(100 * count / total, 1)}
            for name, count in counter.most_common(limit)
        ]

    return {
        "samples": total,
        "areas_inclusive": share(areas, len(AREAS)),
        "own_by_package": share(packages, 15),
        "top_own": share(own, top),
        "top_inclusive": share(inclusive, top),
    }


def as_text(summary: dict[str, Any], heading: str) -> str:
    lines = [
        heading,
        "",
        f"{summary['samples']} samples of the thread holding the GIL (py-spy --gil): where the worker's Python "
        "CPU goes",
        "",
    ]
    for title, key in (
        ("Share of samples by area (inclusive; areas overlap)", "areas_inclusive"),
        ("Own samples by package of the innermost frame", "own_by_package"),
        ("Top functions by own samples", "top_own"),
        ("Top functions by total samples (inclusive)", "top_inclusive"),
    ):
        lines += [title, "-" * len(title)]
        lines += [f"{row['percent']:6.1f} %  {row['samples']:7d}  {row['name']}" for row in summary[key]]
        lines.append("")
    return "\n".join(lines)
