"""Route templates for labelling metrics and spans without unbounded cardinality."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Match, Mount

UNMATCHED = "<unmatched>"


def route_template(app: Starlette, scope: Mapping[str, Any]) -> str:
    """Return the path template (``/api/trips/{trip_id}``) that ``scope`` matches in ``app``.

    Unknown paths collapse into one label so a scanner cannot blow up metric cardinality.
    """
    for route in app.routes:
        match, _ = route.matches(dict(scope))
        if match is Match.FULL:
            path: str = getattr(route, "path", UNMATCHED)
            if isinstance(route, Mount):
                return path + "/{path}"
            return path
    return UNMATCHED
