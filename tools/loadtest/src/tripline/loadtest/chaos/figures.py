"""A fault's figures and verdicts, from what the client recorded and what the databases hold.
Pure.

The promises each fault is judged on (the issue's, with DESIGN.md's "SOS is never lost" and
"critical is never shed"):

- ``lost``: every acknowledged write is applied by the end of the settle window;
- ``twice``: nothing is applied twice (an SOS archived twice, a status event twice in a trip's
  history, a payment charged twice at the provider, a document's verdict sent twice, a
  location stored twice);
- ``critical``: at least 99.9 % of the critical requests (SOS, location posts) sent while the
  fault lasted were accepted;
- ``sos_after_first_timeout``: once one SOS has been slow (1 s or more, or failed), the SOS
  sent after it were accepted within 1 s at p99 (a refused one never was): a hung dependency
  may cost its timeout once, not on every SOS;
- ``recovery``: after the fault ends, with no service restarted, ``/health`` is ``ok`` and a
  write is applied directly (not queued) within the bound.

The p99 of every critical request during the fault is reported, not judged: the load-test SLA
(500 ms) is for a healthy platform.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tripline.loadtest.chaos.records import Attempt, Timeline

CRITICAL_SUCCESS = 0.999
SOS_AFTER_TIMEOUT_S = 1.0
SLOW_S = 1.0


@dataclass(frozen=True)
class Check:
    """One promise judged: ``ok``, and a sentence saying what was measured against what."""

    name: str
    ok: bool
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "message": self.message}


def percentile(values: Iterable[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in (0, 1]) of ``values``; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def within(attempts: Iterable[Attempt], start: float, end: float) -> list[Attempt]:
    """The attempts sent in ``[start, end]``."""
    return [a for a in attempts if start <= a.sent_at <= end]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def window_figures(attempts: Sequence[Attempt]) -> dict[str, Any]:
    """Sent, accepted, success share and latencies (ms) of ``attempts``, overall and per kind;
    a request that got no answer counts with the time it waited."""

    def summary(group: Sequence[Attempt]) -> dict[str, Any]:
        ok = sum(1 for a in group if a.ok)
        latencies = [a.latency_s for a in group]
        return {
            "sent": len(group),
            "ok": ok,
            "success": round(ok / len(group), 5) if group else None,
            "p50_ms": ms(percentile(latencies, 0.5)),
            "p99_ms": ms(percentile(latencies, 0.99)),
            "max_ms": ms(max(latencies, default=None)),
        }

    return {
        "all": summary(attempts),
        "sos": summary([a for a in attempts if a.kind == "sos"]),
        "location": summary([a for a in attempts if a.kind == "location"]),
    }


@dataclass(frozen=True)
class SosAfterTimeout:
    """The SOS sent during the fault once the first slow one had answered (or failed): their
    p99 latency, a refused or unanswered one counting as never answered (``inf``), so the p99
    is infinite once more than 1 % of them failed; None when there were none."""

    p99_s: float | None
    sent: int
    failed: int
    how: str

    @property
    def ok(self) -> bool:
        return self.p99_s is not None and self.p99_s < SOS_AFTER_TIMEOUT_S

    @property
    def p99_ms(self) -> float | None:
        """The p99 in ms, None when not measured or infinite (see ``failed``)."""
        return ms(self.p99_s) if self.p99_s is not None and math.isfinite(self.p99_s) else None

    def said(self) -> str:
        if self.p99_s is None:
            return "no SOS measured"
        if not math.isfinite(self.p99_s):
            return f"{self.failed} of {self.sent} SOS refused or unanswered"
        return f"SOS p99 {self.p99_s * 1000:.0f} ms"


def sos_after_first_timeout(sos: Sequence[Attempt], end: float) -> SosAfterTimeout:
    """The SOS sent in the fault window (up to ``end``) after the first slow one (1 s or more,
    or failed) had answered; every SOS of the window when none was slow."""
    ordered = sorted(sos, key=lambda a: a.sent_at)
    first_slow = next((a for a in ordered if not a.ok or a.latency_s >= SLOW_S), None)
    if first_slow is None:
        after, how = ordered, "no SOS was slow"
    else:
        after = [a for a in ordered if first_slow.done_at <= a.sent_at <= end]
        how = (
            f"first slow SOS sent {first_slow.sent_at - ordered[0].sent_at:.1f} s into the "
            f"fault, answered {first_slow.status or 'nothing'} after "
            f"{first_slow.latency_s:.2f} s; {len(after)} SOS after it"
        )
    latencies = [a.latency_s if a.ok else math.inf for a in after]
    failed = sum(1 for a in after if not a.ok)
    return SosAfterTimeout(percentile(latencies, 0.99), len(after), failed, how)


def recovery_check(timeline: Timeline, bound_s: float) -> Check:
    recovery = timeline.recovery_s
    if recovery is None:
        return Check(
            "recovery",
            False,
            f"not recovered within {bound_s:.0f} s of the fault's end "
            "(/health ok and a profile write applied directly, 200 not 202)",
        )
    return Check(
        "recovery",
        recovery <= bound_s,
        f"/health ok and a write applied directly {recovery:.1f} s after the fault ended "
        f"(bound {bound_s:.0f} s)",
    )


def verdicts(
    *,
    during: Sequence[Attempt],
    timeline: Timeline,
    lost: Mapping[str, int],
    twice: Mapping[str, int],
    recovery_bound_s: float,
) -> list[Check]:
    """Every promise of the module docstring judged for one fault."""
    checks = [
        _counted("lost", lost, "acknowledged but not applied by the end of the settle window"),
        _counted("twice", twice, "applied more than once"),
    ]
    ok = sum(1 for a in during if a.ok)
    share = ok / len(during) if during else None
    checks.append(
        Check(
            "critical",
            share is not None and share >= CRITICAL_SUCCESS,
            f"{ok} of {len(during)} critical requests during the fault accepted"
            + (f" ({share:.2%})" if share is not None else "")
            + f", at least {CRITICAL_SUCCESS:.1%} required",
        )
    )
    sos = sos_after_first_timeout([a for a in during if a.kind == "sos"], timeline.fault_end)
    checks.append(
        Check(
            "sos_after_first_timeout",
            sos.ok,
            f"{sos.said()} after the first slow one, accepted within "
            f"{SOS_AFTER_TIMEOUT_S * 1000:.0f} ms at p99 required ({sos.how})",
        )
    )
    checks.append(recovery_check(timeline, recovery_bound_s))
    return checks


def _counted(name: str, counts: Mapping[str, int], what: str) -> Check:
    total = sum(counts.values())
    detail = ", ".join(f"{kind} {n}" for kind, n in counts.items() if n) or "none"
    return Check(name, total == 0, f"{total} writes {what} ({detail})")


def row(
    *,
    fault: str,
    description: str,
    attempts: Sequence[Attempt],
    timeline: Timeline,
    baseline_s: float,
    accepted: Mapping[str, int],
    lost: Mapping[str, int],
    twice: Mapping[str, int],
    recovery_bound_s: float,
    settle_s: float | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The fault's row: its figures during the fault and just before it, the counts, the
    recovery and every verdict (``ok`` when all held)."""
    during = within(attempts, timeline.fault_start, timeline.fault_end)
    before = [
        a for a in attempts if timeline.fault_start - baseline_s <= a.sent_at < timeline.fault_start
    ]
    checks = verdicts(
        during=during,
        timeline=timeline,
        lost=lost,
        twice=twice,
        recovery_bound_s=recovery_bound_s,
    )
    sos = sos_after_first_timeout([a for a in during if a.kind == "sos"], timeline.fault_end)
    figures = window_figures(during)
    return {
        "fault": fault,
        "description": description,
        "ok": all(check.ok for check in checks),
        "fault_s": round(timeline.fault_s, 1),
        "critical_during": figures,
        "critical_before": window_figures(before),
        "critical_success": figures["all"]["success"],
        "critical_p99_ms": figures["all"]["p99_ms"],
        "sos_p99_after_first_timeout_ms": sos.p99_ms,
        "sos_failed_after_first_timeout": sos.failed,
        "recovery_s": None if timeline.recovery_s is None else round(timeline.recovery_s, 1),
        "settle_s": None if settle_s is None else round(settle_s, 1),
        "accepted": dict(accepted),
        "lost": dict(lost),
        "twice": dict(twice),
        "lost_total": sum(lost.values()),
        "twice_total": sum(twice.values()),
        "checks": [check.as_json() for check in checks],
        **extra,
    }
