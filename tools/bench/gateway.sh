#!/usr/bin/env bash
# make bench-gateway: the Tripline gateway on the owners' bench (../shared/bench).
#   1. the kit's reference services: Redis :6390, nginx upstream :18080, nginx-gw, express-gw
#   2. the Tripline gateway on :18090 routing /api/users to that upstream, limits on but
#      too high to refuse anything
#   3. compare_gateway.sh: express-gw and the Tripline gateway, alternating, same k6 script
#   4. medians, ratios tripline/express, CPU µs per request (the kit's CPU accounting)
#   5. rate-limit accuracy: the gateway restarted with 100 requests/min/user
#   6. stops what it started; summary in .bench/results/gateway-<timestamp>.txt
# Env: ROUNDS (3), DURATION (15s), VUS (50), RL_DURATION (70s: crosses a minute edge),
#      SKIP_RATELIMIT=1; the kit's own: WAIT_IDLE_MAX (180: waits for load < 1.0 before each
#      run), RETRIES (2: redoes a run when other processes used > FOREIGN_MAX=0.10 of the CPU),
#      BENCH_SRC, BENCH_DIR (see lib.sh).
set -euo pipefail
# shellcheck source=tools/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
RL_DURATION="${RL_DURATION:-70s}"
RL_LIMIT=100
RL_USERS=10
export JWT_SECRET="${JWT_SECRET:-tripline-local-development-secret-change-me}"
GW_NAME=tripline-gw
GW_PORT=18090
GW_URL="http://127.0.0.1:$GW_PORT/api/users/ping" # the gateway routes /api/users/* to core
REDIS="redis://127.0.0.1:6390"
KIT_SERVICES=(express-gw nginx-gw upstream redis) # stop order: clients before Redis
TS=$(date +%Y%m%dT%H%M%S)
SUMMARY="$BENCH_RESULTS/gateway-$TS.txt"
WORK=$(mktemp -d)

# Print a summary line and keep it for the summary file.
say() { echo "$*" | tee -a "$WORK/summary"; }

# Settings for the gateway under test; extra variables are ignored by gateways that
# do not know them yet (pydantic settings with extra="ignore").
gateway_env() { # standard_limit redis_db
  echo PORT="$GW_PORT" CORE_URL="http://127.0.0.1:18080" REDIS_URL="$REDIS/$2" LOG_LEVEL=WARNING \
    LIMIT_STANDARD_PER_MIN="$1" LIMIT_CRITICAL_PER_MIN=100000000 LIMIT_UPLOAD_PER_MIN=100000000
}

