"""The one settings class: every value comes from the environment, with local dev-only defaults.

The defaults run the embedded stack on loopback (`make run`); the secrets are documented
development values and must be replaced anywhere else.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from renewals import TASK_QUEUE
from renewals.billing import Address, Cap, CodiceFiscale, Iban, PartitaIva, Provincia, Seller, TaxRegime, Text60, Text80
from renewals.delivery import SdiPolicy
from renewals.durations import parse_duration, parse_durations
from renewals.messages import Policy
from renewals.payments import dev_seller
from renewals.year import YearPolicy

# The README's local values: anyone may sign with them, so only loopback accepts them.
_DEV_SELLER = dev_seller()  # the SELLER_* defaults: dev-only placeholders
DEV_SECRETS = {"PANEL_SECRET": "dev-panel-secret", "PAYMENTS_SECRET": "dev-payments-secret"}
MIN_SECRET_BYTES = 32
MIN_DISTINCT_CHARACTERS = 10
# Words of a value copied from an example rather than generated (.env.example's `change-me-…`).
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "change me", "placeholder", "replace", "example", "your")


def split_secrets(value: str) -> tuple[str, ...]:
    """`current` or `current,previous`: the values a secret variable holds, the signing one first."""
    return tuple(part.strip() for part in value.split(","))


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


def _durations(value: Any) -> Any:
    return parse_durations(value) if isinstance(value, str) else value


def _whole_days(value: Any) -> Any:
    """`30d,7d,1d` (P15): whole calendar days, any order, each once; kept largest first."""
    if not isinstance(value, str):
        return value
    days = [parse_duration(part) for part in value.split(",") if part.strip()]
    if any(day % timedelta(days=1) or day <= timedelta(0) for day in days):
        raise ValueError("write whole days, e.g. 30d,7d,1d")
    if len(set(days)) != len(days):
        raise ValueError("each day once, e.g. 30d,7d,1d")
    return sorted((day.days for day in days), reverse=True)


Duration = Annotated[timedelta, BeforeValidator(_duration)]
# NoDecode: the list is our comma syntax (`3d,7d,14d`), not JSON.
Durations = Annotated[list[timedelta], NoDecode, BeforeValidator(_durations)]


def _unset_if_empty(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


# An optional value left empty (`TEMPORAL_API_KEY=` in an .env file, `${VAR:-}` in compose) is unset.
Unset = BeforeValidator(_unset_if_empty)


class Settings(BaseSettings):
    """Configuration of worker, ingress and local stack. Field aliases are the environment names."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    temporal_address: str = Field("127.0.0.1:7233", alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", alias="TEMPORAL_NAMESPACE")
    temporal_task_queue: str = Field(TASK_QUEUE, alias="TEMPORAL_TASK_QUEUE")
    temporal_ui_port: int = Field(8233, alias="TEMPORAL_UI_PORT")
    database_url: str = Field("postgresql://postgres@127.0.0.1:54329/renewals", alias="DATABASE_URL")
    smtp_host: str = Field("127.0.0.1", alias="SMTP_HOST")
    smtp_port: int = Field(2525, alias="SMTP_PORT")
    smtp_sender: str = Field("Rinnovi <rinnovi@renewals.localhost>", alias="SMTP_SENDER")
    # "current" or "current,previous" (rotation): both verify, the first signs (the CLI). The
    # defaults are the README's dev values: refused on any address but loopback (exposure_problems).
    panel_secret: str = Field(DEV_SECRETS["PANEL_SECRET"], alias="PANEL_SECRET")
    payments_secret: str = Field(DEV_SECRETS["PAYMENTS_SECRET"], alias="PAYMENTS_SECRET")
    ingress_port: int = Field(8000, alias="INGRESS_PORT")
    # Loopback for the local stack; in a container the ingress listens on 0.0.0.0 (docker-compose.yml).
    ingress_host: str = Field("127.0.0.1", alias="INGRESS_HOST")
    # The admin port: the OpenAPI document (/docs, /redoc, /openapi.json), /metrics and /healthz,
    # never on the public port. Loopback unless set (compose: the internal network, unpublished).
    ingress_admin_host: str = Field("127.0.0.1", alias="INGRESS_ADMIN_HOST")
    ingress_admin_port: int = Field(8001, alias="INGRESS_ADMIN_PORT")
    # Requests the public port answers at once; beyond, a 503 with Retry-After (P14).
    ingress_max_concurrency: int = Field(100, alias="INGRESS_MAX_CONCURRENCY", ge=1)
    # How long the first answer to a panel event's Idempotency-Key is kept and replayed (P13).
    panel_idempotency_ttl: Duration = Field(timedelta(hours=24), alias="PANEL_IDEMPOTENCY_TTL")
    # Per username on /panel/events: sustained events per minute, and the burst allowed.
    panel_rate_per_minute: int = Field(120, alias="PANEL_RATE_PER_MINUTE", ge=1)
    panel_burst: int = Field(20, alias="PANEL_BURST", ge=1)
    # P21: still accept the form signed before it (`sha256=`, which covers neither the method, the
    # query nor Idempotency-Key) for senders moving to `v2=`. Turn off once the ingress's log has
    # shown no "accepted a v1" line for a week (panel and payments back office both sign v2); the
    # release after removes this setting and the v1 code in renewals/signing.py.
    signing_accept_v1: bool = Field(True, alias="SIGNING_ACCEPT_V1")
    # Renewals kept in the worker's memory between events; beyond it, the least recent is evicted
    # and replayed from history when it next hears of something (bounds RSS with many parked).
    worker_max_cached_workflows: int = Field(500, alias="WORKER_MAX_CACHED_WORKFLOWS", ge=0)
    # The customer's pages (/ui/): a sign-in page listing the demo services and a payments back-office
    # page, for clicking through a renewal on the local stack. Never on in production.
    panel_ui_dev_login: bool = Field(False, alias="PANEL_UI_DEV_LOGIN")
    # Per signed-in customer on the pages' forms that change the renewal: sustained requests per
    # minute and the burst allowed (as PANEL_RATE_PER_MINUTE and PANEL_BURST for the panel's API).
    panel_ui_rate_per_minute: int = Field(30, alias="PANEL_UI_RATE_PER_MINUTE", ge=1)
    panel_ui_burst: int = Field(20, alias="PANEL_UI_BURST", ge=1)
    # A code-guessing run: after this many wrong discount codes within the window, the
    # customer's codes are refused, right or wrong, for the lockout.
    panel_ui_code_tries: int = Field(5, alias="PANEL_UI_CODE_TRIES", ge=1)
    panel_ui_code_window: Duration = Field(timedelta(minutes=15), alias="PANEL_UI_CODE_WINDOW")
    panel_ui_code_lockout: Duration = Field(timedelta(minutes=15), alias="PANEL_UI_CODE_LOCKOUT")
    # The addresses whose X-Forwarded-Proto and X-Forwarded-For uvicorn believes: the TLS proxy in
    # front of the ingress (comma-separated addresses or networks; `*` only on a private network).
    ingress_trusted_proxies: str = Field("127.0.0.1", alias="INGRESS_TRUSTED_PROXIES")
    data_dir: Path = Field(Path("var"), alias="RENEWALS_DATA_DIR")
    mail_sink_dir: Path = Field(Path("var/mail"), alias="MAIL_SINK_DIR")
    reminders: Durations = Field(default_factory=lambda: parse_durations("3d,7d,14d"), alias="RENEWALS_REMINDERS")
    payment_deadline: Duration = Field(timedelta(days=30), alias="RENEWALS_PAYMENT_DEADLINE")
    cart_idle: Duration = Field(timedelta(days=7), alias="RENEWALS_CART_IDLE")
    reactivation_window: Duration = Field(timedelta(days=90), alias="RENEWALS_REACTIVATION_WINDOW")
    instant_payment_grace: Duration = Field(timedelta(minutes=15), alias="RENEWALS_INSTANT_PAYMENT_GRACE")
    # P20: after a soft decline of an automatic order's charge, new charges this long after the first
    # decline (never on or after the order's deadline).
    charge_retries: Durations = Field(
        default_factory=lambda: parse_durations("1d,3d,7d"), alias="RENEWALS_CHARGE_RETRIES"
    )
    # P20: where the customer updates the card or PayPal account the automatic renewal charges (the
    # PSP's own page); the customer pages link to it beside "ask for a new charge".
    psp_update_card_url: str | None = Field(None, alias="PSP_UPDATE_CARD_URL")
    # The service's year (P15, P16): notices this many Rome calendar days before expiry (auto-renew
    # off), the automatic order this long before it (auto-renew on), the daily run at this Rome time.
    expiry_notices: Annotated[list[int], NoDecode, BeforeValidator(_whole_days)] = Field(
        [30, 7, 1], alias="RENEWALS_EXPIRY_NOTICES"
    )
    auto_renew_lead: Duration = Field(timedelta(days=30), alias="RENEWALS_AUTO_RENEW_LEAD")
    # `off`: this worker leaves the daily run's Schedule alone (another deployment owns it).
    daily_at: str = Field("06:00", alias="RENEWALS_DAILY_AT", pattern=r"^(([01]\d|2[0-3]):[0-5]\d|off)$")
    # Where a card or PayPal automatic order's charge_requested event is POSTed, signed with
    # PAYMENTS_SECRET (P16); unset: the request is only recorded (charge_requests), as locally.
    # The customer's pages as customers reach them: the Renew and Reactivate action in the notices.
    panel_ui_url: str = Field("http://127.0.0.1:8000/ui/", alias="PANEL_UI_URL")
    payments_webhook_url: Annotated[str | None, Unset] = Field(None, alias="PAYMENTS_WEBHOOK_URL")
    # The ledger reconciler's period: a payment left `received` longer is delivered again (I2).
    reconcile_every: Duration = Field(timedelta(minutes=5), alias="RENEWALS_RECONCILE_EVERY")
    # P19: the directory bank statements are dropped in (camt.053), looked at every PAYMENTS_INBOX_EVERY;
    # each file is imported, then moved to done/ or failed/ (with its reason). Unset: no inbox.
    payments_inbox_dir: Annotated[Path | None, Unset] = Field(None, alias="PAYMENTS_INBOX_DIR")
    payments_inbox_every: Duration = Field(timedelta(minutes=1), alias="PAYMENTS_INBOX_EVERY")
    # Temporal Cloud or a secured cluster: an mTLS client certificate and key (PEM files), or an API
    # key; the CA only for a server certificate no public CA signed. All unset for the local stack.
    # The names are the ones the `temporal` CLI reads, so one environment serves both.
    temporal_tls_cert: Annotated[Path | None, Unset] = Field(None, alias="TEMPORAL_TLS_CLIENT_CERT_PATH")
    temporal_tls_key: Annotated[Path | None, Unset] = Field(
        None, alias="TEMPORAL_TLS_CLIENT_KEY_PATH", validate_default=True
    )
    temporal_tls_ca: Annotated[Path | None, Unset] = Field(None, alias="TEMPORAL_TLS_SERVER_CA_CERT_PATH")
    temporal_api_key: Annotated[SecretStr | None, Unset] = Field(None, alias="TEMPORAL_API_KEY")
    # `text` for people (the local stack's var/*.log), `json` for a log pipeline: one object a line.
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = Field("text", alias="LOG_FORMAT")
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = Field(
        "INFO", alias="LOG_LEVEL"
    )
    # `host:port` where the worker serves the Temporal SDK's metrics to Prometheus; unset: none.
    worker_metrics_address: Annotated[str | None, Unset] = Field(
        None, alias="WORKER_METRICS_ADDRESS", pattern=r"^[^\s:]+:\d{1,5}$"
    )

    # The seller on every invoice (P17), checked like the holder's data (check digits, formats).
    # The defaults are the dev-only placeholders of renewals/payments.py `dev_seller`.
    seller_name: Text80 = Field(_DEV_SELLER.name, alias="SELLER_NAME")
    seller_vat: PartitaIva = Field(_DEV_SELLER.vat_number, alias="SELLER_VAT")
    seller_tax_code: Annotated[CodiceFiscale | None, Unset] = Field(_DEV_SELLER.tax_code, alias="SELLER_TAX_CODE")
    seller_tax_regime: TaxRegime = Field(_DEV_SELLER.tax_regime, alias="SELLER_TAX_REGIME")
    seller_street: Text60 = Field(_DEV_SELLER.address.street, alias="SELLER_STREET")
    seller_cap: Cap = Field(_DEV_SELLER.address.cap, alias="SELLER_CAP")
    seller_comune: Text60 = Field(_DEV_SELLER.address.comune, alias="SELLER_COMUNE")
    seller_provincia: Provincia = Field(_DEV_SELLER.address.provincia, alias="SELLER_PROVINCIA")
    seller_iban: Iban = Field(_DEV_SELLER.iban, alias="SELLER_IBAN")

    # SdI over SDICoop (P18): the RiceviFile endpoint and the PEM certificate SdI signs its
    # notifications with. Both unset: `make run` and the tests start the local SdI (stack/sdi.py)
    # and point the stack at it. Production also needs the client certificate SDICoop requires.
    sdi_url: Annotated[str | None, Unset] = Field(None, alias="SDI_URL")
    sdi_signing_cert: Annotated[Path | None, Unset] = Field(None, alias="SDI_SIGNING_CERT")
    sdi_client_cert: Annotated[Path | None, Unset] = Field(None, alias="SDI_CLIENT_CERT")
    sdi_client_key: Annotated[Path | None, Unset] = Field(None, alias="SDI_CLIENT_KEY", validate_default=True)
    sdi_ca_cert: Annotated[Path | None, Unset] = Field(None, alias="SDI_CA_CERT")
    # The local SdI's port when `make run` starts it.
    sdi_local_port: int = Field(8088, alias="SDI_LOCAL_PORT")
    # The waits of P18 (renewals/delivery.py SdiPolicy).
    sdi_in_doubt_wait: Duration = Field(timedelta(hours=1), alias="SDI_IN_DOUBT_WAIT")
    sdi_outcome_within: Duration = Field(timedelta(days=5), alias="SDI_OUTCOME_WITHIN")
    sdi_resend_within: Duration = Field(timedelta(days=5), alias="SDI_RESEND_WITHIN")
    sdi_urgent_after: Duration = Field(timedelta(days=3), alias="SDI_URGENT_AFTER")
    sdi_alarm_after: Duration = Field(timedelta(days=12), alias="SDI_ALARM_AFTER")

    @field_validator("sdi_client_key")
    @classmethod
    def _sdi_pair(cls, key: Path | None, info: ValidationInfo) -> Path | None:
        if (info.data.get("sdi_client_cert") is None) != (key is None):
            raise ValueError("SDI_CLIENT_CERT and SDI_CLIENT_KEY go together: set both or neither")
        return key

    @field_validator("sdi_url")
    @classmethod
    def _sdi_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        parsed = urlsplit(url)
        if parsed.scheme == "https" and parsed.hostname:
            return url
        if parsed.scheme == "http" and parsed.hostname and is_loopback(parsed.hostname):
            return url
        raise ValueError("must be an https:// URL (plain http:// only to loopback, for a local SdI)")

    def sdi_policy(self) -> SdiPolicy:
        return SdiPolicy(
            in_doubt_wait=self.sdi_in_doubt_wait,
            outcome_within=self.sdi_outcome_within,
            resend_within=self.sdi_resend_within,
            urgent_after=self.sdi_urgent_after,
            alarm_after=self.sdi_alarm_after,
        )

    @field_validator("panel_secret", "payments_secret")
    @classmethod
    def _secret_list(cls, value: str) -> str:
        values = split_secrets(value)
        if not 1 <= len(values) <= 2 or not all(values):
            raise ValueError('one value, or two for a rotation ("current,previous"), none empty')
        if any(len(one.encode()) < 8 for one in values):
            raise ValueError("each value must be at least 8 bytes")
        return value

    @property
    def panel_secrets(self) -> tuple[str, ...]:
        """The values that verify a panel request; the first is the one to sign with."""
        return split_secrets(self.panel_secret)

    @property
    def payments_secrets(self) -> tuple[str, ...]:
        """The values that verify a payment event; the first is the one to sign with."""
        return split_secrets(self.payments_secret)

    @field_validator("temporal_tls_key")
    @classmethod
    def _tls_pair(cls, key: Path | None, info: ValidationInfo) -> Path | None:
        if (info.data.get("temporal_tls_cert") is None) != (key is None):
            raise ValueError(
                "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH go together: set both or neither"
            )
        return key

    def seller(self) -> Seller:
        """The issuer of every invoice, from the SELLER_* variables."""
        return Seller(
            name=self.seller_name,
            vat_number=self.seller_vat,
            tax_code=self.seller_tax_code,
            tax_regime=self.seller_tax_regime,
            address=Address(
                street=self.seller_street,
                cap=self.seller_cap,
                comune=self.seller_comune,
                provincia=self.seller_provincia,
            ),
            iban=self.seller_iban,
        )

    @field_validator("auto_renew_lead")
    @classmethod
    def _lead_in_days(cls, value: timedelta) -> timedelta:
        if value % timedelta(days=1) or value < timedelta(0):
            raise ValueError("write whole days, e.g. 30d")
        return value

    def year(self) -> YearPolicy:
        """The daily run's calendar (P15, P16)."""
        return YearPolicy(
            notice_days=list(self.expiry_notices),
            auto_renew_lead_days=self.auto_renew_lead.days,
            reactivation_days=self.reactivation_window.days,
        )

    def policy(self) -> Policy:
        """The waits a renewal runs under; they travel in the workflow's input."""
        return Policy(
            reminders=list(self.reminders),
            payment_deadline=self.payment_deadline,
            cart_idle=self.cart_idle,
            reactivation_window=self.reactivation_window,
            instant_payment_grace=self.instant_payment_grace,
            reactivation_last_day_included=True,
            reactivate_with_auto_renew=True,
            panel_ui_url=self.panel_ui_url,
            charge_retries=list(self.charge_retries),
        )


