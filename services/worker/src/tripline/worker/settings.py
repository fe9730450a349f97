"""Worker settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tripline.common.settings import ServiceSettings


class WorkerSettings(ServiceSettings):
    service_name: str = "worker"
    worker_concurrency: int = Field(default=2, ge=1)
    worker_pool: Literal["prefork", "threads", "solo"] = "prefork"
