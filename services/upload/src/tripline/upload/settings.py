"""Upload service settings."""

from __future__ import annotations

from tripline.common.settings import ServiceSettings


class UploadSettings(ServiceSettings):
    service_name: str = "upload"
    port: int = 8082
