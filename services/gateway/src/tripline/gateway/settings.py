"""Gateway settings: upstreams, limits, shedding, breakers and retries."""

from __future__ import annotations

from pydantic import Field, field_validator

from tripline.common.settings import CsvList, ServiceSettings, split_csv
from tripline.gateway.clientaddr import parse_networks


def base_url(value: str) -> str:
    """``http://core:8081/`` → ``http://core:8081``; raises ValueError for anything but an
    absolute http(s) URL without a query."""
    url = value.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or "?" in url or "#" in url:
        raise ValueError(f"{value!r} is not an http(s) base URL like http://core:8081")
    return url


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    port: int = 8080

    core_url: str = "http://127.0.0.1:8081"
    upload_url: str = "http://127.0.0.1:8082"
    tracking_urls: CsvList = Field(
        default_factory=lambda: ["http://127.0.0.1:8083", "http://127.0.0.1:8085"]
    )
    monitor_url: str = "http://127.0.0.1:8084"

    upstream_connect_timeout_s: float = Field(default=2.0, gt=0)
    upstream_max_connections: int = Field(default=500, ge=1)
    # Below the upstreams' own keep-alive (uvicorn closes idle connections after 5 s), so a
    # pooled connection is never reused just as the upstream closes it.
    upstream_keepalive_s: float = Field(default=4.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # Verified tokens remembered until they expire (about 400 bytes each).
    jwt_cache_size: int = Field(default=100_000, ge=0)
    health_cache_s: float = Field(default=2.0, ge=0)

    # Requests per minute per user (else per client address), shared by every replica.
    limit_standard_per_min: int = Field(default=100, ge=1)
    limit_critical_per_min: int = Field(default=300, ge=1)
    limit_upload_per_min: int = Field(default=20, ge=1)
    # Replicas sharing the limits: each takes this share of a limit while Redis is away.
    gateway_replicas: int = Field(default=1, ge=1)
    limit_redis_timeout_s: float = Field(default=0.25, gt=0)
    limit_redis_retry_s: float = Field(default=5.0, gt=0)
    # Proxies whose X-Forwarded-For is believed (CIDRs, comma-separated).
    trusted_proxies: CsvList = Field(default_factory=list)

    shed_target_s: float = Field(default=0.025, gt=0)
    shed_interval_s: float = Field(default=0.5, gt=0)

    breaker_failure_threshold: int = Field(default=50, ge=1)
    breaker_reset_s: float = Field(default=30.0, gt=0)
    breaker_half_open_calls: int = Field(default=1, ge=1)
    retry_max_attempts: int = Field(default=2, ge=1)
    retry_budget_ratio: float = Field(default=0.1, ge=0)

    @field_validator("tracking_urls", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("core_url", "upload_url", "monitor_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return base_url(value)

    @field_validator("tracking_urls")
    @classmethod
    def _base_urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one tracking URL is needed")
        return [base_url(url) for url in value]

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value
