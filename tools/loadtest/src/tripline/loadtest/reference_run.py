"""Measuring the reference (:mod:`tripline.loadtest.reference`) in a run: its own process on a
free port, k6 asking it as fast as it answers, its CPU read from ``/proc`` around the load."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tripline.devstack.ports import free_port, port_in_use
from tripline.loadtest import k6run, procfs
from tripline.loadtest.gate import Reference

SCRIPT = Path(__file__).resolve().parents[5] / "tests" / "load" / "k6" / "reference.js"
VUS = 20
DURATION = "8s"


async def measure_reference(run_dir: Path, log: Path) -> Reference:
    """The reference's requests, p95 and CPU per request, measured now."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tripline.loadtest.reference",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if port_in_use(port):
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the reference service did not start")
        before = procfs.usage_by_name({"reference": server.pid})["reference"]["cpu_s"]
        summary_path = run_dir / "reference-summary.json"
        k6 = await k6run.start(
            SCRIPT,
            {
                "URL": f"http://127.0.0.1:{port}/",
                "VUS": str(VUS),
                "DURATION": DURATION,
                "SUMMARY_PATH": str(summary_path),
            },
            log,
        )
        await k6run.finish(k6, log)
        after = procfs.usage_by_name({"reference": server.pid})["reference"]["cpu_s"]
    finally:
        server.terminate()
        await server.wait()
    summary = json.loads(summary_path.read_text())
    values = summary["metrics"]["http_req_duration"]["values"]
    requests = int(values["count"])
    seconds = summary["state"]["testRunDurationMs"] / 1000
    cpu = (after - before) * 1e6 / requests if requests else None
    return Reference(
        requests, requests / seconds, float(values["med"]), float(values["p(95)"]), cpu
    )
