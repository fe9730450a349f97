"""The chaos suite (``make chaos``; ``make chaos SUBSET=ci`` for the CI subset): each fault
injected into a private stack of its own while load-test traffic runs, and judged on what
happened to the writes the platform acknowledged, to critical requests during the fault and
to the platform after it.

How it is measured, and why so:

- **Background load is k6's**, the load test's own scenarios and scripts on the ``ci``
  profile scaled to 0.2 (the most this 2-core machine carries with every SLA kept; 0.4 breaks
  them, README "Capacity of this machine"), so the fault meets the platform busy as in the
  release pipeline. k6 summarises a whole run: its figures cannot be cut to the fault's 20
  seconds, so they are kept as context only (``background`` in each row).
- **What is judged comes from a Python client beside it** (``tripline.loadtest.chaos``):
  critical requests (an SOS a second, a location a second from six drivers) sent on a
  clock whatever the answers, each recorded with its send time, latency and answer, so the
  figures are exactly those of the fault's window; and writes retried as an app retries them
  (trips moved to completed and paid, documents uploaded), each acknowledgement recorded by
  the id the platform answered with, then looked for where it must end up (MongoDB's ``sos``,
  ``trips``, ``payments``, ``uploads``, ``location_history``; the sandbox's charges and sent
  notifications) to count writes lost and applied twice.
- **One stack per fault**, what ``make start`` runs plus a second core replica, on free ports
  under ``.loadtest/chaos/runs/<fault>-<time>/`` (its logs stay there), so a running
  ``make start`` is never touched and no fault inherits another's damage.

The promises and their bounds are in ``tripline.loadtest.chaos.figures``; every row goes to
``.loadtest/chaos/`` (``chaos.md``, ``chaos.json``, ``rows/``) and the table of the run is
printed at the end. Waits scale with ``TRIPLINE_TEST_TIMEOUT_FACTOR``; the fault's own lengths
do not (they are the experiment).
"""

from __future__ import annotations

from typing import Any

import pytest

from tripline.loadtest.chaos import report

ROWS: list[dict[str, Any]] = []


@pytest.fixture
def chaos_rows() -> list[dict[str, Any]]:
    """Rows of this session, for the table printed at its end."""
    return ROWS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    terminalreporter.section("chaos: one row per fault")
    for row in ROWS:
        terminalreporter.write_line(report.text(row))
    terminalreporter.write_line("table: .loadtest/chaos/chaos.md, rows: .loadtest/chaos/rows/")
