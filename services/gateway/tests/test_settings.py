from __future__ import annotations

import pytest
from pydantic import ValidationError

from tripline.gateway.app import replica_sets
from tripline.gateway.routing import Upstream
from tripline.gateway.settings import GatewaySettings


def test_upstream_urls_lose_a_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORE_URL", "http://core:8081/")
    monkeypatch.setenv("TRACKING_URLS", "http://tracking-0:8083/, http://tracking-1:8083")
    settings = GatewaySettings()
    assert settings.core_url == "http://core:8081"
    assert settings.tracking_urls == ["http://tracking-0:8083", "http://tracking-1:8083"]


@pytest.mark.parametrize("url", ["core:8081", "ftp://core", "http://core:8081/?x=1", ""])
def test_an_upstream_that_is_not_an_http_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="base URL"):
        GatewaySettings(core_url=url)


def test_at_least_one_tracking_replica_is_needed() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(tracking_urls=[])


def test_core_is_one_url_unless_its_replicas_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORE_URL", "http://core:8081")
    assert replica_sets(GatewaySettings())[Upstream.CORE].urls == ["http://core:8081"]
    monkeypatch.setenv("CORE_URLS", "http://core-0:8081/, http://core-1:8081")
    replicas = replica_sets(GatewaySettings())[Upstream.CORE]
    assert replicas.urls == ["http://core-0:8081", "http://core-1:8081"]
