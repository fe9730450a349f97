"""How a run is told: the concurrency it reached in words, and the lines printed at its end.
Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tripline.loadtest.profiles import Profile

SCENARIO_TEXT = {
    "users": "signed-in riders and drivers of a city, each always in a session",
    "uploads": "identity documents in flight, presign to verdict",
    "tracking": "WebSocket subscribers of live trips",
}


def concurrency_text(profile: Profile) -> str:
    """How many of each kind the profile holds at its peak, and how they are counted."""
    parts = []
    for name, count in profile.concurrency().items():
        params = profile.scenarios[name]
        if name == "users":
            parts.append(
                f"{count} users = {profile.peak(name)} VUs x {params['users_per_vu']} "
                "people per VU, each always in a session (acting or thinking)"
            )
        elif name == "uploads":
            parts.append(
                f"{count} uploads = {profile.peak(name)} VUs x "
                f"{params['uploads_per_vu']} uploads in flight (presign to verdict)"
            )
        else:
            parts.append(
                f"{count} subscribers = {profile.peak(name)} trips x "
                f"{params['watchers_per_trip']} watchers, plus one driver socket each"
            )
    return "; ".join(parts)


def text_summary(summary: Mapping[str, Any]) -> list[str]:
    """The lines the run prints at its end."""
    lines = [
        f"== {summary['profile']} against {summary['target']}: "
        f"{'PASS' if summary['ok'] else 'FAIL'}"
    ]
    figs = summary["figures"]
    lines.append(
        f"requests {figs['requests']} ({figs['rps']}/s), errors {figs['errors']}, "
        f"SOS {figs['sos']['accepted']}/{figs['sos']['sent']}, "
        f"tracking delivered {figs['tracking']['delivered']} lost {figs['tracking']['lost']}, "
        f"uploads to verdict {figs['uploads']['verdicts']}"
    )
    for cls, t in figs["latency_ms"].items():
        lines.append(
            f"  {cls:<9} n={t['count']:<7} p50 {t['p50']:.1f} p95 {t['p95']:.1f} "
            f"p99 {t['p99']:.1f} ms"
        )
    for verdict in summary["slas"]:
        lines.append(f"  {'ok  ' if verdict['ok'] else 'FAIL'} {verdict['message']}")
    for row in summary["gate"].get("ratios", []):
        baseline = "no baseline" if row["baseline"] is None else f"baseline {row['baseline']}x"
        lines.append(
            f"  {'ok  ' if row['ok'] else 'FAIL'} ratio {row['name']} "
            f"{row['value']}x ({baseline}, limit {row['limit']})"
        )
    lines += [f"  FAIL {failure}" for failure in summary["gate"].get("failures", [])]
    return lines
