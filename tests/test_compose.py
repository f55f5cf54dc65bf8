"""docker-compose.yml, the Dockerfile and .env.example against the code, without a Docker engine.

Every setting of settings.py reaches worker and ingress under its own name, and the values
compose gives them are valid settings; ports and health probes agree with those settings; every
long-running service has a health check and every dependency waits on one (or on a one-shot's
success); images are pinned; .env.example names every variable compose reads; the search
attributes registered are the code's. `docker compose config` runs where a compose binary is.
"""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from renewals import search_attributes as sa
from settings import Settings, exposure_problems, load_settings
from worker import GRACEFUL_SHUTDOWN

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APPS = ("worker", "ingress", "migrate")  # our image; migrate reads DATABASE_URL through Settings too
# Settings only the local stack (`make run`) reads: its data directory, its mail sink and its
# dev-server UI port. Any other setting must reach the containers.
LOCAL_STACK_ONLY = {"RENEWALS_DATA_DIR", "MAIL_SINK_DIR", "TEMPORAL_UI_PORT", "PANEL_UI_DEV_LOGIN", "SDI_LOCAL_PORT"}
# Values fixed by the compose file on purpose rather than read from .env.
FIXED = {"INGRESS_HOST", "INGRESS_ADMIN_HOST", "WORKER_METRICS_ADDRESS"}
# The one service nothing waits on and whose image has no probe we rely on.
NO_HEALTH_CHECK = {"temporal-ui"}

VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def setting_names() -> set[str]:
    return {field.alias for field in Settings.model_fields.values() if field.alias}