SECRET_VARIABLES = frozenset({"PANEL_SECRET", "PAYMENTS_SECRET", "TEMPORAL_API_KEY", "DATABASE_URL"})


class ConfigurationError(SystemExit):
    """A bad environment value: the process stops at start with a message naming the variable."""


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or an interface: reachable from elsewhere, presumably


def _secret_problems(name: str, settings: Settings, values: tuple[str, ...]) -> list[str]:
    field = "panel_secret" if name == "PANEL_SECRET" else "payments_secret"
    if field not in settings.model_fields_set:
        return [f"{name} must be set (the dev default is for loopback only)"]
    problems = []
    for value in values:
        lowered = value.lower()
        if value in DEV_SECRETS.values():
            problems.append(f"{name} must not be a dev value the README publishes")
        elif any(word in lowered for word in PLACEHOLDER_WORDS):
            problems.append(f"{name} must not be a placeholder (change-me, example, ...): generate one")
        elif len(value.encode()) < MIN_SECRET_BYTES:
            problems.append(f"{name} must be at least {MIN_SECRET_BYTES} bytes (openssl rand -hex 32)")
        elif len(set(value)) < MIN_DISTINCT_CHARACTERS:
            problems.append(f"{name} must be random, at least {MIN_DISTINCT_CHARACTERS} distinct characters")
    return sorted(set(problems), key=problems.index)


