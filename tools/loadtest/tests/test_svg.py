from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from tripline.loadtest.svg import (
    DASH,
    PALETTE,
    Bars,
    Series,
    bar_chart,
    format_number,
    format_seconds,
    line_chart,
    nice_step,
    nice_ticks,
    time_ticks,
)

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    """The chart as XML: it must be well formed, whatever the caller's strings were."""
    return ET.fromstring(svg)  # noqa: S314 - our own output


def paths(svg: str) -> list[str]:
    return [p.attrib["d"] for p in parse(svg).iter(f"{NS}path")]


def coordinates(d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", d)]


def texts(svg: str) -> list[str]:
    return [t.text or "" for t in parse(svg).iter(f"{NS}text")]


@pytest.mark.parametrize(
    ("raw", "step"),
    [(0.3, 0.5), (1.0, 1.0), (1.2, 2.0), (3.0, 5.0), (7.0, 10.0), (42.0, 50.0), (0.0, 1.0)],
)
def test_nice_step_is_1_2_or_5_times_a_power_of_ten(raw: float, step: float) -> None:
    assert nice_step(raw) == pytest.approx(step)


def test_nice_ticks_cover_the_range_in_round_steps() -> None:
    assert nice_ticks(0, 87) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-3, 7) == [-4, -2, 0, 2, 4, 6, 8]
    assert nice_ticks(0, 2, integer=True) == [0, 1, 2]
    assert nice_ticks(0, 0.0003) == pytest.approx([0, 0.0001, 0.0002, 0.0003])


def test_nice_ticks_widen_an_empty_range() -> None:
    ticks = nice_ticks(5, 5)
    assert ticks[0] <= 5 < ticks[-1]
    assert len(ticks) >= 2


def test_time_ticks_use_round_seconds_and_minutes() -> None:
    assert time_ticks(0, 75) == [0, 15, 30, 45, 60, 75]
    assert time_ticks(0, 600) == [0, 120, 240, 360, 480, 600]
    assert time_ticks(3, 10) == [4, 6, 8, 10]
    assert time_ticks(0, 5) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (12, "12"),
        (0.25, "0.25"),
        (12.34, "12.3"),
        (999.6, "1k"),
        (1234, "1.2k"),
        (12345, "12.3k"),
        (150_000, "150k"),
        (999_999, "1M"),
        (3_400_000, "3.4M"),
        (2.5e9, "2.5G"),
        (-1500, "-1.5k"),
    ],
)
def test_format_number_is_compact(value: float, text: str) -> None:
    assert format_number(value) == text


def test_format_seconds_in_seconds_or_minutes() -> None:
    assert format_seconds(75, minutes=False) == "75s"
    assert format_seconds(75, minutes=True) == "1:15"
    assert format_seconds(600, minutes=True) == "10:00"


def test_line_chart_maps_the_data_onto_the_plot_area() -> None:
    svg = line_chart("Latency", [Series("read", [(0, 0), (10, 100)])], y_unit="ms")
    # Plot area of a 720x220 chart with one legend row: x 52..706, y 38 (top) .. 178 (bottom).
    assert coordinates(paths(svg)[0]) == [(52.0, 178.0), (706.0, 38.0)]
    labels = texts(svg)
    assert {"0", "20", "40", "60", "80", "100", "ms", "read", "Latency"} <= set(labels)
    assert {"0s", "10s"} <= set(labels)


def test_line_chart_y_axis_starts_at_y_min_and_reaches_y_max() -> None:
    svg = line_chart("Level", [Series("l", [(0, 0), (1, 0)])], y_unit="", y_max=2, integer=True)
    assert {"0", "1", "2"} <= set(texts(svg))
    assert "0.5" not in texts(svg)


def test_line_chart_labels_long_runs_in_minutes() -> None:
    svg = line_chart("t", [Series("s", [(0, 1), (300, 2)])], y_unit="x")
    assert {"0:00", "1:00", "5:00"} <= set(texts(svg))


def test_a_gap_breaks_the_line_and_a_lone_point_is_a_dot() -> None:
    points: list[tuple[float, float | None]] = [(0, 1), (1, 2), (2, None), (3, 4), (4, 5)]
    points += [(5, None), (6, 3), (7, None)]
    svg = line_chart("t", [Series("s", points)], y_unit="x")
    drawn = paths(svg)
    assert len(drawn) == 2
    assert [len(coordinates(d)) for d in drawn] == [2, 2]
    assert len(list(parse(svg).iter(f"{NS}circle"))) == 1


def test_non_finite_values_are_gaps() -> None:
    svg = line_chart("t", [Series("s", [(0, 1), (1, float("nan")), (2, 3), (3, 4)])], y_unit="")
    assert len(paths(svg)) == 1


