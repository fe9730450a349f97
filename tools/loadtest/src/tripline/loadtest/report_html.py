"""The report's HTML building blocks: cells that format a value, tables, sections, figures.

Every function returns markup that is safe to inline: a value from the run is escaped here,
and markup passed in (a table's cells, a section's parts) is taken as already escaped. A value
that is missing says "not measured" rather than showing a guess.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from html import escape
from typing import Any

from tripline.loadtest.report_values import finite

NOT_MEASURED = "not measured"


def muted(words: str = NOT_MEASURED) -> str:
    """``words`` (default "not measured") in the muted style of an absent value."""
    return f'<span class="nm">{escape(words)}</span>'


def plain(value: Any) -> str:
    """``value`` as escaped text; "not measured" for None or an empty string."""
    return muted() if value is None or value == "" else escape(str(value))


def number(value: Any, unit: str = "", *, absent: str = NOT_MEASURED) -> str:
    """A number for a table: thousands separated, a few significant digits, then ``unit``.

    None shows ``absent``; a value that is not a finite number shows as escaped text.
    """
    figure = finite(value)
    if figure is None:
        return muted(absent) if value is None else escape(str(value))
    if figure.is_integer() and abs(figure) < 1e15:
        text = f"{int(figure):,}"
    elif abs(figure) >= 1000:
        text = f"{figure:,.0f}"
    elif abs(figure) >= 10:
        text = f"{figure:.1f}"
    else:
        text = f"{figure:.3g}"
    return f"{text} {escape(unit)}" if unit else text


def percent(part: Any, whole: Any = 1.0) -> str:
    """``part`` as a percentage of ``whole`` (a fraction by default); "n/a" when it is 0."""
    numerator, denominator = finite(part), finite(whole)
    if numerator is None or denominator is None:
        return muted()
    if denominator == 0:
        return "n/a"
    share = numerator / denominator * 100
    return f"{share:.2f} %" if share < 10 else f"{share:.1f} %"


def pass_fail(value: Any) -> str:
    """True as a green "pass", False as a red "FAIL", anything else "not measured"."""
    if value is True:
        return '<span class="ok">pass</span>'
    if value is False:
        return '<span class="bad-word">FAIL</span>'
    return muted()


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: Collection[int] = (),
    bad: Sequence[bool] = (),
) -> str:
    """A table of already escaped cells; the ``numeric`` columns right aligned, ``bad`` rows red."""

    def cell(tag: str, column: int, content: str) -> str:
        css = ' class="n"' if column in numeric else ""
        return f"<{tag}{css}>{content}</{tag}>"

    head = "".join(cell("th", i, escape(h)) for i, h in enumerate(headers))
    lines = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for index, row in enumerate(rows):
        marked = ' class="bad"' if index < len(bad) and bad[index] else ""
        lines.append(f"<tr{marked}>{''.join(cell('td', i, c) for i, c in enumerate(row))}</tr>")
    return "".join([*lines, "</tbody></table>"])


def pairs(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of labels (escaped here) and already escaped values."""
    body = "".join(f"<tr><th>{escape(label)}</th><td>{value}</td></tr>" for label, value in rows)
    return f"<table><tbody>{body}</tbody></table>"


def bullets(lines: Sequence[str], css: str = "") -> str:
    """An unordered list of ``lines`` (escaped here), in the class ``css``; "" for no line."""
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f'<ul class="{escape(css)}">{items}</ul>' if css else f"<ul>{items}</ul>"


def section(title: str, *parts: str) -> str:
    """A titled section of the page holding the already escaped ``parts``."""
    return f'<section class="block"><h2>{escape(title)}</h2>{"".join(parts)}</section>'


def block(title: str, *parts: str) -> str:
    """A small titled block inside a section, holding the already escaped ``parts``."""
    return f'<div class="part"><h3>{escape(title)}</h3>{"".join(parts)}</div>'


def missing(what: str) -> str:
    """A paragraph saying that ``what`` was not measured."""
    return f'<p class="nm">{escape(what)}: {NOT_MEASURED}.</p>'


def figure(svg: str, caption: str = "") -> str:
    """A chart (SVG markup) with an optional caption."""
    note = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{svg}{note}</figure>"
