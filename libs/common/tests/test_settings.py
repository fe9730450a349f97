from __future__ import annotations

import socket

import pytest
from pydantic import Field, ValidationError, field_validator

from tripline.common.settings import (
    LOCAL_JWT_SECRET,
    CsvList,
    ServiceSettings,
    split_csv,
)

ENV_KEYS = (
    "SERVICE_NAME",
    "INSTANCE_ID",
    "PORT",
    "REDIS_URL",
    "LOG_JSON",
    "S3_ENDPOINT_URL",
    "S3_ACCESS_KEY_ID",
    "JWT_ALGORITHM",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY",
    "JWT_JWKS_URL",
    "OTEL_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SAMPLE_RATIO",
    "ORIGINS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv(key.lower(), raising=False)


class ListSettings(ServiceSettings):
    origins: CsvList = Field(default_factory=list)

    @field_validator("origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_csv(value)


def test_defaults_point_at_the_local_stack() -> None:
    settings = ServiceSettings()
    assert settings.service_name == "tripline"
    assert settings.environment == "local"
    assert settings.instance_id == socket.gethostname()
    assert settings.redis_url.startswith("redis://127.0.0.1")
    assert settings.jwt_algorithm == "HS256"
    assert settings.jwt_secret.get_secret_value() == LOCAL_JWT_SECRET
    assert settings.otel_exporter == "none"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "core")
    monkeypatch.setenv("PORT", "8081")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("LOG_JSON", "false")
    monkeypatch.setenv("OTEL_SAMPLE_RATIO", "0.25")
    settings = ServiceSettings()
    assert settings.service_name == "core"
    assert settings.port == 8081
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.log_json is False
    assert settings.otel_sample_ratio == 0.25


def test_environment_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("redis_url", "redis://lower:1/0")
    assert ServiceSettings().redis_url == "redis://lower:1/0"


def test_explicit_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "from-env")
    assert ServiceSettings(service_name="explicit").service_name == "explicit"


def test_secrets_are_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "super-secret-value-for-tests-only-0123456789")
    settings = ServiceSettings()
    assert settings.jwt_secret.get_secret_value().startswith("super-secret")
    assert "super-secret" not in repr(settings)
    assert "super-secret" not in str(settings.model_dump())


@pytest.mark.parametrize(
    "key", ["S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "JWT_PUBLIC_KEY", "JWT_JWKS_URL"]
)
def test_empty_optional_strings_become_none(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv(key, "")
    assert getattr(ServiceSettings(), key.lower()) is None


def test_non_empty_endpoint_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://s3.example:9000")
    assert ServiceSettings().s3_endpoint_url == "http://s3.example:9000"


def test_an_otlp_endpoint_alone_turns_on_otlp_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger-collector:4318")
    settings = ServiceSettings()
    assert settings.otel_exporter == "otlp"
    assert settings.otel_exporter_otlp_endpoint == "http://jaeger-collector:4318"
    assert ServiceSettings(otel_exporter_otlp_endpoint="http://c:4318").otel_exporter == "otlp"


@pytest.mark.parametrize("exporter", ["none", "console", "memory"])
def test_an_explicit_exporter_wins_over_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, exporter: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger-collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER", exporter)
    assert ServiceSettings().otel_exporter == exporter


def test_an_empty_otlp_endpoint_exports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    settings = ServiceSettings()
    assert (settings.otel_exporter, settings.otel_exporter_otlp_endpoint) == ("none", None)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PORT", "70000"),
        ("PORT", "not-a-port"),
        ("OTEL_SAMPLE_RATIO", "1.5"),
        ("OTEL_EXPORTER", "zipkin"),
        ("JWT_ALGORITHM", "none"),
    ],
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        ServiceSettings()


def test_settings_are_frozen() -> None:
    settings = ServiceSettings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_unknown_arguments_are_ignored() -> None:
    settings = ServiceSettings(not_a_setting="x")  # type: ignore[call-arg]
    assert not hasattr(settings, "not_a_setting")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a, b,,c", ["a", "b", "c"]),
        ("single", ["single"]),
        ("", []),
        (" , ,", []),
        ("  x  ", ["x"]),
    ],
)
def test_split_csv_splits_strips_and_drops_empty_parts(raw: str, expected: list[str]) -> None:
    assert split_csv(raw) == expected


@pytest.mark.parametrize("value", [["a", "b"], None, 3])
def test_split_csv_passes_non_strings_through(value: object) -> None:
    assert split_csv(value) is value


def test_csv_list_reads_comma_separated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORIGINS", "a, b,,c")
    assert ListSettings().origins == ["a", "b", "c"]


def test_csv_list_is_not_json_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORIGINS", "http://a:1,http://b:2")
    assert ListSettings().origins == ["http://a:1", "http://b:2"]


def test_csv_list_accepts_a_real_list() -> None:
    assert ListSettings(origins=["x", "y"]).origins == ["x", "y"]


def test_production_refuses_the_local_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        ServiceSettings(environment="production", s3_access_key_id="", s3_secret_access_key="")


def test_production_refuses_the_local_s3_keys() -> None:
    with pytest.raises(ValidationError, match="S3_ACCESS_KEY_ID"):
        ServiceSettings(environment="production", jwt_secret="a-real-secret-from-the-vault")


def test_production_refuses_an_injected_delay() -> None:
    with pytest.raises(ValidationError, match="FAULT_DELAY_S"):
        ServiceSettings(
            environment="production",
            jwt_secret="a-real-secret-from-the-vault",
            s3_access_key_id="",
            s3_secret_access_key="",
            fault_delay_s=0.5,
        )


def test_production_with_real_settings_does_not_create_buckets() -> None:
    settings = ServiceSettings(
        environment="production",
        jwt_secret="a-real-secret-from-the-vault",
        s3_access_key_id="",
        s3_secret_access_key="",
    )
    assert settings.s3_create_bucket is False
    assert (settings.s3_access_key_id, settings.s3_secret_access_key) == (None, None)


def test_local_creates_buckets_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().s3_create_bucket is True
    monkeypatch.setenv("S3_CREATE_BUCKET", "false")
    assert ServiceSettings().s3_create_bucket is False


def test_log_level_is_checked_and_case_insensitive() -> None:
    assert ServiceSettings(log_level="debug").log_level == "DEBUG"
    with pytest.raises(ValidationError):
        ServiceSettings(log_level="LOUD")
