"""Gateway settings: upstreams, limits, shedding, breakers and retries."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tripline.common.settings import CsvList, ServiceSettings, split_csv
from tripline.gateway.clientaddr import parse_networks
from tripline.gateway.concurrency import LimitConfig


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
    # Core's replicas when the gateway spreads over them itself (comma-separated, round-robin,
    # a refused connection moving on to the next); empty: CORE_URL alone (in Kubernetes, the
    # Service in front of every replica).
    core_urls: CsvList = Field(default_factory=list)
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
    # Proxies whose X-Forwarded-For is believed (CIDRs, comma-separated).
    trusted_proxies: CsvList = Field(default_factory=list)

    # Shedding on the gateway's own event-loop lag (shedding.py): the standing lag tolerated
    # and how long it must last before the level moves one step.
    shed_target_s: float = Field(default=0.025, gt=0)
    shed_interval_s: float = Field(default=0.5, gt=0)
    # At the top level, a trip party's normal request is refused only once the standing lag is
    # this many targets (100 ms by default).
    shed_in_trip_lag_factor: float = Field(default=4.0, ge=1)

    # Shedding per upstream (concurrency.py): an adaptive concurrency limit per upstream.
    # The median queueing delay (latency over the route's fastest) the limit aims at, 50 ms.
    shed_upstream_target_s: float = Field(default=0.05, gt=0)
    # How often the limit moves (0.1 s), each time on at least this many answers (10).
    shed_upstream_interval_s: float = Field(default=0.1, gt=0)
    shed_upstream_min_samples: int = Field(default=10, ge=1)
    # The limit (requests in flight per upstream) at start, 100, and its bounds, 5 and 1000.
    shed_upstream_limit_initial: float = Field(default=100.0, ge=1)
    shed_upstream_limit_min: float = Field(default=5.0, ge=1)
    shed_upstream_limit_max: float = Field(default=1000.0, ge=1)
    # How long a route's fastest answer counts as its no-load latency, 60 s.
    shed_upstream_baseline_s: float = Field(default=60.0, gt=0)
    # Low priority is refused at this share of the limit (0.5), normal requests of users in an
    # active trip at this multiple of it (1.25); other normal requests at the limit itself.
    shed_upstream_low_share: float = Field(default=0.5, gt=0, le=1)
    shed_upstream_in_trip_share: float = Field(default=1.25, ge=1)
    # The trip state of a sender (core's active-trip:<user> key in Redis), asked only for
    # requests shedding would refuse as browsing: remembered 5 s, waited for at most 50 ms.
    active_trip_cache_s: float = Field(default=5.0, gt=0)
    active_trip_wait_s: float = Field(default=0.05, gt=0)

    breaker_failure_threshold: int = Field(default=50, ge=1)
    breaker_reset_s: float = Field(default=30.0, gt=0)
    breaker_half_open_calls: int = Field(default=1, ge=1)
    retry_max_attempts: int = Field(default=2, ge=1)
    retry_budget_ratio: float = Field(default=0.1, ge=0)

    @field_validator("tracking_urls", "core_urls", "trusted_proxies", mode="before")
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

    @field_validator("core_urls")
    @classmethod
    def _core_urls(cls, value: list[str]) -> list[str]:
        return [base_url(url) for url in value]

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _upstream_limits(self) -> GatewaySettings:
        # Refused at start-up with the setting's name, not at the first request's lifespan.
        upstream_limit_config(self)
        return self


def upstream_limit_config(settings: GatewaySettings) -> LimitConfig:
    """The per-upstream limits' parameters; ValueError when they contradict each other (a
    minimum above the maximum, say)."""
    return LimitConfig(
        target_s=settings.shed_upstream_target_s,
        interval_s=settings.shed_upstream_interval_s,
        min_samples=settings.shed_upstream_min_samples,
        initial_limit=settings.shed_upstream_limit_initial,
        min_limit=settings.shed_upstream_limit_min,
        max_limit=settings.shed_upstream_limit_max,
        baseline_window_s=settings.shed_upstream_baseline_s,
        low_share=settings.shed_upstream_low_share,
        in_trip_share=settings.shed_upstream_in_trip_share,
    )
