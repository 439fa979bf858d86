# Shared by the comparison scripts (compare.sh, list_compare.sh,
# idle_conns.sh, watch_scale.sh): one single-member server at a time, on
# loopback ports the OS picks, with a fresh data dir. Sourced, not run.
#
# bench_start_member sets SERVER_PID, WORK_DIR and CLIENT_PORT;
# bench_stop_member clears them. BENCH_CTL_FLAGS (an array, may be empty)
# holds the etcdctl flags the readiness check needs (TLS).

SERVER_PID="" WORK_DIR="" CLIENT_PORT=""
BENCH_CTL_FLAGS=()

bench_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# bench_proc_status PID KEY: a /proc/PID/status value (kB for memory).
bench_proc_status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# bench_cpu_ticks PID: user + system CPU time in clock ticks (getconf CLK_TCK).
bench_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# bench_make_pki DIR: a CA and ECDSA P-256 certificates "server" and "client"
# for 127.0.0.1 (DIR/{ca,server,client}.{crt,key}), valid 2 days.
bench_make_pki() {
  local dir=$1 n
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.crt" -days 2 \
    -subj /CN=bench-ca 2>/dev/null
  for n in server client; do
    openssl req -new "${ec[@]}" -keyout "$dir/$n.key" -out "$dir/$n.csr" -subj "/CN=$n" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > "$dir/ext"
    openssl x509 -req -in "$dir/$n.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 2 -extfile "$dir/ext" -out "$dir/$n.crt" 2>/dev/null
  done
}

# bench_start_member NAME BINARY PREFIX SCHEME [SERVER FLAGS...]: starts one
# member (client URL SCHEME://127.0.0.1:<port>, plain peer URL) with its data
# dir in a new directory $BENCH_BASE/PREFIX-XXXXXX, and waits up to 30 s for
# an etcdctl put to succeed. On failure prints the log's tail, stops it and
# returns 1.
bench_start_member() {
  local name=$1 bin=$2 prefix=$3 scheme=$4
  shift 4
  local pport ep ok=""
  WORK_DIR=$(mktemp -d "$BENCH_BASE/$prefix-XXXXXX")
  CLIENT_PORT=$(bench_free_port); pport=$(bench_free_port)
  ep="$scheme://127.0.0.1:$CLIENT_PORT"
  "$bin" --name bench --data-dir "$WORK_DIR/data" \
    --listen-client-urls "$ep" --advertise-client-urls "$ep" "$@" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "bench=http://127.0.0.1:$pport" >"$WORK_DIR/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 150); do
    if ETCDCTL_API=3 etcdctl --endpoints "$ep" ${BENCH_CTL_FLAGS[@]+"${BENCH_CTL_FLAGS[@]}"} \
         --command-timeout=1s put bench-ready v >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
  done
  if [[ -z $ok ]]; then
    echo "$name did not start; log:" >&2
    tail -20 "$WORK_DIR/server.log" >&2
    bench_stop_member
    return 1
  fi
}

# bench_stop_member: SIGTERM, up to 10 s, then SIGKILL; removes the data dir.
bench_stop_member() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n $WORK_DIR ]]; then rm -rf "$WORK_DIR"; fi
  SERVER_PID="" WORK_DIR="" CLIENT_PORT=""
}