started=() # kit services this run brought up (others were already running: left alone)
cleanup() {
  local rc=$? n
  set +e
  tl_stop "$GW_NAME"
  for n in "${KIT_SERVICES[@]}"; do
    # shellcheck disable=SC2076 # literal match in the list
    if [[ " ${started[*]} " =~ " $n " ]]; then
      # shellcheck disable=SC1091 # the kit's own helpers, copied at run time
      (. "$BENCH_DIR/lib.sh" && stop_one "$n")
    fi
  done
  if [ -s "$WORK/summary" ]; then
    cp "$WORK/summary" "$SUMMARY" && echo "summary: $SUMMARY"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. kit and reference services ---------------------------------------------------------
bench_setup
bench_ports_free redis:6390 upstream:18080 nginx-gw:18081 express-gw:18082 "$GW_NAME:$GW_PORT"
for n in "${KIT_SERVICES[@]}"; do pidfile_alive "$n" || started+=("$n"); done
(cd "$BENCH_DIR" && ./services.sh up gateway)

say "== Tripline gateway bench $TS"
say "repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')," \
  "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), ROUNDS=$ROUNDS DURATION=${DURATION:-15s} VUS=${VUS:-50}"

# 2. the gateway, limits on but out of reach ---------------------------------------------
# shellcheck disable=SC2046 # gateway_env prints KEY=VAL words without spaces
tl_start "$GW_NAME" "$GW_PORT" tripline.gateway $(gateway_env 100000000 1)
# one authenticated request first: a 401/502 here would make every figure meaningless
probe=$(curl -s -o /dev/null -w '%{http_code}' -H "X-User: user-1" \
  -H "Authorization: Bearer $(bench_jwt user-1)" "$GW_URL")
[ "$probe" = 200 ] || die "GET $GW_URL answered $probe, not 200 (log: $BENCH_DIR/run/$GW_NAME.log)"

# 3. express-gw vs the gateway, alternating -----------------------------------------------
(cd "$BENCH_DIR" && ./compare_gateway.sh "$ROUNDS" express-gw "$GW_NAME=$GW_URL") | tee "$WORK/compare"
RUNS=$(sed -n 's/^(per-run lines in \(.*\))$/\1/p' "$WORK/compare")
[ -f "$RUNS" ] || die "compare_gateway.sh did not report its per-run file"

# 4. medians, ratios and CPU per request from the per-run lines -----------------------
#    line: round=N name rps p50 p99 p95=.. n=.. 200=.. 429=.. other=.. ... cpu_s[a=1.0,b=2.0]
say ""
say "-- throughput: $ROUNDS round(s), per-run lines in $RUNS"
python3 - "$RUNS" "$GW_NAME" <<'PY' | tee -a "$WORK/summary"
import re, statistics as st, sys
path, gw = sys.argv[1], sys.argv[2]
runs = {}
for line in open(path):
    f = line.split()
    kv = dict(x.split("=", 1) for x in f[5:] if "=" in x and not x.startswith("cpu_s["))
    cpu = dict(x.split("=") for x in re.findall(r"cpu_s\[([^]]*)\]", line)[0].split(",") if x) if "cpu_s[" in line else {}
    runs.setdefault(f[1], []).append({
        "rps": float(f[2]), "p50": float(f[3]), "p99": float(f[4]), "n": int(kv.get("n", 0)),
        "ok": int(kv.get("200", 0)), "non200": int(kv.get("429", 0)) + int(kv.get("other", 0)),
        "cpu": float(cpu.get(f[1], "nan")), "foreign": float(kv.get("foreign_frac", "nan")),
    })
med = {t: {k: st.median(r[k] for r in v) for k in ("rps", "p50", "p99")} for t, v in runs.items()}
print(f"{'target':<13}{'runs':>5}{'rps':>9}{'p50_ms':>9}{'p99_ms':>9}{'cpu_us/req':>12}{'non-200':>9}   foreign CPU frac per run")
for t, v in runs.items():
    n = sum(r["n"] for r in v)
    cpu = sum(r["cpu"] for r in v)
    per_req = f"{cpu / n * 1e6:.0f}" if n and cpu == cpu else "n/a"
    print(f"{t:<13}{len(v):>5}{med[t]['rps']:>9.0f}{med[t]['p50']:>9.2f}{med[t]['p99']:>9.2f}"
          f"{per_req:>12}{sum(r['non200'] for r in v):>9}   " + " ".join(f"{r['foreign']:.2f}" for r in v))
if gw in med and "express-gw" in med:
    print(f"ratio {gw}/express-gw: rps {med[gw]['rps'] / med['express-gw']['rps']:.3f}, "
          f"p99 {med[gw]['p99'] / med['express-gw']['p99']:.2f}")
if gw in runs:
    v = runs[gw]
    n, cpu = sum(r["n"] for r in v), sum(r["cpu"] for r in v)
    print(f"{gw} CPU per request: {cpu / n * 1e6:.0f} µs ({cpu:.1f} CPU-s / {n} requests)" if n else f"{gw}: no requests")
    if any(r["non200"] for r in v):
        print(f"WARNING: {gw} answered {sum(r['non200'] for r in v)} non-200 responses: its figures include failures")
PY

# 5. rate-limit accuracy: 100 per minute per user ----------------------------------------
if [ "${SKIP_RATELIMIT:-0}" = 1 ]; then
  say ""
  say "-- rate-limit check skipped (SKIP_RATELIMIT=1)"
  exit 0
fi
tl_stop "$GW_NAME"
redis-cli -p 6390 -n 2 FLUSHDB >/dev/null # a key space with no history
# shellcheck disable=SC2046
tl_start "$GW_NAME" "$GW_PORT" tripline.gateway $(gateway_env "$RL_LIMIT" 2)
(cd "$BENCH_DIR" && TARGET_URL="$GW_URL" ./run_ratelimit_check.sh "$RL_LIMIT" 60000 "$RL_DURATION" "$RL_USERS") 2>&1 |
  tee "$WORK/ratelimit"
# The kit's sample request at the end carries no token (the gateway answers 401), so
# take our own sample for user-1, with a token, right after the run.
sample=$(curl -s -i -H "X-User: user-1" -H "Authorization: Bearer $(bench_jwt user-1)" "$GW_URL" |
  tr -d '\r' | grep -iE '^(HTTP/|retry-after:|ratelimit)' || true)
say ""
say "-- rate limit: $RL_LIMIT per 60 s sliding window per user, $RL_USERS users, $RL_DURATION, closed loop"
grep '^{"limit"' "$WORK/ratelimit" | tail -n 1 >"$WORK/ratelimit.json" || die "no result line from run_ratelimit_check.sh"
python3 - "$WORK/ratelimit.json" "$RL_LIMIT" <<'PY' | tee -a "$WORK/summary"
import json, math, sys
r = json.load(open(sys.argv[1]))
limit = int(sys.argv[2])
# Sliding window: at most `limit` in any 60 s span, so over a run of D s a user gets at most
# limit * ceil(D / 60) (all at once at the start, then again once those leave the window).
bound = limit * math.ceil(r["run_s"] / 60 - 1e-9)
per_user = r["admitted_per_user"]
over = [f"user-{i + 1}" for i, a in enumerate(per_user) if a > bound]
print(f"admitted {r['admitted']} in {r['run_s']} s; bound {bound} per user, {bound * len(per_user)} in all")
print(f"admitted per user: {' '.join(str(a) for a in per_user)}")
print(f"429s {r['rejected_429']} (with Retry-After + RateLimit headers: {r['rejected_with_headers_rate'] * 100:.1f} %, "
      f"Retry-After min/max {r['retry_after_s_min_max'][0]}/{r['retry_after_s_min_max'][1]} s), other statuses {r['other_status']}")
if over:
    print(f"OVER the bound: {', '.join(over)} (no limit enforced, or a leak)")
else:
    print("every user within the bound")
print("note: totals cannot show whether a user got more than the limit inside one 60 s span; "
      "only the per-user total vs the bound is checked")
PY
say "sample for user-1 right after the run (with a token):"
say "${sample:-  (no response)}"
