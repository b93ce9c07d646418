#!/usr/bin/env bash
# Side-by-side benchmark of a 3-member real etcd cluster and a 3-member Concord
# cluster on this machine, with the same concord-bench workloads.
#
# Usage: bench/compare-etcd.sh [--quick] [--rounds N] [--only etcd|concord]
#                              [--no-build] [--docs|--no-docs]
#
#   --quick        divide every request total by 10 (and default to 1 round)
#   --rounds N     run both systems N times, alternating which goes first,
#                  each time on fresh clusters; the table shows medians and
#                  the range of the per-round ratios (default 3)
#   --only SYSTEM  run one side only (the other side's columns stay empty)
#   --no-build     use the release binaries already built
#   --docs         update docs/BENCHMARKS.md even for a one-sided run
#   --no-docs      never update docs/BENCHMARKS.md
#
# Environment: BENCH_SCALE multiplies every total (default 1); ETCD, ETCDCTL
# name the etcd binaries (default: from PATH); BENCH_WORK_DIR is where data
# directories, logs and results go (default: a fresh directory under
# ${TMPDIR:-/tmp}, removed on success); CARGO_TARGET_DIR as for cargo.
#
# The two clusters use the same ports (2379/2380, 22379/22380, 32379/32380 on
# 127.0.0.1) and never run at the same time. Both keep their default fsync
# behaviour. The markdown table goes to stdout and, after a run of both
# sides, replaces the section between the compare-etcd markers in
# docs/BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COMMAND="bench/compare-etcd.sh${*:+ $*}"
[[ -n "${BENCH_SCALE:-}" ]] && COMMAND="BENCH_SCALE=$BENCH_SCALE $COMMAND"

QUICK=0
ROUNDS=
ONLY=both
BUILD=1
DOCS=auto
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --rounds)
      ROUNDS=${2:-}
      shift
      ;;
    --rounds=*) ROUNDS=${1#--rounds=} ;;
    --only)
      ONLY=${2:-}
      shift
      [[ "$ONLY" == etcd || "$ONLY" == concord ]] || { echo "--only takes etcd or concord" >&2; exit 2; }
      ;;
    --only=*)
      ONLY=${1#--only=}
      [[ "$ONLY" == etcd || "$ONLY" == concord ]] || { echo "--only takes etcd or concord" >&2; exit 2; }
      ;;
    --no-build) BUILD=0 ;;
    --docs) DOCS=yes ;;
    --no-docs) DOCS=no ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [[ -z "$ROUNDS" ]]; then
  if ((QUICK)); then ROUNDS=1; else ROUNDS=3; fi
fi
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds takes a positive number" >&2; exit 2; }
SCALE=${BENCH_SCALE:-1}
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

