#!/usr/bin/env bash
# 3-member cluster comparison of etcd and cppetcd on this machine.
#
# For each server binary in turn (same flags, same disk, one after the
# other): starts a 3-member cluster on free loopback ports with the
# runbook's flags (--initial-cluster, --initial-cluster-token,
# --initial-cluster-state=new) and fast raft timing, runs put workloads with
# cppetcd-bench against the leader, then measures failover FAILOVER_RUNS
# times: kill -9 the leader, time until a put through a surviving member
# succeeds, restart the killed member and wait until it serves again.
# Prints a markdown table (median failover time).
#
# Usage: bench/cluster_compare.sh [BUILD_DIR]
# Environment (defaults in brackets):
#   ETCD_BIN       reference etcd                       [/usr/bin/etcd]
#   CPPETCD_BIN    cppetcd; its column is n/a if absent [BUILD_DIR/src/cmd/cppetcd]
#   BENCH_BIN      cppetcd-bench                        [BUILD_DIR/bench/cppetcd-bench]
#   ETCDCTL_BIN    etcdctl                              [/usr/bin/etcdctl]
#   BENCH_BASE     directory for the data dirs          [${TMPDIR:-/tmp}]
#   PUT_TOTAL      puts of the 10x100 workload (1x1 does a quarter) [10000]
#   FAILOVER_RUNS  leader kills per server              [3]
#   HEARTBEAT_MS / ELECTION_MS  raft timing for both    [100 / 1000]
set -euo pipefail

BUILD_DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)/build}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CPPETCD_BIN=${CPPETCD_BIN:-$BUILD_DIR/src/cmd/cppetcd}
BENCH_BIN=${BENCH_BIN:-$BUILD_DIR/bench/cppetcd-bench}
ETCDCTL_BIN=${ETCDCTL_BIN:-/usr/bin/etcdctl}
BENCH_BASE=${BENCH_BASE:-${TMPDIR:-/tmp}}
PUT_TOTAL=${PUT_TOTAL:-10000}
FAILOVER_RUNS=${FAILOVER_RUNS:-3}
HEARTBEAT_MS=${HEARTBEAT_MS:-100}
ELECTION_MS=${ELECTION_MS:-1000}
N=3

[[ -x $BENCH_BIN ]] || { echo "cppetcd-bench not found at $BENCH_BIN" >&2; exit 2; }
export ETCDCTL_API=3

# name|bench arguments (run against the leader's endpoint)
WORKLOADS=(
  "put 1 conn x 1 client (256 B)|--conns 1 --clients 1 put --total $((PUT_TOTAL / 4)) --key-size 8 --val-size 256 --sequential-keys"
  "put 10 conns x 100 clients (256 B)|--conns 10 --clients 100 put --total $PUT_TOTAL --key-size 8 --val-size 256 --key-space-size 100000"
)

