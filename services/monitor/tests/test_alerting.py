from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tripline.monitor.alerting import (
    Alert,
    AlertEngine,
    Notice,
    NoticeKind,
    Observation,
    Severity,
)

REPEAT_S = 3600.0
T0 = 1_700_000_000.0


def error_rate(active: bool, value: float = 0.075, subject: str = "gateway") -> Observation:
    return Observation(
        rule="error_rate",
        subject=subject,
        active=active,
        value=value,
        threshold=0.01,
        summary=f"{subject}: {value * 100:.1f}% of requests failed over 5 min (limit 1%)",
        severity=Severity.CRITICAL,
    )


def queue_depth(active: bool, value: float = 1500, subject: str = "documents") -> Observation:
    return Observation(
        rule="queue_depth",
        subject=subject,
        active=active,
        value=value,
        threshold=1000,
        summary=f"queue {subject}: {value:g} waiting (limit 1000)",
        severity=Severity.WARNING,
    )


def kinds(notices: list[Notice]) -> list[tuple[NoticeKind, str]]:
    return [(notice.kind, notice.alert.id) for notice in notices]


@pytest.fixture
def engine() -> AlertEngine:
    return AlertEngine(repeat_s=REPEAT_S)


# Firing


def test_an_active_observation_fires_once(engine: AlertEngine) -> None:
    notices = engine.evaluate([error_rate(True)], T0)
    assert kinds(notices) == [(NoticeKind.FIRING, "error_rate:gateway")]
    alert = notices[0].alert
    assert alert.started_at == alert.last_sent_at == T0
    assert alert.resolved_at is None
    assert alert.state == "firing"
    assert engine.evaluate([error_rate(True)], T0 + 15) == []
    assert [alert.id for alert in engine.active()] == ["error_rate:gateway"]


def test_an_inactive_observation_of_a_quiet_condition_says_nothing(engine: AlertEngine) -> None:
    assert engine.evaluate([error_rate(False), queue_depth(False)], T0) == []
    assert engine.active() == []
    assert engine.recent() == []


def test_each_subject_is_its_own_alert(engine: AlertEngine) -> None:
    notices = engine.evaluate(
        [error_rate(True, subject="gateway"), error_rate(True, subject="core")], T0
    )
    assert kinds(notices) == [
        (NoticeKind.FIRING, "error_rate:gateway"),
        (NoticeKind.FIRING, "error_rate:core"),
    ]


def test_an_active_alert_follows_its_latest_reading(engine: AlertEngine) -> None:
    engine.evaluate([error_rate(True, 0.075)], T0)
    assert engine.evaluate([error_rate(True, 0.2)], T0 + 15) == []
    (alert,) = engine.active()
    assert alert.value == 0.2
    assert alert.summary == "gateway: 20.0% of requests failed over 5 min (limit 1%)"
    assert alert.started_at == alert.last_sent_at == T0


# Repeating


def test_a_lasting_alert_is_repeated_every_repeat_s(engine: AlertEngine) -> None:
    engine.evaluate([error_rate(True)], T0)
    assert engine.evaluate([error_rate(True)], T0 + REPEAT_S - 1) == []
    repeated = engine.evaluate([error_rate(True, 0.3)], T0 + REPEAT_S)
    assert kinds(repeated) == [(NoticeKind.REPEAT, "error_rate:gateway")]
    assert repeated[0].alert.last_sent_at == T0 + REPEAT_S
    assert repeated[0].alert.started_at == T0
    assert repeated[0].alert.value == 0.3
    # The next reminder counts from the last notice, not from the start.
    assert engine.evaluate([error_rate(True)], T0 + 2 * REPEAT_S - 1) == []
    assert kinds(engine.evaluate([error_rate(True)], T0 + 2 * REPEAT_S + 10)) == [
        (NoticeKind.REPEAT, "error_rate:gateway")
    ]


def test_an_alert_without_a_reading_stays_active_and_is_repeated(engine: AlertEngine) -> None:
    engine.evaluate([error_rate(True), queue_depth(True)], T0)
    assert engine.evaluate([queue_depth(True)], T0 + 60) == []
    assert engine.evaluate([], T0 + 120) == []
    assert {alert.id for alert in engine.active()} == {
        "error_rate:gateway",
        "queue_depth:documents",
    }
    notices = engine.evaluate([queue_depth(True)], T0 + REPEAT_S)
    assert kinds(notices) == [
        (NoticeKind.REPEAT, "queue_depth:documents"),
        (NoticeKind.REPEAT, "error_rate:gateway"),
    ]


