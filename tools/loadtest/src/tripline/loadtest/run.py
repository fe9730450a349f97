"""One load-test run from start to verdict: the stack (a private local one, or a deployment at
``target``), the reference, the plan, k6 and the platform sampler side by side, then the SLAs,
the figures, the gate, ``summary.json`` and the HTML report, all in the run's own folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tripline.common.auth import Role, mint_token
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.loadtest import documents, figures, gate, k6run, plan, profiles, report, sla
from tripline.loadtest import stack as local_stack
from tripline.loadtest.baseline import read_baseline, write_baseline
from tripline.loadtest.monitor import monitor_report, service_verdicts
from tripline.loadtest.reference_run import measure_reference
from tripline.loadtest.sampler import Sampler, Sources
from tripline.loadtest.summary import SCENARIO_TEXT, concurrency_text, text_summary

REPO = Path(__file__).resolve().parents[5]
LOAD = REPO / "tests" / "load"
MAIN_JS = LOAD / "k6" / "main.js"


class SetupError(RuntimeError):
    """The run cannot start as asked (what is missing is said)."""


@dataclass
class Options:
    """What ``make loadtest`` was asked for."""

    profile: str
    target: str | None = None
    tokens_file: Path | None = None
    out: Path = REPO / ".loadtest" / "runs"
    sla_file: Path = LOAD / "sla.yaml"
    profiles_file: Path = LOAD / "profiles.yaml"
    baseline_file: Path = LOAD / "baseline.json"
    gate: bool = False
    update_baseline: bool = False
    keep_stack: bool = False
    stack_settings: Mapping[str, str] = field(default_factory=dict)
    py_spy: tuple[str, ...] = ()
    scale: float = 1.0


def say(log: Path, line: str) -> None:
    """Print ``line`` and keep it in the run's log."""
    print(line, flush=True)
    with log.open("a") as out:
        out.write(line + "\n")


def commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def ws_base(http_url: str) -> str:
    """The WebSocket base of a deployment: its Ingress sends ``/ws/`` to tracking."""
    return "ws" + http_url.rstrip("/").removeprefix("http")


