"""The SLAs: the real ``tests/load/sla.yaml`` read into k6 thresholds, a broken file refused
naming what is wrong, and verdicts on a synthetic k6 summary that say which SLA, the value, the
limit and by how much."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tripline.loadtest.profiles import SCENARIOS
from tripline.loadtest.routes import CLASSES
from tripline.loadtest.sla import (
    Sla,
    SlaFile,
    SlaFileError,
    Verdict,
    applicable,
    evaluate,
    k6_thresholds,
    parse,
)

REPO = Path(__file__).resolve().parents[3]
SLA_TEXT = (REPO / "tests" / "load" / "sla.yaml").read_text()
# What k6 accepts as a threshold: an aggregation, an operator, a plain number.
K6_EXPRESSION = re.compile(r"(p\(\d+(\.\d+)?\)|rate|count|avg|min|max|med)(<=|>=)\d+(\.\d+)?")


def raw() -> dict[str, Any]:
    loaded = yaml.safe_load(SLA_TEXT)
    assert isinstance(loaded, dict)
    return loaded


def real() -> SlaFile:
    return parse(SLA_TEXT)


def by_name(slas: SlaFile) -> dict[str, Sla]:
    return {sla.name: sla for sla in slas.slas}


def k6_summary(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """A k6 ``handleSummary`` document holding ``metrics`` (name: values)."""
    return {
        "root_group": {"name": "", "checks": []},
        "options": {"summaryTrendStats": ["avg", "min", "med", "max", "p(95)", "p(99)"]},
        "metrics": {name: {"type": "trend", "values": dict(v)} for name, v in metrics.items()},
    }


def verdict_of(verdicts: list[Verdict], name: str) -> Verdict:
    (found,) = [v for v in verdicts if v.sla.name == name]
    return found


def without(data: dict[str, Any], path: tuple[str, ...]) -> str:
    changed = copy.deepcopy(data)
    node = changed
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return yaml.safe_dump(changed)


def replaced(data: dict[str, Any], path: tuple[str, ...], value: object) -> str:
    changed = copy.deepcopy(data)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return yaml.safe_dump(changed)


# The real file


def test_the_real_file_has_a_p95_and_a_p99_for_every_class() -> None:
    slas = by_name(real())
    latency = raw()["latency_ms"]
    for cls in CLASSES:
        p95, p99 = slas[f"latency.{cls}.p95"], slas[f"latency.{cls}.p99"]
        assert (p95.limit, p99.limit) == (latency[cls]["p95"], latency[cls]["p99"])
        assert p95.limit <= p99.limit, cls
        assert p95.metric == p99.metric == f"http_req_duration{{class:{cls}}}"
    assert slas["latency.read.p95"].threshold == "p(95)<=300"
    assert slas["latency.read.p99"].threshold == "p(99)<=800"


def test_every_threshold_of_the_real_file_is_a_k6_expression() -> None:
    for sla in real().slas:
        assert K6_EXPRESSION.fullmatch(sla.threshold), (sla.name, sla.threshold)


def test_the_real_files_other_numbers_are_read_from_their_keys() -> None:
    data = raw()
    parsed = real()
    slas = by_name(parsed)
    assert parsed.error_rate == data["error_rate"]
    assert parsed.service_p95_ms == data["service_p95_ms"]
    assert parsed.regression_tolerance == data["regression_tolerance"]
    assert slas["error_rate"].limit == data["error_rate"]
    assert slas["unexpected_5xx"].limit == data["unexpected_5xx"]
    assert slas["sos_success"].limit == data["sos_success"]
    assert slas["delivery.p99"].limit == data["delivery_p99_ms"]
    assert slas["lost_events"].limit == data["lost_events"]
    # Seconds in the file, milliseconds as k6 measures it.
    assert slas["upload_verdict.p95"].limit == data["upload_verdict_p95_s"] * 1000
    assert slas["upload_verdict.p95"].threshold == f"p(95)<={data['upload_verdict_p95_s'] * 1000:g}"


def test_sla_names_are_unique() -> None:
    names = [sla.name for sla in real().slas]
    assert len(names) == len(set(names))


# A broken file


@pytest.mark.parametrize(
    "path",
    [
        ("latency_ms", "read", "p95"),
        ("latency_ms", "payment", "p99"),
        ("error_rate",),
        ("service_p95_ms",),
        ("sos_success",),
        ("delivery_p99_ms",),
        ("upload_verdict_p95_s",),
        ("regression_tolerance",),
    ],
    ids=".".join,
)
def test_a_missing_number_raises_naming_its_path(path: tuple[str, ...]) -> None:
    with pytest.raises(SlaFileError, match=rf"^sla\.yaml: {re.escape('.'.join(path))} is missing"):
        parse(without(raw(), path))


def test_a_missing_class_raises_naming_its_first_number() -> None:
    with pytest.raises(SlaFileError, match=r"latency_ms\.low\.p95 is missing"):
        parse(without(raw(), ("latency_ms", "low")))


@pytest.mark.parametrize("value", ["fast", True, None, float("nan"), float("inf"), [300]], ids=repr)
def test_a_value_that_is_not_a_number_raises_naming_its_path(value: object) -> None:
    with pytest.raises(SlaFileError, match=r"latency_ms\.write\.p99 must be a number"):
        parse(replaced(raw(), ("latency_ms", "write", "p99"), value))


def test_a_non_numeric_top_level_number_is_refused() -> None:
    with pytest.raises(SlaFileError, match=r"error_rate must be a number, not '1%'"):
        parse(replaced(raw(), ("error_rate",), "1%"))


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n", "just words"])
def test_a_file_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(SlaFileError, match="must be a mapping"):
        parse(text)


# Which SLAs a run measures, and its thresholds


def test_applicable_picks_the_slas_of_the_scenarios_run() -> None:
    slas = real().slas
    latency = {f"latency.{cls}.{stat}" for cls in CLASSES for stat in ("p95", "p99")}
    upload_latency = {"latency.upload.p95", "latency.upload.p99"}
    assert {s.name for s in applicable(slas, ["tracking"])} == {
        "delivery.p99",
        "lost_events",
        "sos_success",
    }
    assert {s.name for s in applicable(slas, ["uploads"])} == upload_latency | {
        "error_rate",
        "unexpected_5xx",
        "upload_verdict.p95",
    }
    assert {s.name for s in applicable(slas, ["users"])} == (latency - upload_latency) | {
        "error_rate",
        "unexpected_5xx",
        "sos_success",
    }
    assert applicable(slas, []) == []
    assert applicable(slas, SCENARIOS) == list(slas)


def test_every_sla_belongs_to_a_scenario_a_profile_can_run() -> None:
    for sla in real().slas:
        assert sla.scenarios
        assert sla.scenarios <= set(SCENARIOS), sla.name


def test_k6_thresholds_group_the_expressions_by_metric() -> None:
    slas = real().slas
    thresholds = k6_thresholds(slas)
    assert thresholds["http_req_duration{class:read}"] == ["p(95)<=300", "p(99)<=800"]
    assert thresholds["tl_errors"] == [f"rate<={raw()['error_rate']:g}"]
    assert thresholds["tl_sos_ok"] == ["rate>=1"]
    assert thresholds["tl_unexpected_5xx"] == ["count<=0"]
    assert sum(len(expressions) for expressions in thresholds.values()) == len(slas)
    assert set(thresholds) == {sla.metric for sla in slas}


def test_k6_thresholds_keep_the_order_of_slas_on_one_metric() -> None:
    first = Sla("a", "r", frozenset({"users"}), "m", "p(99)", "<=", 9, "ms")
    second = Sla("b", "r", frozenset({"users"}), "m", "p(50)", "<=", 2.5, "ms")
    other = Sla("c", "r", frozenset({"users"}), "n", "rate", ">=", 0.5, "%", 100)
    assert k6_thresholds([first, other, second]) == {
        "m": ["p(99)<=9", "p(50)<=2.5"],
        "n": ["rate>=0.5"],
    }


# Verdicts on a run


def passing_metrics(slas: SlaFile) -> dict[str, dict[str, float]]:
    """Values that keep every SLA: half of each upper limit, each lower limit itself."""
    metrics: dict[str, dict[str, float]] = {}
    for sla in slas.slas:
        value = sla.limit / 2 if sla.op == "<=" else sla.limit
        metrics.setdefault(sla.metric, {})[sla.stat] = value
    return metrics


def test_a_run_inside_every_sla_passes_them_all() -> None:
    slas = real()
    verdicts = evaluate(slas.slas, k6_summary(passing_metrics(slas)))
    assert [v.sla for v in verdicts] == list(slas.slas)
    assert all(v.ok for v in verdicts), [v.message for v in verdicts if not v.ok]
    read = verdict_of(verdicts, "latency.read.p95")
    assert read.value == 150
    assert read.message == "latency.read.p95: 150 ms <= 300 ms"


def test_a_value_at_the_limit_passes() -> None:
    metrics = passing_metrics(real())
    metrics["http_req_duration{class:read}"]["p(95)"] = 300
    verdict = verdict_of(evaluate(real().slas, k6_summary(metrics)), "latency.read.p95")
    assert verdict.ok


def test_a_breach_names_the_sla_the_value_the_limit_and_by_how_much() -> None:
    metrics = passing_metrics(real())
    metrics["http_req_duration{class:read}"]["p(95)"] = 345.6
    verdicts = evaluate(real().slas, k6_summary(metrics))
    breached = [v for v in verdicts if not v.ok]
    assert [v.sla.name for v in breached] == ["latency.read.p95"]
    (verdict,) = breached
    assert verdict.value == 345.6
    assert verdict.message == (
        "latency.read.p95 breached: 345.6 ms, limit <= 300 ms, off by 45.6 ms (15% over)"
    )


def test_a_breach_in_seconds_is_shown_in_seconds() -> None:
    metrics = passing_metrics(real())
    limit_ms = raw()["upload_verdict_p95_s"] * 1000
    metrics["tl_upload_verdict_ms"]["p(95)"] = limit_ms * 1.2
    verdict = verdict_of(evaluate(real().slas, k6_summary(metrics)), "upload_verdict.p95")
    limit_s = raw()["upload_verdict_p95_s"]
    assert not verdict.ok
    assert verdict.message == (
        f"upload_verdict.p95 breached: {limit_s * 1.2:.4g} s, limit <= {limit_s:.4g} s, "
        f"off by {limit_s * 0.2:.4g} s (20% over)"
    )
    shown = verdict.as_json()
    assert shown["limit"] == pytest.approx(limit_s)
    assert shown["value"] == pytest.approx(limit_s * 1.2)
    assert shown["unit"] == "s"


def test_an_error_rate_breach_is_shown_in_percent() -> None:
    metrics = passing_metrics(real())
    metrics["tl_errors"]["rate"] = 0.025
    verdict = verdict_of(evaluate(real().slas, k6_summary(metrics)), "error_rate")
    assert not verdict.ok
    assert verdict.message == ("error_rate breached: 2.5 %, limit <= 1 %, off by 1.5 % (150% over)")
    assert verdict.as_json()["value"] == pytest.approx(2.5)


def test_an_unmeasured_sla_fails_as_not_measured() -> None:
    metrics = passing_metrics(real())
    del metrics["http_req_duration{class:payment}"]
    verdicts = evaluate(real().slas, k6_summary(metrics))
    for name in ("latency.payment.p95", "latency.payment.p99"):
        verdict = verdict_of(verdicts, name)
        assert not verdict.ok
        assert verdict.value is None
        assert "not measured" in verdict.message
        assert "http_req_duration{class:payment}" in verdict.message
        assert verdict.as_json()["value"] is None
    assert [v.sla.name for v in verdicts if not v.ok] == [
        "latency.payment.p95",
        "latency.payment.p99",
    ]


def test_a_metric_without_the_stat_is_not_measured() -> None:
    metrics = passing_metrics(real())
    metrics["tl_delivery_ms"] = {"avg": 12.0, "max": 40.0}
    verdict = verdict_of(evaluate(real().slas, k6_summary(metrics)), "delivery.p99")
    assert not verdict.ok
    assert "not measured" in verdict.message


def test_a_summary_without_metrics_fails_every_sla_but_the_zero_counters() -> None:
    verdicts = evaluate(real().slas, {})
    assert {v.sla.name for v in verdicts if v.ok} == {"unexpected_5xx", "lost_events"}


def test_absent_counters_count_as_zero() -> None:
    metrics = passing_metrics(real())
    del metrics["tl_unexpected_5xx"]
    del metrics["tl_events_lost"]
    verdicts = evaluate(real().slas, k6_summary(metrics))
    for name in ("unexpected_5xx", "lost_events"):
        verdict = verdict_of(verdicts, name)
        assert verdict.ok, verdict.message
        assert verdict.value == 0.0


def test_an_absent_rate_is_not_zero_but_unmeasured() -> None:
    metrics = passing_metrics(real())
    del metrics["tl_errors"]
    verdict = verdict_of(evaluate(real().slas, k6_summary(metrics)), "error_rate")
    assert not verdict.ok
    assert "not measured" in verdict.message


def test_a_counted_unexpected_5xx_breaches() -> None:
    metrics = passing_metrics(real())
    metrics["tl_unexpected_5xx"] = {"count": 3, "rate": 0.1}
    verdict = verdict_of(evaluate(real().slas, k6_summary(metrics)), "unexpected_5xx")
    assert not verdict.ok
    # No "over" share of a zero limit.
    assert verdict.message == (
        "unexpected_5xx breached: 3 responses, limit <= 0 responses, off by 3 responses"
    )


def test_every_sos_accepted_keeps_the_at_least_sla() -> None:
    metrics = passing_metrics(real())
    metrics["tl_sos_ok"] = {"rate": 1.0, "passes": 20, "fails": 0}
    verdict = verdict_of(evaluate(real().slas, k6_summary(metrics)), "sos_success")
    assert verdict.ok
    assert verdict.message == "sos_success: 100 % >= 100 %"


def test_an_sos_refused_breaches_the_at_least_sla_by_the_shortfall() -> None:
    metrics = passing_metrics(real())
    metrics["tl_sos_ok"] = {"rate": 0.95, "passes": 19, "fails": 1}
    verdict = verdict_of(evaluate(real().slas, k6_summary(metrics)), "sos_success")
    assert not verdict.ok
    assert verdict.message == "sos_success breached: 95 %, limit >= 100 %, off by 5 %"
    assert verdict.as_json()["op"] == ">="


def test_an_at_least_sla_passes_above_its_limit() -> None:
    sla = Sla("x", "r", frozenset({"users"}), "m", "rate", ">=", 0.9, "%", 100)
    verdicts = evaluate([sla], k6_summary({"m": {"rate": 0.97}}))
    assert [v.ok for v in verdicts] == [True]
    low = evaluate([sla], k6_summary({"m": {"rate": 0.8}}))
    assert [v.ok for v in low] == [False]
    assert "off by 10 %" in low[0].message


def test_a_threshold_states_its_limit_exactly() -> None:
    # k6 judges the threshold, the runner judges `limit`: they must be the same number.
    sla = Sla("x", "r", frozenset({"users"}), "m", "p(95)", "<=", 1_234_567, "ms")
    assert sla.threshold == "p(95)<=1234567"


def test_a_trend_without_samples_is_not_measured_though_k6_shows_zero_percentiles() -> None:
    metrics = passing_metrics(real())
    empty = {"avg": 0.0, "min": 0.0, "med": 0.0, "max": 0.0, "p(95)": 0.0, "p(99)": 0.0}
    metrics["http_req_duration{class:payment}"] = {**empty, "count": 0}
    metrics["http_req_duration{class:low}"] = {**empty, "count": 4}
    verdicts = evaluate(real().slas, k6_summary(metrics))
    payment = verdict_of(verdicts, "latency.payment.p95")
    assert not payment.ok
    assert "not measured" in payment.message
    # Four requests all faster than a millisecond's rounding were measured.
    assert verdict_of(verdicts, "latency.low.p95").ok
    assert verdict_of(verdicts, "latency.low.p95").value == 0.0
