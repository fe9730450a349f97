"""The command's refusals: what cannot run is said at once, with exit code 2, before anything
is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripline.loadtest.cli import main


def test_a_deployment_without_a_key_or_tokens_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    code = main(["smoke", "--target", "http://127.0.0.1:9", "--out", str(tmp_path)])
    assert code == 2
    assert "set JWT_SECRET" in capsys.readouterr().err


def test_an_unknown_profile_is_refused_naming_the_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["huge", "--out", str(tmp_path)]) == 2
    assert "smoke" in capsys.readouterr().err


def test_a_setting_that_is_not_name_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["smoke", "--set", "FAULT_DELAY_S", "--out", str(tmp_path)])