async def execute(options: Options) -> int:
    """Run ``options``; 0 when every SLA held (and the gate passed, when asked), else 1."""
    slas = sla.parse(options.sla_file.read_text())
    profile = profiles.scaled(
        profiles.parse(options.profiles_file.read_text(), options.profile), options.scale
    )
    started_at = datetime.now(UTC)
    # Every subject of the run starts with it: its users are its own, and easy to find.
    run_id = f"loadtest-{started_at:%Y%m%d%H%M%S}"
    run_dir = options.out / f"{profile.name}-{started_at:%Y%m%dT%H%M%S}"
    run_dir.mkdir(parents=True)
    log = run_dir / "run.log"
    say(log, f"load test {profile.name} ({profile.description}); files in {run_dir}")
    stack: local_stack.LocalStack | None = None
    try:
        if options.target is None:
            say(log, "starting a private stack on free ports")
            stack = local_stack.start(
                run_dir / "stack",
                {
                    "LOG_LEVEL": "WARNING",
                    # The monitor keeps the whole run, so its summary covers it.
                    "METRICS_HISTORY_S": str(round(profile.duration_s) + 900),
                    **options.stack_settings,
                },
            )
            base_url, ws_urls, pids = stack.gateway_url, stack.ws_urls, stack.pids()
        else:
            base_url, ws_urls, pids = options.target.rstrip("/"), [ws_base(options.target)], {}
        env: dict[str, str] = {}
        if options.tokens_file is not None:
            auth_mode = "file"
            env["TOKENS_FILE"] = str(options.tokens_file.resolve())
            admin_token = json.loads(options.tokens_file.read_text())["admin"][0]
        else:
            auth_mode = "secret"
            secret = os.environ.get("JWT_SECRET") or ""
            if not secret and stack is None:
                raise SetupError(
                    "a deployment needs its tokens: set JWT_SECRET to its signing key or "
                    "LOADTEST_TOKENS_FILE to a file of pre-issued tokens"
                )
            secret = secret or LOCAL_JWT_SECRET
            env["JWT_SECRET"] = secret
            admin_token = mint_token(secret, sub=f"{run_id}-monitor", role=Role.ADMIN, ttl_s=86400)
        reference = None
        if stack is not None:
            say(log, "measuring the reference service")
            reference = await measure_reference(run_dir, log)
            say(
                log,
                f"reference: {reference.requests} requests, p95 {reference.p95_ms:.2f} ms, "
                f"{reference.cpu_us_per_request or 0:.0f} us CPU per request",
            )
        docs = (
            documents.ensure(options.out.parent / "documents")
            if "uploads" in profile.scenarios
            else []
        )
        summary_path = run_dir / "k6-summary.json"
        the_plan = plan.build(
            run_id=run_id,
            profile=profile,
            slas=slas.slas,
            base_url=base_url,
            ws_urls=ws_urls,
            auth_mode=auth_mode,
            documents=docs,
            summary_path=str(summary_path),
        )
        plan_path = run_dir / "plan.json"
        plan_path.write_text(json.dumps(the_plan, indent=1))
        say(log, f"k6: {profile.concurrency()} at the peak, {profile.duration_s:.0f} s of stages")
        k6 = await k6run.start(
            MAIN_JS,
            {**env, "PLAN": str(plan_path)},
            run_dir / "k6.log",
            dashboard=run_dir / "k6-dashboard.html",
        )
        sampler = Sampler(
            Sources(
                pids={**pids, "k6": k6.pid},
                gateway_metrics_url=f"{base_url}/metrics" if stack is not None else None,
                admin_base_url=base_url,
                admin_token=admin_token,
            ),
            run_dir / "platform.jsonl",
        )
        sampling = asyncio.create_task(sampler.run())
        spies = start_py_spy(options.py_spy, pids, run_dir, profile.duration_s)
        began = time.monotonic()
        try:
            held = await k6run.finish(
                k6, run_dir / "k6.log", deadline_s=profiles.longest_run_s(profile) + 300
            )
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            for spy in spies:
                spy.wait(timeout=60)
        duration_s = time.monotonic() - began
        monitor = await monitor_report(base_url, admin_token, duration_s)
        if monitor is not None:
            (run_dir / "monitor.json").write_text(json.dumps(monitor))
        k6_summary = json.loads(summary_path.read_text())
        verdicts = [
            v.as_json()
            for v in sla.evaluate(sla.applicable(slas.slas, profile.scenarios), k6_summary)
        ] + service_verdicts(monitor, slas.service_p95_ms)
        figs = figures.compute(k6_summary, sampler.samples, duration_s)
        figs["monitor"] = {
            name: {k: stats.get(k) for k in ("requests", "rps", "error_rate", "p95_ms", "p99_ms")}
            for name, stats in (monitor or {}).get("services", {}).items()
        }
        gate_json: dict[str, Any] = {"ok": True, "ratios": [], "failures": []}
        measured: dict[str, float] = {}
        if reference is not None:
            measured = gate.ratios(figs, reference)
            result = gate.compare(
                measured,
                read_baseline(options.baseline_file, profile.name),
                slas.regression_tolerance,
            )
            gate_json = {
                "ok": result.ok or not options.gate,
                "gated": options.gate,
                "reference": reference.as_json(),
                "ratios": [row.as_json() for row in result.ratios],
                "failures": list(result.failures) if options.gate else [],
                "notes": [] if options.gate else list(result.failures),
            }
        else:
            gate_json["notes"] = [
                "a deployment's processes cannot be measured from here: no ratios, SLAs only"
            ]
        slas_ok = held and all(v["ok"] for v in verdicts)
        if not held and all(v["ok"] for v in verdicts):
            verdicts.append(
                {
                    "name": "k6.thresholds",
                    "requirement": "10.4",
                    "limit": None,
                    "op": "",
                    "unit": "",
                    "value": None,
                    "ok": False,
                    "message": "k6 reports a crossed threshold the runner did not judge (k6.log)",
                }
            )
        summary = {
            "profile": profile.name,
            "description": profile.description,
            "target": base_url,
            "local": stack is not None,
            "started_at": started_at.isoformat(timespec="seconds"),
            "duration_s": round(duration_s, 1),
            "commit": commit(),
            "ok": slas_ok and gate_json["ok"],
            "concurrency": concurrency_text(profile),
            "scenarios": {
                name: {"description": SCENARIO_TEXT[name], "peak_concurrent": count}
                for name, count in profile.concurrency().items()
            },
            "slas": verdicts,
            "gate": gate_json,
            "figures": figs,
            "files": {
                "k6_dashboard": "k6-dashboard.html",
                "k6_summary": "k6-summary.json",
                "platform": "platform.jsonl",
                "plan": "plan.json",
                "log": "run.log",
                "monitor": "monitor.json",
            },
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        report.write_report(run_dir)
        for line in text_summary(summary):
            say(log, line)
        say(log, f"report: {run_dir / 'report.html'}")
        if options.update_baseline:
            if slas_ok and measured:
                write_baseline(
                    options.baseline_file, profile.name, measured, run_dir.name, commit()
                )
                say(log, f"baseline for {profile.name} written to {options.baseline_file}")
            else:
                say(log, "baseline NOT written: the run breached an SLA or measured no ratio")
                return 1
        return 0 if summary["ok"] else 1
    finally:
        if stack is not None:
            if options.keep_stack:
                say(
                    log, f"the stack stays up: TRIPLINE_DATA_DIR={stack.folder} tripline-stack stop"
                )
            else:
                stack.stop()


def start_py_spy(
    names: tuple[str, ...], pids: Mapping[str, int], run_dir: Path, duration_s: float
) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` on each named process for the stages' length (needs ptrace rights)."""
    spies = []
    for name in names:
        if name not in pids:
            raise ValueError(f"no process {name!r} to profile; there are {', '.join(pids)}")
        spies.append(
            subprocess.Popen(
                [
                    str(k6run.K6.parent / "py-spy"),
                    "record",
                    "-p",
                    str(pids[name]),
                    "-d",
                    str(round(duration_s)),
                    "-r",
                    "50",
                    "-f",
                    "raw",
                    "-o",
                    str(run_dir / f"py-spy-{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return spies
