"""Side-by-side summary of make bench-tracking's runs.

Usage: tracking-summary.py RAW_DIR "N1 N2 ..."

Reads RAW_DIR/{ref,direct,gateway}-<N>.json (one line each, written by tracking.sh) and prints,
per N, the three stacks in columns. Memory per socket two ways:
  - per run: (peak RSS - RSS before k6 started) / peak sockets on that process. This includes
    what a fresh process allocates on its first connections whatever their number (Node's heap
    growth and JIT, Python's first imports and caches), so it overstates the cost of a socket
    at small N;
  - marginal, when two N ran: (peak RSS at the larger N - peak RSS at the smaller) / (sockets
    at the larger - sockets at the smaller), process by process: the cost of one more socket.
"""

import itertools
import json
import os
import sys

raw, ns = sys.argv[1], sys.argv[2].split()
cols = [
    ("ref", "Socket.io direct"),
    ("direct", "Tripline direct"),
    ("gateway", "Tripline via gateway"),
]


def load(kind, n):
    p = f"{raw}/{kind}-{n}.json"
    return json.load(open(p)) if os.path.exists(p) else None


def kb(r, key):
    m = (r.get("memory") or {}).get(key)
    if not m or m.get("kb_per_socket") is None:
        return "-"
    mb = f"{m['rss_before_MB']:.0f}->{m['rss_peak_MB']:.0f} MB"
    return f"{m['kb_per_socket']:.1f} ({m['sockets']} sk, {mb})"


rows = [
    ("subscribers connected", lambda r: f"{r.get('subs_connected', 0):.0f}"),
    ("drivers connected", lambda r: f"{r.get('pubs_connected', 0):.0f}"),
    ("published", lambda r: f"{r.get('published', 0):.0f}"),
    (
        "delivered / expected",
        lambda r: f"{r.get('delivered', 0):.0f} / {r.get('expected_delivered', 0):.0f}",
    ),
    (
        "lost",
        lambda r: (
            f"{r.get('expected_delivered', 0) - r.get('delivered', 0):.0f}"
            f" ({(1 - r.get('delivery_ratio', 0)) * 100:.2f} %)"
        ),
    ),
    (
        "  missed head/gaps/tail",
        lambda r: (
            f"{r.get('missed_head', 0):.0f}/{r.get('missed_gaps', 0):.0f}"
            f"/{r.get('missed_tail', 0):.0f}"
        ),
    ),
    ("latency p50 ms", lambda r: f"{r.get('lat_p50_ms', 0):.1f}"),
    ("latency p95 ms", lambda r: f"{r.get('lat_p95_ms', 0):.1f}"),
    ("latency p99 ms", lambda r: f"{r.get('lat_p99_ms', 0):.1f}"),
    ("latency max ms", lambda r: f"{r.get('lat_max_ms', 0):.1f}"),
    ("KB/socket replica A", lambda r: kb(r, "A")),
    ("KB/socket replica B", lambda r: kb(r, "B")),
    ("KB/socket gateway relay", lambda r: kb(r, "gateway")),
    (
        "ws errors / early closes",
        lambda r: (
            f"{r.get('ws_errors', 0):.0f} / {r.get('closed_early_subs', 0):.0f}"
            f"+{r.get('closed_early_pubs', 0):.0f}"
        ),
    ),
    (
        "  closes 1013 / 1012",
        lambda r: f"{r.get('closed_1013', '-')} / {r.get('closed_1012', '-')}"
        if "closed_1013" in r
        else "-",
    ),
    (
        "acks / error frames",
        lambda r: f"{r.get('acked', 0):.0f} / {r.get('driver_error_frames', 0):.0f}"
        if "acked" in r
        else "-",
    ),
    ("k6 peak RSS MB", lambda r: f"{r.get('peak_rss_k6_MB', 0):.0f}"),
    ("max load1", lambda r: f"{r.get('max_load1', 0):.2f}"),
    ("k6 rc / servers after", lambda r: f"{r.get('k6_rc', '?')} / {r.get('servers_after', '?')}"),
]
w0 = 26
for n in ns:
    runs = [(label, load(kind, n)) for kind, label in cols]
    runs = [(lbl, r) for lbl, r in runs if r is not None]
    if not runs:
        continue
    table = []
    for label, fn in rows:
        cells = []
        for _, r in runs:
            try:
                cells.append(fn(r))
            except (KeyError, TypeError, ValueError):
                cells.append("?")
        table.append((label, cells))
    w = max([len(lbl) for lbl, _ in runs] + [len(c) for _, cs in table for c in cs]) + 3
    print(f"N = {n} subscribers (10 per trip, {int(n) // 10} drivers, 1 location/s)")
    print(" " * w0 + "".join(f"{lbl:<{w}}" for lbl, _ in runs))
    for label, cells in table:
        print(f"{label:<{w0}}" + "".join(f"{c:<{w}}" for c in cells))
    for lbl, r in runs:
        print(f"  cpu {lbl}: {r.get('cpu', '?')}")
    print()

# marginal memory per socket between consecutive N
ns_sorted = sorted(ns, key=int)
if len(ns_sorted) >= 2:
    print(
        "Marginal memory per extra socket"
        " (peak RSS difference / socket difference, same process role):"
    )
    for kind, label in cols:
        parts = []
        for lo, hi in itertools.pairwise(ns_sorted):
            a, b = load(kind, lo), load(kind, hi)
            if not a or not b:
                continue
            for proc in ("A", "B", "gateway"):
                ma, mb = (a.get("memory") or {}).get(proc), (b.get("memory") or {}).get(proc)
                if not ma or not mb or mb["sockets"] == ma["sockets"]:
                    continue
                kbs = (
                    (mb["rss_peak_MB"] - ma["rss_peak_MB"]) * 1024 / (mb["sockets"] - ma["sockets"])
                )
                parts.append(f"{proc} {kbs:.1f} KB ({lo}->{hi})")
        if parts:
            print(f"  {label:<22} " + ", ".join(parts))
    print()
