"""Route templates for labelling metrics and spans without unbounded cardinality."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.routing import BaseRoute, Mount

UNMATCHED = "<unmatched>"

# An app that routes by itself (the gateway's route table) puts its template here.
ROUTE_LABEL_KEY = "tripline.route"


def _template(route: BaseRoute) -> str:
    path: str = getattr(route, "path", UNMATCHED)
    if isinstance(route, Mount):
        return path + "/{path}"
    return path


def handled_route_label(scope: Mapping[str, Any]) -> str:
    """The template of the route that handled ``scope``, read once the app has answered.

    Costs no matching: Starlette's router records the route it chose in the scope, and an app
    that routes by itself records its template under :data:`ROUTE_LABEL_KEY`. A request no
    route took (404, or an error before routing) is :data:`UNMATCHED`.
    """
    label = scope.get(ROUTE_LABEL_KEY)
    if isinstance(label, str):
        return label
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        return _template(route)
    return UNMATCHED