log() { echo "[compare-etcd] $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- build ----

command -v python3 >/dev/null || die "python3 is required"
if [[ "$ONLY" != concord ]]; then
  command -v "$ETCD" >/dev/null || die "etcd not found (set ETCD=...)"
fi
command -v "$ETCDCTL" >/dev/null || die "etcdctl not found (set ETCDCTL=...)"

if [[ $BUILD -eq 1 ]]; then
  packages=(-p concord-bench)
  [[ "$ONLY" != etcd ]] && packages+=(-p concord-server)
  log "cargo build --release ${packages[*]}"
  cargo build --release "${packages[@]}" >&2
fi
[[ -x "$BENCH_BIN" ]] || die "$BENCH_BIN not found (build it, or set CARGO_TARGET_DIR)"
if [[ "$ONLY" != etcd ]]; then
  [[ -x "$CONCORD_BIN" ]] || die "$CONCORD_BIN not found (build concord-server)"
fi

if [[ -n "${BENCH_WORK_DIR:-}" ]]; then
  WORK=$BENCH_WORK_DIR
  mkdir -p "$WORK"
  KEEP_WORK=1
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-etcd.XXXXXX")
  KEEP_WORK=0
fi
RESULTS="$WORK/results"
mkdir -p "$RESULTS"

MEMBER_PIDS=()

# Whether PID is running (exited-but-unreaped children count as stopped).
running() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# SIGTERM the members, SIGKILL whatever is left after 20 s, and reap them.
stop_members() {
  local pid alive deadline=$((SECONDS + 20))
  for pid in "${MEMBER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  while :; do
    alive=0
    for pid in "${MEMBER_PIDS[@]}"; do
      running "$pid" && alive=1
    done
    ((alive == 0)) && break
    if ((SECONDS > deadline)); then
      for pid in "${MEMBER_PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
      done
      break
    fi
    sleep 0.2
  done
  for pid in "${MEMBER_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  MEMBER_PIDS=()
}

cleanup() {
  local rc=$?
  stop_members
  if [[ $rc -ne 0 || $KEEP_WORK -eq 1 ]]; then
    log "logs and results kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ workloads ----

# name|title|conns|clients|base total|conns/clients label|concord-bench workload args
WORKLOADS=(
  "put-1|put|1|1|2000|1/1|put"
  "put-256|put|16|256|20000|16/256|put"
  "range-l|range, linearizable|16|256|20000|16/256|range --consistency l"
  "range-s|range, serializable|16|256|20000|16/256|range --consistency s"
  "txn-put|txn (compare + put)|16|256|20000|16/256|txn-put"
  "watch|watch fan-out (events/s)|16|1|2000|16/16 watchers, 1 putter|watch --watchers 16"
  "lease-keepalive|lease keepalive|16|64|20000|16/64, 100 leases|lease-keepalive --leases 100"
)

total_for() {
  awk -v base="$1" -v scale="$SCALE" -v quick="$QUICK" 'BEGIN {
    t = int(base * scale / (quick ? 10 : 1)); if (t < 1) t = 1; print t }'
}

check_ports_free() {
  python3 - "$HOST" "${CLIENT_PORTS[@]}" "${PEER_PORTS[@]}" <<'EOF'
import socket, sys
host, ports = sys.argv[1], sys.argv[2:]
busy = []
for p in ports:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, int(p)))
    except OSError:
        busy.append(p)
    finally:
        s.close()
if busy:
    sys.exit("ports in use on %s: %s" % (host, " ".join(busy)))
EOF
}

# start_cluster SYSTEM BINARY
start_cluster() {
  local system=$1 bin=$2 i name
  check_ports_free || die "another cluster is still running?"
  # Every round starts from empty data directories.
  rm -rf "$WORK/$system"/m*.data
  mkdir -p "$WORK/$system"
  for i in 0 1 2; do
    name="m$((i + 1))"
    "$bin" \
      --name "$name" \
      --data-dir "$WORK/$system/$name.data" \
      --listen-client-urls "http://$HOST:${CLIENT_PORTS[$i]}" \
      --advertise-client-urls "http://$HOST:${CLIENT_PORTS[$i]}" \
      --listen-peer-urls "http://$HOST:${PEER_PORTS[$i]}" \
      --initial-advertise-peer-urls "http://$HOST:${PEER_PORTS[$i]}" \
      --initial-cluster "$INITIAL_CLUSTER" \
      --initial-cluster-state new \
      --initial-cluster-token "$system-bench" \
      >"$WORK/$system/$name.log" 2>&1 &
    MEMBER_PIDS+=($!)
  done
  log "$system: started members (pids ${MEMBER_PIDS[*]}), waiting for health"
  local deadline=$((SECONDS + 60)) pid
  until "$ETCDCTL" --endpoints "$ENDPOINTS" --dial-timeout 1s --command-timeout 3s \
    endpoint health >"$WORK/$system/health.log" 2>&1; do
    for pid in "${MEMBER_PIDS[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "$WORK/$system"/m*.log >&2 || true
        die "$system: member pid $pid exited during startup"
      fi
    done
    if ((SECONDS > deadline)); then
      cat "$WORK/$system/health.log" >&2
      die "$system: cluster not healthy after 60 s"
    fi
    sleep 0.5
  done
  log "$system: healthy"
}

# Peak RSS (max VmHWM over members, KiB) into results/SYSTEM-rss-rROUND, then stop.
stop_cluster() {
  local system=$1 round=$2 pid hwm max=0
  for pid in "${MEMBER_PIDS[@]}"; do
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    if [[ -n "$hwm" ]] && ((hwm > max)); then max=$hwm; fi
  done
  echo "$max" >"$RESULTS/$system-rss-r$round"
  log "$system: peak RSS $(((max + 512) / 1024)) MiB; stopping"
  stop_members
}

