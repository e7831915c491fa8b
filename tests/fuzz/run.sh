#!/usr/bin/env bash
# Builds the libFuzzer targets with `make fuzz-build` (clang, ASan+UBSan,
# into build/fuzz/; the Makefile says what each one links), replays every
# kept crash (tests/fuzz/regressions/<target>/) and seed
# (tests/fuzz/corpus/<target>/), then fuzzes each target for FUZZ_SECONDS.
# New crashes land in build/fuzz/crashes/; the script exits non-zero if
# anything crashed, leaked or timed out.
#
#   FUZZ_SECONDS=20     per target (make test: 20, make fuzz: 300)
#   FUZZ_TARGETS="frame ipc"   a subset (default: every fuzz_*.c)
#   FUZZ_JOBS=2         targets fuzzed at once (default: nproc)
#   FUZZ_OUT=build/fuzz
#   FUZZ_CC=clang       FUZZ_CFLAGS (default -g -O1) goes to make too
set -u
cd "$(dirname "$0")/../.." || exit 1
root=$PWD
seconds=${FUZZ_SECONDS:-20}
out=${FUZZ_OUT:-build/fuzz}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null; then
  echo "fuzz: $cc not found (tests/deps.sh test installs clang)" >&2
  exit 1
fi
targets=${FUZZ_TARGETS:-$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done | sed 's/^fuzz_//')}
targets=$(echo "$targets" | xargs)   # one line, for make's command line

# The Makefile builds the targets (`make fuzz-build`: which modules each one
# links, its flags, header dependencies). -k: a target that fails to build
# is reported, the others still run.
echo "fuzz: building into $out"
# Under `make -jN fuzz` the parent's jobserver is not passed down (that would
# take a '+' recipe, which `make -n` runs): drop it from MAKEFLAGS and use
# -j$jobs, keeping the parent's command-line variables (after " -- ").
if [ -n "${MAKEFLAGS:-}" ]; then
  mflags=${MAKEFLAGS%%-- *}
  mvars=${MAKEFLAGS#"$mflags"}
  mflags=$(echo "$mflags" | sed -E 's/(^| )--jobserver-(auth|fds)=[^ ]*//g; s/(^| )-j[0-9]*( |$)/ /g')
  export MAKEFLAGS="$mflags $mvars"
fi
build_fail=0
mk=(make --no-print-directory FUZZ_CC="$cc" FUZZ_OUT="$out" FUZZ_TARGETS="$targets")
built=" $targets"
if ! "${mk[@]}" -s -k -j"$jobs" fuzz-build; then
  build_fail=1
  built=""
  for t in $targets; do
    # -q: up to date, i.e. built from the current sources just now.
    if "${mk[@]}" -q "$out/fuzz_$t"; then
      built="$built $t"
    else
      echo "fuzz: building fuzz_$t FAILED" >&2
    fi
  done
fi
mkdir -p "$out/crashes" "$out/logs"

export ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}abort_on_error=1:detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0

# Replay: every kept crash and every seed once, so a fixed bug stays fixed
# even with FUZZ_SECONDS=0.
for t in $built; do
  files=$(find "tests/fuzz/regressions/$t" "tests/fuzz/corpus/$t" -type f ! -name 'README*' ! -name '.*' 2>/dev/null | sort)
  [ -n "$files" ] || continue
  n=$(echo "$files" | wc -l)
  # shellcheck disable=SC2086
  if "$out/fuzz_$t" -rss_limit_mb=2048 -timeout=10 $files </dev/null >"$out/logs/$t.replay.log" 2>&1; then
    echo "fuzz: $t: replayed $n inputs: ok"
  else
    echo "fuzz: $t: REPLAY FAILED (see $out/logs/$t.replay.log):" >&2
    tail -n 40 "$out/logs/$t.replay.log" >&2
    failed=$((failed + 1))
  fi
done

run_one() {   # target -> fuzz it for $seconds; returns libFuzzer's status
  local t=$1 dict=()
  mkdir -p "$out/corpus/$t"
  [ -f "tests/fuzz/dict/$t.dict" ] && dict=(-dict="tests/fuzz/dict/$t.dict")
  "$out/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$root/$out/crashes/$t-" "${dict[@]}" \
      "$out/corpus/$t" "tests/fuzz/corpus/$t" </dev/null >"$out/logs/$t.log" 2>&1
}

report() {   # target status
  local t=$1 rc=$2 log=$out/logs/$1.log
  local execs eps cov ft
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz: $t: ok: ${execs:-?} execs (${eps:-?}/s), cov ${cov:-?}, ft ${ft:-?}"
  else
    echo "fuzz: $t: FAILED (status $rc), log $log:" >&2
    grep -E 'ERROR|invariant failed|runtime error|SUMMARY|Test unit written|^    #[0-9]' "$log" | head -n 40 >&2
    failed=$((failed + 1))
  fi
}

if [ "$seconds" -gt 0 ]; then
  echo "fuzz: fuzzing each of:$built for ${seconds}s, $jobs at a time"
  set -- $built
  while [ $# -gt 0 ]; do
    pids=() names=()
    for _ in $(seq "$jobs"); do
      [ $# -gt 0 ] || break
      run_one "$1" & pids+=($!) names+=("$1")
      shift
    done
    for i in "${!pids[@]}"; do
      wait "${pids[$i]}"
      report "${names[$i]}" $?
    done
  done
fi

if [ "$build_fail" -ne 0 ] || [ "$failed" -ne 0 ]; then
  echo "fuzz: FAILED (build failures: $build_fail, failing targets: $failed); crashes in $out/crashes/" >&2
  exit 1
fi
echo "fuzz: all targets ok"
