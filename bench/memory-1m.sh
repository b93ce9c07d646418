#!/usr/bin/env bash
# Memory and restart, side by side with real etcd: a 3-member cluster of
# each system, in turn, takes KEYS distinct keys (default 1,000,000) of
# VALUE-byte values (default 1024) from concord-bench (sequential keys, 64
# clients), then is stopped and started again from its data.
#
# Usage: bench/memory-1m.sh [--keys N] [--value-size B] [--only etcd|concord]
#                           [--no-build] [--no-docs]
#
# Reported per system: the put throughput, the largest member's peak RSS
# during the load (VmHWM) and after it (VmRSS), the data directory sizes,
# the restart time (SIGTERM of all members to `endpoint health` and a read
# of the last key through every member), and RSS after the restart. The
# table goes to stdout and replaces the section between the memory-1m
# markers in docs/BENCHMARKS.md (after a run of both systems).
#
# Both run with their default fsync behaviour, --snapshot-count 100000 and
# --quota-backend-bytes 8 GiB (1M values of 1 KiB need more than etcd's
# 2 GiB default). Needs about 10 GB of disk. Environment: ETCD, ETCDCTL,
# CARGO_TARGET_DIR, BENCH_WORK_DIR as in bench/compare-etcd.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COMMAND="bench/memory-1m.sh${*:+ $*}"
KEYS=1000000
VALUE=1024
ONLY=both
BUILD=1
DOCS=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --keys) KEYS=$2; shift ;;
    --value-size) VALUE=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --no-build) BUILD=0 ;;
    --no-docs) DOCS=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
TARGET=${CARGO_TARGET_DIR:-target}
BENCH_BIN="$TARGET/release/concord-bench"
CONCORD_BIN="$TARGET/release/concord"
ETCD=${ETCD:-etcd}
ETCDCTL=${ETCDCTL:-etcdctl}
export ETCDCTL_API=3
HOST=127.0.0.1
CLIENT_PORTS=(2379 22379 32379)
PEER_PORTS=(2380 22380 32380)
ENDPOINTS="$HOST:2379,$HOST:22379,$HOST:32379"
INITIAL_CLUSTER="m1=http://$HOST:2380,m2=http://$HOST:22380,m3=http://$HOST:32380"
QUOTA=$((8 * 1024 * 1024 * 1024))

log() { echo "[memory-1m] $*" >&2; }
die() { log "error: $*"; exit 1; }

if ((BUILD)); then
  log "cargo build --release -p concord-bench -p concord-server"
  cargo build --release -p concord-bench -p concord-server >&2
fi
[[ -x "$BENCH_BIN" && -x "$CONCORD_BIN" ]] || die "build concord-bench and concord-server first"
command -v "$ETCDCTL" >/dev/null || die "etcdctl not found"

if [[ -n "${BENCH_WORK_DIR:-}" ]]; then WORK=$BENCH_WORK_DIR; mkdir -p "$WORK"; KEEP=1
else WORK=$(mktemp -d "${TMPDIR:-/tmp}/memory-1m.XXXXXX"); KEEP=0; fi
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
PIDS=()
SAMPLER=

stop_members() {
  local pid deadline=$((SECONDS + 60))
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}

