#!/usr/bin/env bash
# The `make run` demo: nginx + fcgi-publisher + ws-server in the foreground;
# with WSPUSH_DEMO_SITE=php (`make run-php`), the PHP example site of
# conf/php/ instead: php-fpm + nginx (or Apache) + fcgi-publisher + ws-server.
#
# Usage: conf/demo/run.sh [BIN_DIR]      (default: build/bin of this checkout)
# Environment (all optional):
#   WSPUSH_DEMO_SITE     static (the demo page, Basic auth) or php   (default static)
#   WSPUSH_DEMO_WEB      php site only: nginx (auth_request against the PHP
#                        session) or apache (the login JWT cookie)   (default nginx)
#   WSPUSH_DEMO_PORT     nginx port, the demo page          (default 8080)
#   WSPUSH_DEMO_WS_PORT  ws-server's own port               (default 8081)
#   WSPUSH_DEMO_TLS_PORT ws-server's TLS port (wss://, a self-signed
#                        certificate made in the runtime directory) (default 8443)
#   WSPUSH_DEMO_METRICS_PORT  ws-server's metrics_listen    (default 8082)
#   WSPUSH_DEMO_PUB_METRICS_PORT  fcgi-publisher's metrics_listen (default 8083)
#   WSPUSH_DEMO_DIR      runtime directory to create; it must not exist yet
#                        (default: a fresh mktemp directory)
#   WSPUSH_DEMO_REDIS    a Redis Unix socket: ws-server runs with engine = redis
#                        on it, one node of a cluster (conf/demo/run-cluster.sh)
#   WSPUSH_DEMO_SECRET_FILE  the secret to use (copied), so that several sites
#                        share one (default: a fresh random secret)
#   WSPUSH_DEMO_BANNER   0: print no banner (run-cluster.sh prints its own)
#
# Everything the demo needs (ini, secret, htpasswd with demo/demo, nginx.conf,
# php-fpm.conf, the TLS certificate and key, sessions, sockets, pid files,
# logs) lives in one throw-away runtime directory. Ctrl-C
# or SIGTERM stops the three processes, waits for them, and removes the
# directory; if any process dies on its own, the rest are stopped too.
set -u
site=${WSPUSH_DEMO_SITE:-static}
web=${WSPUSH_DEMO_WEB:-nginx}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/build/bin}
port=${WSPUSH_DEMO_PORT:-8080}
ws_port=${WSPUSH_DEMO_WS_PORT:-8081}
tls_port=${WSPUSH_DEMO_TLS_PORT:-8443}
metrics_port=${WSPUSH_DEMO_METRICS_PORT:-8082}
pub_metrics_port=${WSPUSH_DEMO_PUB_METRICS_PORT:-8083}
host=127.0.0.1

say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
. "$here/lib.sh"

for p in ws-server fcgi-publisher; do
  [ -x "$bin/$p" ] || die "$bin/$p is missing: run 'make' first (or 'make run')"
done
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || die "nginx is not installed (apt-get install nginx)"
command -v openssl >/dev/null 2>&1 || die "openssl is not installed (apt-get install openssl)"
nginx_bin=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
case "$site/$web" in
  static/nginx|php/nginx) ;;
  php/apache) [ -x /usr/sbin/apache2 ] || die "apache2 is not installed (apt-get install apache2)" ;;
  *) die "WSPUSH_DEMO_SITE=$site WSPUSH_DEMO_WEB=$web: want static, or php with nginx or apache" ;;
esac
if [ "$site" = php ]; then
  fpm_bin=$(ls /usr/sbin/php-fpm* 2>/dev/null | sort -V | tail -n 1)
  [ -n "$fpm_bin" ] || die "php-fpm is not installed (apt-get install php-fpm)"
  php_client=$root/php/WsPush.php
  [ -f "$php_client" ] || die "$php_client is missing"
fi

