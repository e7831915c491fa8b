#!/usr/bin/env bash
# Stage "browser" of `make test`: wspush.js unit tests in node
# (tests/browser/wspush.unit.test.mjs), permessage-deflate with Node's ws
# and chromium (tests/browser/deflate.test.mjs), then the demo page in Debian's
# chromium driven by playwright-core (tests/browser/demo.test.mjs), then the
# PHP example site under nginx and Apache (tests/browser/php-site.test.mjs),
# then `make run-cluster`'s two sites on one Redis (tests/browser/cluster.test.mjs).
# Builds when needed, installs playwright-core and ws from package-lock.json
# the first time (no browser download), starts its own servers on free ports.
# WSPUSH_BIN=DIR uses binaries from DIR instead of building build/bin.
set -u
cd "$(dirname "$0")/../.." || exit 1
root=$PWD

if [ -n "${WSPUSH_BIN:-}" ]; then
  bin=$WSPUSH_BIN
else
  make -s all || exit 1
  bin=$root/build/bin
fi
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "browser: $tool missing (tests/deps.sh test installs it)" >&2; exit 1; }
done
[ -x /usr/bin/chromium ] || [ -n "${CHROMIUM:-}" ] || { echo "browser: /usr/bin/chromium missing (apt-get install chromium)" >&2; exit 1; }

cd tests/browser || exit 1
if [ ! -f node_modules/playwright-core/package.json ] || [ ! -f node_modules/ws/package.json ]; then
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error || exit 1
  else
    npm install --no-audit --no-fund --loglevel=error || exit 1
  fi
fi
# wspush.js on its own first (node, fake WebSocket), then the real thing.
node wspush.unit.test.mjs || exit 1
export WSPUSH_BIN=$bin
rc=0
node deflate.test.mjs || rc=1
node demo.test.mjs || rc=1
node php-site.test.mjs || rc=1
node cluster.test.mjs || rc=1
exit $rc