cleanup() {
  local rc=$?
  [[ -n "$SAMPLER" ]] && kill "$SAMPLER" 2>/dev/null || true
  stop_members
  if [[ $rc -ne 0 || $KEEP -eq 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT

start_members() {
  local system=$1 bin=$2 i name
  for i in 0 1 2; do
    name="m$((i + 1))"
    "$bin" --name "$name" --data-dir "$WORK/$system/$name.data" \
      --listen-client-urls "http://$HOST:${CLIENT_PORTS[$i]}" \
      --advertise-client-urls "http://$HOST:${CLIENT_PORTS[$i]}" \
      --listen-peer-urls "http://$HOST:${PEER_PORTS[$i]}" \
      --initial-advertise-peer-urls "http://$HOST:${PEER_PORTS[$i]}" \
      --initial-cluster "$INITIAL_CLUSTER" --initial-cluster-state new \
      --initial-cluster-token "$system-memory" \
      --snapshot-count 100000 --quota-backend-bytes "$QUOTA" \
      >>"$WORK/$system/$name.log" 2>&1 &
    PIDS+=($!)
  done
}

wait_healthy() {
  local deadline=$((SECONDS + 600))
  until "$ETCDCTL" --endpoints "$ENDPOINTS" --dial-timeout 1s --command-timeout 5s \
    endpoint health >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "not healthy after 600 s"
    sleep 0.05
  done
}

# Seconds (fractional) since `start` until every member is healthy and
# serves `key`.
wait_serving() {
  local key=$1 start=$2 ep
  local deadline=$((SECONDS + 600))
  wait_healthy
  for ep in ${ENDPOINTS//,/ }; do
    until [[ -n "$("$ETCDCTL" --endpoints "$ep" --command-timeout 5s get "$key" --print-value-only 2>/dev/null)" ]]; do
      ((SECONDS < deadline)) || die "$ep does not serve $key"
      sleep 0.05
    done
  done
  python3 -c "import time; print(f'{time.time() - $start:.2f}')"
}

# Largest member VmRSS (KiB) now.
rss_now() {
  local pid v max=0
  for pid in "${PIDS[@]}"; do
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    ((v > max)) && max=$v
  done
  echo "$max"
}

# Largest member VmHWM (KiB).
rss_peak() {
  local pid v max=0
  for pid in "${PIDS[@]}"; do
    v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    ((v > max)) && max=$v
  done
  echo "$max"
}

run_system() {
  local system=$1 bin=$2
  local out="$RESULTS/$system"
  rm -rf "${WORK:?}/$system"
  mkdir -p "$WORK/$system"
  log "$system: starting"
  start_members "$system" "$bin"
  wait_healthy
  log "$system: writing $KEYS keys of $VALUE bytes"
  "$BENCH_BIN" --endpoints "$ENDPOINTS" --conns 16 --clients 64 --total "$KEYS" \
    --key-space "$KEYS" --key-size 12 --val-size "$VALUE" --sequential-keys \
    --request-timeout-secs 60 --no-progress --json "$out-put.json" put >"$out-put.txt" 2>&1 \
    || die "$system: load failed: $(tail -n 5 "$out-put.txt")"
  local last
  last=$(printf '%012d' $((KEYS - 1)))
  echo "$(rss_peak)" >"$out-load-peak"
  sleep 5 # checkpoints and snapshots settle
  echo "$(rss_now)" >"$out-after"
  du -sk "$WORK/$system"/m*.data | sort -n | tail -n 1 | cut -f1 >"$out-disk"
  log "$system: restarting"
  local t0
  t0=$(date +%s.%N)
  stop_members
  start_members "$system" "$bin"
  wait_serving "$last" "$t0" >"$out-restart"
  sleep 2
  echo "$(rss_now)" >"$out-restarted"
  log "$system: restart took $(cat "$out-restart") s"
  stop_members
}

if [[ "$ONLY" != concord ]]; then
  command -v "$ETCD" >/dev/null || die "etcd not found"
  "$ETCD" --version | sed -n 1p >"$RESULTS/etcd-version"
  run_system etcd "$ETCD"
fi
if [[ "$ONLY" != etcd ]]; then
  run_system concord "$CONCORD_BIN"
fi

SECTION="$WORK/section.md"
python3 - "$RESULTS" "$COMMAND" "$KEYS" "$VALUE" "$(nproc)" >"$SECTION" <<'EOF'
import datetime, json, os, sys
results, command, keys, value, cores = sys.argv[1:]
def read(name):
    try:
        with open(os.path.join(results, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None
def num(system, what):
    v = read(f"{system}-{what}")
    return float(v) if v else None
def mib(kib):
    return f"{kib / 1024:,.0f} MiB" if kib else "—"
def put(system):
    t = read(f"{system}-put.json")
    return json.loads(t)["throughput"] if t else None
rows = [
    ("put throughput (64 clients)", lambda s: f"{put(s):,.0f}/s" if put(s) else "—", lambda e, c: put(c) / put(e)),
    ("peak RSS during the load (largest member)", lambda s: mib(num(s, "load-peak")), lambda e, c: num(c, "load-peak") / num(e, "load-peak")),
    ("RSS after the load", lambda s: mib(num(s, "after")), lambda e, c: num(c, "after") / num(e, "after")),
    ("data directory (largest member)", lambda s: mib(num(s, "disk")), lambda e, c: num(c, "disk") / num(e, "disk")),
    ("restart to serving, all members", lambda s: f"{num(s, 'restart'):.2f} s" if num(s, "restart") else "—", lambda e, c: num(c, "restart") / num(e, "restart")),
    ("RSS after the restart", lambda s: mib(num(s, "restarted")), lambda e, c: num(c, "restarted") / num(e, "restarted")),
]
etcd = read("etcd-version") or "etcd"
print(f"Measured {datetime.date.today()} on {cores} cores: {int(keys):,} distinct keys, "
      f"{value}-byte values, sequential keys, 16 connections, 64 clients; {etcd}.")
print()
print(f"Command: `{command}`")
print()
print("| | etcd | Concord | Concord / etcd |")
print("|---|---:|---:|---:|")
for title, show, ratio in rows:
    try:
        r = f"{ratio('etcd', 'concord'):.2f}"
    except (TypeError, ZeroDivisionError):
        r = "—"
    print(f"| {title} | {show('etcd')} | {show('concord')} | {r} |")
EOF
cat "$SECTION"
if ((DOCS)) && [[ "$ONLY" == both ]]; then
  python3 - "$ROOT/docs/BENCHMARKS.md" "$SECTION" <<'EOF'
import sys
doc, section = sys.argv[1], open(sys.argv[2]).read()
text = open(doc).read()
start, end = "<!-- memory-1m:start -->", "<!-- memory-1m:end -->"
block = f"{start}\n{section}{end}"
if start in text and end in text:
    text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip() + "\n\n## Memory and restart with 1M keys\n\n" + block + "\n"
open(doc, "w").write(text)
EOF
  log "updated docs/BENCHMARKS.md"
fi
