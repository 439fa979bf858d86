#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan, build/fuzz: only the fuzz
# targets and the libraries they need, plus cppetcd_transport, which no
# target links) with clang's lock analysis as errors
# (CPPETCD_THREAD_SAFETY_ANALYSIS, docs/testing.md) and runs each for a while on its
# corpus and dictionary. Fails on any crash, leak, timeout or out-of-memory,
# and prints a summary (also appended to build/fuzz/summary.tsv: time,
# target, seconds, CPU seconds, executions, corpus files, result).
#
#   tests/fuzz/run.sh [--seconds N] [--jobs J] [--targets "a b ..."] [--no-build] [--keep-going]
#
#   --seconds N  time per target (default 15; CPPETCD_FUZZ_SECONDS)
#   --jobs J     parallel fuzzing processes per target (libFuzzer -fork=J)
#   --targets    a subset (names as in tests/fuzz/*_fuzz.cc)
#   --no-build   use the binaries already in build/fuzz
#   --seed S     libFuzzer's random seed (default: a new one each run; CI
#                passes a fixed one so that its short pass is repeatable)
#   --keep-going keep fuzzing after a crash, timeout or OOM (libFuzzer fork
#                mode, -ignore_crashes): for long campaigns; every finding
#                is still left in build/fuzz/artifacts/<target>/ and fails
#                the run
#
# Inputs the fuzzer finds go to build/fuzz/corpus/<target> (kept between
# runs, not in git); a crash leaves its input in build/fuzz/artifacts/<target>/
# (see docs/testing.md, "Fuzzing", for turning it into a regression input).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
seconds=${CPPETCD_FUZZ_SECONDS:-15}
jobs=1
targets=""
build=1
keep_going=0
seed=""
while (($#)); do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep-going) keep_going=1; shift ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--jobs J] [--targets \"a b\"] [--no-build] [--keep-going] [--seed S]" >&2; exit 2 ;;
  esac
done

out=$root/build/fuzz
if ((build)); then
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
  export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
  mkdir -p "$out"
  echo "== build (clang, libFuzzer + ASan + UBSan, -Werror=thread-safety) in build/fuzz"
  CC=clang CXX=clang++ cmake -S "$root" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCPPETCD_FUZZ=ON -DCPPETCD_BUILD_TESTS=OFF -DCPPETCD_BUILD_BENCH=OFF \
    -DCPPETCD_THREAD_SAFETY_ANALYSIS=ON \
    > "$out.configure.log" 2>&1 || { cat "$out.configure.log"; exit 1; }
  # cppetcd_transport: only for the lock analysis (the fuzz targets link
  # every other module's library).
  cmake --build "$out" --target fuzz_all cppetcd_transport -j "$(nproc)"
fi
if [ -z "$targets" ]; then
  targets=$(cd tests/fuzz && ls *_fuzz.cc | sed 's/_fuzz\.cc$//' | sort)
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# CPU seconds (user + system) of this shell's finished children, from the
# output of `times` saved in file $1 (run `times > file` in this shell:
# a subshell would count its own children only).
cpu_seconds() {
  tail -1 "$1" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } printf "%d\n", n }'
}
failed=()
summary=()
for t in $targets; do
  bin=$out/tests/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "missing $bin" >&2; failed+=("$t(missing)"); continue; }
  work=$out/corpus/$t
  art=$out/artifacts/$t
  mkdir -p "$work" "$art"
  dirs=("$work")
  for d in "$root/tests/fuzz/corpus/$t" "$root/tests/fuzz/regressions/$t"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  args=(-max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1
        -artifact_prefix="$art/")
  [ -n "$seed" ] && args+=(-seed="$seed")
  [ -f "$root/tests/fuzz/dict/$t.dict" ] && args+=(-dict="$root/tests/fuzz/dict/$t.dict")
  if ((keep_going)); then
    args+=(-fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  elif ((jobs > 1)); then
    args+=(-fork="$jobs")
  fi
  log=$out/fuzz-$t.log
  echo "== fuzz $t (${seconds}s, jobs $jobs)"
  rc=0
  times > "$out/.times-$t-start"
  (cd "$art" && exec "$bin" "${args[@]}" "${dirs[@]}") > "$log" 2>&1 || rc=$?
  times > "$out/.times-$t-end"
  cpu=$(( $(cpu_seconds "$out/.times-$t-end") - $(cpu_seconds "$out/.times-$t-start") ))
  # (grep finding nothing must not end the script: set -e, pipefail)
  execs=$({ grep -aho 'stat::number_of_executed_units: [0-9]*' "$log" || true; } | awk '{s += $2} END {print s + 0}')
  if ((execs == 0)); then  # fork mode prints "#N: cov: ..." progress lines instead
    execs=$({ grep -ao '^#[0-9]*' "$log" || true; } | tr -d '#' | sort -n | tail -1)
    execs=${execs:-0}
  fi
  files=$(find "$work" -type f | wc -l)
  found=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  status=ok
  if ((rc != 0 || found > 0)); then
    status="FAILED (rc=$rc, $found artifact(s) in $art)"
    failed+=("$t")
    { grep -aE 'ERROR|FUZZ_CHECK|runtime error|Fatal|SUMMARY' "$log" || true; } | head -20
    echo "   full log: $log"
  fi
  summary+=("$(printf '%-16s %6ss %6s cpu-s %12s execs %7s corpus files  %s' "$t" "$seconds" "$cpu" "$execs" "$files" "$status")")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$seconds" "$cpu" "$execs" "$files" "$status" \
    >> "$out/summary.tsv"
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzzing FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzzing passed"
