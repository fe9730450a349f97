"""Gateway settings: where the upstream services are and how long to wait for them."""

from __future__ import annotations

from pydantic import Field, field_validator

from tripline.common.settings import CsvList, ServiceSettings, split_csv


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
    upload_url: str = "http://127.0.0.1:8082"
    tracking_urls: CsvList = Field(
        default_factory=lambda: ["http://127.0.0.1:8083", "http://127.0.0.1:8085"]
    )
    monitor_url: str = "http://127.0.0.1:8084"

    upstream_connect_timeout_s: float = Field(default=2.0, gt=0)
    upstream_read_timeout_s: float = Field(default=30.0, gt=0)
    upstream_max_connections: int = Field(default=500, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    health_cache_s: float = Field(default=2.0, ge=0)

    @field_validator("tracking_urls", mode="before")
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
        return [base_url(url) for url in value]

    @field_validator("tracking_urls")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one tracking URL is needed")
        return value
