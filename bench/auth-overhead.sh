#!/usr/bin/env bash
# What auth costs: put and linearizable range throughput of a 3-member
# cluster with auth disabled, then enabled (a non-root user whose role may
# read and write the benchmark's keys, so every request is checked), for
# Concord and for etcd, on this machine.
#
# Usage: bench/auth-overhead.sh [--rounds N] [--only etcd|concord]
#
# Environment: PUT_TOTAL (default 40000), RANGE_TOTAL
# (default 60000), ETCD and ETCDCTL (default: from PATH), CARGO_TARGET_DIR
# as for cargo. Uses the release binaries already built (cargo build
# --release -p concord-server -p concord-bench). Prints a markdown table:
# the median over the rounds of each cell, and the range of the per-round
# auth-on/auth-off ratios.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=3
ONLY=both
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

TARGET=${CARGO_TARGET_DIR:-target}
BENCH_BIN="$TARGET/release/concord-bench"
CONCORD_BIN="$TARGET/release/concord"
ETCD=${ETCD:-etcd}
ETCDCTL=${ETCDCTL:-etcdctl}
PUT_TOTAL=${PUT_TOTAL:-40000}
RANGE_TOTAL=${RANGE_TOTAL:-60000}
export ETCDCTL_API=3
HOST=127.0.0.1
# Six ports free now (other clusters may run on this machine).
read -r -a PORTS < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
CLIENT_PORTS=("${PORTS[@]:0:3}")
PEER_PORTS=("${PORTS[@]:3:3}")
ENDPOINTS="$HOST:${CLIENT_PORTS[0]},$HOST:${CLIENT_PORTS[1]},$HOST:${CLIENT_PORTS[2]}"
INITIAL="m1=http://$HOST:${PEER_PORTS[0]},m2=http://$HOST:${PEER_PORTS[1]},m3=http://$HOST:${PEER_PORTS[2]}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/auth-overhead.XXXXXX")
PIDS=()

log() { echo "[auth-overhead] $*" >&2; }
stop() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop EXIT

ctl() { "$ETCDCTL" --endpoints "$ENDPOINTS" --command-timeout 10s "$@" >/dev/null; }

start() {
  local system=$1 bin=$2 i
  rm -rf "$WORK/$system"
  mkdir -p "$WORK/$system"
  for i in 0 1 2; do
    "$bin" --name "m$((i + 1))" --data-dir "$WORK/$system/m$i.data" \
      --listen-client-urls "http://$HOST:${CLIENT_PORTS[$i]}" \
      --advertise-client-urls "http://$HOST:${CLIENT_PORTS[$i]}" \
      --listen-peer-urls "http://$HOST:${PEER_PORTS[$i]}" \
      --initial-advertise-peer-urls "http://$HOST:${PEER_PORTS[$i]}" \
      --initial-cluster "$INITIAL" --initial-cluster-state new \
      --initial-cluster-token "$system-auth-bench" >"$WORK/$system/m$i.log" 2>&1 &
    PIDS+=($!)
  done
  local deadline=$((SECONDS + 60)) pid
  until "$ETCDCTL" --endpoints "$ENDPOINTS" --command-timeout 3s endpoint health >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "$system not healthy"; exit 1; }
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || { log "$system: a member exited:"; tail -5 "$WORK/$system"/m*.log >&2; exit 1; }
    done
    sleep 0.5
  done
}

# Keys are the bench's zero-padded numbers: the range [0, :) holds them all.
enable_auth() {
  ctl user add root:rootpw
  ctl role add root
  ctl user grant-role root root
  ctl role add bench
  ctl role grant-permission bench readwrite 0 :
  ctl user add bench:benchpw
  ctl user grant-role bench bench
  ctl auth enable
}

bench() {
  local out=$1
  shift
  "$BENCH_BIN" --endpoints "$ENDPOINTS" --conns 16 --clients 256 --no-progress \
    --json "$out" "$@" >/dev/null
}

run_system() {
  local system=$1 bin=$2 round=$3 auth user
  start "$system" "$bin"
  for auth in off on; do
    user=()
    if [[ $auth == on ]]; then
      enable_auth
      user=(--user bench:benchpw)
    fi
    log "$system round $round, auth $auth"
    bench "$WORK/$system-$auth-put-r$round.json" --total "$PUT_TOTAL" "${user[@]}" put
    bench "$WORK/$system-$auth-range-r$round.json" --total "$RANGE_TOTAL" "${user[@]}" \
      range --consistency l --prefill 1000
  done
  stop
}

for ((r = 1; r <= ROUNDS; r++)); do
  systems=(concord etcd)
  ((r % 2 == 0)) && systems=(etcd concord)
  for s in "${systems[@]}"; do
    [[ $ONLY != both && $ONLY != "$s" ]] && continue
    if [[ $s == concord ]]; then run_system concord "$CONCORD_BIN" "$r"; else run_system etcd "$ETCD" "$r"; fi
  done
done

python3 - "$WORK" "$ROUNDS" <<'EOF'
import json, statistics, sys, os
work, rounds = sys.argv[1], int(sys.argv[2])
def load(s, a, w, r):
    p = os.path.join(work, f"{s}-{a}-{w}-r{r}.json")
    return json.load(open(p)) if os.path.exists(p) else None
print("| system | workload (16 conns / 256 clients) | auth off ops/s | auth on ops/s | on/off (range over rounds) | p50/p99 ms off | p50/p99 ms on |")
print("|---|---|---:|---:|---:|---:|---:|")
for s in ("concord", "etcd"):
    for w, title in (("put", "put"), ("range", "range, linearizable")):
        offs = [load(s, "off", w, r) for r in range(1, rounds + 1)]
        ons = [load(s, "on", w, r) for r in range(1, rounds + 1)]
        pairs = [(a, b) for a, b in zip(offs, ons) if a and b]
        if not pairs:
            continue
        off = statistics.median(a["throughput"] for a, _ in pairs)
        on = statistics.median(b["throughput"] for _, b in pairs)
        ratios = [b["throughput"] / a["throughput"] for a, b in pairs]
        errs = {}
        for label, runs in (("off", [a for a, _ in pairs]), ("on", [b for _, b in pairs])):
            for x in runs:
                for code, n in x["errors_by_code"].items():
                    errs[f"{label} {code}"] = errs.get(f"{label} {code}", 0) + n
        mid = sorted(pairs, key=lambda p: p[0]["throughput"])[len(pairs) // 2]
        lat = lambda x: "%.2f / %.2f" % (x["latency_ms"]["p50"], x["latency_ms"]["p99"])
        print(f"| {s} | {title} | {off:,.0f} | {on:,.0f} | {on/off:.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | {lat(mid[0])} | {lat(mid[1])} |" + (" errors: " + ", ".join(f"{k} {v}" for k, v in sorted(errs.items())) if errs else ""))
EOF
rm -rf "$WORK"
