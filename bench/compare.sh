#!/usr/bin/env bash
# Side-by-side benchmark of etcd and cppetcd on this machine.
#
# Starts each server in turn on free loopback ports with a fresh data dir
# under the same base directory (same disk), runs the same put and range
# workloads with cppetcd-bench, records the server's peak RSS (VmHWM), stops
# it, and prints a table. See docs/benchmarks.md for the method.
#
# Usage: bench/compare.sh [BUILD_DIR]
# Environment (defaults in brackets):
#   ETCD_BIN     reference etcd                 [/usr/bin/etcd]
#   CPPETCD_BIN  cppetcd binary; skipped if absent [BUILD_DIR/src/cmd/cppetcd]
#   BASE_BIN     optional second cppetcd (e.g. a build before a change), run
#                between the two as column "base"      [unset]
#   BENCH_BIN    cppetcd-bench                   [BUILD_DIR/bench/cppetcd-bench]
#   BENCH_BASE   directory for the data dirs     [${TMPDIR:-/tmp}]
#   PUT_TOTAL    puts per put workload           [20000]
#   RANGE_TOTAL  ranges per range workload       [20000]
#   BENCH_TLS    1: client traffic over mutual TLS (certificates made with
#                openssl for the run; --client-cert-auth)  [0]
#   WORKLOAD_FILTER  run only the workloads whose name matches this
#                extended regex (e.g. '^put')  [all]
set -euo pipefail

BUILD_DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)/build}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CPPETCD_BIN=${CPPETCD_BIN:-$BUILD_DIR/src/cmd/cppetcd}
BENCH_BIN=${BENCH_BIN:-$BUILD_DIR/bench/cppetcd-bench}
BENCH_BASE=${BENCH_BASE:-${TMPDIR:-/tmp}}
PUT_TOTAL=${PUT_TOTAL:-20000}
RANGE_TOTAL=${RANGE_TOTAL:-20000}

[[ -x $BENCH_BIN ]] || { echo "cppetcd-bench not found at $BENCH_BIN" >&2; exit 2; }

# name|bench arguments
WORKLOADS=(
  "put 1 conn x 1 client (seq keys, 256 B)|--conns 1 --clients 1 put --total $((PUT_TOTAL / 4)) --key-size 8 --val-size 256 --sequential-keys"
  "put 10 conns x 100 clients (256 B)|--conns 10 --clients 100 put --total $PUT_TOTAL --key-size 8 --val-size 256 --key-space-size 100000"
  "range linearizable 10 x 100|--conns 10 --clients 100 range bench-ready --total $RANGE_TOTAL --consistency l"
  "range serializable 10 x 100|--conns 10 --clients 100 range bench-ready --total $RANGE_TOTAL --consistency s"
)
if [[ -n ${WORKLOAD_FILTER:-} ]]; then
  kept=()
  for w in "${WORKLOADS[@]}"; do [[ ${w%%|*} =~ $WORKLOAD_FILTER ]] && kept+=("$w"); done
  WORKLOADS=("${kept[@]}")
