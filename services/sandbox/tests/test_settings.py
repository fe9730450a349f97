from __future__ import annotations

import pytest
from pydantic import ValidationError

from tripline.sandbox.settings import SandboxSettings


def test_defaults_name_the_service_and_its_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SERVICE_NAME", "PORT", "MAX_RECORDS", "MAX_HANG_S"):
        monkeypatch.delenv(name, raising=False)

    settings = SandboxSettings()

    assert settings.service_name == "sandbox"
    assert settings.port == 8090
    assert settings.max_records == 10_000
    assert settings.max_hang_s == 300


def test_the_environment_overrides_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8091")
    monkeypatch.setenv("MAX_HANG_S", "2.5")

    settings = SandboxSettings()

    assert settings.port == 8091
    assert settings.max_hang_s == 2.5


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        SandboxSettings(max_records=0)
    with pytest.raises(ValidationError):
        SandboxSettings(max_hang_s=0)
