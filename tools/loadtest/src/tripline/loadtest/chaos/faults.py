"""The faults, each injected into a running :class:`OwnedStack` and ended again, and a control
(nothing injected, the same window):

- a process hung: SIGSTOP to its process group, SIGCONT when the fault ends (its sockets stay
  open and nothing answers: the worst kind of outage for a client);
- a process killed: SIGKILL to its process group, then started again on the same port and data
  folder when the fault ends, as a supervisor or Kubernetes restarts a crashed container (the
  fault ends once it is ready again);
- a provider misbehaving: the sandbox told to hang or to fail a share of its calls, then told
  to answer normally again.

Only the process the fault names is touched; every other process runs on unrestarted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from tripline.devstack.ownedstack import OwnedStack

# The numbers: a dependency hung for 20 s; the same length for every other fault, so
# each row's critical figures cover a comparable span.
FAULT_S = 20.0
# A supervisor restarts a crashed worker at once; allow it the few seconds one takes to notice.
WORKER_RESTART_S = 5.0
MID_JOB_WAIT_S = 30.0


@dataclass
class Target:
    """What a fault acts on: the stack, its database (to see a job in progress), a client for
    the sandboxes' control API, and the uploads the chaos client has started (``presigned``:
    a worker is killed while one of those is processed, so the client's own record shows
    what became of that job)."""

    stack: OwnedStack
    db: AsyncDatabase[dict[str, Any]]
    http: httpx.AsyncClient
    presigned: set[str] = field(default_factory=set)


Action = Callable[[Target], Awaitable[str | None]]


@dataclass(frozen=True)
class Fault:
    """One fault: ``inject`` starts it, ``end`` ends it (each may return a note for the row),
    ``duration_s`` apart."""

    name: str
    description: str
    inject: Action
    end: Action
    duration_s: float = FAULT_S


def nothing() -> tuple[Action, Action]:
    async def untouched(_target: Target) -> str | None:
        return None

    return untouched, untouched


def hang(process: str) -> tuple[Action, Action]:
    async def inject(target: Target) -> str | None:
        target.stack.server(process).pause()
        return None

    async def end(target: Target) -> str | None:
        target.stack.server(process).resume()
        return None

    return inject, end


def kill(process: str, *, mid_job: bool = False) -> tuple[Action, Action]:
    async def inject(target: Target) -> str | None:
        note = await _wait_for_a_job(target) if mid_job else None
        await asyncio.to_thread(target.stack.server(process).kill)
        return note

    async def end(target: Target) -> str | None:
        began = time.monotonic()
        await target.stack.start_again(process)
        return f"{process} started again, ready after {time.monotonic() - began:.1f} s"

    return inject, end


def provider(name: str, body: dict[str, Any]) -> tuple[Action, Action]:
    async def inject(target: Target) -> str | None:
        await _control(target, name, body)
        return None

    async def end(target: Target) -> str | None:
        await _control(target, name, {"mode": "ok"})
        return None

    return inject, end


async def _control(target: Target, name: str, body: dict[str, Any]) -> None:
    stack = target.stack
    base = stack.payment_sandbox_url if name == "payments" else stack.notification_sandbox_url
    answer = await target.http.put(f"{base}/control/{name}", json=body, timeout=10)
    answer.raise_for_status()


async def _wait_for_a_job(target: Target) -> str:
    """Wait until one of the client's own documents is being processed (at most
    :data:`MID_JOB_WAIT_S`), else any document, so the kill lands mid-job on a job whose fate
    the client's record shows; says which it was."""
    give_up = time.monotonic() + MID_JOB_WAIT_S
    while time.monotonic() < give_up:
        mine = {"_id": {"$in": list(target.presigned)}, "status": "processing"}
        found = await target.db.uploads.find_one(mine, {"_id": 1})
        if found is not None:
            return f"killed while the client's document {found['_id']} was being processed"
        await asyncio.sleep(0.02)
    if await target.db.uploads.count_documents({"status": "processing"}, limit=1):
        return "killed while another client's document was being processed"
    return f"no document was being processed within {MID_JOB_WAIT_S:.0f} s; killed anyway"


def _fault(
    name: str, description: str, actions: tuple[Action, Action], duration_s: float = FAULT_S
) -> Fault:
    inject, end = actions
    return Fault(name, description, inject, end, duration_s)


FAULTS: tuple[Fault, ...] = (
    # The control: the same load, client and judgement with nothing broken, so a row's figures
    # can be told apart from what this loaded machine does anyway.
    _fault("none", "no fault (the control: the same load for 20 s)", nothing()),
    _fault("mongodb-hang", "MongoDB hung 20 s (SIGSTOP, SIGCONT)", hang("mongodb")),
    _fault(
        "mongodb-kill",
        "MongoDB killed, started again on its data 20 s later",
        kill("mongodb"),
    ),
    _fault("redis-hang", "Redis hung 20 s (SIGSTOP, SIGCONT)", hang("redis")),
    _fault(
        "redis-kill",
        "Redis killed, started again on its append-only file 20 s later",
        kill("redis"),
    ),
    _fault("s3-hang", "S3 (moto) hung 20 s (SIGSTOP, SIGCONT)", hang("s3")),
    _fault(
        "worker-kill",
        "the documents worker SIGKILLed mid-job, started again 5 s later",
        kill("worker-documents", mid_job=True),
        WORKER_RESTART_S,
    ),
    _fault(
        "tracking-kill",
        "tracking replica 1 of 2 SIGKILLed, started again 20 s later",
        kill("tracking-1"),
    ),
    _fault(
        "core-kill",
        "core replica 1 of 2 SIGKILLed, started again 20 s later",
        kill("core"),
    ),
    _fault(
        "payments-hang",
        "the payment provider hung 20 s",
        provider("payments", {"mode": "hang"}),
    ),
    _fault(
        "notifications-flaky",
        "the notification provider failing every second call for 20 s",
        provider("notifications", {"mode": "fail", "fail_ratio": 0.5}),
    ),
)


def fault_named(name: str) -> Fault:
    """The fault ``name``; raises ``KeyError`` listing the names there are."""
    for fault in FAULTS:
        if fault.name == name:
            return fault
    raise KeyError(f"no fault {name!r}; there are {', '.join(f.name for f in FAULTS)}")
