"""Reading a run's JSON for the report without trusting it, and the order names are shown in.

A partial or crashed run may leave any value missing, null or of another type: every reader
here returns a safe stand-in (None, an empty mapping or list) instead, and none raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tripline.loadtest.plan import PRIORITIES
from tripline.loadtest.routes import MEASURED_CLASSES

# Display order: the route classes and the priorities as the plan lists them; names not listed
# follow, sorted.
CLASS_ORDER = MEASURED_CLASSES
PRIORITY_ORDER = PRIORITIES


def dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or None as soon as a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def finite(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (bools, strings, NaN, infinities)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def records(value: Any) -> list[Mapping[str, Any]]:
    """The mappings in ``value`` if it is a list, else none."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def ordered(names: Iterable[str], first: Sequence[str] = ()) -> list[str]:
    """``names`` without repeats: those in ``first`` in that order, then the rest sorted."""
    unique = set(names)
    return [n for n in first if n in unique] + sorted(unique - set(first), key=str)
