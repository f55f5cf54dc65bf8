"""What the worker and the ingress tell ops: log lines, the worker's metrics, the container probe.

- `configure_logging`: `LOG_FORMAT=text` keeps the local stack's readable lines; `json` writes one
  JSON object per line, with `renewal_id` (the workflow id) and `order_number` as fields wherever
  they are known: passed as `extra`, from the Temporal SDK's own activity and workflow loggers, or
  read from the activity being run.
- `ActivityLog`: a worker interceptor writing one line per activity run, with the renewal and
  the order it worked on, so every step of a renewal can be found in the logs by either.
- `worker_runtime`: the Temporal runtime serving the SDK's metrics to Prometheus on
  `WORKER_METRICS_ADDRESS`, and forwarding the SDK core's own logs into these lines.
- `python -m telemetry probe ingress|worker`: the container health check (exit 0 when healthy).
"""

import json
import logging
import sys
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from settings import Settings, load_settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Attributes every LogRecord has; anything else on a record came from `extra` and becomes a field.
_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Extras that are not for the line: uvicorn's coloured copy of the message, the SDK core's raw log.
_SKIPPED_EXTRAS = {"color_message", "temporal_log"}
# The SDK's loggers put their context in these dicts (activity and workflow info).
_TEMPORAL_CONTEXT = ("temporal_activity", "temporal_workflow")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time, level, logger, message and the context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _TEMPORAL_CONTEXT:
            context = getattr(record, name, None)
            if isinstance(context, dict):
                entry.update({key: value for key, value in context.items() if key != "workflow_id"})
                entry.setdefault("renewal_id", context.get("workflow_id"))
        if "renewal_id" not in entry and activity.in_activity():
            entry["renewal_id"] = activity.info().workflow_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in _SKIPPED_EXTRAS and key not in _TEMPORAL_CONTEXT:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(settings: Settings) -> None:
    """The process's one log handler, on standard error, in the configured format and level."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
        # The SDK appends its context to the message too; in JSON it is already in the fields.
        activity.logger.activity_info_on_message = False
        workflow.logger.workflow_info_on_message = False
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


# ---------------------------------------------------------------------- activities


log = logging.getLogger("renewals.activity")


def _order_number(*candidates: Any) -> str | None:
    """The order an activity worked on: a field of its input (or, for a new order, its result)."""
    for candidate in candidates:
        number = getattr(candidate, "order_number", None)
        if isinstance(number, str) and number:
            return number
    return None


class _LogActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        started = time.monotonic()

        def context(*sources: Any) -> dict[str, Any]:
            fields = {
                "renewal_id": info.workflow_id,
                "activity_type": info.activity_type,
                "attempt": info.attempt,
                "duration_ms": round((time.monotonic() - started) * 1000),
            }
            order_number = _order_number(*sources)
            if order_number is not None:
                fields["order_number"] = order_number
            return fields

        try:
            result = await super().execute_activity(input)
        except BaseException as error:
            # The SDK logs the failure with its traceback; this line makes it findable by order. An
            # error its activity calls benign (expected, retried later) is said at INFO (the SDK's
            # own line drops to DEBUG).
            benign = isinstance(error, ApplicationError) and error.category == ApplicationErrorCategory.BENIGN
            level = logging.INFO if benign else logging.WARNING
            failed = type(error).__name__
            log.log(level, "activity %s failed: %s", info.activity_type, failed, extra=context(*input.args))
            raise
        log.info("activity %s done", info.activity_type, extra=context(*input.args, result))
        return result


class ActivityLog(Interceptor):
    """One log line per activity run: its type, attempt, renewal, order and duration."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _LogActivity(next)


# ---------------------------------------------------------------------- metrics


def worker_runtime(settings: Settings) -> Runtime | None:
    """The Temporal runtime for the worker's client, or None (the SDK's default) when neither
    metrics nor JSON logs are asked for: the local stack's worker runs as it always has."""
    if settings.worker_metrics_address is None and settings.log_format != "json":
        return None
    logging_config = LoggingConfig(filter=TelemetryFilter(core_level="WARN", other_level="ERROR"))
    if settings.log_format == "json":
        # The SDK core writes its own lines to standard error otherwise, not in JSON.
        logging_config = LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        )
    metrics = None
    if settings.worker_metrics_address is not None:
        metrics = PrometheusConfig(bind_address=settings.worker_metrics_address)
    return Runtime(telemetry=TelemetryConfig(logging=logging_config, metrics=metrics))


# ---------------------------------------------------------------------- the container probe


def probe_url(settings: Settings, target: str) -> str:
    """What the health check of `target` asks: the ingress's /healthz, the worker's metrics."""
    if target == "ingress":
        return f"http://127.0.0.1:{settings.ingress_port}/healthz"
    if target == "worker":
        if settings.worker_metrics_address is None:
            raise SystemExit("the worker probe reads its metrics: set WORKER_METRICS_ADDRESS")
        return f"http://127.0.0.1:{settings.worker_metrics_address.rsplit(':', 1)[1]}/metrics"
    raise SystemExit(f"unknown probe target {target!r}: ingress or worker")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "probe":
        print("usage: python -m telemetry probe ingress|worker", file=sys.stderr)
        return 2
    url = probe_url(load_settings(), argv[1])
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own loopback URL
            return 0 if response.status == 200 else 1
    except OSError as error:  # refused, timed out, or an HTTP error status (503: a dependency down)
        print(f"{url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
