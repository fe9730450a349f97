"""Worker settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tripline.common.settings import ServiceSettings


class WorkerSettings(ServiceSettings):
    service_name: str = "worker"
    worker_concurrency: int = Field(default=2, ge=1)
    worker_pool: Literal["prefork", "threads", "solo"] = "prefork"
    # The queues this worker consumes (comma-separated; all when empty). The local stack runs
    # one worker for documents (threads) and one for the rest (prefork).
    worker_queues: str = ""
    # Kubernetes probes: /health/live and /health/ready on this port (off when unset).
    worker_health_port: int | None = Field(default=None, ge=0, le=65535)

    # The notification provider (the sandbox locally) and how the worker treats it.
    notification_sandbox_url: str = "http://127.0.0.1:8091"
    notification_timeout_s: float = Field(default=5.0, gt=0)
    notification_max_attempts: int = Field(default=10, ge=1)
    notification_retry_base_s: float = Field(default=1.0, gt=0)
    notification_retry_max_s: float = Field(default=300.0, gt=0)
    notification_breaker_failures: int = Field(default=50, ge=1)
    notification_breaker_reset_s: float = Field(default=30.0, gt=0)

    # The payment provider and the confirmation of charges core left pending. The attempts
    # span hours at the capped backoff: a rider's charge is worth waiting for.
    payment_sandbox_url: str = "http://127.0.0.1:8090"
    payment_timeout_s: float = Field(default=5.0, gt=0)
    payment_max_attempts: int = Field(default=100, ge=1)
    payment_retry_base_s: float = Field(default=1.0, gt=0)
    payment_retry_max_s: float = Field(default=300.0, gt=0)
    payment_breaker_failures: int = Field(default=50, ge=1)
    payment_breaker_reset_s: float = Field(default=30.0, gt=0)

    # Documents: the largest accepted file, and retries of S3/MongoDB/Redis not answering.
    document_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    document_max_attempts: int = Field(default=8, ge=1)
    document_retry_base_s: float = Field(default=1.0, gt=0)
    document_retry_max_s: float = Field(default=120.0, gt=0)

    @field_validator("worker_health_port", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _retries_fit_the_visibility_timeout(self) -> WorkerSettings:
        # A retry waits on the worker as an unacknowledged message: it must come back well
        # within the broker's visibility timeout, or Redis hands it to a second worker meanwhile.
        limit = self.celery_visibility_timeout_s / 4
        for name in ("notification_retry_max_s", "payment_retry_max_s", "document_retry_max_s"):
            if getattr(self, name) > limit:
                raise ValueError(
                    f"{name} must be at most CELERY_VISIBILITY_TIMEOUT_S / 4 ({limit:g})"
                )
        return self