# CPU time (user + system, in clock ticks) used so far by the members.
members_cpu() {
  local pid total=0 t
  for pid in "${MEMBER_PIDS[@]}"; do
    t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

run_workloads() {
  local system=$1 round=$2 spec name title conns clients base label args total out cpu_before
  for spec in "${WORKLOADS[@]}"; do
    IFS='|' read -r name title conns clients base label args <<<"$spec"
    total=$(total_for "$base")
    log "$system (round $round): $name (conns $conns, clients $clients, total $total)"
    out="$RESULTS/$system-$name-r$round"
    cpu_before=$(members_cpu)
    # shellcheck disable=SC2086 # $args is a word list on purpose
    if ! "$BENCH_BIN" --endpoints "$ENDPOINTS" --conns "$conns" --clients "$clients" \
      --total "$total" --no-progress --json "$out.json" $args >"$out.txt" 2>&1; then
      log "$system: $name failed:"
      cat "$out.txt" >&2
      rm -f "$out.json"
    fi
    # Member CPU seconds spent on the workload (prefills included).
    echo "$(($(members_cpu) - cpu_before)) $(getconf CLK_TCK)" >"$out.cpu"
  done
}

# ----------------------------------------------------------------- runs ----

# run_system SYSTEM ROUND
run_system() {
  local system=$1 round=$2
  if [[ "$system" == etcd ]]; then
    [[ "$ONLY" == concord ]] && return 0
    "$ETCD" --version | sed -n 1p >"$RESULTS/etcd-version"
    start_cluster etcd "$ETCD"
  else
    [[ "$ONLY" == etcd ]] && return 0
    ("$CONCORD_BIN" --version 2>/dev/null || echo "concord (version unknown)") | sed -n 1p \
      >"$RESULTS/concord-version"
    start_cluster concord "$CONCORD_BIN"
  fi
  run_workloads "$system" "$round"
  stop_cluster "$system" "$round"
}

# Alternate which system goes first, so that drift on the machine (page
# cache, thermal, neighbours) does not always favour the same one.
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2 == 1)); then
    run_system etcd "$round"
    run_system concord "$round"
  else
    run_system concord "$round"
    run_system etcd "$round"
  fi
done

# ---------------------------------------------------------------- report ---

SECTION="$WORK/section.md"
printf '%s\n' "${WORKLOADS[@]}" >"$RESULTS/workloads"
python3 - "$RESULTS" "$COMMAND" "$(nproc)" "$ROUNDS" >"$SECTION" <<'EOF'
import datetime, json, os, statistics, sys

