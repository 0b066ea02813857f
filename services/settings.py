"""One typed settings object for every gridcall process; it fails fast on a bad value."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.ratelimit import parse_rule

DEV_SECRET = "dev-only-insecure-secret-change-me"
DATA_DIR = Path(__file__).parent / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDCALL_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    var_dir: Path = Path("var")
    database_url: str = ""
    kafka_bootstrap_servers: str | None = None
    kafka_enable_idempotence: bool = True
    kafka_partitions: int = Field(6, ge=1)
    kafka_session_timeout_ms: int = Field(10_000, ge=1_000)
    kafka_rebalance_timeout_ms: int = Field(5_000, ge=1_000)
    topic_prefix: str = Field("gridcall", pattern=r"^[A-Za-z0-9._-]+$")
    jurisdiction_file: Path = DATA_DIR / "district.yaml"
    policy_file: Path = DATA_DIR / "policy.yaml"
    timer_interval: float = Field(0.5, gt=0, description="seconds between polls for due SLA timers")
    timer_lease: float = Field(30, gt=0, description="seconds a replica holds due timers before others may fire them")
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    relay_interval: float = Field(0.2, gt=0, description="seconds between outbox polls")
    consumer_batch: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="records a consumer handles per transaction; default 50 on PostgreSQL, 10 on SQLite "
        "(one writer at a time: a batch holds up every other write while it runs)",
    )
    notifier_webhook_url: str | None = None
    rate_limit: str = Field("120/minute", description="per client (API key or IP) on residents' endpoints")
    shutdown_grace: float = Field(20, gt=0, description="seconds background loops get to finish on shutdown")

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, url: str) -> str:
        if url and not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError(
                "must be a postgresql+asyncpg:// URL (distributed mode) or a "
                "sqlite+aiosqlite:// URL (embedded mode); leave it unset for the embedded default"
            )
        return url

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, rule: str) -> str:
        parse_rule(rule)
        return rule

    @field_validator("notifier_webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url or None

    @model_validator(mode="after")
    def _no_placeholder_secret_in_prod(self) -> "Settings":
        if self.env == "prod" and self.secret_key.get_secret_value() == DEV_SECRET:
            raise ValueError("GRIDCALL_SECRET_KEY must be set to a real secret when GRIDCALL_ENV=prod")
        if self.env == "prod" and len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("GRIDCALL_SECRET_KEY must be at least 32 characters when GRIDCALL_ENV=prod")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'gridcall.db'}"

    @property
    def embedded(self) -> bool:
        """Embedded mode: no broker configured; the durable local bus lives beside the database."""
        return not self.kafka_bootstrap_servers

    def topic(self, stream: str) -> str:
        return f"{self.topic_prefix}.{stream}"
