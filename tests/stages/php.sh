#!/usr/bin/env bash
# Stage "php" of `make test`: the PHP client (php/WsPush.php) under Debian's
# phpunit against a real ws-server (tests/php/WsPushTest.php), once with the
# plain build and once with the ASan+UBSan one (which `make test` has built
# by then; a ws-server that reports an error exits non-zero and fails the
# tests' teardown). Under a second each.
# WSPUSH_BIN=DIR runs once, with the binaries in DIR, and builds nothing.
set -u
cd "$(dirname "$0")/../.." || exit 1
root=$PWD

for tool in php phpunit; do
  command -v "$tool" >/dev/null 2>&1 || { echo "php: $tool missing (tests/deps.sh test installs it)" >&2; exit 1; }
done
run() {
  echo "php: phpunit with $1/ws-server"
  WSPUSH_BIN=$1 phpunit --colors=never --do-not-cache-result tests/php
}
if [ -n "${WSPUSH_BIN:-}" ]; then
  run "$WSPUSH_BIN"
  exit
fi
make -s -j"$(nproc 2>/dev/null || echo 2)" all || exit 1
run "$root/build/bin" || exit 1
san="SANITIZE=address,undefined"
make -s -j"$(nproc 2>/dev/null || echo 2)" $san all || exit 1
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  run "$root/build/san/bin"
