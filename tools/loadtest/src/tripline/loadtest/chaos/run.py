"""One fault from start to row: a private stack, k6's background load, the client's traffic,
a baseline, the fault, the watch for recovery, the settle window, the verification, the row.

Timeline (each fault on a stack of its own, so no fault inherits another's damage):

1. the stack starts on free ports (``OwnedStack``: what ``make start`` runs, plus a second core
   replica), under ``.loadtest/chaos/runs/<fault>-<time>/``; the client creates its trips;
2. k6 starts the scaled ``ci`` profile and the client its traffic; after k6's setup, its ramp
   (``ramp_s``) and a baseline of ``baseline_s``, the fault is injected;
3. ``duration_s`` later it is ended (process resumed or started again and ready, provider
   back to normal): the fault window is injection to end;
4. the platform is watched until it is recovered (``recovery_bound_s`` at most), traffic runs
   ``after_recovery_s`` more, then stops (writes in flight may finish) and k6 is stopped;
5. acknowledged writes are awaited where they end up (``settle_bound_s`` at most), duplicates
   counted, and the row judged and written.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from tripline.devstack.harness import scaled
from tripline.devstack.ownedstack import OwnedStack, start_owned_stack
from tripline.loadtest import documents, gatewaymetrics
from tripline.loadtest.chaos import figures, report, verify
from tripline.loadtest.chaos.background import RAMP_S, Background, chaos_profile
from tripline.loadtest.chaos.client import Api
from tripline.loadtest.chaos.faults import FAULTS, Fault, Target
from tripline.loadtest.chaos.machine import CpuWindow, load_tests, wait_for_other_load_tests
from tripline.loadtest.chaos.records import Log, Timeline
from tripline.loadtest.chaos.recovery import Watcher
from tripline.loadtest.chaos.traffic import Traffic

REPO = Path(__file__).resolve().parents[6]
OUT = REPO / ".loadtest" / "chaos"
DATABASE = "tripline"
# Quiet logs, as the load runner's stack; location history flushed every 5 s instead of 30 s,
# so the settle window sees accepted points stored within seconds (only the cadence changes:
# what is flushed, and how, is the same).
STACK_SETTINGS = {"LOG_LEVEL": "WARNING", "HISTORY_FLUSH_S": "5"}


# Another load test (k6) on this machine is waited out this long at most before a fault starts.
OTHER_LOAD_TEST_WAIT_S = 900.0


@dataclass(frozen=True)
class Schedule:
    """The timeline's lengths (module docstring; ``k6_setup_s`` is allowed for k6's setup, its
    tracking trips, before its ramp). ``settle_bound_s`` and ``stop_grace_s`` are waits and
    scale with ``TRIPLINE_TEST_TIMEOUT_FACTOR``; the others are the experiment."""

    ramp_s: float = RAMP_S
    k6_setup_s: float = 5.0
    baseline_s: float = 10.0
    recovery_bound_s: float = 60.0
    after_recovery_s: float = 5.0
    settle_bound_s: float = 120.0
    stop_grace_s: float = 30.0
    background: bool = True


async def run_fault(fault: Fault, schedule: Schedule, out: Path = OUT) -> dict[str, Any]:
    """Run ``fault`` as the module docstring says; returns its row (also written under
    ``out``). Raises when the stack cannot start or the client cannot set up its trips."""
    started = datetime.now(UTC)
    run_dir = out / "runs" / f"{fault.name}-{started:%Y%m%dT%H%M%S}"
    tag = f"chaos-{fault.name}-{started:%H%M%S}"
    phases = Phases()
    waited = await wait_for_other_load_tests(OTHER_LOAD_TEST_WAIT_S)
    phases.done("waited_for_other_load_tests")
    stack = await start_owned_stack(run_dir / "stack", settings=STACK_SETTINGS, core_replicas=2)
    phases.done("stack_start")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.backend_urls.mongo_url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=50)
    try:
        async with httpx.AsyncClient(limits=limits) as http:
            target = Target(stack, mongo[DATABASE], http)
            row = await _experiment(fault, schedule, target, run_dir, tag, phases)
    finally:
        await mongo.close()
        await stack.stop()
    phases.done("stack_stop")
    row |= {
        "started_at": started.isoformat(timespec="seconds"),
        "run": str(run_dir),
        "phases_s": phases.lengths,
        "waited_for_other_load_tests_s": waited,
        **commit(),
    }
    (run_dir / "row.json").write_text(json.dumps(row, indent=1))
    report.write(out, row, [f.name for f in FAULTS])
    return row


class Phases:
    """How long each phase of a run took, in seconds, in the order they ended."""

    def __init__(self) -> None:
        self.lengths: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.lengths[name] = round(now - self._last, 1)
        self._last = now


async def _experiment(
    fault: Fault, schedule: Schedule, target: Target, run_dir: Path, tag: str, phases: Phases
) -> dict[str, Any]:
    stack = target.stack
    log, timeline = Log(), Timeline()
    # The same set: the fault sees the client's uploads as they start.
    target.presigned = log.presigned
    api = Api(target.http, stack.gateway_url)
    traffic = Traffic(api, tag, log, _document())
    await traffic.setup()
    phases.done("client_setup")
    background = Background(
        run_dir / "k6", run_id=tag, base_url=stack.gateway_url, ws_urls=_ws(stack)
    )
    if schedule.background:
        hold_s = (
            schedule.baseline_s
            + fault.duration_s
            + 30  # a killed process's start and a job's wait, within the fault
            + schedule.recovery_bound_s
            + schedule.after_recovery_s
            + 15
        )
        await background.start(chaos_profile(hold_s, ramp_s=schedule.ramp_s))
    timeline.traffic_start = log.now()
    traffic.start()
    warm_up_s = schedule.ramp_s + schedule.k6_setup_s if schedule.background else 0.0
    await asyncio.sleep(warm_up_s + schedule.baseline_s)
    watcher = Watcher(api, tag)
    before = await watcher.look()
    cpu = CpuWindow()
    notes = [note for note in [await fault.inject(target)] if note]
    timeline.fault_start = log.now()
    cpu.start()
    try:
        await asyncio.sleep(fault.duration_s)
    finally:
        ended = await fault.end(target)
    timeline.fault_end = log.now()
    machine = cpu.stop()
    ours = background.process.pid if background.process is not None else None
    machine["other_load_tests"] = len([pid for pid in load_tests() if pid != ours])
    notes += [ended] if ended else []
    timeline.recovered_at, looks = await watcher.until_recovered(schedule.recovery_bound_s)
    await asyncio.sleep(schedule.after_recovery_s)
    await traffic.stop(scaled(schedule.stop_grace_s))
    timeline.traffic_end = log.now()
    k6 = await background.stop(timeline.traffic_end - timeline.traffic_start)
    phases.done("load_and_fault")
    stores = verify.Stores(
        target.db, target.http, stack.payment_sandbox_url, stack.notification_sandbox_url
    )
    lost, settle_s = await verify.settle(stores, log.accepted, scaled(schedule.settle_bound_s))
    twice = await verify.twice(stores, log.accepted)
    phases.done("settle_and_verify")
    _keep_raw(run_dir, log, looks, timeline)
    gateway = await _gateway_counts(target.http, stack.gateway_url, run_dir)
    # A process that ended by itself (not the one the fault killed and started again).
    exited = {
        name: server.process.popen.returncode
        for name, server in stack.servers.items()
        if server.process is not None
        and server.process.popen is not None
        and server.process.popen.poll() is not None
    }
    return figures.row(
        fault=fault.name,
        description=fault.description,
        attempts=log.attempts,
        timeline=timeline,
        baseline_s=schedule.baseline_s,
        accepted=log.accepted.counts(),
        lost=lost,
        twice=twice,
        recovery_bound_s=schedule.recovery_bound_s,
        settle_s=settle_s,
        extra={
            "notes": notes,
            "before_fault": {"health": before.health, "write": before.write_status},
            "sos_answered_by": dict(log.instances),
            "client_notes": dict(log.notes),
            "upload_states": await verify.upload_states(stores, log.accepted),
            "background": k6,
            "cpu_during_fault": machine,
            "gateway": gateway,
            "exited": exited,
        },
    )


def _keep_raw(run_dir: Path, log: Log, looks: list[Any], timeline: Timeline) -> None:
    """Every attempt and look, times relative to the fault's start, for reading a row's why."""
    origin = timeline.fault_start
    with (run_dir / "attempts.jsonl").open("w") as out:
        for attempt in log.attempts:
            entry = attempt.as_json()
            entry["sent_at"] = round(attempt.sent_at - origin, 3)
            out.write(json.dumps(entry) + "\n")
    (run_dir / "recovery.json").write_text(
        json.dumps(
            {
                "fault_s": round(timeline.fault_s, 2),
                "looks": [look.as_json(timeline.fault_end) for look in looks],
            },
            indent=1,
        )
    )


async def _gateway_counts(http: httpx.AsyncClient, base_url: str, run_dir: Path) -> dict[str, Any]:
    """The gateway's admissions by priority and outcome (shed requests among them) and its
    answers per route class over the whole run; its metrics text is kept beside the row."""
    try:
        answer = await http.get(f"{base_url}/metrics", timeout=10)
    except httpx.HTTPError as exc:
        return {"note": f"no metrics: {exc!r}"}
    (run_dir / "gateway-metrics.txt").write_text(answer.text)
    parsed = gatewaymetrics.parse(answer.text)
    return {"admission": parsed["admission"], "responses": parsed["responses"]}


def _document() -> bytes:
    """The smallest JPEG of the load test's documents (a phone's licence photo)."""
    docs = documents.ensure(REPO / ".loadtest" / "documents")
    jpeg = min((d for d in docs if d.content_type == "image/jpeg"), key=lambda d: d.size)
    return Path(jpeg.path).read_bytes()


def _ws(stack: OwnedStack) -> list[str]:
    return ["ws" + url.removeprefix("http") for url in stack.tracking_urls]


def commit() -> dict[str, Any]:
    """The commit measured, and whether services/ or libs/ had changes not committed yet (the
    working tree is what runs)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "services", "libs")
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown", "dirty": bool(dirty)}
