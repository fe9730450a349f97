"""Alert state: which conditions are firing, and which notices an evaluation must send.

The monitor turns metrics, queues and health into :class:`Observation` readings every evaluation
interval; :class:`AlertEngine` keeps one :class:`Alert` per ``rule:subject`` and answers each
evaluation with the notices to deliver. Nothing here does I/O or reads a clock: ``now`` (unix
seconds) is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


class NoticeKind(StrEnum):
    FIRING = "firing"
    REPEAT = "repeat"
    RESOLVED = "resolved"


def alert_id(rule: str, subject: str) -> str:
    return f"{rule}:{subject}"


@dataclass(frozen=True)
class Observation:
    """One condition's current reading: ``rule`` (``error_rate``) about ``subject`` (``gateway``).

    ``active`` says whether the condition holds now; ``value`` is what was measured against
    ``threshold``; ``summary`` is the sentence an operator reads.
    """

    rule: str
    subject: str
    active: bool
    value: float
    threshold: float
    summary: str
    severity: Severity

    @property
    def id(self) -> str:
        return alert_id(self.rule, self.subject)


@dataclass(frozen=True)
class Alert:
    """An alert as last reported: firing while ``resolved_at`` is ``None``."""

    rule: str
    subject: str
    severity: Severity
    summary: str
    value: float
    threshold: float
    started_at: float
    last_sent_at: float
    resolved_at: float | None = None

    @property
    def id(self) -> str:
        return alert_id(self.rule, self.subject)

    @property
    def state(self) -> str:
        return "firing" if self.resolved_at is None else "resolved"

    def as_dict(self) -> dict[str, Any]:
        """The alert as one entry of ``GET /api/admin/alerts`` (``resolved_at`` once resolved)."""
        entry: dict[str, Any] = {
            "id": self.id,
            "rule": self.rule,
            "subject": self.subject,
            "severity": self.severity.value,
            "summary": self.summary,
            "value": self.value,
            "threshold": self.threshold,
            "started_at": self.started_at,
            "last_sent_at": self.last_sent_at,
            "state": self.state,
        }
        if self.resolved_at is not None:
            entry["resolved_at"] = self.resolved_at
        return entry


@dataclass(frozen=True)
class Notice:
    """Something to tell operators: ``alert`` as it stands after the evaluation."""

    kind: NoticeKind
    alert: Alert


_SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1}


class AlertEngine:
    """Firing, repeating and resolving alerts from successive evaluations.

    An alert fires once when its observation becomes active, is repeated every ``repeat_s``
    seconds after the last notice while it stays active, and resolves when its observation is
    present and inactive. An active alert whose observation is missing stays active: a reading
    that could not be taken is no evidence of recovery. The last ``recent_max`` resolved alerts
    are kept, newest first.

    With ``for_s`` an observation must stay active that long before its alert fires (pending
    until then, as Prometheus' ``for``): a worker still starting, or one slow scrape, wakes
    nobody. The alert's ``started_at`` is when it became pending.
    """

    def __init__(self, repeat_s: float, recent_max: int = 100, for_s: float = 0.0) -> None:
        if repeat_s <= 0:
            raise ValueError(f"repeat_s must be positive, got {repeat_s}")
        if for_s < 0:
            raise ValueError(f"for_s must not be negative, got {for_s}")
        if recent_max < 0:
            raise ValueError(f"recent_max must not be negative, got {recent_max}")
        self.repeat_s = repeat_s
        self.for_s = for_s
        self._pending: dict[str, float] = {}
        self._active: dict[str, Alert] = {}
        self._recent: deque[Alert] = deque(maxlen=recent_max)

    def evaluate(self, observations: Iterable[Observation], now: float) -> list[Notice]:
        """Apply one evaluation's readings taken at ``now``; return the notices to send.

        Notices follow the observations' order, then repeats of active alerts that had no
        observation. Value, threshold, summary and severity of an alert come from its latest
        observation, the resolving one included. Raises ``ValueError`` when two observations
        share a ``rule:subject`` id (the state is then left unchanged).
        """
        readings: dict[str, Observation] = {}
        for observation in observations:
            if observation.id in readings:
                raise ValueError(f"two observations for {observation.id} in one evaluation")
            readings[observation.id] = observation

        notices: list[Notice] = []
        for observation in readings.values():
            notice = self._apply(observation, now)
            if notice is not None:
                notices.append(notice)
        for key, alert in list(self._active.items()):
            if key not in readings and self._repeat_due(alert, now):
                notices.append(self._repeat(alert, now))
        return notices

    def _apply(self, observation: Observation, now: float) -> Notice | None:
        current = self._active.get(observation.id)
        if current is None:
            if not observation.active:
                self._pending.pop(observation.id, None)
                return None
            since = self._pending.setdefault(observation.id, now)
            if now - since < self.for_s:
                return None
            del self._pending[observation.id]
            fired = Alert(
                rule=observation.rule,
                subject=observation.subject,
                severity=observation.severity,
                summary=observation.summary,
                value=observation.value,
                threshold=observation.threshold,
                started_at=since,
                last_sent_at=now,
            )
            self._active[fired.id] = fired
            return Notice(NoticeKind.FIRING, fired)
        updated = replace(
            current,
            severity=observation.severity,
            summary=observation.summary,
            value=observation.value,
            threshold=observation.threshold,
        )
        if not observation.active:
            del self._active[updated.id]
            resolved = replace(updated, resolved_at=now)
            self._recent.appendleft(resolved)
            return Notice(NoticeKind.RESOLVED, resolved)
        if self._repeat_due(updated, now):
            return self._repeat(updated, now)
        self._active[updated.id] = updated
        return None

    def _repeat_due(self, alert: Alert, now: float) -> bool:
        return now - alert.last_sent_at >= self.repeat_s

    def _repeat(self, alert: Alert, now: float) -> Notice:
        repeated = replace(alert, last_sent_at=now)
        self._active[repeated.id] = repeated
        return Notice(NoticeKind.REPEAT, repeated)

    def active(self) -> list[Alert]:
        """Firing alerts, critical first, then oldest first."""
        return sorted(
            self._active.values(),
            key=lambda alert: (_SEVERITY_ORDER[alert.severity], alert.started_at, alert.id),
        )

    def recent(self) -> list[Alert]:
        """Resolved alerts, newest first, at most ``recent_max``."""
        return list(self._recent)

    def as_dict(self) -> dict[str, Any]:
        """The body of ``GET /api/admin/alerts``."""
        return {
            "active": [alert.as_dict() for alert in self.active()],
            "recent": [alert.as_dict() for alert in self.recent()],
        }
