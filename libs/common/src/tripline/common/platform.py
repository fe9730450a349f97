"""The platform's one-word state — ok, degraded or down — from its parts' states.

One rule, used by the monitor (which sees every dependency and replica) and by the gateway
when the monitor cannot be asked (it then sees only the replicas):

- **down** when riders can no longer book a trip or raise an SOS: MongoDB (the system of
  record) does not answer, or no replica of core is ready;
- **degraded** when anything else is wrong: Redis, S3 or the workers away, a replica unready,
  a service with no ready replica (live tracking and uploads stop, SOS and trips go on);
- **ok** otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

Status = Literal["ok", "degraded", "down"]

CRITICAL_SERVICES = frozenset({"core"})
CRITICAL_DEPENDENCIES = frozenset({"mongodb"})


def service_status(ready: Sequence[bool]) -> Status:
    """A service's state from its replicas' readiness: all, some or none ready."""
    if ready and all(ready):
        return "ok"
    return "degraded" if any(ready) else "down"


def platform_status(services: Mapping[str, Status], dependencies: Mapping[str, bool]) -> Status:
    """Combine per-service states and per-dependency answers (True when it answered)."""
    if any(services.get(name) == "down" for name in CRITICAL_SERVICES):
        return "down"
    if any(not dependencies.get(name, True) for name in CRITICAL_DEPENDENCIES):
        return "down"
    if all(state == "ok" for state in services.values()) and all(dependencies.values()):
        return "ok"
    return "degraded"
