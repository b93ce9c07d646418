#!/usr/bin/env bash
# Lock and election recipe benchmarks (crates/bench, concord-recipes-bench)
# against a 3-member Concord cluster and then a 3-member real etcd cluster
# on this machine, and a Markdown table of both with ratios Concord/etcd.
#
# Usage: bench/recipes.sh [--seconds S] [--rounds R] [--contenders "1 16 256"]
#
#   --seconds     length of each lock run (default 10)
#   --rounds      leader kills per election pattern (default 5)
#   --contenders  lock contender counts (default "1 16 256")
#
# Builds the release binaries first. Ports: clients 42379, 42479, 42579;
# peers one above each. ETCD names the etcd binary (default: from PATH).
set -euo pipefail

RUN_SECONDS=10
ROUNDS=5
CONTENDERS="1 16 256"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) RUN_SECONDS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --contenders) CONTENDERS=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

TARGET=${CARGO_TARGET_DIR:-target}
ETCD=${ETCD:-etcd}
HOST=127.0.0.1
CLIENT_PORTS=(42379 42479 42579)
ENDPOINTS="$HOST:42379,$HOST:42479,$HOST:42579"
INITIAL="m1=http://$HOST:42380,m2=http://$HOST:42480,m3=http://$HOST:42580"

log() { echo "[recipes] $*" >&2; }

cargo build --release -p concord-server --bin concord -p concord-bench --bin concord-recipes-bench >&2
BENCH="$TARGET/release/concord-recipes-bench"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/recipes-bench.XXXXXX")
RESULTS="$WORK/results.jsonl"
PIDS=()

stop() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop; rm -rf "$WORK"' EXIT

start() {
  local bin=$1 kind=$2 i
  for i in 0 1 2; do
    local c=${CLIENT_PORTS[$i]} p=$((CLIENT_PORTS[i] + 1))
    "$bin" --name "m$((i + 1))" --data-dir "$WORK/$kind-m$((i + 1))" \
      --listen-client-urls "http://$HOST:$c" --advertise-client-urls "http://$HOST:$c" \
      --listen-peer-urls "http://$HOST:$p" --initial-advertise-peer-urls "http://$HOST:$p" \
      --initial-cluster "$INITIAL" --initial-cluster-state new \
      >"$WORK/$kind-m$((i + 1)).log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 100); do
    if "$TARGET/release/concord-recipes-bench" --endpoints "$ENDPOINTS" lock --seconds 0 >/dev/null 2>&1; then
      return
    fi
    sleep 0.2
  done
  log "$kind did not come up"; exit 1
}

run_all() {
  local kind=$1 n p
  for n in $CONTENDERS; do
    log "$kind: lock, $n contenders"
    "$BENCH" --endpoints "$ENDPOINTS" --label "$kind" lock --contenders "$n" --seconds "$RUN_SECONDS" | tee -a "$RESULTS" >&2
  done
  for p in etcd lease sequential bully; do
    log "$kind: failover, $p"
    "$BENCH" --endpoints "$ENDPOINTS" --label "$kind" failover --pattern "$p" --rounds "$ROUNDS" | tee -a "$RESULTS" >&2
  done
}

start "$TARGET/release/concord" concord
run_all concord
stop
start "$ETCD" etcd
run_all etcd
stop

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def get(bench, label, **kw):
    for r in rows:
        if r["bench"] == bench and r["label"] == label and all(r[k] == v for k, v in kw.items()):
            return r
def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"
print("| contenders | Concord cycles/s | etcd cycles/s | ratio | Concord p50 / p99 ms | etcd p50 / p99 ms |")
print("|---:|---:|---:|---:|---:|---:|")
for n in sorted({r["contenders"] for r in rows if r["bench"] == "lock"}):
    c, e = get("lock", "concord", contenders=n), get("lock", "etcd", contenders=n)
    print(f"| {n} | {c['cycles_per_s']:.0f} | {e['cycles_per_s']:.0f} | {ratio(c['cycles_per_s'], e['cycles_per_s'])} "
          f"| {c['acquire_p50_ms']:.1f} / {c['acquire_p99_ms']:.1f} | {e['acquire_p50_ms']:.1f} / {e['acquire_p99_ms']:.1f} |")
print()
print("| pattern | Concord median (min-max) ms | etcd median (min-max) ms | ratio |")
print("|---|---:|---:|---:|")
for p in ["etcd", "lease", "sequential", "bully"]:
    c, e = get("failover", "concord", pattern=p), get("failover", "etcd", pattern=p)
    fmt = lambda r: f"{r['median_ms']:.0f} ({r['min_ms']:.0f}-{r['max_ms']:.0f})"
    failed = lambda r: f" ({len(r['failed_rounds'])} of {r['rounds']} rounds failed)" if r["failed_rounds"] else ""
    print(f"| {p} | {fmt(c)}{failed(c)} | {fmt(e)}{failed(e)} | {ratio(c['median_ms'], e['median_ms'])} |")
PY
