import tomllib
from pathlib import Path

import tripline_client


def test_the_package_version_is_the_projects() -> None:
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    assert tripline_client.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]
