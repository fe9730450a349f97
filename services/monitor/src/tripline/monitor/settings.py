"""Monitor service settings."""

from __future__ import annotations

from tripline.common.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    service_name: str = "monitor"
    port: int = 8084
