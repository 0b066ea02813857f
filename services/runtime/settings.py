"""One typed settings object for every gridcall process; it fails fast on a bad value.

The secret that signs staff and ops tokens: `GRIDCALL_SECRET_KEY` when it is set, and it must
be set, to 32 or more characters, when `GRIDCALL_ENV=prod`. Otherwise (dev and test) the key
is the one kept in `<var_dir>/secret_key`: generated at random (mode 0600) by the first process
that needs it and reused from then on, so `make run` keeps its tokens valid across restarts,
`gridcall token issue` run beside it signs with the same key, and no key ships in the source.
Tests that issue tokens set the secret explicitly."""

import os
import re
import secrets
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from services.runtime.failpoints import parse as parse_failpoints
from services.web.ratelimit import parse_rule

SECRET_FILE = "secret_key"
# Once shipped in the source as the development default: known to anyone, so never a real secret.
PUBLISHED_SECRETS = frozenset({"dev-only-insecure-secret-change-me"})
DATA_DIR = Path(__file__).parents[1] / "district" / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDCALL_", extra="ignore", validate_by_name=True)

    env: Literal["dev", "test", "prod"] = "dev"
    var_dir: Path = Path("var")
    database_url: str = ""
    # Distributed mode: a database of each service's own (each falls back to database_url).
    intake_database_url: str = ""
    dispatcher_database_url: str = ""
    departments_database_url: str = ""
    notifier_database_url: str = ""
    kafka_bootstrap_servers: str | None = None
    kafka_enable_idempotence: bool = True
    kafka_partitions: int = Field(6, ge=1)
    kafka_replication_factor: int = Field(
        1, ge=1, description="replicas of each topic gridcall creates (3 in production)"
    )
    kafka_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of each topic gridcall creates (2 with 3 replicas); the broker's if unset",
    )
    kafka_session_timeout_ms: int = Field(10_000, ge=1_000)
    kafka_rebalance_timeout_ms: int = Field(5_000, ge=1_000)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how the services reach the broker: SASL_SSL for a managed or shared Kafka"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: FilePath | None = Field(None, description="CAs to trust for the broker's TLS; else the system's")
    kafka_ssl_certfile: FilePath | None = Field(None, description="a client certificate, for mutual TLS")
    kafka_ssl_keyfile: FilePath | None = Field(None, description="the client certificate's key")
    topic_prefix: str = Field("gridcall", pattern=r"^[A-Za-z0-9._-]+$")
    jurisdiction_file: Path = DATA_DIR / "district.yaml"
    policy_file: Path = DATA_DIR / "policy.yaml"
    timer_interval: float = Field(0.5, gt=0, description="seconds between polls for due SLA timers")
    timer_lease: float = Field(30, gt=0, description="seconds a replica holds due timers before others may fire them")
    secret_key: SecretStr | None = Field(
        None, description=f"signs tokens; unset outside prod: the key in <var_dir>/{SECRET_FILE}, generated once"
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="log lines as JSON or text; auto: text on a terminal, JSON otherwise"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    relay_interval: float = Field(0.2, gt=0, description="seconds between outbox polls")
    inbox_horizon_days: int = Field(
        14,
        ge=1,
        description="days a consumer remembers an event it handled, to refuse it when it comes again; longer than "
        "the broker keeps its records plus the longest a consumer may lag (services/storage/pruning.py)",
    )
    delivery_retention_days: int = Field(
        30,
        ge=1,
        description="days a finished outbound delivery (delivered, failed for good, suppressed) and the notifier's "
        "notification it belongs to are kept after they finished, for ops to read and re-drive; never shorter than "
        "GRIDCALL_INBOX_HORIZON_DAYS, since their unique keys keep a redelivered event from sending twice. Dead and "
        "waiting deliveries are kept whatever their age (services/storage/pruning.py)",
    )
    consumer_batch: int = Field(
        50,
        ge=1,
        le=1000,
        description="records a consumer handles per transaction at most (on SQLite a batch holds up every "
        "other write while it runs, but set-based handlers make a batch of 50 cheaper than five of 10)",
    )
    group_commit_batch: int = Field(
        256, ge=1, le=5000, description="requests a group commit (intake's reports) writes per transaction at most"
    )
    group_commit_linger: float = Field(
        0.0,
        ge=0,
        le=0.1,
        description="seconds a group commit waits for more requests before it writes; 0: it writes what is "
        "waiting, and what arrives meanwhile forms the next batch",
    )
    notifier_webhook_url: str | None = None
    notifier_timeout: float = Field(5.0, gt=0, le=300, description="seconds the notifier's webhook may take to answer")
    delivery_retry_schedule: str = Field(
        "0s,5s,5m,30m,2h,5h,10h,10h",
        # GRIDCALL_ADAPTER_RETRY_SCHEDULE: its name while only the department adapters had a schedule
        validation_alias=AliasChoices("GRIDCALL_DELIVERY_RETRY_SCHEDULE", "GRIDCALL_ADAPTER_RETRY_SCHEDULE"),
        description="when an outbound delivery (a department's webhook, a notification) is attempted: the delay "
        "before each attempt, comma-separated with a unit (ms, s, m, h); after the last one a delivery is dead",
    )
    notifier_lease: float = Field(
        120,
        gt=0,
        description="seconds a notifier replica holds the deliveries it is sending; if it dies, another (or it, "
        "restarted) sends them after this long: an email again with the same Message-ID, an SMS dead as unknown",
    )
    delivery_receipt_wait: float = Field(
        600,
        gt=0,
        description="seconds a delivery whose provider accepted it (or that got no answer) waits for its receipt; "
        "then it is sent again where the receiver deduplicates, else dead as unknown",
    )
    adapter_timeout: float = Field(10.0, gt=0, le=300, description="seconds a department's webhook may take to answer")
    rate_limit: str = Field("120/minute", description="per client (API key or IP) on residents' endpoints")
    rate_limit_store: Literal["auto", "memory", "database"] = Field(
        "auto",
        description="where intake counts the rate limit: database (intake's PostgreSQL, so the limit holds across "
        "intake replicas) or memory (each process its own); auto: database on PostgreSQL, memory on SQLite",
    )
    trusted_proxies: str = Field(
        "",
        max_length=2000,
        description="the addresses (comma-separated IPs or networks, e.g. 10.0.0.0/8) of the reverse proxies in "
        "front of gridcall, whose X-Forwarded-For and X-Forwarded-Proto are believed; none by default, so a "
        "client cannot pick its own address (and with it its rate limit and idempotency scope)",
    )

    # The notifier's channels (notifier/channels/): each is on when its address is set.
    notifier_webhook_secret: SecretStr | None = Field(
        None, description="whsec_ secret signing the notifier's webhooks; required with GRIDCALL_NOTIFIER_WEBHOOK_URL"
    )
    smtp_host: str | None = Field(None, description="the SMTP server that sends email; email is on when this is set")
    smtp_port: int | None = Field(
        None, ge=1, le=65535, description="unset: 465 with GRIDCALL_SMTP_TLS=tls, 587 with starttls, 25 with none"
    )
    smtp_tls: Literal["none", "starttls", "tls"] = Field(
        "starttls", description="starttls: upgrade after connecting (587); tls: TLS from the start (465); none: plain"
    )
    smtp_user: str | None = Field(None, description="login name, if the server asks for one")
    smtp_password: SecretStr | None = None
    smtp_from: str | None = Field(
        None, description="the sender: an address, with a display name if wanted (兰溪区12345 <noreply@example.gov.cn>)"
    )
    smtp_timeout: float = Field(10.0, gt=0, le=300, description="seconds the SMTP server may take over one step")
    sms_url: str | None = Field(None, description="the SMS gateway's send endpoint; SMS is on when this is set")
    sms_access_key: str | None = Field(None, description="the gateway account's access key id")
    sms_access_secret: SecretStr | None = Field(None, description="the access key's secret: it signs each request")
    sms_sign_name: str | None = Field(None, description="the approved signature every SMS carries, such as 兰溪区12345")
    sms_receipt_secret: SecretStr | None = Field(
        None, description="whsec_ secret the gateway signs its delivery receipts with (Standard Webhooks)"
    )
    sms_timeout: float = Field(5.0, gt=0, le=300, description="seconds the SMS gateway may take to answer")
    sms_templates: dict[str, str] = Field(
        {},
        description='the provider\'s template code per message kind, JSON: {"case.received": "SMS_1001", ...}; '
        "every kind residents and staff get needs one when SMS is on",
    )
    sms_templates_en: dict[str, str] | None = Field(
        None, description="codes of English templates, if registered; without them English speakers get the Chinese SMS"
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="where residents reach gridcall: the base of the tracking and unsubscribe links in messages",
    )
    ops_email: list[str] = Field([], description="ops' addresses for supervision alerts and dead deliveries, JSON list")
    ops_phone: list[str] = Field([], description="ops' phone numbers for the same, JSON list")

    @field_validator("smtp_host", "smtp_user", "smtp_from", "sms_url", "sms_access_key", "sms_sign_name")
    @classmethod
    def _channel_text_blank_is_unset(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None

    @field_validator("smtp_password", "sms_access_secret", "notifier_webhook_secret", "sms_receipt_secret")
    @classmethod
    def _channel_secret_blank_is_unset(cls, secret: SecretStr | None) -> SecretStr | None:
        return secret if secret is not None and secret.get_secret_value().strip() else None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, such as https://12345.example.gov.cn")
        return url.rstrip("/")

    @field_validator("sms_url")
    @classmethod
    def _sms_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("smtp_from")
    @classmethod
    def _one_sender(cls, sender: str | None) -> str | None:
        from email.policy import default  # here, so that the channels' settings stay one block

        if sender is not None:
            header = default.header_factory("From", sender)
            if header.defects or len(header.addresses) != 1 or not header.addresses[0].domain:
                raise ValueError("must be one address, with a display name if wanted: 兰溪区12345 <noreply@example.cn>")
        return sender

    @field_validator("notifier_webhook_secret", "sms_receipt_secret")
    @classmethod
    def _whsec(cls, secret: SecretStr | None) -> SecretStr | None:
        from services.delivery.signing import key_of

        if secret is not None:
            key_of(secret.get_secret_value())
        return secret

    @model_validator(mode="after")
    def _channels_complete(self) -> "Settings":
        """A channel switched on without what it needs fails here, naming what to set."""
        if self.notifier_webhook_url and self.notifier_webhook_secret is None:
            raise ValueError(
                "GRIDCALL_NOTIFIER_WEBHOOK_SECRET must be set (a whsec_ secret: gridcall adapter secret prints "
                "a fresh one) when GRIDCALL_NOTIFIER_WEBHOOK_URL is"
            )
        if self.smtp_host and not self.smtp_from:
            raise ValueError("GRIDCALL_SMTP_FROM must be set when GRIDCALL_SMTP_HOST is: the address email comes from")
        if (self.smtp_user is None) != (self.smtp_password is None):
            raise ValueError("GRIDCALL_SMTP_USER and GRIDCALL_SMTP_PASSWORD are set together, or neither")
        if self.env == "prod" and self.smtp_host and self.smtp_user and self.smtp_tls == "none":
            raise ValueError("GRIDCALL_SMTP_TLS=none would send the SMTP password in clear: use starttls or tls")
        if self.sms_url:
            needed = {
                "GRIDCALL_SMS_ACCESS_KEY": self.sms_access_key,
                "GRIDCALL_SMS_ACCESS_SECRET": self.sms_access_secret,
                "GRIDCALL_SMS_SIGN_NAME": self.sms_sign_name,
                "GRIDCALL_SMS_RECEIPT_SECRET": self.sms_receipt_secret,
            }
            if missing := [name for name, value in needed.items() if value is None]:
                raise ValueError(f"{', '.join(missing)} must be set when GRIDCALL_SMS_URL is")
        return self

    @property
    def smtp_server_port(self) -> int:
        return self.smtp_port or {"tls": 465, "starttls": 587, "none": 25}[self.smtp_tls]

    shutdown_grace: float = Field(20, gt=0, description="seconds background loops get to finish on shutdown")
    shutdown_drain: float = Field(
        5,
        ge=0,
        le=300,
        description="seconds a process asked to stop by SIGTERM keeps serving, /readyz answering 503 and every "
        "answer closing its connection, while load balancers take it out of rotation (0: stop at once)",
    )
    failpoints: str = Field(
        "",
        max_length=500,
        description="tests only: name=seconds,... pauses at named places (services/runtime/failpoints.py)",
    )
    ready_outbox_age: float = Field(
        120, gt=0, description="seconds the oldest outbox row may wait before /readyz says the relay is stuck"
    )

    @field_validator(
        "database_url",
        "intake_database_url",
        "dispatcher_database_url",
        "departments_database_url",
        "notifier_database_url",
    )
    @classmethod
    def _known_driver(cls, url: str) -> str:
        if url and not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError(
                "must be a postgresql+asyncpg:// URL (distributed mode) or a "
                "sqlite+aiosqlite:// URL (embedded mode); leave it unset for the embedded default"
            )
        return url

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Self:
        wanted = self.kafka_min_insync_replicas
        if wanted is not None and wanted > self.kafka_replication_factor:
            raise ValueError(
                f"GRIDCALL_KAFKA_MIN_INSYNC_REPLICAS ({wanted}) cannot exceed GRIDCALL_KAFKA_REPLICATION_FACTOR "
                f"({self.kafka_replication_factor}): no write could ever be acknowledged"
            )
        return self

    @model_validator(mode="after")
    def _deliveries_outlive_the_inbox(self) -> Self:
        if self.delivery_retention_days < self.inbox_horizon_days:
            raise ValueError(
                f"GRIDCALL_DELIVERY_RETENTION_DAYS ({self.delivery_retention_days}) cannot be shorter than "
                f"GRIDCALL_INBOX_HORIZON_DAYS ({self.inbox_horizon_days}): an event redelivered after its delivery "
                "went, while the inbox no longer refused it, would send its messages again"
            )
        return self

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, rule: str) -> str:
        parse_rule(rule)
        return rule

    @model_validator(mode="after")
    def _shared_rate_limit_on_postgres(self) -> Self:
        if self.rate_limit_store == "database" and not self.db_url_of("intake").startswith("postgresql"):
            raise ValueError(
                "GRIDCALL_RATE_LIMIT_STORE=database needs intake's database on PostgreSQL; on SQLite (embedded mode, "
                "one process) leave it unset or set memory: the process's memory holds the limit"
            )
        return self

    @field_validator("notifier_webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url or None

    @field_validator("delivery_retry_schedule")
    @classmethod
    def _schedule(cls, schedule: str) -> str:
        parse_schedule(schedule)
        return schedule

    @field_validator("secret_key")
    @classmethod
    def _blank_is_unset(cls, secret: SecretStr | None) -> SecretStr | None:
        return secret if secret is not None and secret.get_secret_value().strip() else None

    @model_validator(mode="after")
    def _failpoints_in_tests_only(self) -> "Settings":
        if self.failpoints and self.env != "test":
            raise ValueError("GRIDCALL_FAILPOINTS is for tests: set it only with GRIDCALL_ENV=test")
        parse_failpoints(self.failpoints)
        return self

    @model_validator(mode="after")
    def _kafka_credentials(self) -> "Settings":
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_") and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"GRIDCALL_KAFKA_SECURITY_PROTOCOL={protocol} needs GRIDCALL_KAFKA_SASL_USERNAME and "
                "GRIDCALL_KAFKA_SASL_PASSWORD"
            )
        if protocol == "SASL_PLAINTEXT" and self.kafka_sasl_mechanism == "PLAIN" and self.env == "prod":
            raise ValueError(
                "SASL PLAIN without TLS sends the broker's password in clear: use GRIDCALL_KAFKA_SECURITY_PROTOCOL="
                "SASL_SSL, or a SCRAM mechanism"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("GRIDCALL_KAFKA_SSL_CERTFILE and GRIDCALL_KAFKA_SSL_KEYFILE go together (mutual TLS)")
        tls = self.kafka_ssl_cafile or self.kafka_ssl_certfile
        if tls and not protocol.endswith("SSL"):  # an operator who named a CA expects TLS, not plaintext
            raise ValueError(f"TLS files are set but GRIDCALL_KAFKA_SECURITY_PROTOCOL={protocol}: set SSL or SASL_SSL")
        if self.kafka_sasl_username and not protocol.startswith("SASL_"):
            raise ValueError(
                f"SASL credentials are set but GRIDCALL_KAFKA_SECURITY_PROTOCOL={protocol}: "
                "set SASL_SSL or SASL_PLAINTEXT"
            )
        return self

    @model_validator(mode="after")
    def _real_secret_in_prod(self) -> "Settings":
        if self.env != "prod":
            return self
        secret = self.secret_key.get_secret_value() if self.secret_key else None
        if secret is None or secret in PUBLISHED_SECRETS:
            raise ValueError("GRIDCALL_SECRET_KEY must be set to a real secret when GRIDCALL_ENV=prod")
        if len(secret) < 32:
            raise ValueError("GRIDCALL_SECRET_KEY must be at least 32 characters when GRIDCALL_ENV=prod")
        return self

    def signing_key(self) -> str:
        """The secret that signs and checks tokens (see the module's docstring). Outside prod,
        without GRIDCALL_SECRET_KEY, this creates `<var_dir>/secret_key` on first use."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return _local_secret(self.var_dir / SECRET_FILE)

    def environment(self, *names: str) -> dict[str, str]:
        """The values of environment variables no field can declare, because a data file names
        them (each department adapter's `secret_env` in the district file): read as the fields
        are, from the process environment, but by exact name; those not set are left out."""
        found = EnvSettingsSource(type(self), case_sensitive=True).env_vars
        return {name: value for name in names if (value := found.get(name)) is not None}

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'gridcall.db'}"

    def db_url_of(self, service: str | None) -> str:
        """The database of `service` (GRIDCALL_<SERVICE>_DATABASE_URL), else the shared one. In
        embedded mode (no broker) all four share one database, whose local bus they read."""
        own: str = getattr(self, f"{service}_database_url", "") if service and not self.embedded else ""
        return own or self.db_url

    @property
    def embedded(self) -> bool:
        """Embedded mode: no broker configured; the durable local bus lives beside the database."""
        return not self.kafka_bootstrap_servers

    def topic(self, stream: str) -> str:
        return f"{self.topic_prefix}.{stream}"

    @property
    def retry_schedule(self) -> list[float]:
        return parse_schedule(self.delivery_retry_schedule)


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")


def parse_schedule(schedule: str) -> list[float]:
    """'0s,5s,5m' -> [0.0, 5.0, 300.0]: the delay before each attempt, in seconds."""
    delays = []
    for part in schedule.split(","):
        found = _DELAY.match(part.strip())
        if not found:
            raise ValueError(f"{part.strip()!r} is not a delay such as 0s, 500ms, 5m or 2h")
        delays.append(float(found[1]) * _UNITS[found[2]])
    return delays


class SecretFileError(ValueError):
    pass


def _read_secret(path: Path) -> str:
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < 32:
        raise SecretFileError(f"{path} holds no usable secret (under 32 characters): delete it to have one generated")
    return secret


def _local_secret(path: Path) -> str:
    """The key in `path`, generated at random the first time. It is written to a private
    temporary file and linked into place, so processes starting together agree on one key and
    none reads a half-written file."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            spare = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            with os.fdopen(os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                out.write(secrets.token_urlsafe(48) + "\n")
            try:
                os.link(spare, path)
            except FileExistsError:
                pass  # another process was first: use its key
            finally:
                spare.unlink()
        return _read_secret(path)
    except OSError as exc:
        raise SecretFileError(f"cannot keep the signing key in {path}: {exc}; or set GRIDCALL_SECRET_KEY") from None