def env_example() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, set): `NAME=value` is set, `# NAME=value` documents a default."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found[match.group(2)] = (match.group(3), match.group(1) is None)
    return found


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}`, with `variables` as .env."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        current = variables.get(name, "")
        if operator == ":?" and not current:
            raise KeyError(f"{name}: {argument}")
        if operator == ":-" and not current:
            return argument
        return current

    return VARIABLE.sub(one, value)


def example_variables() -> dict[str, str]:
    return {name: value for name, (value, is_set) in env_example().items() if is_set}


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def one_shot(name: str) -> bool:
    return SERVICES[name].get("restart") == "no"


def app_settings() -> Settings:
    """The settings a container of ours starts with, from compose and .env.example."""
    variables = example_variables()
    environment = {
        name: interpolate(str(value), variables) for name, value in SERVICES["worker"]["environment"].items()
    }
    return load_settings(**environment)


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


# ---------------------------------------------------------------------- settings


def test_every_setting_reaches_worker_and_ingress_under_its_own_name():
    assert LOCAL_STACK_ONLY <= setting_names()  # the exclusions are real settings
    wanted = setting_names() - LOCAL_STACK_ONLY
    for name in APPS:
        passed = set(SERVICES[name]["environment"])
        assert passed - wanted == set(), f"{name} passes variables no setting reads"
        assert wanted - passed == set(), f"{name} misses settings: add them to x-settings in docker-compose.yml"


def test_settings_are_read_from_the_variable_of_the_same_name():
    # So .env overrides a setting under the name the README's configuration table gives it.
    for name, value in SERVICES["worker"]["environment"].items():
        used = [match.group(1) for match in VARIABLE.finditer(str(value))]
        if name in FIXED:
            assert used == [], name
        elif name == "DATABASE_URL":
            assert used == ["RENEWALS_APP_DB_PASSWORD"]  # the URL of the compose database, its password
        else:
            assert used == [name], f"{name} is read from {used}"


def test_the_containers_settings_are_valid_and_production_like():
    settings = app_settings()
    assert settings.ingress_host == "0.0.0.0"
    assert settings.log_format == "json"
    assert settings.worker_metrics_address is not None
    assert settings.temporal_address == "temporal:7233" and settings.smtp_host == "mailpit"
    # Worker and ingress run as the runtime role (rows only); migrate as the owner (DDL).
    assert (
        settings.database_url.startswith("postgresql://renewals_app:") and "@postgresql:5432/" in settings.database_url
    )
    for name in ("worker", "ingress"):
        assert SERVICES[name]["environment"]["DATABASE_URL"] == SERVICES["worker"]["environment"]["DATABASE_URL"]
    owner = interpolate(SERVICES["migrate"]["environment"]["DATABASE_URL"], example_variables())
    assert owner.startswith("postgresql://renewals:") and owner.endswith("@postgresql:5432/renewals")
    assert settings.temporal_tls_cert is None and settings.temporal_api_key is None  # empty is unset
    # The compose defaults of the waits are the code's defaults.
    assert settings.policy() == Settings().policy()


# ---------------------------------------------------------------------- ports, probes, scaling


def test_ports_agree_with_the_settings():
    settings = app_settings()
    ingress_ports = [interpolate(port, example_variables()) for port in SERVICES["ingress"]["ports"]]
    assert ingress_ports == [f"{settings.ingress_port}:{settings.ingress_port}"]
    # The admin port (OpenAPI, /metrics) reaches the compose network only: exposed, never published.
    assert settings.ingress_admin_host == "0.0.0.0" and settings.ingress_admin_port != settings.ingress_port
    admin_ports = [interpolate(port, example_variables()) for port in SERVICES["ingress"]["expose"]]
    assert admin_ports == [str(settings.ingress_admin_port)]
    metrics_port = settings.worker_metrics_address.rsplit(":", 1)[1]  # type: ignore[union-attr]
    assert SERVICES["worker"]["expose"] == [metrics_port]
    assert SERVICES["temporal-ui"]["ports"] == ["127.0.0.1:${TEMPORAL_UI_PORT:-8233}:8080"]
    # The apps reach the others by service name on their container ports.
    assert settings.smtp_port == 1025 and settings.temporal_address.endswith(":7233")


def test_the_worker_scales_and_nothing_is_pinned_to_a_container_name():
    assert "ports" not in SERVICES["worker"]  # `--scale worker=N` would fight over a host port
    for name, service in SERVICES.items():
        assert "container_name" not in service, name


def test_health_probes_use_the_settings():
    assert SERVICES["ingress"]["healthcheck"]["test"] == ["CMD", "python", "-m", "telemetry", "probe", "ingress"]
    assert SERVICES["worker"]["healthcheck"]["test"] == ["CMD", "python", "-m", "telemetry", "probe", "worker"]
    from telemetry import probe_url

    settings = app_settings()
    assert probe_url(settings, "ingress") == f"http://127.0.0.1:{settings.ingress_port}/healthz"
    assert probe_url(settings, "worker").endswith(f":{settings.worker_metrics_address.rsplit(':', 1)[1]}/metrics")  # type: ignore[union-attr]


# ---------------------------------------------------------------------- health and start order


def test_every_long_running_service_has_a_health_check():
    for name, service in SERVICES.items():
        if one_shot(name) or name in NO_HEALTH_CHECK:
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert check.get("interval") and check.get("retries"), name


def test_every_dependency_waits_for_health_or_a_one_shots_success():
    for name, service in SERVICES.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        for dependency, rule in depends.items():
            assert dependency in SERVICES, (name, dependency)
            if one_shot(dependency):
                assert rule == {"condition": "service_completed_successfully"}, (name, dependency)
            else:
                assert rule == {"condition": "service_healthy"}, (name, dependency)
                assert "healthcheck" in SERVICES[dependency], (name, dependency)


def test_the_apps_start_after_schema_namespace_and_migrations():
    assert set(SERVICES["temporal"]["depends_on"]) == {"temporal-schema"}
    assert set(SERVICES["temporal-setup"]["depends_on"]) == {"temporal"}
    for name in ("worker", "ingress"):
        assert {"postgresql", "temporal", "temporal-setup", "migrate"} <= set(SERVICES[name]["depends_on"])
    assert "mailpit" in SERVICES["worker"]["depends_on"]  # the worker sends the emails


def test_a_stopping_worker_is_given_time_to_finish_its_activities():
    grace = seconds(SERVICES["worker"]["stop_grace_period"])
    assert grace > GRACEFUL_SHUTDOWN.total_seconds() + 5
    for name in APPS:
        command = SERVICES[name]["command"]
        assert isinstance(command, list) and command[0] == "python", f"{name}: exec form, no shell"


# ---------------------------------------------------------------------- images, volumes, files


def test_images_are_pinned_to_a_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
        assert "${" not in image, f"{name}: {image} must not vary with the environment"
    for name in APPS:
        assert SERVICES[name]["build"] == "." and SERVICES[name]["image"] == f"renewals:{version}"


def test_the_dockerfile_pins_its_base_runs_as_a_user_and_execs_python():
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), base
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^CMD \["python", "worker.py"\]$', dockerfile, re.MULTILINE)
    # Everything the processes import is copied.
    for module in ("renewals", "db", "activities", "workflows", "client", "ingress", "stack", "migrations"):
        assert f"COPY {module}/ {module}/" in dockerfile
    assert "COPY worker.py starter.py telemetry.py settings.py ./" in dockerfile
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_volumes_are_named_and_mounted_files_exist():
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                path = ROOT / source
                assert path.exists(), f"{name} mounts {source}, which is missing"
                for script in [path] if path.is_file() else path.glob("*.sh"):
                    if script.suffix == ".sh":
                        assert os.access(script, os.X_OK), f"{script} is not executable"
            else:
                assert source in declared, f"{name} uses volume {source}, not declared"
                used.add(source)
    assert used == declared == {"postgres-data", "mailpit-data"}


def test_postgres_initialises_both_databases():
    init = (ROOT / "deploy/postgres/init-databases.sh").read_text()
    for database in ("temporal", "temporal_visibility", "renewals"):
        assert f"CREATE DATABASE {database} OWNER" in init
    assert "CREATE ROLE renewals_app LOGIN" in init  # the runtime role (tests/test_database_roles.py)
    for variable in ("TEMPORAL_DB_PASSWORD", "RENEWALS_DB_PASSWORD", "RENEWALS_APP_DB_PASSWORD"):
        assert SERVICES["postgresql"]["environment"][variable] == f"${{{variable}:?set {variable} in .env}}"
    mounts = SERVICES["postgresql"]["volumes"]
    assert "./deploy/postgres/init-databases.sh:/docker-entrypoint-initdb.d/init-databases.sh:ro" in mounts


def test_the_registered_search_attributes_are_the_codes():
    listed = SERVICES["temporal-setup"]["environment"]["SEARCH_ATTRIBUTES"].split()
    registered = dict(pair.split("=", 1) for pair in listed)
    assert registered == {key.name: key._metadata_type for key in sa.ALL}


# ---------------------------------------------------------------------- .env.example


def test_env_example_names_every_variable_compose_reads():
    documented = env_example()
    for text in strings(COMPOSE):
        for match in VARIABLE.finditer(text):
            name, operator = match.group(1), match.group(2)
            assert name in documented, f"${{{name}}} is used by docker-compose.yml but not in .env.example"
            if operator == ":?":
                value, is_set = documented[name]
                assert is_set and value, f"{name} is required: .env.example must give it a placeholder"


def test_env_example_documents_the_compose_defaults():
    documented = env_example()
    for text in strings(COMPOSE):
        for match in VARIABLE.finditer(text):
            name, operator, default = match.groups()
            if operator == ":-":
                assert documented[name][0] == default, f"{name}: .env.example says {documented[name][0]!r}"


def test_env_example_placeholders_load_but_the_ingress_refuses_them():
    # Worker and migrate read them; the ingress, on 0.0.0.0, will not start until both secrets
    # are replaced by real ones (issue 19).
    problems = exposure_problems(app_settings())
    assert any(p.startswith("PANEL_SECRET must not be a placeholder") for p in problems), problems
    assert any(p.startswith("PAYMENTS_SECRET must not be a placeholder") for p in problems), problems
    generated = {
        "PANEL_SECRET": "3f9c1a7e5b2d8f4061c9e7a3b5d2f8e1",
        "PAYMENTS_SECRET": "b71e4c09a8d3f6e25c1b7a9d4e0f3c86",
    }
    variables = {**example_variables(), **generated}
    environment = {
        name: interpolate(str(value), variables) for name, value in SERVICES["ingress"]["environment"].items()
    }
    assert exposure_problems(load_settings(**environment)) == []


# ---------------------------------------------------------------------- compose itself


def compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose` (v1), whichever answers; neither needs an engine."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        try:
            done = subprocess.run([*command, "version"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return command
    return None


def clean_env() -> dict[str, str]:
    """No setting from the calling shell: compose would let it win over the env file."""
    names = setting_names() | {name for text in strings(COMPOSE) for name, _, _ in VARIABLE.findall(text)}
    return {key: value for key, value in os.environ.items() if key not in names}


def test_docker_compose_config_accepts_the_file(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("no working `docker compose` or `docker-compose` here")

    def config(env_file: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
            + ["--env-file", str(env_file), "config", "-q"],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = config(ROOT / ".env.example")
    assert done.returncode == 0, done.stderr
    # Without the secrets it refuses to start, naming what is missing.
    (tmp_path / "empty.env").write_text("")
    refused = config(tmp_path / "empty.env")
    assert refused.returncode != 0
    assert "in .env" in refused.stderr, refused.stderr