results, command, cores, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def read(name):
    try:
        with open(os.path.join(results, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None

def load_round(system, name, r):
    text = read(f"{system}-{name}-r{r}.json")
    return json.loads(text) if text else None

def load(system, name):
    """The median round by throughput (its latencies are reported too)."""
    runs = [x for x in (load_round(system, name, r) for r in range(1, rounds + 1)) if x]
    if not runs:
        return None
    runs.sort(key=lambda x: x["throughput"])
    return runs[(len(runs) - 1) // 2]

def ratio_range(name):
    """Min and max of the per-round Concord/etcd throughput ratios."""
    rs = []
    for r in range(1, rounds + 1):
        e, c = load_round("etcd", name, r), load_round("concord", name, r)
        if e and c and e["throughput"]:
            rs.append(c["throughput"] / e["throughput"])
    if len(rs) < 2:
        return ""
    return f" ({min(rs):.2f}–{max(rs):.2f})"

def ops(r):
    if r is None:
        return "—"
    s = f"{r['throughput']:,.0f}"
    notes = []
    if r.get("errors"):
        notes.append(f"{r['errors']} errors")
    if r.get("missing_events"):
        notes.append(f"{r['missing_events']} missing events")
    return s + (f" ({', '.join(notes)})" if notes else "")

def lat(r):
    if r is None:
        return "—"
    return f"{r['latency_ms']['p50']:.2f} / {r['latency_ms']['p99']:.2f}"

def ratio(e, c):
    return f"{c / e:.2f}×" if e and c else "—"

rows = []
for line in read("workloads").splitlines():
    name, title, conns, clients, base, label, args = line.split("|")
    e, c = load("etcd", name), load("concord", name)
    rows.append(f"| {title} | {label} | {ops(e)} | {ops(c)} | "
                f"{ratio(e and e['throughput'], c and c['throughput'])}{ratio_range(name)} | "
                f"{lat(e)} | {lat(c)} |")

def rss(system):
    vals = [read(f"{system}-rss-r{r}") for r in range(1, rounds + 1)]
    vals = [int(v) for v in vals if v and v != "0"]
    return max(vals) if vals else None

def mib(kib):
    return f"{kib / 1024:,.0f} MiB" if kib else "—"

def cpu_ms_per_1000(system, name):
    """Median over rounds of member CPU ms per 1,000 requests."""
    vals = []
    for r in range(1, rounds + 1):
        text = read(f"{system}-{name}-r{r}.cpu")
        res = load_round(system, name, r)
        if not text or not res or not res.get("total"):
            continue
        ticks, hz = (int(x) for x in text.split())
        vals.append(ticks / hz * 1000 / (res["total"] / 1000))
    return statistics.median(vals) if vals else None

cpu_rows = []
for line in read("workloads").splitlines():
    name, title, conns, clients, base, label, args = line.split("|")
    e, c = cpu_ms_per_1000("etcd", name), cpu_ms_per_1000("concord", name)
    f = lambda v: f"{v:,.0f}" if v is not None else "—"
    cpu_rows.append(f"| {title} | {f(e)} | {f(c)} | {ratio(e, c)} |")

er, cr = rss("etcd"), rss("concord")
rows.append(f"| peak memory (max VmHWM of the 3 members) | | {mib(er)} | {mib(cr)} | "
            f"{ratio(er, cr)} | | |")

print("## Concord vs etcd (`bench/compare-etcd.sh`)")
print()
print(f"Run on {datetime.date.today().isoformat()} ({cores} cores), both clusters with 3 members on")
print("127.0.0.1 and default fsync behaviour, one after the other; the load generator")
print("(`concord-bench`) runs on the same machine and talks to all three endpoints.")
print(f"{rounds} round(s), alternating which system goes first, fresh clusters each time;")
print("each cell is the median round (latencies from that round), the ratio is of the")
print("medians, with the range of the per-round ratios in parentheses; memory is the")
print("peak over all rounds.")
print()
print("```")
print(command)
print("```")
print()
print(f"- etcd: `{read('etcd-version') or 'not run'}`")
print(f"- Concord: `{read('concord-version') or 'not run'}`")
print()
print("| workload | conns/clients | etcd ops/s | Concord ops/s | ratio | etcd p50/p99 ms | Concord p50/p99 ms |")
print("|---|---|---:|---:|---:|---:|---:|")
for r in rows:
    print(r)
print()
print("ratio = Concord / etcd (above 1: Concord has more throughput or uses more memory).")
print()
print("CPU used by the three members together, in ms per 1,000 requests (median")
print("round, from /proc; the range rows include their unmeasured 1,000-key prefill,")
print("the watch row is per 1,000 puts); lower is better:")
print()
print("| workload | etcd | Concord | ratio |")
print("|---|---:|---:|---:|")
for r in cpu_rows:
    print(r)
print()
print("Latencies are per request (watch: from put send to event delivery, over all")
print("watchers). Key size 8 bytes, value size 256 bytes, 100,000 keys.")
EOF

cat "$SECTION"

if [[ "$DOCS" == yes || ("$DOCS" == auto && "$ONLY" == both) ]]; then
  python3 - "$ROOT/docs/BENCHMARKS.md" "$SECTION" <<'EOF'
import sys
doc_path, section_path = sys.argv[1], sys.argv[2]
begin, end = "<!-- compare-etcd:begin -->", "<!-- compare-etcd:end -->"
with open(section_path) as f:
    block = f"{begin}\n{f.read().rstrip()}\n{end}"
with open(doc_path) as f:
    doc = f.read()
b, e = doc.find(begin), doc.find(end)
if b != -1 and e > b:
    doc = doc[:b] + block + doc[e + len(end):]
else:
    doc = doc.rstrip("\n") + "\n\n" + block + "\n"
with open(doc_path, "w") as f:
    f.write(doc)
EOF
  log "updated docs/BENCHMARKS.md"
else
  log "docs/BENCHMARKS.md not updated (one-sided run; pass --docs to force)"
fi
