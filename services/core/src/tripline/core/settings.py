"""Core service settings."""

from __future__ import annotations

from tripline.common.settings import ServiceSettings


class CoreSettings(ServiceSettings):
    service_name: str = "core"
    port: int = 8081