# Resolving


def test_an_inactive_reading_resolves_the_alert(engine: AlertEngine) -> None:
    engine.evaluate([error_rate(True)], T0)
    notices = engine.evaluate([error_rate(False, 0.002)], T0 + 300)
    assert kinds(notices) == [(NoticeKind.RESOLVED, "error_rate:gateway")]
    resolved = notices[0].alert
    assert resolved.resolved_at == T0 + 300
    assert resolved.started_at == T0
    assert resolved.value == 0.002
    assert resolved.state == "resolved"
    assert engine.active() == []
    assert engine.recent() == [resolved]
    assert engine.evaluate([error_rate(False)], T0 + 315) == []


def test_a_condition_that_returns_fires_again(engine: AlertEngine) -> None:
    engine.evaluate([error_rate(True)], T0)
    engine.evaluate([error_rate(False)], T0 + 60)
    notices = engine.evaluate([error_rate(True)], T0 + 120)
    assert kinds(notices) == [(NoticeKind.FIRING, "error_rate:gateway")]
    assert notices[0].alert.started_at == T0 + 120
    assert [alert.started_at for alert in engine.recent()] == [T0]


def test_recent_is_newest_first_and_bounded() -> None:
    engine = AlertEngine(repeat_s=REPEAT_S, recent_max=2)
    for step, subject in enumerate(["a", "b", "c"]):
        now = T0 + step * 100
        engine.evaluate([queue_depth(True, subject=subject)], now)
        engine.evaluate([queue_depth(False, subject=subject)], now + 10)
    assert [alert.subject for alert in engine.recent()] == ["c", "b"]


# Reporting


def test_as_dict_is_the_alerts_endpoint_body(engine: AlertEngine) -> None:
    engine.evaluate([queue_depth(True), error_rate(True, subject="core")], T0)
    engine.evaluate([queue_depth(False, 10)], T0 + 30)
    engine.evaluate([error_rate(True, 0.075)], T0 + 45)
    assert engine.as_dict() == {
        "active": [
            {
                "id": "error_rate:core",
                "rule": "error_rate",
                "subject": "core",
                "severity": "critical",
                "summary": "core: 7.5% of requests failed over 5 min (limit 1%)",
                "value": 0.075,
                "threshold": 0.01,
                "started_at": T0,
                "last_sent_at": T0,
                "state": "firing",
            },
            {
                "id": "error_rate:gateway",
                "rule": "error_rate",
                "subject": "gateway",
                "severity": "critical",
                "summary": "gateway: 7.5% of requests failed over 5 min (limit 1%)",
                "value": 0.075,
                "threshold": 0.01,
                "started_at": T0 + 45,
                "last_sent_at": T0 + 45,
                "state": "firing",
            },
        ],
        "recent": [
            {
                "id": "queue_depth:documents",
                "rule": "queue_depth",
                "subject": "documents",
                "severity": "warning",
                "summary": "queue documents: 10 waiting (limit 1000)",
                "value": 10,
                "threshold": 1000,
                "started_at": T0,
                "last_sent_at": T0,
                "state": "resolved",
                "resolved_at": T0 + 30,
            }
        ],
    }
    json.dumps(engine.as_dict())


def test_active_lists_critical_first_then_oldest(engine: AlertEngine) -> None:
    engine.evaluate([queue_depth(True)], T0)
    engine.evaluate([error_rate(True, subject="b")], T0 + 10)
    engine.evaluate([error_rate(True, subject="a")], T0 + 20)
    assert [alert.id for alert in engine.active()] == [
        "error_rate:b",
        "error_rate:a",
        "queue_depth:documents",
    ]


# Contract


def test_two_readings_of_one_alert_are_refused_without_a_change(engine: AlertEngine) -> None:
    with pytest.raises(ValueError, match="error_rate:gateway"):
        engine.evaluate([error_rate(True), queue_depth(True), error_rate(False)], T0)
    assert engine.active() == []


@pytest.mark.parametrize(("repeat_s", "recent_max"), [(0, 10), (-1, 10), (60, -1)])
def test_bad_limits_are_refused(repeat_s: float, recent_max: int) -> None:
    with pytest.raises(ValueError, match="must"):
        AlertEngine(repeat_s=repeat_s, recent_max=recent_max)


