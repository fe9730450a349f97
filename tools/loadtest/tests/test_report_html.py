from __future__ import annotations

from typing import Any

import pytest

from tripline.loadtest.report_html import (
    block,
    bullets,
    figure,
    missing,
    number,
    pairs,
    pass_fail,
    percent,
    plain,
    section,
    table,
)

NM = '<span class="nm">not measured</span>'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (12345, "12,345"),
        (12345.6, "12,346"),
        (42.05, "42.0"),
        (7.546, "7.55"),
        (0.000123, "0.000123"),
        (None, NM),
        ("<b>", "&lt;b&gt;"),
        (float("nan"), "nan"),
    ],
)
def test_number_formats_for_a_table(value: Any, text: str) -> None:
    assert number(value) == text


def test_number_with_a_unit_and_a_word_for_none() -> None:
    assert number(250.0, "ms") == "250 ms"
    assert number(None, "ms", absent="none") == '<span class="nm">none</span>'
    assert number(1, "<u>") == "1 &lt;u&gt;"


def test_percent_of_a_fraction_or_of_a_whole() -> None:
    assert percent(0.0002) == "0.02 %"
    assert percent(0.5) == "50.0 %"
    assert percent(285, 9000) == "3.17 %"
    assert percent(1, 0) == "n/a"
    assert percent(None) == NM
    assert percent(1, "x") == NM


def test_plain_and_pass_fail() -> None:
    assert plain("a<b") == "a&lt;b"
    assert plain("") == NM
    assert plain(0) == "0"
    assert ">pass<" in pass_fail(True)
    assert ">FAIL<" in pass_fail(False)
    assert pass_fail(None) == NM
    assert pass_fail("yes") == NM


def test_table_aligns_numeric_columns_and_marks_bad_rows() -> None:
    html = table(["Name", "<n>"], [["a", "1"], ["b", "2"]], numeric={1}, bad=[False, True])
    assert '<th class="n">&lt;n&gt;</th>' in html
    assert '<tr><td>a</td><td class="n">1</td></tr>' in html
    assert '<tr class="bad"><td>b</td>' in html


def test_pairs_bullets_and_blocks_escape_their_labels() -> None:
    assert (
        pairs([("<L>", "v")])
        == "<table><tbody><tr><th>&lt;L&gt;</th><td>v</td></tr></tbody></table>"
    )
    assert bullets(["<x>", "y"], "notes") == '<ul class="notes"><li>&lt;x&gt;</li><li>y</li></ul>'
    assert bullets([]) == ""
    assert section("<S>", "a", "b").endswith("<h2>&lt;S&gt;</h2>ab</section>")
    assert block("<B>", "a") == '<div class="part"><h3>&lt;B&gt;</h3>a</div>'
    assert missing("<M>") == '<p class="nm">&lt;M&gt;: not measured.</p>'
    assert figure("<svg/>", "<c>") == "<figure><svg/><figcaption>&lt;c&gt;</figcaption></figure>"
