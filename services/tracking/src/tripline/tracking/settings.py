"""Tracking service settings."""

from __future__ import annotations

from pydantic import Field

from tripline.common.settings import ServiceSettings


class TrackingSettings(ServiceSettings):
    service_name: str = "tracking"
    port: int = 8083

    # Core, for the parties of a trip that Redis does not know (its internal endpoint).
    core_url: str = "http://127.0.0.1:8081"
    core_timeout_s: float = Field(default=2.0, gt=0)
    # How long this replica trusts what it learnt of a trip's parties.
    parties_cache_s: float = Field(default=2.0, gt=0)

    # Locations: how long the latest one is kept, and which points are accepted.
    location_ttl_s: int = Field(default=300, ge=1)
    max_future_s: float = Field(default=5.0, ge=0)
    max_point_age_s: float = Field(default=600.0, gt=0)
    max_speed_mps: float = Field(default=70.0, gt=0)

    # History: points wait in a Redis stream and are written to MongoDB in bulk this often,
    # by one replica at a time, and kept there this many days.
    history_flush_s: float = Field(default=30.0, gt=0)
    history_retention_days: int = Field(default=90, ge=1)

    # Sockets: frames a socket may have queued before it counts as stuck, and how long one
    # send may take before the socket is closed.
    socket_buffer: int = Field(default=64, ge=2)
    socket_send_timeout_s: float = Field(default=5.0, gt=0)

    # The socket edge (DESIGN.md, "Where sockets enter"): upgrades share the gateway's
    # critical-tier counters in Redis.
    limit_critical_per_min: int = Field(default=300, ge=1)
    limit_redis_timeout_s: float = Field(default=0.25, gt=0)
    tracking_replicas: int = Field(default=2, ge=1)
