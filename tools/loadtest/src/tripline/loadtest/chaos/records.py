"""What the chaos client saw, recorded as it happened: every critical request with its send
time, latency and answer, and every write the platform acknowledged, by the id it answered
with. Pure data; the verification reads the acknowledged ids against the databases afterwards.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

CriticalKind = Literal["sos", "location"]


@dataclass(frozen=True)
class Attempt:
    """One critical request: sent at ``sent_at`` (monotonic seconds), answered ``status`` after
    ``latency_s`` (0 when no answer came: a timeout or a refused connection), ``ok`` when it
    was accepted."""

    kind: CriticalKind
    sent_at: float
    latency_s: float
    status: int
    ok: bool

    @property
    def done_at(self) -> float:
        return self.sent_at + self.latency_s

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sent_at": round(self.sent_at, 4),
            "latency_ms": round(self.latency_s * 1000, 1),
            "status": self.status,
            "ok": self.ok,
        }


@dataclass
class Accepted:
    """Writes the platform acknowledged (a 2xx), as the client recorded them.

    - ``sos``: SOS id → the unique message it carried; ``sos_sent``: every message sent,
      acknowledged or not (a second archived copy of any of them is a duplicate);
    - ``trips``: trips requested (201 made, 202 queued); ``status_events``: trip id → the event
      ids of its acknowledged status changes (200 applied, 202 queued), as core records them,
      ``<user>:<Idempotency-Key>``;
    - ``payments``: trips whose payment was acknowledged (200 confirmed or 202 pending);
    - ``uploads``: uploads whose completion was acknowledged (202 queued);
    - ``points``: (trip id, ts) of every location point acknowledged (202, not rejected).
    """

    sos: dict[str, str] = field(default_factory=dict)
    sos_sent: set[str] = field(default_factory=set)
    trips: set[str] = field(default_factory=set)
    status_events: dict[str, list[str]] = field(default_factory=dict)
    payments: set[str] = field(default_factory=set)
    uploads: set[str] = field(default_factory=set)
    points: set[tuple[str, float]] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        return {
            "sos": len(self.sos),
            "trips": len(self.trips),
            "status_changes": sum(len(events) for events in self.status_events.values()),
            "payments": len(self.payments),
            "uploads": len(self.uploads),
            "locations": len(self.points),
        }


@dataclass
class Log:
    """Everything the client recorded in one run; ``now`` is the clock every time is read on.

    ``notes`` counts what went wrong on the way (a write given up, a final refusal),
    ``instances`` which replica answered core's routes (``Tripline-Instance``'s origin hop),
    and ``presigned`` the uploads started (presigned), finished or not.
    """

    attempts: list[Attempt] = field(default_factory=list)
    accepted: Accepted = field(default_factory=Accepted)
    presigned: set[str] = field(default_factory=set)
    notes: Counter[str] = field(default_factory=Counter)
    instances: Counter[str] = field(default_factory=Counter)

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def note(self, text: str) -> None:
        self.notes[text] += 1

    def answered_by(self, instance_header: str) -> None:
        """Count the origin hop of a ``Tripline-Instance`` header (``core/core-2, gateway/...``)."""
        origin = instance_header.split(",", 1)[0].strip()
        if origin:
            self.instances[origin] += 1


@dataclass
class Timeline:
    """When each phase began, on :meth:`Log.now`'s clock: the fault's injection and its end
    (the process resumed, restarted and ready, or the provider back to normal), and when the
    platform was seen fully recovered (None: not within the bound)."""

    traffic_start: float = 0.0
    fault_start: float = 0.0
    fault_end: float = 0.0
    recovered_at: float | None = None
    traffic_end: float = 0.0

    @property
    def fault_s(self) -> float:
        return self.fault_end - self.fault_start

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.fault_end
