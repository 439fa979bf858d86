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

PKI=$(mktemp -d "$BENCH_BASE/idle-conns-pki-XXXXXX")
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 2 -subj /CN=bench-ca 2>/dev/null
for n in server client; do
  openssl req -new "${ec[@]}" -keyout "$PKI/$n.key" -out "$PKI/$n.csr" -subj "/CN=$n" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > "$PKI/ext"
  openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 2 -extfile "$PKI/ext" -out "$PKI/$n.crt" 2>/dev/null
done
SERVER_TLS=(--cert-file "$PKI/server.crt" --key-file "$PKI/server.key"
            --trusted-ca-file "$PKI/ca.crt" --client-cert-auth)
CTL=(env ETCDCTL_API=3 etcdctl --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key")

SERVER_PID="" IDLE_PID="" WORK_DIR=""
cleanup() {
  [[ -n $IDLE_PID ]] && { kill -KILL "$IDLE_PID" 2>/dev/null || true; wait "$IDLE_PID" 2>/dev/null || true; }
  [[ -n $SERVER_PID ]] && { kill -KILL "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  [[ -n $WORK_DIR ]] && rm -rf "$WORK_DIR"
  SERVER_PID="" IDLE_PID="" WORK_DIR=""
}
trap 'cleanup; rm -rf "$PKI"' EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
ms_now() { date +%s%3N; }

declare -A R
run_server() {
  local name=$1 bin=$2 cport pport ep
  WORK_DIR=$(mktemp -d "$BENCH_BASE/idle-conns-XXXXXX")
  cport=$(free_port); pport=$(free_port); ep="https://127.0.0.1:$cport"
  "$bin" --name bench --data-dir "$WORK_DIR/data" \
    --listen-client-urls "$ep" --advertise-client-urls "$ep" "${SERVER_TLS[@]}" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "bench=http://127.0.0.1:$pport" >"$WORK_DIR/server.log" 2>&1 &
  SERVER_PID=$!
  local ok=""
  for _ in $(seq 1 150); do
    if "${CTL[@]}" --endpoints "$ep" --command-timeout=1s put k v >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
  done
  [[ -n $ok ]] || { echo "$name did not start" >&2; tail -20 "$WORK_DIR/server.log" >&2; cleanup; return 1; }
  R[$name/threads0]=$(status "$SERVER_PID" Threads)
  R[$name/rss0]=$(status "$SERVER_PID" VmRSS)
  "$IDLE_BIN" --endpoint "127.0.0.1:$cport" --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" \
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
  R[$name/threads]=$(status "$SERVER_PID" Threads)
  R[$name/rss]=$(status "$SERVER_PID" VmRSS)
  local t0 t1
  t0=$(ms_now)
  if [[ -n ${HTTP:-} ]]; then
    curl -sf -m 10 --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key" \
      "$ep/version" >/dev/null && t1=$(ms_now) || t1=""
  else
    "${CTL[@]}" --endpoints "$ep" --command-timeout=10s put among idle >/dev/null && t1=$(ms_now) || t1=""
  fi
  R[$name/put]=${t1:+$((t1 - t0))}
  R[$name/threads_after]=$(status "$SERVER_PID" Threads)
  echo "$name: $(cat "$WORK_DIR/idle.out" | tr '\n' ' ')" >&2
  cleanup
}

run_server etcd "$ETCD_BIN" || true
run_server cppetcd "$CPPETCD_BIN" || true
v() { echo "${R[$1]:-n/a}"; }
mib() { local k; k=$(v "$1"); [[ $k == n/a ]] && echo n/a || echo $((k / 1024)); }
printf '%-46s | %10s | %10s\n' "$CONNS idle mutual-TLS ${HTTP:+HTTP/1.1 }connections" etcd cppetcd
printf '%-46s | %10s | %10s\n' "threads before" "$(v etcd/threads0)" "$(v cppetcd/threads0)"
printf '%-46s | %10s | %10s\n' "threads with them open" "$(v etcd/threads)" "$(v cppetcd/threads)"
printf '%-46s | %10s | %10s\n' "RSS before (MiB)" "$(mib etcd/rss0)" "$(mib cppetcd/rss0)"
printf '%-46s | %10s | %10s\n' "RSS with them open (MiB)" "$(mib etcd/rss)" "$(mib cppetcd/rss)"
printf '%-46s | %10s | %10s\n' "sequential set-up rate (conn/s)" "$(v etcd/setup)" "$(v cppetcd/setup)"
probe="etcdctl put"; [[ -n ${HTTP:-} ]] && probe="curl GET /version"
printf '%-46s | %10s | %10s\n' "$probe via a new connection (ms, wall)" "$(v etcd/put)" "$(v cppetcd/put)"
