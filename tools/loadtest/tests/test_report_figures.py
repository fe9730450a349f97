from __future__ import annotations

import re
from typing import Any

from tripline.loadtest.report_figures import figures_section


def figures() -> dict[str, Any]:
    """Figures as :func:`tripline.loadtest.figures.compute` and the runner write them."""
    return {
        "requests": 4291,
        "rps": 49.5,
        "errors": 0,
        "error_rate": 0,
        "latency_ms": {
            "storage": {"count": 95, "p50": 8.6, "p95": 22.3, "p99": 31.2, "max": 39.0},
            "payment": {"count": 41, "p50": 9.9, "p95": 32.6, "p99": 95.1, "max": 131.5},
            "read": {"count": 2387, "p50": 3.3, "p95": 42.1, "p99": 72.7, "max": 262.5},
        },
        "status_counts": {"0": 2, "200": 3055, "409": 32},
        "by_priority": {
            "storage": {"requests": 95, "429": 0, "503": 0, "409": 0, "errors": 0},
            "normal": {"requests": 3200, "429": 0, "503": 0, "409": 32, "errors": 2},
        },
        "sos": {"sent": 49, "accepted": 49},
        "trips": {"requested": 200, "accepted": 55, "completed": 54, "paid": 41},
        "tracking": {
            "subscribers": 120,
            "published": 501,
            "delivered": 5010,
            "lost": 0,
            "reconnects": 1,
            "unrecovered": 3,
            "latency_ms": {"count": 5010, "p50": 3, "p95": 6, "p99": 11, "max": 19},
        },
        "uploads": {
            "started": 95,
            "completed": 94,
            "verdicts": 93,
            "verified": 90,
            "rejected": 2,
            "failed": 1,
            "timed_out": 1,
            "time_to_verdict_ms": None,
        },
        "processes": {
            "core": {"cpu_s": 6.47, "cpu_share": 0.075, "rss_max_bytes": 107057152},
            "mongodb": {"cpu_s": 11.13, "cpu_share": 0.128, "rss_max_bytes": 79097856},
            "k6": {"cpu_s": 5.36, "cpu_share": None, "rss_max_bytes": 169836544},
        },
        "platform_cpu_s": 17.6,
        "capacity": {"saturated_first": "mongodb"},
        "monitor": {
            "gateway": {
                "requests": 4349,
                "rps": 51.164,
                "error_rate": 0.0012,
                "p95_ms": 42.505,
                "p99_ms": 89.885,
            },
            "core": {"requests": 3395, "rps": 39.9, "error_rate": 0.0, "p95_ms": 40.4},
        },
    }


def render(**changes: Any) -> str:
    return figures_section({"figures": {**figures(), **changes}})


def block(html: str, title: str) -> str:
    """The titled block ``title``, up to the next block."""
    match = re.search(rf"<h3>{re.escape(title)}</h3>(.*?)(?=<div class=\"part\">|$)", html, re.S)
    assert match, title
    return match.group(1)


def rows(html: str) -> list[list[str]]:
    """The cells of each row, tags stripped."""
    return [
        [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr)]
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", html)
    ]


def test_trips_funnel_with_shares_of_requested() -> None:
    table = rows(block(render(), "Trips (users scenario)"))
    assert table == [
        ["Step", "Trips", "Of requested"],
        ["requested", "200", "100.0 %"],
        ["accepted", "55", "27.5 %"],
        ["completed", "54", "27.0 %"],
        ["paid", "41", "20.5 %"],
    ]


def test_monitor_table_per_service() -> None:
    table = rows(block(render(), "Per service, as the monitor saw it"))
    assert table[0] == ["Service", "Requests", "Requests/s", "Error rate", "p95 ms", "p99 ms"]
    assert table[1] == ["core", "3,395", "39.9", "0.00 %", "40.4", "not measured"]
    assert table[2] == ["gateway", "4,349", "51.2", "0.12 %", "42.5", "89.9"]


def test_uploads_every_step_and_a_missing_time_to_verdict() -> None:
    table = dict(rows(block(render(), "Uploads")))
    assert table["Started"] == "95"
    assert table["Verdicts"] == "93"
    assert table["Failed"] == "1"
    assert table["Timed out"] == "1"
    assert table["Time to verdict"] == "not measured"


def test_tracking_shows_unrecovered_subscribers() -> None:
    table = dict(rows(block(render(), "Tracking")))
    assert table["Unrecovered"] == "3"
    assert table["Delivery latency"] == "p50 3 ms, p95 6 ms, p99 11 ms, max 19 ms"


def test_priorities_count_every_answer_that_was_not_ok() -> None:
    html = block(render(), "Answers by priority (k6)")
    table = rows(html.split("<svg", 1)[0])
    assert table[0] == ["Priority", "Requests", "429", "503", "409", "errors"]
    assert table[1] == ["normal", "3,200", "0", "0", "32 (1.00 %)", "2 (0.06 %)"]
    assert table[2] == ["storage", "95", "0", "0", "0", "0"]
    assert "<title>ok, normal: 3.2k requests</title>" in html  # 3,200 - 32 - 2 = 3,166


def test_classes_in_route_class_order_and_a_status_without_response() -> None:
    html = render()
    latency = rows(block(html, "Latency per class (k6)").split("<svg", 1)[0])
    assert [r[0] for r in latency[1:]] == ["read", "payment", "storage"]
    statuses = rows(block(html, "Responses by status"))
    assert statuses[1] == ["0 (no response)", "2", "0.06 %"]


def test_processes_busiest_first_and_what_saturated_first() -> None:
    html = block(render(), "Processes")
    table = rows(html.split("<h3>", 1)[0])
    assert [r[0] for r in table[1:]] == ["mongodb", "core", "k6"]
    assert table[1] == ["mongodb", "11.1 s", "12.8 %", "79.1 MB"]
    assert table[3][2] == "not measured"
    capacity = dict(rows(html.split("<h3>Capacity</h3>", 1)[1]))
    assert capacity["Saturated first (most CPU)"] == "mongodb"
    assert capacity["Platform CPU (without k6)"] == "17.6 s"
    assert "Capacity" not in capacity
    with_text = render(capacity={"saturated_first": None, "text": "<i>core</i> at 90 %"})
    assert "&lt;i&gt;core&lt;/i&gt; at 90 %" in with_text


def test_empty_parts_say_not_measured() -> None:
    html = figures_section({"figures": {}})
    for what in (
        "Latency",
        "Per-priority answers",
        "Trips",
        "The monitor&#x27;s figures",
        "Processes",
    ):
        assert f"{what}: not measured." in html
    assert "Figures: not measured." in figures_section({"figures": []})
