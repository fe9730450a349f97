"""Tracking service settings."""

from __future__ import annotations

from tripline.common.settings import ServiceSettings


class TrackingSettings(ServiceSettings):
    service_name: str = "tracking"
    port: int = 8083
