#!/usr/bin/env bash
# Idle mutual-TLS connections: what they cost etcd and cppetcd.
#
# Starts each server in turn (one member, https client URL with
# --client-cert-auth, certificates made with openssl for the run), opens
# CONNS idle connections with idle-conns-bench (TLS handshake, HTTP/2
# preface and SETTINGS, then silence), and records the server's threads and
# RSS before and while they are open, plus the latency of an etcdctl put
# through a new connection among them. See docs/benchmarks.md.
#
# With HTTP=1 the idle connections are HTTP/1.1 instead (each sent one
# keep-alive GET /version, got its reply, and stays open), and the latency
# is of a curl GET /version through a new connection among them.
#
# With GRPC_ONLY=1 cppetcd also gets --listen-client-http-urls (an https URL
# of its own), so its client URL is gRPC-only and gRPC terminates the TLS
# (one descriptor per connection); etcd 3.4 keeps its shared port. The table
# then adds the server's open descriptors.
#
# Usage: bench/idle_conns.sh [BUILD_DIR]
# Environment: ETCD_BIN [/usr/bin/etcd], CPPETCD_BIN
# [BUILD_DIR/src/cmd/cppetcd], IDLE_BIN [BUILD_DIR/bench/idle-conns-bench],
# CONNS [10000], BENCH_BASE [${TMPDIR:-/tmp}].
# Needs `ulimit -n` well above 3 x CONNS (the script raises it; root can).
set -euo pipefail

BUILD_DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)/build}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CPPETCD_BIN=${CPPETCD_BIN:-$BUILD_DIR/src/cmd/cppetcd}
IDLE_BIN=${IDLE_BIN:-$BUILD_DIR/bench/idle-conns-bench}
CONNS=${CONNS:-10000}
BENCH_BASE=${BENCH_BASE:-${TMPDIR:-/tmp}}
ulimit -n $((CONNS * 4 + 1000)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
PKI=$(mktemp -d "$BENCH_BASE/idle-conns-pki-XXXXXX")
bench_make_pki "$PKI"
SERVER_TLS=(--cert-file "$PKI/server.crt" --key-file "$PKI/server.key"
            --trusted-ca-file "$PKI/ca.crt" --client-cert-auth)
BENCH_CTL_FLAGS=(--cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key")
CTL=(env ETCDCTL_API=3 etcdctl "${BENCH_CTL_FLAGS[@]}")

IDLE_PID=""
cleanup() {
  [[ -n $IDLE_PID ]] && { kill -KILL "$IDLE_PID" 2>/dev/null || true; wait "$IDLE_PID" 2>/dev/null || true; }
  IDLE_PID=""
  bench_stop_member
}
trap 'cleanup; rm -rf "$PKI"' EXIT
ms_now() { date +%s%3N; }

declare -A R
run_server() {
  local name=$1 bin=$2 ep
  local extra=()
  if [[ -n ${GRPC_ONLY:-} && $name == cppetcd ]]; then
    extra=(--listen-client-http-urls "https://127.0.0.1:$(bench_free_port)")
  fi
  bench_start_member "$name" "$bin" idle-conns https "${SERVER_TLS[@]}" ${extra[@]+"${extra[@]}"} || return 1
  ep="https://127.0.0.1:$CLIENT_PORT"
  R[$name/threads0]=$(bench_proc_status "$SERVER_PID" Threads)
  R[$name/rss0]=$(bench_proc_status "$SERVER_PID" VmRSS)
  "$IDLE_BIN" --endpoint "127.0.0.1:$CLIENT_PORT" --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" \
    --key "$PKI/client.key" --conns "$CONNS" --hold-seconds 600 ${HTTP:+--http} \
    >"$WORK_DIR/idle.out" 2>&1 &
  IDLE_PID=$!
  for _ in $(seq 1 3000); do   # up to ~10 min
    grep -q '^ready' "$WORK_DIR/idle.out" && break
    kill -0 "$IDLE_PID" 2>/dev/null || break
    sleep 0.2
  done
  grep -q '^ready' "$WORK_DIR/idle.out" || { echo "$name: idle connections failed" >&2; cat "$WORK_DIR/idle.out" >&2; cleanup; return 1; }
  R[$name/setup]=$(awk '$1 == "setup" {printf "%.0f", $2 / $3}' "$WORK_DIR/idle.out")
  sleep 2  # let the server settle
  R[$name/threads]=$(bench_proc_status "$SERVER_PID" Threads)
  R[$name/rss]=$(bench_proc_status "$SERVER_PID" VmRSS)
  R[$name/fds]=$(ls "/proc/$SERVER_PID/fd" | wc -l)
  # PROBES probes, each through a new connection (a new process): the
  # median and the worst (p99 for up to 100 probes) of the wall times.
  local t0 t1 i times=()
  for i in $(seq 1 "${PROBES:-20}"); do
    t0=$(ms_now)
    if [[ -n ${HTTP:-} ]]; then
      curl -sf -m 10 --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key" \
        "$ep/version" >/dev/null && t1=$(ms_now) || t1=""
    else
      "${CTL[@]}" --endpoints "$ep" --command-timeout=10s put among idle >/dev/null && t1=$(ms_now) || t1=""
    fi
    [[ -n $t1 ]] && times+=($((t1 - t0)))
  done
  if [[ ${#times[@]} -gt 0 ]]; then
    R[$name/put]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
    R[$name/put_max]=$(printf '%s\n' "${times[@]}" | sort -n | tail -1)
    R[$name/put_ok]=${#times[@]}
  fi
  R[$name/threads_after]=$(bench_proc_status "$SERVER_PID" Threads)
  echo "$name: $(cat "$WORK_DIR/idle.out" | tr '\n' ' ')" >&2
  cleanup
}

run_server etcd "$ETCD_BIN" || true
run_server cppetcd "$CPPETCD_BIN" || true
v() { echo "${R[$1]:-n/a}"; }
mib() { local k; k=$(v "$1"); [[ $k == n/a ]] && echo n/a || echo $((k / 1024)); }
printf '%-46s | %10s | %10s\n' "$CONNS idle mutual-TLS ${HTTP:+HTTP/1.1 }connections" etcd "cppetcd${GRPC_ONLY:+ (gRPC-only URL)}"
printf '%-46s | %10s | %10s\n' "threads before" "$(v etcd/threads0)" "$(v cppetcd/threads0)"
printf '%-46s | %10s | %10s\n' "threads with them open" "$(v etcd/threads)" "$(v cppetcd/threads)"
printf '%-46s | %10s | %10s\n' "RSS before (MiB)" "$(mib etcd/rss0)" "$(mib cppetcd/rss0)"
printf '%-46s | %10s | %10s\n' "RSS with them open (MiB)" "$(mib etcd/rss)" "$(mib cppetcd/rss)"
printf '%-46s | %10s | %10s\n' "open descriptors with them open" "$(v etcd/fds)" "$(v cppetcd/fds)"
printf '%-46s | %10s | %10s\n' "sequential set-up rate (conn/s)" "$(v etcd/setup)" "$(v cppetcd/setup)"
probe="etcdctl put"; [[ -n ${HTTP:-} ]] && probe="curl GET /version"
printf '%-46s | %10s | %10s\n' "$probe via a new connection, p50 (ms, wall)" "$(v etcd/put)" "$(v cppetcd/put)"
printf '%-46s | %10s | %10s\n' "$probe via a new connection, max of ${PROBES:-20} (ms)" "$(v etcd/put_max)" "$(v cppetcd/put_max)"