fi

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
# Mutual TLS: a CA, a server certificate for 127.0.0.1 and a client one.
SCHEME=http
SERVER_TLS=()
CLIENT_TLS=()
if [[ ${BENCH_TLS:-0} == 1 ]]; then
  PKI=$(mktemp -d "$BENCH_BASE/cppetcd-bench-pki-XXXXXX")
  bench_make_pki "$PKI"
  SCHEME=https
  SERVER_TLS=(--cert-file "$PKI/server.crt" --key-file "$PKI/server.key"
              --trusted-ca-file "$PKI/ca.crt" --client-cert-auth)
  CLIENT_TLS=(--cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key")
fi

trap 'bench_stop_member; if [[ -n ${PKI:-} ]]; then rm -rf "$PKI"; fi' EXIT

# run_server NAME BINARY -> fills RESULTS[NAME/...]
declare -A RESULTS
# Server CPU time (user + system) in microseconds, from /proc/PID/stat.
cpu_us() {
  local f
  read -ra f < "/proc/$1/stat"
  # Fields 14 and 15 (utime, stime) in clock ticks; the name (field 2) has
  # no spaces for either server.
  echo $(( (f[13] + f[14]) * 1000000 / $(getconf CLK_TCK) ))
}
run_server() {
  local name=$1 bin=$2
  BENCH_CTL_FLAGS=(${CLIENT_TLS[@]+"${CLIENT_TLS[@]}"})
  bench_start_member "$name" "$bin" cppetcd-bench "$SCHEME" ${SERVER_TLS[@]+"${SERVER_TLS[@]}"} ||
    return 1
  local ep="127.0.0.1:$CLIENT_PORT"
  local i=0
  for w in "${WORKLOADS[@]}"; do
    local args=${w#*|}
    # shellcheck disable=SC2086
    local line cpu0 cpu1 total
    total=$(sed -n 's/.*--total \([0-9]*\).*/\1/p' <<<"$args")
    cpu0=$(cpu_us "$SERVER_PID")
    line=$("$BENCH_BIN" --endpoints "$ep" "${CLIENT_TLS[@]}" $args | grep '^RESULT' || true)
    cpu1=$(cpu_us "$SERVER_PID")
    RESULTS[$name/$i/cpu]=$(( (cpu1 - cpu0) / total ))
    line="$line server_cpu_us_per_req=${RESULTS[$name/$i/cpu]}"
    RESULTS[$name/$i/rps]=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line")
    RESULTS[$name/$i/p50]=$(sed -n 's/.* p50_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    RESULTS[$name/$i/p99]=$(sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    RESULTS[$name/$i/err]=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
    echo "$name: ${w%%|*}: $line" >&2
    i=$((i + 1))
  done
  RESULTS[$name/rss]=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")
  RESULTS[$name/db]=$(du -sk "$WORK_DIR/data" | cut -f1)
  bench_stop_member
}

SERVERS=()
COLUMNS_=(etcd)
run_server etcd "$ETCD_BIN" && SERVERS+=(etcd)
if [[ -n ${BASE_BIN:-} ]]; then
  COLUMNS_+=(base)
  run_server base "$BASE_BIN" && SERVERS+=(base)
fi
COLUMNS_+=(cppetcd)
if [[ -x $CPPETCD_BIN ]]; then
  run_server cppetcd "$CPPETCD_BIN" && SERVERS+=(cppetcd)
else
  echo "cppetcd not found at $CPPETCD_BIN: its column is pending" >&2
fi

val() { local v=${RESULTS[$1]:-}; echo "${v:-n/a}"; }
printf '\n%-42s' "workload"
for s in "${COLUMNS_[@]}"; do printf ' | %12s %14s %8s' "$s req/s" "p50/p99 ms" "CPU us"; done
printf '\n'
i=0
for w in "${WORKLOADS[@]}"; do
  printf '%-42s' "${w%%|*}"
  for s in "${COLUMNS_[@]}"; do
    local_err=$(val "$s/$i/err")
    rps=$(val "$s/$i/rps")
    [[ $local_err != n/a && $local_err != 0 ]] && rps="$rps(E$local_err)"
    printf ' | %12s %14s %8s' "$rps" "$(val "$s/$i/p50")/$(val "$s/$i/p99")" "$(val "$s/$i/cpu")"
  done
  printf '\n'
  i=$((i + 1))
done
printf '%-42s' "server peak RSS (VmHWM, MiB)"
for s in "${COLUMNS_[@]}"; do
  r=$(val "$s/rss"); [[ $r != n/a ]] && r=$((r / 1024))
  printf ' | %12s %14s %8s' "$r" "" ""
done
printf '\n%-42s' "data dir size after run (MiB)"
for s in "${COLUMNS_[@]}"; do
  d=$(val "$s/db"); [[ $d != n/a ]] && d=$((d / 1024))
  printf ' | %12s %14s %8s' "$d" "" ""
done
printf '\n'