def test_step_chart_holds_each_value_until_the_next_point() -> None:
    svg = line_chart("t", [Series("s", [(0, 0), (5, 1), (10, 2)])], y_unit="", step=True)
    (d,) = paths(svg)
    assert re.fullmatch(r"M[\d.]+,[\d.]+(H[\d.]+V[\d.]+){2}", d)


@pytest.mark.parametrize(
    "series",
    [[], [Series("a", [])], [Series("a", [(0, None), (1, None)]), Series("b", [])]],
)
def test_no_data_placeholder_when_nothing_can_be_drawn(series: list[Series]) -> None:
    svg = line_chart("Empty", series, y_unit="ms")
    assert "no data" in texts(svg)
    assert paths(svg) == []


def test_x_range_fixes_the_axis_and_drops_points_outside() -> None:
    svg = line_chart(
        "t", [Series("s", [(-5, 9), (0, 0), (10, 1), (40, 9)])], y_unit="", x_range=(0, 20)
    )
    (d,) = paths(svg)
    assert coordinates(d) == [(52.0, 178.0), (379.0, 38.0)]


def test_legend_names_every_series_and_colours_cycle_dashed_the_second_time() -> None:
    rounds = [*range(len(PALETTE)), *range(len(PALETTE)), 0]
    series = [Series(f"s{i}", [(0, i), (1, i)]) for i in range(len(rounds))]
    svg = line_chart("t", series, y_unit="")
    lines = list(parse(svg).iter(f"{NS}path"))
    assert [p.attrib["stroke"] for p in lines] == [PALETTE[i] for i in rounds]
    dashes = [p.attrib.get("stroke-dasharray", "") for p in lines]
    assert dashes == [""] * len(PALETTE) + [DASH] * len(PALETTE) + [""]
    assert {s.name for s in series} <= set(texts(svg))
    swatches = [s for s in parse(svg).iter(f"{NS}line") if s.get("stroke-dasharray")]
    assert [s.attrib["stroke"] for s in swatches] == list(PALETTE)


def test_a_series_with_its_own_colour_is_never_dashed() -> None:
    series = [Series(f"s{i}", [(0, i), (1, i)], color="#123456") for i in range(len(PALETTE) + 1)]
    svg = line_chart("t", series, y_unit="")
    assert "stroke-dasharray" not in svg


def test_a_series_colour_overrides_the_palette() -> None:
    svg = line_chart("t", [Series("s", [(0, 1), (1, 2)], color="#123456")], y_unit="")
    assert parse(svg).find(f"{NS}path").attrib["stroke"] == "#123456"  # type: ignore[union-attr]


def test_strings_are_escaped() -> None:
    hostile = '<script>alert("x")</script>&'
    svg = line_chart(hostile, [Series(hostile, [(0, 1), (1, 2)])], y_unit=hostile)
    assert "<script>" not in svg
    assert texts(svg).count(hostile) == 3
    bars = bar_chart(hostile, [hostile], [Bars(hostile, [1])], y_unit=hostile)
    assert "<script>" not in bars
    assert hostile in texts(bars)


def bar_rects(svg: str) -> list[ET.Element]:
    """The bars: rectangles with a tooltip (legend swatches have none)."""
    return [r for r in parse(svg).iter(f"{NS}rect") if r.find(f"{NS}title") is not None]


def test_grouped_bars_side_by_side() -> None:
    svg = bar_chart(
        "By class",
        ["read", "write"],
        [Bars("p50", [10, 20]), Bars("p95", [40, None])],
        y_unit="ms",
    )
    rects = bar_rects(svg)
    assert len(rects) == 3
    tips = [r.find(f"{NS}title").text for r in rects]  # type: ignore[union-attr]
    assert tips == ["p50, read: 10 ms", "p95, read: 40 ms", "p50, write: 20 ms"]
    heights = [float(r.attrib["height"]) for r in rects]
    assert heights[1] == pytest.approx(2 * heights[2])
    assert float(rects[0].attrib["x"]) < float(rects[1].attrib["x"]) < float(rects[2].attrib["x"])


def test_stacked_bars_sit_on_each_other() -> None:
    svg = bar_chart(
        "By priority", ["low"], [Bars("ok", [30]), Bars("503", [70])], y_unit="", stacked=True
    )
    low, high = bar_rects(svg)
    assert float(high.attrib["height"]) == pytest.approx(
        70 / 30 * float(low.attrib["height"]), 0.01
    )
    assert float(high.attrib["y"]) + float(high.attrib["height"]) == pytest.approx(
        float(low.attrib["y"]), abs=0.11
    )
    assert low.attrib["x"] == high.attrib["x"]
    assert "100" in texts(svg)


def test_bar_chart_without_values_says_no_data() -> None:
    assert "no data" in texts(bar_chart("t", [], [], y_unit=""))
    assert "no data" in texts(bar_chart("t", ["a"], [Bars("s", [None])], y_unit=""))
