#!/usr/bin/env bash
# Large LISTs side by side: etcd and cppetcd (and optionally a second
# cppetcd build, e.g. one from before a change), one after the other in one
# run, each on free loopback ports with a fresh data dir.
#
# For each server: loads KEYS keys of VAL_SIZE bytes (sequential keys, so the
# keyspace is KEYS x VAL_SIZE), records the peak RSS (VmHWM) after the load,
# then runs LISTS full-keyspace Ranges from CLIENTS concurrent clients (one
# connection each; cppetcd-bench `list`, which does not parse the answers),
# and records the wall time, the bytes received and the peak RSS again.
# See docs/benchmarks.md ("Large LISTs").
#
# MODE=gateway sends the LISTs through the JSON gateway instead: CLIENTS
# concurrent curl processes, each POSTing its share of the LISTS to
# /v3/kv/range with key and range_end "\0" (every key) over one kept-alive
# connection and discarding the answer; the line reports the JSON bytes
# received.
#
# Usage: bench/list_compare.sh [BUILD_DIR]
# Environment (defaults in brackets):
#   ETCD_BIN     reference etcd                     [/usr/bin/etcd]
#   CPPETCD_BIN  cppetcd binary                     [BUILD_DIR/src/cmd/cppetcd]
#   BASE_BIN     optional second cppetcd, column "base"   [unset]
#   BENCH_BIN    cppetcd-bench                      [BUILD_DIR/bench/cppetcd-bench]
#   BENCH_BASE   directory for the data dirs        [${TMPDIR:-/tmp}]
#   KEYS [100000]  VAL_SIZE [2048]  CLIENTS [10]  LISTS [10]
#   CONSISTENCY  l or s                             [l]
#   MODE         grpc or gateway                    [grpc]
set -euo pipefail

BUILD_DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)/build}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CPPETCD_BIN=${CPPETCD_BIN:-$BUILD_DIR/src/cmd/cppetcd}
BENCH_BIN=${BENCH_BIN:-$BUILD_DIR/bench/cppetcd-bench}
BENCH_BASE=${BENCH_BASE:-${TMPDIR:-/tmp}}
KEYS=${KEYS:-100000}
VAL_SIZE=${VAL_SIZE:-2048}
CLIENTS=${CLIENTS:-10}
LISTS=${LISTS:-10}
CONSISTENCY=${CONSISTENCY:-l}
MODE=${MODE:-grpc}

[[ -x $BENCH_BIN ]] || { echo "cppetcd-bench not found at $BENCH_BIN" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
trap bench_stop_member EXIT

hwm_mib() { awk '/^VmHWM:/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }

# gateway_lists HOST:PORT: LISTS full-keyspace POSTs to /v3/kv/range from
# CLIENTS concurrent curl processes (one connection each); prints a line in
# the shape cppetcd-bench's list prints (bytes, seconds, errors).
gateway_lists() {
  local ep=$1 c i n start end bytes=0 errors=0 serializable=false
  [[ $CONSISTENCY == s ]] && serializable=true
  local body="{\"key\":\"AA==\",\"range_end\":\"AA==\",\"serializable\":$serializable}"
  local out
  out=$(mktemp -d "$BENCH_BASE/gateway-lists-XXXXXX")
  start=$(date +%s.%N)
  for ((c = 0; c < CLIENTS; c++)); do
    n=$(( LISTS / CLIENTS + (c < LISTS % CLIENTS ? 1 : 0) ))
    (
      args=()
      for ((i = 0; i < n; i++)); do
        [[ $i -gt 0 ]] && args+=(--next)
        args+=(-s -o /dev/null -w '%{http_code} %{size_download}\n' -X POST
               -H 'Content-Type: application/json' --data "$body" "http://$ep/v3/kv/range")
      done
      ((n > 0)) && curl --max-time 600 "${args[@]}" >"$out/$c" 2>&1
    ) &
  done
  wait
  end=$(date +%s.%N)
  while read -r code size; do
    if [[ $code == 200 ]]; then bytes=$((bytes + size)); else errors=$((errors + 1)); fi
  done < <(cat "$out"/* 2>/dev/null)
  rm -rf "$out"
  echo "Bytes received: $bytes RESULT op=gateway-list errors=$errors seconds=$(echo "$end - $start" | bc)"
}

run_server() {
  local name=$1 bin=$2
  bench_start_member "$name" "$bin" cppetcd-list http || return 1
  local ep="127.0.0.1:$CLIENT_PORT"
  # Keys "0000000000".."00000NNNNN" (10 digits): LIST ["0", ":").
  "$BENCH_BIN" --endpoints "$ep" --conns 4 --clients 32 put --total "$KEYS" \
    --key-size 10 --val-size "$VAL_SIZE" --sequential-keys --timeout 60 | grep '^RESULT' >&2
  local load_hwm list_line list_hwm
  load_hwm=$(hwm_mib "$SERVER_PID")
  if [[ $MODE == gateway ]]; then
    list_line=$(gateway_lists "$ep")
  else
    list_line=$("$BENCH_BIN" --endpoints "$ep" --conns "$CLIENTS" --clients "$CLIENTS" \
      list 0 : --total "$LISTS" --consistency "$CONSISTENCY" --timeout 600 |
      grep -E '^RESULT|Bytes received' | tr '\n' ' ')
  fi
  list_hwm=$(hwm_mib "$SERVER_PID")
  echo "$name: load_hwm_mib=$load_hwm list_hwm_mib=$list_hwm $list_line" >&2
  printf '%-8s after load: %6s MiB  after LISTs: %6s MiB  %s\n' "$name" "$load_hwm" "$list_hwm" \
    "$(sed -n 's/.*Bytes received:[^0-9]*\([0-9]*\).*seconds=\([0-9.]*\).*/wall=\2 s bytes=\1/p; s/.*errors=\([0-9]*\).*/ errors=\1/p' <<<"$list_line" | tr '\n' ' ')"
  bench_stop_member
}

echo "LISTs ($MODE): $KEYS keys x $VAL_SIZE B, $LISTS full-keyspace ranges from $CLIENTS clients," \
     "consistency $CONSISTENCY; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
run_server etcd "$ETCD_BIN"
if [[ -n ${BASE_BIN:-} ]]; then run_server base "$BASE_BIN"; fi
if [[ -x $CPPETCD_BIN ]]; then run_server cppetcd "$CPPETCD_BIN"; fi
