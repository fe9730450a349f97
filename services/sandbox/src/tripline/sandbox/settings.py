"""Settings of the sandbox providers."""

from __future__ import annotations

from pydantic import Field

from tripline.common.settings import ServiceSettings


class SandboxSettings(ServiceSettings):
    """The sandbox keeps everything in memory; these bound how much and for how long."""

    service_name: str = "sandbox"
    port: int = Field(default=8090, ge=0, le=65535)
    max_records: int = Field(
        default=10_000,
        ge=1,
        description="Payments, notifications and idempotency keys kept per provider.",
    )
    max_hang_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest a request waits in hang mode before answering 503 anyway.",
    )