# The engine against a model, over any sequence of readings

SUBJECTS = ("gateway", "core", "upload")
MODEL_REPEAT_S = 100.0
MODEL_RECENT_MAX = 4
# Per subject: no reading, an inactive one, or an active one.
readings = st.lists(st.sampled_from([None, False, True]), min_size=3, max_size=3)


class AlertEngineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = AlertEngine(repeat_s=MODEL_REPEAT_S, recent_max=MODEL_RECENT_MAX)
        self.now = T0
        self.active: set[str] = set()
        self.transitions: Counter[str] = Counter()
        self.sent: Counter[tuple[NoticeKind, str]] = Counter()
        self.last_sent: dict[str, float] = {}

    @rule(
        # Whole seconds, so readings land exactly on a repeat boundary now and then.
        step=st.integers(min_value=0, max_value=3 * int(MODEL_REPEAT_S)),
        states=readings,
        value=st.floats(min_value=0, max_value=1, allow_nan=False),
    )
    def evaluate(self, step: int, states: list[bool | None], value: float) -> None:
        self.now += step
        observations = [
            error_rate(state, value, subject)
            for subject, state in zip(SUBJECTS, states, strict=True)
            if state is not None
        ]
        for observation in observations:
            if observation.active and observation.id not in self.active:
                self.transitions[observation.id] += 1
                self.active.add(observation.id)
            elif not observation.active:
                self.active.discard(observation.id)

        notices = self.engine.evaluate(observations, self.now)

        ids = [notice.alert.id for notice in notices]
        assert len(ids) == len(set(ids)), "one notice per alert per evaluation"
        for notice in notices:
            key = notice.alert.id
            self.sent[notice.kind, key] += 1
            if notice.kind is NoticeKind.REPEAT:
                assert self.now - self.last_sent[key] >= MODEL_REPEAT_S
            if notice.kind is NoticeKind.RESOLVED:
                assert notice.alert.resolved_at == self.now
                del self.last_sent[key]
            else:
                assert notice.alert.last_sent_at == self.now
                self.last_sent[key] = self.now

    @invariant()
    def firing_counts_the_transitions(self) -> None:
        for subject in SUBJECTS:
            key = f"error_rate:{subject}"
            assert self.sent[NoticeKind.FIRING, key] == self.transitions[key]
            assert self.sent[NoticeKind.RESOLVED, key] <= self.sent[NoticeKind.FIRING, key]

    @invariant()
    def active_alerts_are_the_model_s(self) -> None:
        assert {alert.id for alert in self.engine.active()} == self.active

    @invariant()
    def no_active_alert_goes_unreminded(self) -> None:
        for alert in self.engine.active():
            assert self.now - alert.last_sent_at < MODEL_REPEAT_S
            assert alert.last_sent_at == self.last_sent[alert.id]

    @invariant()
    def recent_is_bounded_and_newest_first(self) -> None:
        recent: list[Alert] = self.engine.recent()
        assert len(recent) <= MODEL_RECENT_MAX
        resolved_at = [alert.resolved_at for alert in recent]
        assert all(at is not None for at in resolved_at)
        assert resolved_at == sorted(resolved_at, key=lambda at: -(at or 0.0))


AlertEngineModel.TestCase.settings = hypothesis_settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
test_alert_engine_against_a_model = AlertEngineModel.TestCase


def test_with_for_s_an_alert_fires_only_once_its_condition_has_held_that_long() -> None:
    engine = AlertEngine(repeat_s=3600, for_s=60)
    active = error_rate(active=True)
    assert engine.evaluate([active], now=0) == []
    assert engine.evaluate([active], now=59) == []
    (notice,) = engine.evaluate([active], now=60)
    assert notice.kind is NoticeKind.FIRING
    assert notice.alert.started_at == 0


def test_with_for_s_a_condition_that_clears_while_pending_starts_over() -> None:
    engine = AlertEngine(repeat_s=3600, for_s=60)
    assert engine.evaluate([error_rate(active=True)], now=0) == []
    assert engine.evaluate([error_rate(active=False)], now=30) == []
    assert engine.evaluate([error_rate(active=True)], now=70) == []
    assert engine.evaluate([error_rate(active=True)], now=129) == []
    assert [n.kind for n in engine.evaluate([error_rate(active=True)], now=130)] == [
        NoticeKind.FIRING
    ]
    assert engine.active()[0].started_at == 70
