"""The monitor's view of a run: its per-service summary over the run's window (read through
the gateway's admin API), and the p95 SLA the monitor alerts on judged per service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx


async def monitor_report(base_url: str, token: str, window_s: float) -> dict[str, Any] | None:
    """The monitor's per-service summary over the run (admin API through the gateway)."""
    async with httpx.AsyncClient(timeout=10) as client:
        try:
            answer = await client.get(
                f"{base_url}/api/admin/metrics",
                params={"window_s": max(10, round(window_s))},
                headers={"Authorization": f"Bearer {token}"},
            )
            answer.raise_for_status()
            report_: dict[str, Any] = answer.json()
        except (httpx.HTTPError, ValueError):
            return None
    return report_


def service_verdicts(monitor: Mapping[str, Any] | None, limit_ms: float) -> list[dict[str, Any]]:
    """The monitor's p95 SLA (ALERT_P95_SLA_S) per service over the run, as SLA verdicts."""
    if monitor is None:
        return [
            {
                "name": "service.p95",
                "requirement": "10.4",
                "limit": limit_ms,
                "op": "<=",
                "unit": "ms",
                "value": None,
                "ok": False,
                "message": "service.p95: the monitor's metrics could not be read",
            }
        ]
    verdicts = []
    for service, stats in sorted(monitor.get("services", {}).items()):
        p95 = stats.get("p95_ms")
        if p95 is None:
            continue
        ok = p95 <= limit_ms
        verdicts.append(
            {
                "name": f"service.{service}.p95",
                "requirement": "10.4",
                "limit": limit_ms,
                "op": "<=",
                "unit": "ms",
                "value": p95,
                "ok": ok,
                "message": f"service.{service}.p95 (the monitor's): {p95:.4g} ms"
                + (f" <= {limit_ms:g} ms" if ok else f" breached, limit {limit_ms:g} ms"),
            }
        )
    return verdicts
