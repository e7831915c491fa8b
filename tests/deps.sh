#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, only those that
# are missing: `apt-get update` once, then one `apt-get install -y`.
# Usage: tests/deps.sh build|test|run|run-php|run-cluster|bench
set -euo pipefail
want="build-essential pkg-config libssl-dev libjansson-dev libjwt-dev libinih-dev zlib1g-dev libhiredis-dev"
case "${1:-build}" in
  build) ;;
  test)  want="$want libcmocka-dev clang libclang-rt-14-dev nginx apache2 apache2-utils libapache2-mod-fcgid lighttpd caddy h2o python3-pytest python3-websockets valgrind chromium procps prometheus python3-prometheus-client"
         want="$want php-cli phpunit php-fpm"           # the PHP client and site
         want="$want libfcgi-dev libfcgi-bin"           # libfcgi, the FastCGI oracle
         want="$want python3-cryptography"              # certificates for the TLS tests
         want="$want redis-server redis-sentinel" ;;    # the Redis engine's tests
  run)   want="$want nginx apache2-utils openssl" ;;
  run-php) want="$want nginx apache2-utils openssl php-fpm php-cli" ;;
  run-cluster) want="$want nginx apache2-utils openssl redis-server redis-sentinel" ;;
  bench) want="$want nginx libnginx-mod-nchan linux-perf openssl redis-server" ;;
  *) echo "usage: $0 build|test|run|run-php|run-cluster|bench" >&2; exit 2 ;;
esac
# run-php: Apache too, for WSPUSH_DEMO_WEB=apache (small next to the rest).
[ "${1:-build}" = run-php ] && want="$want apache2"
missing=""
# The machine may already carry Node from another source whose package
# conflicts with Debian's npm: only ask for Node when there is none.
case "${1:-build}" in test|bench) command -v npm >/dev/null 2>&1 || want="$want nodejs npm" ;; esac
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages:$missing (run as root or install them)" >&2
  exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends $missing >&2