def exposure_problems(settings: Settings) -> list[str]:
    """Why the ingress must not listen on INGRESS_HOST with these secrets: nothing on loopback;
    elsewhere both secrets set, strong (32 bytes, random, no dev or placeholder value) and
    different, and no dev pages. Each problem names the variable and the rule, never the value."""
    if is_loopback(settings.ingress_host):
        return []
    problems = _secret_problems("PANEL_SECRET", settings, settings.panel_secrets)
    problems += _secret_problems("PAYMENTS_SECRET", settings, settings.payments_secrets)
    if set(settings.panel_secrets) & set(settings.payments_secrets):
        problems.append("PANEL_SECRET and PAYMENTS_SECRET must differ (no value in both)")
    if settings.panel_ui_dev_login:
        problems.append("PANEL_UI_DEV_LOGIN must be off (its pages sign in as any customer and register payments)")
    return problems


def require_safe_exposure(settings: Settings) -> None:
    """Stop the ingress at start, with one line, when exposure_problems finds any."""
    problems = exposure_problems(settings)
    if problems:
        raise ConfigurationError(
            f"refusing to serve on INGRESS_HOST={settings.ingress_host} (not loopback): " + "; ".join(problems)
        )


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; a bad value stops the process with `VARIABLE: what is wrong`."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            name = ".".join(str(part) for part in problem["loc"]) or "configuration"
            # Never echo a secret into a log, even a wrong one.
            shown = "(hidden)" if name in SECRET_VARIABLES else repr(problem.get("input"))
            lines.append(f"{name}: {problem['msg']} (got {shown})")
        raise ConfigurationError("invalid configuration:\n  " + "\n  ".join(lines)) from None
