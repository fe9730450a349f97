"""The release gate fails when a service is slow: the load runner (what ``make loadtest`` and
.ci/run's smoke step call), on its own private stack with every service holding each request
for FAULT_DELAY_S, must exit non-zero and name the latency SLA it breached, by how much, in its
output and its summary. The passing side is .ci/run's smoke run, on the same code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tripline.devstack.harness import scaled

pytestmark = pytest.mark.integration

LOADTEST = Path(sys.executable).parent / "tripline-loadtest"
REPO = Path(__file__).resolve().parents[2]

# The users scenario alone, briefly: enough reads for a p95, nothing that needs a long run.
PROFILE = """
defaults:
  city: {lat: [52.47, 52.55], lng: [13.32, 13.46]}
  users: {users_per_vu: 5, driver_share: 0.2, think_s: 1, poll_s: 1, pickup_s: 2, trip_s: 4,
          batch_s: 2, accept_timeout_s: 10, search_radius_km: 3, profile_edit_share: 0.1,
          sos_share: 0.5, window_s: 20}
profiles:
  gate-check:
    description: a short users run for the release gate's own test
    stages: [[2, 1.0], [12, 1.0]]
    users: {vus: 3}
"""


def test_a_slowed_platform_fails_the_run_naming_the_breached_sla(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(PROFILE)
    done = subprocess.run(
        [
            str(LOADTEST),
            "gate-check",
            "--profiles",
            str(profiles),
            "--out",
            str(tmp_path / "runs"),
            "--set",
            "FAULT_DELAY_S=0.4",
        ],
        capture_output=True,
        text=True,
        timeout=scaled(240),
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout
    assert "latency.read.p95 breached" in done.stdout, done.stdout
    [run] = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ok"] is False
    read = next(v for v in summary["slas"] if v["name"] == "latency.read.p95")
    # Through the gateway and then core, a read waits the delay twice.
    assert read["value"] > 800 > read["limit"]
    assert "off by" in read["message"]
    assert (run / "report.html").read_text().count("latency.read.p95") >= 1
