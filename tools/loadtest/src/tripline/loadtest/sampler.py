"""The platform's side of a run, sampled every few seconds into ``platform.jsonl``: CPU and
memory of each local process, the gateway's shedding, admission and per-class answers, the
queues' depth and the documents finished per second. Each source is optional: a deployment
reached through its gateway gives the queues (admin API) but no processes, and a source that
fails once is recorded as missing in that sample, never ends the run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tripline.loadtest import gatewaymetrics, procfs

DOCUMENTS = "documents"
# What an answer of the wrong shape raises while it is read (a sign-in page instead of metrics,
# JSON that is not the queue status): the source is missing from that sample, nothing more.
UNREADABLE = (ValueError, TypeError, AttributeError, KeyError)


@dataclass
class Sources:
    """Where samples come from: ``pids`` (name: pid) of local processes, the gateway's
    ``/metrics`` URL, and the admin API base (the gateway) with an admin token."""

    pids: Mapping[str, int] = field(default_factory=dict)
    gateway_metrics_url: str | None = None
    admin_base_url: str | None = None
    admin_token: str | None = None


def queue_fields(status: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``{queue: {"depth", "in_flight", "processed_total"}}`` from the admin queue status."""
    return {
        queue["name"]: {
            "depth": queue.get("depth") or 0,
            "in_flight": queue.get("in_flight") or 0,
            "processed_total": queue.get("processed_total") or 0,
        }
        for queue in status.get("queues", [])
        if isinstance(queue, Mapping) and "name" in queue
    }


def documents_per_s(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> float | None:
    """Documents finished per second between two samples, from the documents queue's
    processed total (None without two readings)."""
    if previous is None:
        return None
    try:
        done = (
            current["queues"][DOCUMENTS]["processed_total"]
            - previous["queues"][DOCUMENTS]["processed_total"]
        )
        elapsed = current["t"] - previous["t"]
    except (KeyError, TypeError):
        return None
    return round(max(done, 0) / elapsed, 3) if elapsed > 0 else None


class Sampler:
    """Samples ``sources`` every ``interval_s`` into ``path`` until stopped."""

    def __init__(
        self,
        sources: Sources,
        path: Path,
        *,
        interval_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sources = sources
        self.path = path
        self.interval_s = interval_s
        self.clock = clock
        self.samples: list[dict[str, Any]] = []

    async def sample(self, client: httpx.AsyncClient) -> dict[str, Any]:
        """One sample of every source (the ones that answer)."""
        sample: dict[str, Any] = {"t": round(self.clock(), 3)}
        if self.sources.pids:
            sample["processes"] = procfs.usage_by_name(self.sources.pids)
        if self.sources.gateway_metrics_url:
            try:
                answer = await client.get(self.sources.gateway_metrics_url)
                answer.raise_for_status()
                sample["gateway"] = gatewaymetrics.parse(answer.text)
            except (httpx.HTTPError, *UNREADABLE):
                sample["gateway"] = None
        if self.sources.admin_base_url and self.sources.admin_token:
            try:
                answer = await client.get(
                    f"{self.sources.admin_base_url}/api/admin/queues/status",
                    headers={"Authorization": f"Bearer {self.sources.admin_token}"},
                )
                answer.raise_for_status()
                sample["queues"] = queue_fields(answer.json())
            except (httpx.HTTPError, *UNREADABLE):
                sample["queues"] = None
        sample["documents_per_s"] = documents_per_s(
            self.samples[-1] if self.samples else None, sample
        )
        return sample

    async def run(self) -> None:
        """Sample until cancelled, appending each sample to ``path`` as one JSON line."""
        async with httpx.AsyncClient(timeout=self.interval_s) as client:
            with self.path.open("a") as out:
                while True:
                    started = self.clock()
                    sample = await self.sample(client)
                    self.samples.append(sample)
                    out.write(json.dumps(sample) + "\n")
                    out.flush()
                    await asyncio.sleep(max(0.0, self.interval_s - (self.clock() - started)))
