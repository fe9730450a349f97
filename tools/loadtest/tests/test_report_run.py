from __future__ import annotations

from tripline.loadtest.report_run import facts, files_section, heading

SUMMARY = {
    "profile": "smoke",
    "description": "every path once, small enough for a shared 2-core machine",
    "target": "http://127.0.0.1:52995",
    "local": True,
    "started_at": "2026-12-05T23:36:32+00:00",
    "duration_s": 86.72,
    "commit": "1432014",
    "concurrency": "100 users = 10 VUs x 10 people per VU; 8 uploads = 2 VUs x 4 uploads",
    "scenarios": {
        "users": {"description": "signed-in riders and drivers", "peak_concurrent": 100},
        "uploads": {"description": "identity documents in flight", "peak_concurrent": 8},
    },
}


def test_heading_names_the_profile_and_its_description() -> None:
    html = heading(SUMMARY)
    assert html.startswith("<h1>Load test report: smoke</h1>")
    assert '<p class="meta">every path once, small enough' in html
    assert heading({}) == "<h1>Load test report</h1>"


def test_facts_show_the_run_and_each_scenario_at_its_peak() -> None:
    html = facts(SUMMARY)
    assert "<th>Local</th><td>yes (private stack)</td>" in html
    assert "<th>Duration</th><td>86.7 s</td>" in html
    assert (
        '<tr><td>users</td><td class="n">100</td><td>signed-in riders and drivers</td></tr>' in html
    )
    assert '<tr><td>uploads</td><td class="n">8</td>' in html
    assert (
        '<ul class="text"><li>100 users = 10 VUs x 10 people per VU</li>'
        "<li>8 uploads = 2 VUs x 4 uploads</li></ul>"
    ) in html
    assert html.index("users") < html.index("100 users =")


def test_facts_of_a_deployment_without_scenarios() -> None:
    html = facts({"local": False})
    assert "no (deployment)" in html
    assert "Scenarios: not measured." in html
    assert '<ul class="text">' not in html


def test_files_link_only_relative_paths() -> None:
    html = files_section(
        {"files": {"log": "run.log", "evil": "javascript:alert(1)", "abs": "/etc/x", "none": None}}
    )
    assert '<li>log: <a href="run.log">run.log</a></li>' in html
    assert "<li>evil: javascript:alert(1)</li>" in html
    assert "<li>abs: /etc/x</li>" in html
    assert "<li>none: <span" in html
    assert "Files: not measured." in files_section({})
