"""What ran, for the report: the page's heading, the run's facts, its scenarios and its files.

Reads the summary's profile, description, target, local, started_at, duration_s, commit,
scenarios ({name: {description, peak_concurrent}}), concurrency (text) and files ({label:
relative path}). Pure; every function returns escaped markup and never raises on odd data.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import urlsplit

from tripline.loadtest.report_html import (
    block,
    bullets,
    missing,
    muted,
    number,
    pairs,
    plain,
    section,
    table,
)
from tripline.loadtest.report_values import dig, finite, mapping


def _facts(summary: Mapping[str, Any]) -> str:
    flag = summary.get("local")
    local = (
        ("yes (private stack)" if flag else "no (deployment)") if isinstance(flag, bool) else None
    )
    duration = finite(summary.get("duration_s"))
    rows = [
        ("Profile", plain(summary.get("profile"))),
        ("Target", plain(summary.get("target"))),
        ("Local", plain(local)),
        ("Started", plain(summary.get("started_at"))),
        ("Duration", muted() if duration is None else f"{duration:.1f} s"),
        ("Commit", plain(summary.get("commit"))),
    ]
    return block("Run", pairs(rows))


def _load(summary: Mapping[str, Any]) -> str:
    """The scenarios with their peak concurrency, and how that concurrency is made up (the
    summary's text, one line per "; "-separated part)."""
    scenarios = mapping(summary.get("scenarios"))
    concurrency = summary.get("concurrency")
    text = bullets(str(concurrency).split("; "), "text") if concurrency else ""
    if not scenarios:
        return block("Load at the peak", missing("Scenarios"), text)
    rows = [
        [escape(str(name)), number(dig(s, "peak_concurrent")), plain(dig(s, "description"))]
        for name, s in scenarios.items()
    ]
    headers = ["Scenario", "Peak concurrent", "What is concurrent"]
    return block("Load at the peak", table(headers, rows, numeric={1}), text)


def heading(summary: Mapping[str, Any]) -> str:
    """The page's title, naming the profile, and the profile's description under it."""
    profile = summary.get("profile")
    title = f"Load test report: {profile}" if profile else "Load test report"
    description = summary.get("description")
    about = f'<p class="meta">{escape(str(description))}</p>' if description else ""
    return f"<h1>{escape(str(title))}</h1>{about}"


def facts(summary: Mapping[str, Any]) -> str:
    """The run's facts (target, start, duration, commit) beside its scenarios, their peak
    concurrency and how that concurrency is made up."""
    return f'<div class="tables">{_facts(summary)}{_load(summary)}</div>'


def _link(label: str, target: Any) -> str:
    """A relative link to one of the run's files; anything not a plain relative path as text."""
    if not isinstance(target, str) or not target:
        return f"<li>{escape(label)}: {muted()}</li>"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith(("/", "\\")):
        return f"<li>{escape(label)}: {escape(target)}</li>"
    return f'<li>{escape(label)}: <a href="{escape(target)}">{escape(target)}</a></li>'


def files_section(summary: Mapping[str, Any]) -> str:
    """Links to the run's other files (k6's dashboard, the samples, the log...)."""
    files = mapping(summary.get("files"))
    if not files:
        return section("Files", missing("Files"))
    return section("Files", "<ul>" + "".join(_link(str(k), v) for k, v in files.items()) + "</ul>")
