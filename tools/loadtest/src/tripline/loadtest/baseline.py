"""The release gate's committed baseline (``tests/load/baseline.json``): per profile, the
ratios to the reference that a good run measured, where it came from, and the commit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path


def read_baseline(path: Path, profile: str) -> dict[str, float] | None:
    """The committed ratios of ``profile``, None when the file or the profile has none."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    entry = data.get(profile)
    return entry.get("ratios") if isinstance(entry, Mapping) else None


def write_baseline(
    path: Path, profile: str, ratios: Mapping[str, float], run: str, commit: str
) -> None:
    """Record ``ratios`` as ``profile``'s baseline, keeping the other profiles' entries."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[profile] = {
        "ratios": {name: round(value, 3) for name, value in sorted(ratios.items())},
        "recorded_from": run,
        "commit": commit,
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
