"""Typed settings read from the environment, with defaults that point at the local stack.

Every service subclasses :class:`ServiceSettings` and adds only what it uses. Values come from
environment variables of the same name (case-insensitive), so ``REDIS_URL=... python -m
tripline.core`` is all it takes to point a service elsewhere.
"""

from __future__ import annotations

import socket
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Environment = Literal["local", "production"]
TraceExporter = Literal["none", "otlp", "memory", "console"]
JwtAlgorithm = Literal["HS256", "RS256"]

LOCAL_JWT_SECRET = "tripline-local-development-secret-change-me"  # noqa: S105 (documented local default)
LOCAL_S3_KEY_ID = "tripline-local"


def split_csv(value: object) -> object:
    """Accept ``a,b,c`` from the environment as well as a real list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class ServiceSettings(BaseSettings):
    """Settings shared by every Tripline process."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    service_name: str = "tripline"
    environment: Environment = "local"
    instance_id: str = Field(default_factory=socket.gethostname)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool = True
    drain_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Seconds /health/ready reports draining after SIGTERM before stopping.",
    )

    redis_url: str = "redis://127.0.0.1:6380/0"
    redis_max_connections: int = Field(default=200, ge=1)
    redis_socket_timeout_s: float = Field(default=2.0, gt=0)
    # The broker hands an unacknowledged task to another worker after this long (a worker
    # died mid-task); every task must finish, and every retry wait be, well within it.
    celery_visibility_timeout_s: int = Field(default=3600, ge=1)

    mongo_url: str = "mongodb://127.0.0.1:27018/?directConnection=true"
    mongo_db: str = "tripline"
    mongo_min_pool: int = Field(default=10, ge=0)
    mongo_max_pool: int = Field(default=100, ge=1)
    mongo_wait_queue_timeout_ms: int = Field(default=2000, ge=1)
    mongo_server_selection_timeout_ms: int = Field(default=3000, ge=1)
    mongo_query_timeout_ms: int = Field(default=5000, ge=1)
    # Writes are acknowledged once journaled (write concern j:true): with w:1 alone a killed
    # server may lose writes it acknowledged (SecantusDB, the local stand-in, lost every write
    # since its last checkpoint when SIGKILLed; mongod up to its journal interval). Measured on
    # SecantusDB: an upsert 0.7 ms without, 1.1-3.5 ms with.
    mongo_journal: bool = True
    # A dependency that stopped answering (tripline.common.guard) is refused at once and probed
    # this often, each probe bounded by the timeout; recovery is noticed within about their sum.
    dependency_probe_interval_s: float = Field(default=0.5, gt=0)
    dependency_probe_timeout_s: float = Field(default=1.0, gt=0)
    # Every outside provider's breaker (tripline.common.providers.provider_breaker) also opens
    # when this share of at least BREAKER_MIN_CALLS calls within BREAKER_WINDOW_S failed, and,
    # with BREAKER_OPEN_ON_TIMEOUT, on the first call that timed out.
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_min_calls: int = Field(default=20, ge=1)
    breaker_window_s: float = Field(default=30.0, gt=0)
    breaker_open_on_timeout: bool = True

    s3_endpoint_url: str | None = "http://127.0.0.1:9000"
    s3_bucket: str = "tripline-documents"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = LOCAL_S3_KEY_ID
    s3_secret_access_key: SecretStr | None = SecretStr("tripline-local-secret")
    s3_read_timeout_s: float = Field(default=10.0, gt=0)
    s3_max_attempts: int = Field(default=3, ge=1)
    s3_create_bucket: bool = Field(
        default=True,
        description="Create the bucket when missing; defaults to true only when local.",
    )

    jwt_algorithm: JwtAlgorithm = "HS256"
    jwt_secret: SecretStr = SecretStr(LOCAL_JWT_SECRET)
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: int = Field(default=30, ge=0)

    otel_exporter: TraceExporter = "none"
    otel_exporter_otlp_endpoint: str | None = None
    otel_sample_ratio: float = Field(default=1.0, ge=0, le=1)

    health_check_timeout_s: float = Field(default=1.5, gt=0)
    fault_delay_s: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="Added to every request but probes and metrics: a slow service on purpose, "
        "for the load test's release gate. Refused in production.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "s3_endpoint_url",
        "s3_access_key_id",
        "jwt_public_key",
        "jwt_jwks_url",
        "otel_exporter_otlp_endpoint",
    )
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("s3_secret_access_key")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @model_validator(mode="before")
    @classmethod
    def _bucket_creation_follows_environment(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("s3_create_bucket") in (None, ""):
            return {**data, "s3_create_bucket": data.get("environment", "local") == "local"}
        return data

    @model_validator(mode="before")
    @classmethod
    def _an_otlp_endpoint_turns_on_otlp(cls, data: Any) -> Any:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` alone exports there: naming a collector and then
        recording nothing for it is never what was meant. An explicit ``OTEL_EXPORTER``
        (``none`` included) still wins."""
        if (
            isinstance(data, dict)
            and data.get("otel_exporter_otlp_endpoint")
            and data.get("otel_exporter") in (None, "")
        ):
            return {**data, "otel_exporter": "otlp"}
        return data

    @model_validator(mode="after")
    def _no_local_defaults_in_production(self) -> ServiceSettings:
        """Refuse to start in production with the committed local secrets: a forgotten
        ``JWT_SECRET`` would let anyone mint an admin token."""
        if self.environment != "production":
            return self
        if self.fault_delay_s:
            raise ValueError("FAULT_DELAY_S slows every request on purpose: not in production")
        if self.jwt_algorithm == "HS256" and (
            self.jwt_secret.get_secret_value() == LOCAL_JWT_SECRET
        ):
            raise ValueError("set JWT_SECRET (or JWT_ALGORITHM=RS256 with a key) in production")
        if self.s3_access_key_id == LOCAL_S3_KEY_ID:
            raise ValueError(
                "set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY in production, or set both "
                "empty to use the default AWS credential chain"
            )
        return self