PIDS=()      # member i's pid ("" when stopped)
ARGS=()      # member i's command line, one string per member
CPORTS=()
WORK_DIR=""
cleanup() {
  for p in "${PIDS[@]:-}"; do
    if [[ -n $p ]]; then kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  PIDS=()
  if [[ -n $WORK_DIR ]]; then rm -rf "$WORK_DIR"; WORK_DIR=""; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

ctl() { timeout 10 "$ETCDCTL_BIN" --command-timeout=2s "$@"; }

start_member() {  # i
  local i=$1
  # shellcheck disable=SC2086
  ${ARGS[$i]} >>"$WORK_DIR/m$i.log" 2>&1 &
  PIDS[$i]=$!
}

# Waits (bounded) until a linearizable get through member i succeeds.
wait_serving() {  # i seconds
  local i=$1 limit=$(( $2 * 5 ))
  for _ in $(seq 1 "$limit"); do
    ctl --endpoints "127.0.0.1:${CPORTS[$i]}" get health >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# Index of the member every running member names as leader, or "".
leader_index() {
  local eps="" i
  for i in $(seq 0 $((N - 1))); do
    if [[ -n ${PIDS[$i]:-} ]]; then eps+="${eps:+,}127.0.0.1:${CPORTS[$i]}"; fi
  done
  local json
  json=$(ctl --endpoints "$eps" endpoint status -w json 2>/dev/null) || return 0
  python3 -c '
import json, sys
eps = sys.argv[1].split(",")
st = json.loads(sys.stdin.read())
leaders = {e["Status"]["leader"] for e in st}
if len(st) != len(eps) or len(leaders) != 1 or 0 in leaders:
    sys.exit(0)
leader = leaders.pop()
for e in st:
    if e["Status"]["header"]["member_id"] == leader:
        print(e["Endpoint"])
' "$eps" <<<"$json" | while read -r ep; do
      for i in $(seq 0 $((N - 1))); do
        if [[ $ep == "127.0.0.1:${CPORTS[$i]}" ]]; then echo "$i"; fi
      done
    done
  return 0
}

wait_leader() {  # seconds -> prints index
  local limit=$(( $1 * 10 )) l
  for _ in $(seq 1 "$limit"); do
    l=$(leader_index)
    if [[ -n $l ]]; then echo "$l"; return 0; fi
    sleep 0.1
  done
  return 1
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

declare -A RESULTS
run_cluster() {  # name binary
  local name=$1 bin=$2 i
  WORK_DIR=$(mktemp -d "$BENCH_BASE/cppetcd-cluster-bench-XXXXXX")
  local pports=() initial="" token="bench-$name-$$"
  CPORTS=(); ARGS=(); PIDS=()
  for i in $(seq 0 $((N - 1))); do
    CPORTS[$i]=$(free_port); pports[$i]=$(free_port)
    initial+="${initial:+,}m$i=http://127.0.0.1:${pports[$i]}"
  done
  for i in $(seq 0 $((N - 1))); do
    ARGS[$i]="$bin --name m$i --data-dir $WORK_DIR/m$i.data
      --listen-client-urls http://127.0.0.1:${CPORTS[$i]} --advertise-client-urls http://127.0.0.1:${CPORTS[$i]}
      --listen-peer-urls http://127.0.0.1:${pports[$i]} --initial-advertise-peer-urls http://127.0.0.1:${pports[$i]}
      --initial-cluster $initial --initial-cluster-token $token --initial-cluster-state new
      --heartbeat-interval $HEARTBEAT_MS --election-timeout $ELECTION_MS"
    start_member "$i"
  done
  for i in $(seq 0 $((N - 1))); do
    if ! wait_serving "$i" 40; then
      echo "$name: member m$i did not start; log tail:" >&2; tail -20 "$WORK_DIR/m$i.log" >&2
      cleanup; return 1
    fi
  done
  local leader
  leader=$(wait_leader 20) || { echo "$name: no leader" >&2; cleanup; return 1; }
  echo "$name: cluster up, leader m$leader" >&2
  local k=0
  for w in "${WORKLOADS[@]}"; do
    local args=${w#*|} line
    # shellcheck disable=SC2086
    line=$(timeout 300 "$BENCH_BIN" --endpoints "127.0.0.1:${CPORTS[$leader]}" $args | grep '^RESULT' || true)
    RESULTS[$name/$k/rps]=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line")
    RESULTS[$name/$k/p99]=$(sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    RESULTS[$name/$k/err]=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
    echo "$name: ${w%%|*}: $line" >&2
    k=$((k + 1))
  done

  local times=() run
  for run in $(seq 1 "$FAILOVER_RUNS"); do
    leader=$(wait_leader 20) || { echo "$name: no leader before run $run" >&2; break; }
    local survivor=$(( (leader + 1) % N ))
    local t0 t1 ok=""
    t0=$(now_ms)
    kill -KILL "${PIDS[$leader]}"; wait "${PIDS[$leader]}" 2>/dev/null || true; PIDS[$leader]=""
    # Short per-try timeout: a put sent before the election waits it out, so
    # the try's timeout bounds the measurement's resolution.
    for _ in $(seq 1 300); do   # bounded: each try at most ~0.4 s
      if timeout 5 "$ETCDCTL_BIN" --command-timeout=300ms --endpoints "127.0.0.1:${CPORTS[$survivor]}" \
          put "failover/$run" v >/dev/null 2>&1; then ok=1; break; fi
      (( $(now_ms) - t0 > 30000 )) && break
    done
    t1=$(now_ms)
    if [[ -n $ok ]]; then
      times+=($((t1 - t0)))
      echo "$name: failover run $run: killed m$leader, put via m$survivor after $((t1 - t0)) ms" >&2
    else
      echo "$name: failover run $run: no successful put within 30 s" >&2
    fi
    start_member "$leader"
    wait_serving "$leader" 40 || { echo "$name: m$leader did not come back" >&2; break; }
  done
  if (( ${#times[@]} > 0 )); then
    RESULTS[$name/failover]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    RESULTS[$name/failover_all]=$(IFS=/; echo "${times[*]}")
  fi
  cleanup
}

SERVERS=()
run_cluster etcd "$ETCD_BIN" && SERVERS+=(etcd)
if [[ -x $CPPETCD_BIN ]]; then
  run_cluster cppetcd "$CPPETCD_BIN" && SERVERS+=(cppetcd)
else
  echo "cppetcd not found at $CPPETCD_BIN: its column is n/a" >&2
fi

val() { local v=${RESULTS[$1]:-}; echo "${v:-n/a}"; }
echo
echo "3-member cluster on loopback (heartbeat ${HEARTBEAT_MS} ms, election timeout ${ELECTION_MS} ms)"
echo
echo "| metric | etcd | cppetcd |"
echo "|---|---|---|"
k=0
for w in "${WORKLOADS[@]}"; do
  row="| ${w%%|*}: req/s (p99 ms) |"
  for s in etcd cppetcd; do
    rps=$(val "$s/$k/rps"); err=$(val "$s/$k/err")
    [[ $err != n/a && $err != 0 ]] && rps="$rps (E$err)"
    row+=" $rps ($(val "$s/$k/p99")) |"
  done
  echo "$row"
  k=$((k + 1))
done
row="| failover: kill -9 leader -> put via survivor, median ms (runs) |"
for s in etcd cppetcd; do row+=" $(val "$s/failover") ($(val "$s/failover_all")) |"; done
echo "$row"
