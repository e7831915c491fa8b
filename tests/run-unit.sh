#!/usr/bin/env bash
# Runs each cmocka unit-test binary given on the command line.
set -u
fail=0
for t in "$@"; do
  if ! "$t"; then
    echo "unit: FAILED $t" >&2
    fail=$((fail + 1))
  fi
done
echo "unit: $(( $# - fail ))/$# test programs passed"
[ "$fail" -eq 0 ]
