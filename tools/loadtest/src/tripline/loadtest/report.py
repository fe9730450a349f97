"""The HTML report of one load-test run: the verdict, SLAs, the gate, the figures and charts.

:func:`render_report` turns a run's ``summary.json`` (a mapping) and its ``platform.jsonl``
samples into one self-contained page: inline CSS and SVG, no script, nothing fetched. Any part
of the input may be missing, null or of an unexpected type (a partial or crashed run): what is
there is rendered, what is not says "not measured", and nothing in the data makes it raise.
Every string from the input is escaped. :func:`write_report` is the only function with I/O.

The page's parts live in their own modules: :mod:`~tripline.loadtest.report_run` (what ran),
:mod:`~tripline.loadtest.report_verdict` (the verdict, SLAs and gate),
:mod:`~tripline.loadtest.report_figures` (the measured figures) and
:mod:`~tripline.loadtest.report_charts` (the samples over time).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from tripline.loadtest.report_charts import charts_section
from tripline.loadtest.report_figures import figures_section
from tripline.loadtest.report_run import facts, files_section, heading
from tripline.loadtest.report_values import mapping
from tripline.loadtest.report_verdict import gate_section, slas_section, verdict

CSS = """
:root { --fg: #1d2330; --muted: #6b7280; --line: #d8dce3; --pass: #1a7f37; --fail: #c62828; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  max-width: 1180px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 3px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 4px; }
.meta { color: var(--muted); margin: 0 0 12px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { font-weight: 600; background: #f4f5f7; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.bad td { background: #fdecea; }
.verdict { border-left: 10px solid var(--muted); background: #f4f5f7; padding: 10px 18px; }
.verdict .word { font-size: 44px; font-weight: 800; letter-spacing: .04em; line-height: 1.1; }
.verdict.pass { border-color: var(--pass); background: #eaf6ec; }
.verdict.fail { border-color: var(--fail); background: #fdecea; }
.verdict .overview { margin: 2px 0; }
.pass .word, .ok { color: var(--pass); }
.fail .word, .bad-word, ul.failures { color: var(--fail); font-weight: 600; }
.verdict ul { margin: 6px 0 2px; padding-left: 20px; }
ul.notes { color: var(--muted); }
.nm { color: var(--muted); font-style: italic; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
  gap: 12px 24px; align-items: start; }
.tables { display: flex; flex-wrap: wrap; gap: 0 32px; align-items: flex-start; }
.tables > .part { max-width: 100%; }
figure { margin: 0; break-inside: avoid; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; }
ul.text { max-width: 80ch; margin: 4px 0 12px; padding-left: 20px; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  h2 { break-after: avoid; }
  table, figure, .verdict, section.block { break-inside: avoid; }
  .grid { grid-template-columns: 1fr 1fr; }
  a { color: inherit; }
}
"""


def render_report(summary: Mapping[str, Any], samples: Sequence[Mapping[str, Any]]) -> str:
    """The HTML page of one run: the verdict and what ran first, then the SLAs, the gate, the
    figures, the charts over time and links to the run's files.

    Whatever is missing, null or odd in ``summary`` or ``samples`` shows as "not measured" (a
    chart without data as "no data"); it never raises on the data. Every string from the input
    is escaped; the page has no script and loads nothing.
    """
    summary = mapping(summary)
    samples = (
        [s for s in samples if isinstance(s, Mapping)] if isinstance(samples, Sequence) else []
    )
    title = " · ".join(
        escape(str(v))
        for v in ("Load test", summary.get("profile"), summary.get("started_at"))
        if v
    )
    body = "".join(
        [
            heading(summary),
            verdict(summary),
            facts(summary),
            slas_section(summary),
            gate_section(summary),
            figures_section(summary),
            charts_section(samples),
            files_section(summary),
        ]
    )
    policy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{CSS}</style></head>\n<body>{body}</body></html>\n"
    )


# -- the only I/O -----------------------------------------------------------------------------


def _read_summary(path: Path) -> Mapping[str, Any]:
    """The summary at ``path``; empty when the file is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return mapping(value)


def _read_samples(path: Path) -> list[Mapping[str, Any]]:
    """The JSON objects of the lines at ``path``, skipping any other line; none without a file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return []
    samples = []
    for line in lines:
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, Mapping):
            samples.append(value)
    return samples


def write_report(run_dir: Path) -> Path:
    """Write ``report.html`` into ``run_dir`` from its ``summary.json`` and ``platform.jsonl``.

    A missing or unreadable file, or a bad line in ``platform.jsonl``, counts as no data; the
    report is written anyway. Returns the report's path.
    """
    summary = _read_summary(run_dir / "summary.json")
    samples = _read_samples(run_dir / "platform.jsonl")
    path = run_dir / "report.html"
    path.write_text(render_report(summary, samples), encoding="utf-8")
    return path
