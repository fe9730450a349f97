"""Location points from drivers: what is accepted, what is refused and why. Pure: no I/O.

A point is refused (with its index and a reason the driver's app can log) when a field is out
of range, when its time is in the future beyond the allowed clock skew, when it is older than
``max_age_s`` (a buffer replayed long after the trip moved on), or when the batch repeats a time.
A point that implies an impossible speed from the previous one is kept but ``flagged``: GPS
glitches happen, and whoever reads the history decides what to make of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EARTH_RADIUS_M = 6_371_000.0


class Point(BaseModel):
    """One location: ``ts`` in epoch seconds, ``heading`` in degrees, ``speed`` in m/s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)
    ts: float = Field(gt=0, allow_inf_nan=False)
    heading: float | None = Field(default=None, ge=0, lt=360, allow_inf_nan=False)
    speed: float | None = Field(default=None, ge=0, le=150, allow_inf_nan=False)


@dataclass(frozen=True)
class Rules:
    max_future_s: float = 5.0
    max_age_s: float = 600.0
    max_speed_mps: float = 70.0


@dataclass(frozen=True)
class Accepted:
    point: Point
    flagged: bool


@dataclass(frozen=True)
class Screened:
    accepted: list[Accepted]
    rejected: list[dict[str, Any]]


def distance_m(a: Point, b: Point) -> float:
    """Great-circle distance between two points (haversine)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlng = math.radians(b.lng - a.lng)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlng / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def is_jump(previous: Point, point: Point, *, max_speed_mps: float) -> bool:
    """Whether getting from ``previous`` to ``point`` needs more than ``max_speed_mps``."""
    elapsed = abs(point.ts - previous.ts)
    return distance_m(previous, point) > max_speed_mps * max(elapsed, 1.0)


def screen(
    raw_points: Sequence[Mapping[str, Any]],
    *,
    now: float,
    previous: Point | None,
    rules: Rules,
) -> Screened:
    """Sort a batch into accepted points (oldest first) and refusals ``{index, reason}``.

    ``previous`` is the trip's latest known point, the start of the jump check.
    """
    rejected: list[dict[str, Any]] = []
    valid: list[tuple[int, Point]] = []
    seen: set[float] = set()
    for index, raw in enumerate(raw_points):
        reason = None
        try:
            point = Point.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "point"
            reason = f"{field}: {first['msg']}"
        else:
            if point.ts > now + rules.max_future_s:
                reason = "ts is in the future"
            elif point.ts < now - rules.max_age_s:
                reason = f"ts is more than {rules.max_age_s:g} s old"
            elif point.ts in seen:
                reason = "ts repeats an earlier point of the batch"
            else:
                seen.add(point.ts)
                valid.append((index, point))
        if reason is not None:
            rejected.append({"index": index, "reason": reason})
    accepted: list[Accepted] = []
    last = previous
    for _index, point in sorted(valid, key=lambda item: item[1].ts):
        flagged = last is not None and is_jump(last, point, max_speed_mps=rules.max_speed_mps)
        accepted.append(Accepted(point, flagged))
        last = point
    return Screened(accepted, rejected)