for p in "$port" "$ws_port" "$tls_port" "$metrics_port" "$pub_metrics_port"; do
  port_busy "$p" && die "port $p is in use (another demo running?); set WSPUSH_DEMO_PORT / WSPUSH_DEMO_WS_PORT / WSPUSH_DEMO_TLS_PORT / WSPUSH_DEMO_METRICS_PORT / WSPUSH_DEMO_PUB_METRICS_PORT"
done

make_runtime_dir wspush-demo

pids=()
names=()
stopping=0

# Stops what was started, newest first (nginx before the publisher before
# ws-server, so no request finds its backend gone), then removes $run.
cleanup() {
  # A second Ctrl-C must not cut the clean-up short: a stuck process gets
  # SIGKILL after 8 s anyway.
  trap - EXIT
  trap '' INT TERM
  stopping=1
  local i pid t
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    for ((t = 0; t < 80; t++)); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.1
    done
    # Its process group: a child that outlives its parent (an Apache
    # child whose parent was killed) goes with it.
    if kill -0 "$pid" 2>/dev/null || kill -0 -- "-$pid" 2>/dev/null; then
      say "${names[i]} (pid $pid) did not stop in 8s: killing its process group"
      kill -KILL -- "-$pid" 2>/dev/null
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'say "stopping"; exit 0' INT TERM

# Each process in its own process group (setsid: in this non-interactive
# shell a background job is no group leader, so setsid execs in place and
# $! is the process itself), which the clean-up waits for and, at the
# timeout, kills whole. A signal from the terminal reaches only run.sh,
# whose trap stops them all.
start() {
  local name=$1; shift
  setsid "$@" &
  pids+=("$!")
  names+=("$name")
}

# Waits until the test command succeeds, failing when the process (the last
# one started) exits first.
wait_ready() {
  local what=$1; shift
  wait_up "$what" "${pids[${#pids[@]} - 1]}" 5 "$@"
}

# ---- the runtime directory
if [ -n "${WSPUSH_DEMO_SECRET_FILE:-}" ]; then
  cp "$WSPUSH_DEMO_SECRET_FILE" "$run/secret" || die "cannot copy $WSPUSH_DEMO_SECRET_FILE"
else
  head -c 32 /dev/urandom | base64 > "$run/secret"
fi
chmod 0600 "$run/secret"
mkdir -p "$run/nginx-tmp"
if command -v htpasswd >/dev/null 2>&1; then
  htpasswd -bc "$run/htpasswd" demo demo 2>/dev/null || die "htpasswd failed"
else
  printf 'demo:%s\n' "$(openssl passwd -apr1 demo)" > "$run/htpasswd" || die "openssl passwd failed"
fi
# A self-signed certificate for wss://$host:$tls_port (and localhost),
# valid 30 days; its SPKI hash lets Chromium trust it without a prompt.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj "/CN=wspush demo" -addext "subjectAltName=IP:$host,DNS:localhost" \
  -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null || die "openssl could not make the demo certificate"
chmod 0600 "$run/key.pem"
spki=$(openssl x509 -in "$run/cert.pem" -pubkey -noout | openssl pkey -pubin -outform der |
       openssl dgst -sha256 -binary | base64) || die "openssl could not hash the demo certificate"
origins="http://$host:$port http://localhost:$port"
# Apache has no auth_request: the PHP site's login sets a JWT cookie.
auth=remote_user
[ "$site/$web" = php/apache ] && auth=jwt
# One node of `make run-cluster`: the Redis engine on the shared Redis.
engine_lines=""
if [ -n "${WSPUSH_DEMO_REDIS:-}" ]; then
  engine_lines="engine = redis

[redis]
address = $WSPUSH_DEMO_REDIS"
fi
cat > "$run/wspush.ini" <<EOF
; Written by conf/demo/run.sh for the demo; see conf/wspush.ini for every key.
[wspush]
publish_socket = $run/publish.sock
secret_file = secret
log_level = info

[ws-server]
listen = $host:$ws_port
tls_listen = $host:$tls_port
tls_certificate = cert.pem
tls_certificate_key = key.pem
metrics_listen = $host:$metrics_port
allowed_origins = $origins
publish_socket_mode = 0600
$engine_lines

[publisher]
listen = $run/fcgi.sock
workers = 2
metrics_listen = $host:$pub_metrics_port
mount = /push
auth = $auth
allowed_origins = $origins
token_ttl = 1h

[channels]
public = public/*
publish = public/* user/{user}/*
subscribe = user/{user}/*
EOF

# nginx started as root would run its workers as nobody, who cannot read
# the (private) runtime directory: run them as root for the demo.
user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"
if [ "$site" = static ]; then
  sed -e "s#@RUN@#$run#g" -e "s#@WWW@#$here/www#g" -e "s#@HOST@#$host#g" \
      -e "s#@PORT@#$port#g" -e "s#@WS_PORT@#$ws_port#g" -e "s#@TLS_PORT@#$tls_port#g" \
      -e "s#@USER_LINE@#$user_line#g" \
      "$here/nginx.conf.in" > "$run/nginx.conf"
else
  . "$root/conf/php/demo.sh"
fi

"$bin/ws-server" -t -c "$run/wspush.ini" >/dev/null || die "ws-server rejects the demo config"
if [ "$web" = nginx ]; then
  "$nginx_bin" -q -t -p "$run" -e "$run/nginx-error.log" -c "$run/nginx.conf" \
    || die "nginx rejects the demo config"
fi

# ---- the three processes
start ws-server "$bin/ws-server" -c "$run/wspush.ini"
wait_ready ws-server bash -c "[ -S '$run/publish.sock' ] && (exec 3<>/dev/tcp/$host/$ws_port) 2>/dev/null && (exec 3<>/dev/tcp/$host/$tls_port) 2>/dev/null"
start fcgi-publisher "$bin/fcgi-publisher" -c "$run/wspush.ini"
wait_ready fcgi-publisher test -S "$run/fcgi.sock"
if [ "$site" = php ]; then
  php_start
else
  start nginx "$nginx_bin" -p "$run" -e "$run/nginx-error.log" -c "$run/nginx.conf" -g 'daemon off;'
fi
wait_ready "$web" bash -c "(exec 3<>/dev/tcp/$host/$port) 2>/dev/null"

# Every process is up: what conf/demo/run-cluster.sh waits for.
: > "$run/ready"

page_what="page      "
tls_page="; page: http://$host:$port/?ws=tls"
sse_page="     page: http://$host:$port/?transport=sse"
[ "$site" = php ] && page_what="PHP site  " && tls_page="" && sse_page=""
[ "${WSPUSH_DEMO_BANNER:-1}" = 0 ] || cat <<EOF

  wspush demo running
    $page_what  http://$host:$port/          login: demo / demo
    WebSocket   ws://$host:$port/ws  (proxied)  ws://$host:$ws_port/ws  (direct)
                wss://$host:$tls_port/ws  (TLS, direct$tls_page)
    SSE         http://$host:$port/sse?channels=public/demo  (proxied; also on $ws_port and https on $tls_port)
                curl -N http://$host:$ws_port/sse?channels=public/demo$sse_page
    TLS         self-signed certificate $run/cert.pem
                curl --cacert $run/cert.pem https://$host:$tls_port/healthz
                browser: open https://$host:$tls_port/healthz once and accept the certificate,
                or start Chromium with --ignore-certificate-errors-spki-list=$spki
    publish     $bin/wspush -s $run/publish.sock publish public/demo '"hello"'
    metrics     http://$host:$metrics_port/metrics  (ws-server; also /healthz, /readyz)
                http://$host:$pub_metrics_port/metrics  (fcgi-publisher; also /healthz, /readyz)
    runtime     $run  (removed on exit)
  Ctrl-C stops everything.

EOF

# Any process dying ends the demo (the EXIT trap stops the rest); a signal
# interrupts the wait and runs its trap.
while :; do
  wait -n "${pids[@]}"
  rc=$?
  [ "$stopping" = 1 ] && break
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      # Status 0: it was told to stop (a signal from elsewhere).
      say "${names[i]} exited (status $rc): stopping the demo"
      [ "$rc" = 0 ] && exit 0
      exit 1
    fi
  done
done
