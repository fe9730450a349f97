"""k6's background load during a fault: the load test's own scenarios and scripts (users,
uploads, tracking sockets), the ``ci`` profile scaled to what this 2-core machine carries with
every SLA kept (``--scale 0.2``: 200 users, 20 uploads in flight, 120 subscribers; 0.4
already breaks them, README "Capacity of this machine"), on a shorter shape: a ramp, then a
hold long enough for the longest fault and its recovery. The run stops it once the fault's
figures are in; its summary is kept as the background's context, not judged (k6 summarises a
whole run, so its figures cannot be cut to the fault's window: the client's own traffic is
what is judged)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
from pathlib import Path
from typing import Any

from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.loadtest import documents, figures, k6run, plan, profiles, sla
from tripline.loadtest.profiles import Profile

REPO = Path(__file__).resolve().parents[6]
LOAD = REPO / "tests" / "load"
MAIN_JS = LOAD / "k6" / "main.js"
SCALE = 0.2
RAMP_S = 15.0
STOP_WAIT_S = 30.0


def chaos_profile(hold_s: float, *, scale: float = SCALE, ramp_s: float = RAMP_S) -> Profile:
    """The ``ci`` profile of ``tests/load/profiles.yaml`` scaled by ``scale``, ramping up in
    ``ramp_s`` and then holding ``hold_s``."""
    ci = profiles.parse((LOAD / "profiles.yaml").read_text(), "ci")
    scaled = profiles.scaled(ci, scale)
    return dataclasses.replace(scaled, stages=((ramp_s, 1.0), (hold_s, 1.0)))


class Background:
    """k6 running the chaos profile against a stack; :meth:`start`, then :meth:`stop`."""

    def __init__(self, folder: Path, *, run_id: str, base_url: str, ws_urls: list[str]) -> None:
        self.folder = folder
        self.run_id = run_id
        self.base_url = base_url
        self.ws_urls = ws_urls
        self.process: asyncio.subprocess.Process | None = None
        self.summary_path = folder / "k6-summary.json"
        self.log = folder / "k6.log"

    async def start(self, profile: Profile) -> None:
        """Write the plan and start k6 (its setup, the tracking scenario's trips, runs first)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        slas = sla.parse((LOAD / "sla.yaml").read_text())
        the_plan = plan.build(
            run_id=self.run_id,
            profile=profile,
            slas=slas.slas,
            base_url=self.base_url,
            ws_urls=self.ws_urls,
            auth_mode="secret",
            documents=documents.ensure(REPO / ".loadtest" / "documents"),
            summary_path=str(self.summary_path),
        )
        plan_path = self.folder / "plan.json"
        plan_path.write_text(json.dumps(the_plan, indent=1))
        self.process = await k6run.start(
            MAIN_JS, {"PLAN": str(plan_path), "JWT_SECRET": LOCAL_JWT_SECRET}, self.log
        )

    async def stop(self, duration_s: float) -> dict[str, Any]:
        """Stop k6 as Ctrl-C does (it still writes its summary), killing it if it does not end
        within :data:`STOP_WAIT_S`; returns the background's figures (empty without a
        summary)."""
        process = self.process
        if process is None:
            return {}
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), STOP_WAIT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        if not self.summary_path.exists():
            return {"note": f"k6 wrote no summary (exit {process.returncode}); see {self.log}"}
        return background_figures(json.loads(self.summary_path.read_text()), duration_s)


def background_figures(k6_summary: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """The few k6 figures a chaos row shows as context: requests, errors, SOS, tracking."""
    computed = figures.compute(k6_summary, [], duration_s)
    return {
        "requests": computed["requests"],
        "rps": computed["rps"],
        "error_rate": computed["error_rate"],
        "status_counts": computed["status_counts"],
        "sos": computed["sos"],
        "tracking_lost": computed["tracking"]["lost"],
        "uploads": {k: computed["uploads"][k] for k in ("completed", "verified", "timed_out")},
    }
