#!/usr/bin/env bash
# `make test` stage: the integration tests once more with every wspush
# program under valgrind (memcheck). Any invalid access, use of an
# uninitialised value, or definite/indirect leak makes the program exit 99,
# and the tests' teardown fails on a non-zero exit.
#
# The harness starts $WSPUSH_BIN/ws-server (and fcgi-publisher, wspush), so
# this stage points WSPUSH_BIN at a directory of wrapper scripts that exec
# valgrind on the real, unsanitized binaries (valgrind and ASan do not mix).
#
# Selection: the ws-server and history suites, the conformance suite, the
# publisher suite and its metrics, revocation and the files read back at start. test_faults.py is left out: it measures
# RSS and holds thousands of sockets, which under valgrind measure valgrind.
#   VALGRIND_TESTS="test_ws_server.py"   another selection
#   VALGRIND_PYTEST_ARGS="-x -k 'ping or close'"   extra pytest arguments
#   VALGRIND_BUILD=build/mine            binaries from another build dir
set -u
cd "$(dirname "$0")/../.."
root=$PWD

if ! command -v valgrind >/dev/null; then
  echo "valgrind: not installed (tests/deps.sh test installs it)" >&2
  exit 1
fi
build=${VALGRIND_BUILD:-build}   # the plain build `make test` already made
make -s -j"$(nproc 2>/dev/null || echo 2)" BUILD="$build" all || exit 1
real=$root/$build/bin

wrap=$(mktemp -d "${TMPDIR:-/tmp}/wspush-valgrind.XXXXXX")
trap 'rm -rf "$wrap"' EXIT
for prog in ws-server fcgi-publisher wspush; do
  [ -x "$real/$prog" ] || continue
  cat >"$wrap/$prog" <<EOS
#!/bin/sh
exec valgrind -q --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \\
  --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-fds=no \\
  --num-callers=30 "$real/$prog" "\$@"
EOS
  chmod +x "$wrap/$prog"
done

if [ -n "${VALGRIND_TESTS:-}" ]; then
  # shellcheck disable=SC2206
  tests=($VALGRIND_TESTS)
else
  tests=()
  for t in test_ws_server.py test_history.py test_conformance.py test_publisher.py \
           test_revocation.py test_config_files.py test_metrics.py test_publisher_metrics.py \
           test_deflate.py; do
    [ -f "tests/integration/$t" ] && tests+=("$t")
  done
fi

# Shell words, so -k "not a or b" keeps its quotes.
eval "extra=(${VALGRIND_PYTEST_ARGS:-})"

echo "valgrind: ${tests[*]}"
t0=$SECONDS
WSPUSH_BIN=$wrap bash tests/run-integration.sh "${tests[@]}" "${extra[@]}"
rc=$?
echo "valgrind: pytest exit $rc after $((SECONDS - t0))s"
exit $rc
