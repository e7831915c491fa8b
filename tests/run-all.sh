#!/usr/bin/env bash
# `make test`: every suite, once plain and once under ASan+UBSan, then one
# summary line. Stages keep running after a failure so one run shows all.
set -u
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
declare -a results
failed=0
stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name"
  if "$@"; then results+=("$name: ok ($((SECONDS - t0))s)")
  else results+=("$name: FAILED ($((SECONDS - t0))s)"); failed=$((failed + 1)); fi
}
# The build stage also fails on a cycle between modules (tests/check-modules.py).
stage "build" bash -c 'make -s -j"$1" all && /usr/bin/python3 tests/check-modules.py' _ "$jobs"
stage "docs" /usr/bin/python3 tests/check-links.py
stage "unit" make -s -j"$jobs" unit
stage "integration" make -s integration
san="SANITIZE=address,undefined"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
stage "build (asan+ubsan)" make -s -j"$jobs" $san all
stage "unit (asan+ubsan)" make -s -j"$jobs" $san unit
# Memory-footprint assertions measure the real allocator, not ASan's.
WSPUSH_SANITIZED=1 stage "integration (asan+ubsan)" make -s $san integration
for extra in tests/stages/*.sh; do
  [ -e "$extra" ] || continue
  stage "$(basename "$extra" .sh)" bash "$extra"
done
echo
printf '%s\n' "${results[@]}"
if [ "$failed" -eq 0 ]; then echo "SUMMARY: all ${#results[@]} stages passed"; exit 0; fi
echo "SUMMARY: $failed of ${#results[@]} stages FAILED"; exit 1
