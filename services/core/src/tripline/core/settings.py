"""Core service settings."""

from __future__ import annotations

from pydantic import Field

from tripline.common.settings import ServiceSettings


class CoreSettings(ServiceSettings):
    service_name: str = "core"
    port: int = 8081

    # Cache lifetimes (DESIGN.md, "Cache"): profiles 5 min, trip search 30 s.
    profile_cache_ttl_s: float = Field(default=300.0, gt=0)
    trip_cache_ttl_s: float = Field(default=30.0, gt=0)
    search_cache_ttl_s: float = Field(default=30.0, gt=0)
    # How long this replica keeps a value in memory in front of Redis.
    local_cache_ttl_s: float = Field(default=2.0, gt=0)
    # While MongoDB is away, reads answer from a last known copy kept this long in Redis, and
    # queued writes are retried this often.
    stale_copy_keep_s: int = Field(default=86_400, ge=1)
    pending_writes_interval_s: float = Field(default=1.0, gt=0)
    analytics_stream_max: int = Field(default=100_000, ge=1)

    # SOS (DESIGN.md, "Trips"): who is told besides the rider's emergency contact, and how often
    # the archiver moves durable SOS records from the Redis stream into MongoDB.
    sos_operations_address: str = "operations@tripline.local"
    sos_archive_interval_s: float = Field(default=1.0, gt=0)
    # A pending SOS entry idle this long belongs to a replica presumed dead and is taken over.
    sos_claim_idle_s: float = Field(default=30.0, gt=0)

    # The payment provider (the sandbox locally): each call's bound, and the breaker in front of
    # it (tripline.common.providers.provider_breaker: that many failures in a row, or the
    # shared failure-rate and timeout rules, open it; one probe goes through after the reset).
    payment_sandbox_url: str = "http://127.0.0.1:8090"
    payment_timeout_s: float = Field(default=3.0, gt=0)
    payment_breaker_failures: int = Field(default=50, ge=1)
    payment_breaker_reset_s: float = Field(default=30.0, gt=0)
