#!/usr/bin/env bash
# Watch at scale: many watchers on many streams under a steady write rate,
# etcd and cppetcd in one run (issue 12 item 4, docs/benchmarks.md).
#
# Starts each server in turn (one member, plain client URL), runs
# watch-scale-bench against it, and reports the bench's RESULT (set-up time,
# put latency, events expected and received, event latency) with the
# server's threads, RSS (VmRSS while the watchers are open, VmHWM) and CPU
# seconds (utime + stime from /proc/<pid>/stat over the whole run).
#
# Usage: bench/watch_scale.sh [BUILD_DIR]
# Environment: ETCD_BIN [/usr/bin/etcd], CPPETCD_BIN
# [BUILD_DIR/src/cmd/cppetcd], BENCH_BIN [BUILD_DIR/bench/watch-scale-bench],
# STREAMS [1000], WATCHERS_PER_STREAM [100], KEYS [1000], PUT_RATE [100],
# DURATION [20], CONNS [10], BENCH_BASE [${TMPDIR:-/tmp}].
set -euo pipefail

BUILD_DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)/build}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CPPETCD_BIN=${CPPETCD_BIN:-$BUILD_DIR/src/cmd/cppetcd}
BENCH_BIN=${BENCH_BIN:-$BUILD_DIR/bench/watch-scale-bench}
STREAMS=${STREAMS:-1000}
WATCHERS_PER_STREAM=${WATCHERS_PER_STREAM:-100}
KEYS=${KEYS:-1000}
PUT_RATE=${PUT_RATE:-100}
DURATION=${DURATION:-20}
CONNS=${CONNS:-10}
BENCH_BASE=${BENCH_BASE:-${TMPDIR:-/tmp}}

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
BENCH_PID=""
cleanup() {
  [[ -n $BENCH_PID ]] && { kill -KILL "$BENCH_PID" 2>/dev/null || true; wait "$BENCH_PID" 2>/dev/null || true; }
  BENCH_PID=""
  bench_stop_member
}
trap cleanup EXIT

declare -A R
run_server() {
  local name=$1 bin=$2
  bench_start_member "$name" "$bin" watch-scale http || return 1
  R[$name/threads0]=$(bench_proc_status "$SERVER_PID" Threads)
  R[$name/rss0]=$(bench_proc_status "$SERVER_PID" VmRSS)
  local c0 hz
  c0=$(bench_cpu_ticks "$SERVER_PID"); hz=$(getconf CLK_TCK)
  "$BENCH_BIN" --endpoints "127.0.0.1:$CLIENT_PORT" --conns "$CONNS" --streams "$STREAMS" \
    --watchers-per-stream "$WATCHERS_PER_STREAM" --keys "$KEYS" --put-rate "$PUT_RATE" \
    --duration "$DURATION" >"$WORK_DIR/bench.out" 2>&1 &
  BENCH_PID=$!
  # Threads and RSS sampled while the watchers are open (the writing phase).
  local max_threads=0 max_rss=0 t r
  while kill -0 "$BENCH_PID" 2>/dev/null; do
    if grep -qs "watchers on" "$WORK_DIR/bench.out"; then
      t=$(bench_proc_status "$SERVER_PID" Threads); r=$(bench_proc_status "$SERVER_PID" VmRSS)
      (( t > max_threads )) && max_threads=$t
      (( r > max_rss )) && max_rss=$r
    fi
    sleep 0.5
  done
  local rc=0
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=""
  R[$name/threads]=$max_threads
  R[$name/rss]=$max_rss
  R[$name/hwm]=$(bench_proc_status "$SERVER_PID" VmHWM)
  R[$name/cpu]=$(awk -v a="$c0" -v b="$(bench_cpu_ticks "$SERVER_PID")" -v hz="$hz" 'BEGIN {printf "%.1f", (b - a) / hz}')
  R[$name/result]=$(grep '^RESULT' "$WORK_DIR/bench.out" || true)
  R[$name/setup_line]=$(grep 'watchers on' "$WORK_DIR/bench.out" || true)
  [[ $rc -eq 0 ]] || { echo "$name: watch-scale-bench exited $rc" >&2; cat "$WORK_DIR/bench.out" >&2; }
  echo "$name: ${R[$name/setup_line]}" >&2
  echo "$name: ${R[$name/result]}" >&2
  cleanup
}

run_server etcd "$ETCD_BIN" || true
run_server cppetcd "$CPPETCD_BIN" || true
v() { echo "${R[$1]:-n/a}"; }
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<< " ${R[$1/result]:-}"; }
mib() { local k; k=$(v "$1"); [[ $k == n/a ]] && echo n/a || echo $((k / 1024)); }
title="$((STREAMS * WATCHERS_PER_STREAM)) watchers, $STREAMS streams, $PUT_RATE puts/s"
printf '%-44s | %10s | %10s\n' "$title" etcd cppetcd
printf '%-44s | %10s | %10s\n' "watcher set-up (s)" "$(field etcd setup_s)" "$(field cppetcd setup_s)"
printf '%-44s | %10s | %10s\n' "threads before / with watchers" "$(v etcd/threads0) / $(v etcd/threads)" "$(v cppetcd/threads0) / $(v cppetcd/threads)"
printf '%-44s | %10s | %10s\n' "RSS before / with watchers (MiB)" "$(mib etcd/rss0) / $(mib etcd/rss)" "$(mib cppetcd/rss0) / $(mib cppetcd/rss)"
printf '%-44s | %10s | %10s\n' "peak RSS, VmHWM (MiB)" "$(mib etcd/hwm)" "$(mib cppetcd/hwm)"
printf '%-44s | %10s | %10s\n' "server CPU over the run (s)" "$(v etcd/cpu)" "$(v cppetcd/cpu)"
printf '%-44s | %10s | %10s\n' "puts done (rate/s)" "$(field etcd puts) ($(field etcd put_rate))" "$(field cppetcd puts) ($(field cppetcd put_rate))"
printf '%-44s | %10s | %10s\n' "put p50 / p99 (ms)" "$(field etcd put_p50_ms) / $(field etcd put_p99_ms)" "$(field cppetcd put_p50_ms) / $(field cppetcd put_p99_ms)"
printf '%-44s | %10s | %10s\n' "events expected / received" "$(field etcd events_expected) / $(field etcd events_received)" "$(field cppetcd events_expected) / $(field cppetcd events_received)"
printf '%-44s | %10s | %10s\n' "event latency p50 / p99 / max (ms)" "$(field etcd event_p50_ms) / $(field etcd event_p99_ms) / $(field etcd event_max_ms)" "$(field cppetcd event_p50_ms) / $(field cppetcd event_p99_ms) / $(field cppetcd event_max_ms)"
