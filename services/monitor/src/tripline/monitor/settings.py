"""Monitor service settings: what it watches, how often, and when it alerts."""

from __future__ import annotations

from pydantic import Field, field_validator

from tripline.common.settings import CsvList, ServiceSettings, split_csv
from tripline.monitor.targets import Target, parse_targets

LOCAL_TARGETS = (
    "gateway=http://127.0.0.1:8080",
    "core=http://127.0.0.1:8081",
    "upload=http://127.0.0.1:8082",
    "tracking=http://127.0.0.1:8083",
    "tracking=http://127.0.0.1:8085",
)


class MonitorSettings(ServiceSettings):
    service_name: str = "monitor"
    port: int = 8084

    # Every replica to probe and scrape, as service=url pairs (the monitor itself is not one).
    monitor_targets: CsvList = Field(default_factory=lambda: list(LOCAL_TARGETS))
    scrape_interval_s: float = Field(default=5.0, gt=0)
    scrape_timeout_s: float = Field(default=2.0, gt=0)
    # How much scraped history is kept in memory (charts, windows).
    metrics_history_s: float = Field(default=900.0, gt=0)
    # Health is checked in the background this often; /health answers from the last check.
    health_interval_s: float = Field(default=2.0, gt=0)

    # Alerting: the owners' plan's defaults.
    alert_eval_interval_s: float = Field(default=15.0, gt=0)
    alert_repeat_s: float = Field(default=3600.0, gt=0)
    # A condition must hold this long before it fires (the Prometheus rules' ``for: 1m``).
    alert_for_s: float = Field(default=60.0, ge=0)
    alert_webhook_url: str | None = None
    alert_error_rate: float = Field(default=0.01, gt=0, le=1)
    alert_error_window_s: float = Field(default=300.0, gt=0)
    # Too few requests make a rate meaningless: one error in three requests is not an outage.
    alert_min_requests: int = Field(default=20, ge=1)
    alert_p95_sla_s: float = Field(default=0.5, gt=0)
    alert_queue_depth: int = Field(default=1000, ge=1)
    alert_queue_age_s: float = Field(default=300.0, gt=0)
    alert_backlog: int = Field(default=10_000, ge=1)
    alert_pool_use: float = Field(default=0.8, gt=0, le=1)

    @field_validator("monitor_targets", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("monitor_targets")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        parse_targets(value)
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    def targets(self) -> tuple[Target, ...]:
        return parse_targets(self.monitor_targets)
