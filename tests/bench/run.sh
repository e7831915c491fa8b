#!/usr/bin/env bash
# `make bench`: the fan-out benchmark. Runs one C load client
# (tests/bench/loadclient.c) against ws-server and its peers, one server at
# a time, alternating per scenario, and prints one markdown table (also
# written to build/bench/results.md).
#
#   usage: tests/bench/run.sh BINDIR      (BINDIR holds ws-server, fcgi-publisher)
#
# Servers (BENCH_SERVERS names):
#   wsserver            ws-server, browsers straight on it (ws://), published
#                       through its socket
#   wsserver-http       the same, published through nginx + fcgi-publisher
#   nchan               nchan (Debian's libnginx-mod-nchan, one nginx worker)
#   nodews, socketio    a Node `ws` broadcast server and socket.io (npm,
#                       installed into tests/bench/servers/node_modules here)
# and the deployed paths (a self-signed ECDSA P-256 certificate is made in
# the runtime directory; every nginx has one worker):
#   wsserver-tls        wss:// straight to ws-server ([ws-server] tls_listen)
#   wsserver-nginx      ws:// through the shipped conf/nginx/wspush.conf
#                       (its /ws location, proxied to ws-server)
#   wsserver-nginx-tls  wss:// through the same, `listen ... ssl` at nginx
#   nchan-tls           wss:// to nchan (nginx ssl, one worker)
#   wsserver-sse        SSE straight to ws-server (GET /sse?channels=)
#   nchan-sse           nchan's EventSource subscriber
# and several nodes (issue 12), each with its own redis-server started for
# the run in the runtime directory (--save '' --appendonly no):
#   wsserver-redis2     two ws-server nodes, engine = redis, on one Redis
#                       (Unix socket); subscribers alternate between the two
#                       nodes' ports, messages are published on node 1's socket
#   wsserver-redis1     one node on the same: the engine's own cost, apart
#                       from two nodes sharing the machine's cores (not in
#                       the default list)
#   nchan-redis         nchan in its Redis mode (nchan_redis_url; nchan
#                       1.3 speaks TCP only: Redis on a loopback port), one
#                       nginx worker like the other nchan peer
# Their CPU row counts redis-server too (every process on the path).
# A path whose feature the ws-server binary lacks (TLS, SSE) gets "n/a".
# The deployed paths run the back-to-back delivery rows, the latency row
# of the largest BENCH_LAT_SUBS and idle memory; memory counts every
# process on the path (ws-server + the nginx worker when proxied).
#
# Environment (defaults in brackets):
#   BENCH_SUBS [10000]      subscribers of the big delivery and idle runs
#   BENCH_SMALL [1000]      subscribers of the small delivery run
#   BENCH_MSGS [200]        messages of the big delivery runs
#   BENCH_SMALL_MSGS [1000] messages of the small delivery runs
#   BENCH_PUBLISHERS [4]    concurrent publishers in the burst runs
#   BENCH_BURST [10]        messages per publisher per burst
#   BENCH_RATE [25]        messages/s of the latency runs
#   BENCH_LAT_SUBS ["100 1000"], BENCH_LAT_SECS [8]
#   BENCH_HTTP_CONNS [8], BENCH_HTTP_SECS [5], BENCH_HTTP_SUBS [0]
#   BENCH_CHAN_SUBS [BENCH_SUBS]  chanmem: subscribers, each on a channel of its own
#   BENCH_REDIS_MSGS [10000]  redismem: messages published into BENCH_REDIS_MSGS/100
#                           channels (100 each = the channel history both keep)
#   BENCH_REDIS_NICE [0]    nice(1) of each redis-server (negative: root only):
#                           -15 models Redis with a core of its own, as it has
#                           once the nodes and the load client do not share two
#                           cores with it (docs/performance.md)
#   BENCH_TIMEOUT [40]      cap of one run, seconds
#   BENCH_ROUNDS [1]        repetitions (alternating); the median is shown
#   BENCH_SERVERS ["wsserver wsserver-http nchan nodews socketio"]
#   BENCH_SCENARIOS ["deliver latency httppub idle chanmem redismem"]  (b2b:
#                           only the two back-to-back delivery rows of deliver;
#                           chanmem: memory per subscribed channel = idle memory
#                           with a channel per subscriber minus idle memory;
#                           redismem: Redis used_memory per retained message)
#   BENCH_PERF [1]          perf record in one extra BENCH_SUBS burst run ...
#   BENCH_PERF_SERVERS [wsserver]  ... of these servers (every process on
#                           the path): build/bench/perf-<server>.txt
#   BENCH_PROXY_CONF [conf/nginx/wspush.conf]  the site config the proxied
#                           paths render (to measure a variant of it)
#   BENCH_PROXY_EXTRA [""]  directives added to its /ws location (tuning)
#   BENCH_NCHAN_EXTRA [""]  directives added to nchan's server block
#   BENCH_FCGI_WORKERS [2], BENCH_FCGI_KEEPCONN [on]   fcgi-publisher processes,
#                           nginx fastcgi_keep_conn (upstream keepalive 16)
#   BENCH_KEEP=1            keep the runtime directory (logs, confs) in /tmp
#   BENCH_QUICK=1           a 2-minute smoke version of all of it
set -uo pipefail

BIN=$(cd "${1:?usage: run.sh BINDIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/build/bench
mkdir -p "$OUT"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  : "${BENCH_SUBS:=2000}" "${BENCH_SMALL:=200}" "${BENCH_MSGS:=50}" "${BENCH_RATE:=25}"
  : "${BENCH_LAT_SUBS:=50 200}" "${BENCH_LAT_SECS:=2}" "${BENCH_HTTP_SECS:=2}"
  : "${BENCH_TIMEOUT:=15}" "${BENCH_PERF:=0}" "${BENCH_REDIS_MSGS:=2000}"
fi
SUBS=${BENCH_SUBS:-10000}
SMALL=${BENCH_SMALL:-1000}
MSGS=${BENCH_MSGS:-200}
SMALL_MSGS=${BENCH_SMALL_MSGS:-$((MSGS * 5))}
PUBLISHERS=${BENCH_PUBLISHERS:-4}
BURST=${BENCH_BURST:-10}
RATE=${BENCH_RATE:-25}
LAT_SUBS=${BENCH_LAT_SUBS:-100 1000}
LAT_SECS=${BENCH_LAT_SECS:-8}
HTTP_CONNS=${BENCH_HTTP_CONNS:-8}
HTTP_SECS=${BENCH_HTTP_SECS:-5}
HTTP_SUBS=${BENCH_HTTP_SUBS:-0}
CHAN_SUBS=${BENCH_CHAN_SUBS:-}
REDIS_MSGS=${BENCH_REDIS_MSGS:-10000}
REDIS_NICE=${BENCH_REDIS_NICE:-0}
TIMEOUT=${BENCH_TIMEOUT:-40}
ROUNDS=${BENCH_ROUNDS:-1}
SERVERS=${BENCH_SERVERS:-wsserver wsserver-http nchan nodews socketio wsserver-tls nchan-tls wsserver-nginx wsserver-nginx-tls wsserver-sse nchan-sse wsserver-redis2 nchan-redis}
SCENARIOS=${BENCH_SCENARIOS:-deliver latency httppub idle chanmem redismem}
PERF=${BENCH_PERF:-1}
PERF_SERVERS=${BENCH_PERF_SERVERS:-wsserver}
PROXY_CONF=${BENCH_PROXY_CONF:-$ROOT/conf/nginx/wspush.conf}
LAT_MAX=$(tr ' ' '\n' <<<"$LAT_SUBS" | sort -n | tail -1)

log() { echo "bench: $*" >&2; }

# Every socket is a file descriptor: client and servers each need SUBS plus
# a few. The soft limit can go up to the hard one without privileges.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((SUBS + 200)) ]; then
  log "open-file limit $NOFILE is below BENCH_SUBS+200; lowering BENCH_SUBS"
  SUBS=$((NOFILE - 200))
fi
[ "$NOFILE" = unlimited ] && NOFILE=1048576
CHAN_SUBS=${CHAN_SUBS:-$SUBS}

# ---- build the client, fetch the Node peers --------------------------------
LC=$OUT/loadclient
cc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
   -Wformat=2 -Wvla -o "$LC" "$HERE/loadclient.c" "$HERE/lcproto.c" -lz -lssl -lcrypto || exit 1
"$LC" selftest || exit 1

if [[ " $SERVERS " == *" nodews "* || " $SERVERS " == *" socketio "* ]]; then
  if [ ! -d "$HERE/servers/node_modules/ws" ] || [ ! -d "$HERE/servers/node_modules/socket.io" ]; then
    log "installing ws and socket.io from npm"
    (cd "$HERE/servers" && npm install --no-package-lock --no-audit --no-fund --loglevel=error >&2) || {
      log "npm install failed; skipping the Node peers"
      SERVERS=$(echo " $SERVERS " | sed 's/ nodews / /; s/ socketio / /')
    }
  fi
fi
if [[ " $SERVERS " == *" nchan"* ]] && [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  log "libnginx-mod-nchan is not installed (bash tests/deps.sh bench); skipping nchan"
  SERVERS=$(echo " $SERVERS " | sed 's/ nchan / /; s/ nchan-tls / /; s/ nchan-sse / /; s/ nchan-redis / /')
fi
if [[ " $SERVERS " == *"-redis"* ]] && ! command -v redis-server >/dev/null; then
  log "redis-server is not installed (bash tests/deps.sh bench); skipping the Redis rows"
  SERVERS=$(echo " $SERVERS " | sed 's/ wsserver-redis[12] / /g; s/ nchan-redis / /')
fi
# Paths the ws-server binary may not have (built from a branch without
# them): their rows say "n/a". Its config keys and content type are in
# the binary's strings.
UNAVAILABLE=""
grep -aq tls_certificate_key "$BIN/ws-server" || UNAVAILABLE="$UNAVAILABLE wsserver-tls"
grep -aq text/event-stream "$BIN/ws-server" || UNAVAILABLE="$UNAVAILABLE wsserver-sse"
grep -aq channel_history_size "$BIN/ws-server" || UNAVAILABLE="$UNAVAILABLE wsserver-redis1 wsserver-redis2"
for u in $UNAVAILABLE; do
  [[ " $SERVERS " == *" $u "* ]] && log "$u: not available (ws-server lacks ${u#wsserver-}); its rows say n/a"
done
HTTP_OK=1
if [ ! -x "$BIN/fcgi-publisher" ]; then
  log "no $BIN/fcgi-publisher: the HTTP publish path is skipped"
  HTTP_OK=0
  SERVERS=$(echo " $SERVERS " | sed 's/ wsserver-http / /')
fi

# A proxied subscriber holds two descriptors in nginx's worker, which
# cannot go above the hard limit without CAP_SYS_RESOURCE: past it nginx
# resets the connections it cannot take, and the rows count those that came
# up (the subs= of build/bench/raw.txt).
if [[ " $SERVERS " == *" wsserver-nginx"* ]] && [ $((2 * SUBS + 400)) -gt "$NOFILE" ]; then
  log "open-file limit $NOFILE: about $(( (NOFILE - 400) / 2 )) of $SUBS subscribers fit through nginx"
fi

RT=$(mktemp -d /tmp/wspush-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  [ "${BENCH_KEEP:-0}" = 1 ] && log "runtime directory kept: $RT" || rm -rf "$RT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root root;"
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  local port=$1 pid=$2 i
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# nginx_worker MASTER: the pid of its (one) worker, once it exists.
nginx_worker() {
  local w
  for _ in $(seq 50); do
    w=$(pgrep -P "$1" | head -1)
    [ -n "$w" ] && { echo "$w"; return 0; }
    sleep 0.1
  done
  return 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_sum_kb() {  # resident kB of every process on the path
  local p t=0
  for p in "$@"; do t=$((t + $(rss_kb "$p"))); done
  echo "$t"
}

# The certificate of the TLS paths: ECDSA P-256, made once per run.
CERT=$RT/cert.pem
KEY=$RT/key.pem
make_cert() {
  [ -s "$CERT" ] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
      -keyout "$KEY" -out "$CERT" >/dev/null 2>&1 || { log "openssl could not make a certificate"; return 1; }
}

# ---- servers: start_<name> sets PORT SUBPATH PROTO PUB[] COPTS[] (client
# options: --tls) and MPIDS[] (the processes whose RSS is measured: every
# one a subscriber's connection lives in), and appends to PIDS;
# stop_server ends them.
SRV_PIDS=()
stop_server() {
  for p in "${SRV_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${SRV_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  SRV_PIDS=()
}
spawn() {  # spawn LOG CMD...: runs CMD in the background, records its pid
  local logf=$1; shift
  "$@" >>"$logf" 2>&1 &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
  SRV_PIDS+=("$SPAWNED")
}

# start_wsserver_common [TLS]: ws-server on PORT; with TLS also a TLS
# listener on TLS_PORT. NODE_DIR (default $RT/ws) is its directory,
# NODE_WS_LINES go into its [ws-server] section, NODE_EXTRA at the end.
start_wsserver_common() {
  local d=${NODE_DIR:-$RT/ws} tls_lines=""
  mkdir -p "$d"
  (umask 077; head -c 32 /dev/urandom | base64 >"$d/secret")
  PORT=$(free_port)
  if [ "${1:-}" = tls ]; then
    make_cert || return 1
    TLS_PORT=$(free_port)
    tls_lines="tls_listen = 127.0.0.1:$TLS_PORT
tls_certificate = $CERT
tls_certificate_key = $KEY"
  fi
  cat >"$d/wspush.ini" <<EOF
[wspush]
publish_socket = $d/publish.sock
secret_file = $d/secret
log_level = warn

[ws-server]
listen = 127.0.0.1:$PORT
unix_listen = $d/ws.sock
$tls_lines
max_connections = $((SUBS + 1000))
handshake_timeout = 30s
ping_interval = 600s
pong_timeout = 60s
${NODE_WS_LINES:-}

[publisher]
listen = $d/fcgi.sock
workers = ${BENCH_FCGI_WORKERS:-2}
mount = /push
auth = remote_user

[channels]
public = bench/*
publish = bench/*
${NODE_EXTRA:-}
EOF
  rm -f "$d/publish.sock" "$d/fcgi.sock" "$d/ws.sock"
  spawn "$OUT/ws-server.log" "$BIN/ws-server" -c "$d/wspush.ini"
  MPIDS+=("$SPAWNED")
  wait_port "$PORT" "$SPAWNED" || { log "ws-server did not start (build/bench/ws-server.log)"; return 1; }
  if [ -n "$tls_lines" ]; then
    wait_port "$TLS_PORT" "$SPAWNED" || { log "ws-server's TLS listener did not start"; return 1; }
    PORT=$TLS_PORT
  fi
  for _ in $(seq 50); do [ -S "$d/publish.sock" ] && break; sleep 0.1; done
  SUBPATH="/ws?channels=bench/x"
  PROTO=ws
  COPTS=()
  PUB=(--pub "ipc:$d/publish.sock" --channel bench/x)
}
start_wsserver() { start_wsserver_common; }
start_wsserver-tls() { start_wsserver_common tls && COPTS=(--tls); }
start_wsserver-sse() { start_wsserver_common && SUBPATH="/sse?channels=bench/x" && PROTO=sse; }
start_wsserver-http() {
  start_wsserver_common || return 1
  local d=$RT/ws n=$RT/nginx-pub
  mkdir -p "$n"
  spawn "$OUT/fcgi-publisher.log" "$BIN/fcgi-publisher" -c "$d/wspush.ini"
  local fp=$SPAWNED
  for _ in $(seq 50); do [ -S "$d/fcgi.sock" ] && break; sleep 0.1; done
  [ -S "$d/fcgi.sock" ] || { log "fcgi-publisher did not start (build/bench/fcgi-publisher.log)"; return 1; }
  kill -0 "$fp" 2>/dev/null || return 1
  local np
  np=$(free_port)
  sed -e "s#@USER_LINE@#$USER_LINE#" -e "s#@RUN@#$n#g" -e "s#@PORT@#$np#g" -e "s#@FCGI@#$d/fcgi.sock#g" \
      -e "s#@KEEPCONN@#${BENCH_FCGI_KEEPCONN:-on}#g" \
      "$HERE/servers/nginx-publish.conf.in" >"$n/nginx.conf"
  spawn "$OUT/nginx-publish.log" nginx -e "$n/error.log" -p "$n" -c "$n/nginx.conf"
  wait_port "$np" "$SPAWNED" || { log "nginx (publish) did not start"; cat "$n/error.log" >&2; return 1; }
  PUB=(--pub "http:127.0.0.1:$np" --pub-path /push/publish
       --pub-header "Origin: http://127.0.0.1:$np" --pub-header "X-Requested-With: bench"
       --pub-prefix '{"channel":"bench/x","data":' --pub-suffix '}')
}

# The shipped site config rendered as the integration tests render it
# (tests/integration/webservers.py): these exact strings are replaced, and
# a missing one stops the run rather than measure something else.
# render_site OUT LISTEN_LINES WS_PORT
render_site() {
  local out=$1 listen=$2 wsport=$3 n=$RT/nginx-proxy
  /usr/bin/python3 - "$PROXY_CONF" "$out" "$listen" "$wsport" "$n" "${BENCH_PROXY_EXTRA:-}" <<'PY'
import re, sys
src, out, listen, wsport, run, extra = sys.argv[1:]
text = open(src).read()
# The listen directive, not its mention in the header comment.
text, n = re.subn(r"^(\s+)listen 80;$", lambda m: m.group(1) + listen, text, flags=re.M)
if n != 1:
    sys.exit("render_site: no single `listen 80;` directive in %s" % src)
for old, new in [
                 ("/var/www/site", run + "/www"),
                 ("/etc/wspush/htpasswd", run + "/htpasswd"),
                 ("unix:/run/wspush/fcgi.sock", "unix:" + run + "/fcgi.sock"),
                 ("http://127.0.0.1:8081", "http://127.0.0.1:" + wsport),
                 ("location = /ws {", "location = /ws {\n        " + extra)]:
    if old not in text:
        sys.exit("render_site: %r is not in %s" % (old, src))
    text = text.replace(old, new)
# ws-server's unix_listen, where a config proxies to it.
text = text.replace("/run/wspush/ws.sock", run + "/../ws/ws.sock")
open(out, "w").write(text)
PY
}
# start_proxied [TLS]: ws-server behind nginx running the shipped site
# config; the subscribers connect to nginx's /ws, messages are published on
# ws-server's socket.
start_proxied() {
  start_wsserver_common || return 1
  local n=$RT/nginx-proxy wsport=$PORT listen
  mkdir -p "$n/www"
  PORT=$(free_port)
  listen="listen 127.0.0.1:$PORT;"
  if [ "${1:-}" = tls ]; then
    make_cert || return 1
    listen="listen 127.0.0.1:$PORT ssl;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;"
    COPTS=(--tls)
  fi
  render_site "$n/site.conf" "$listen" "$wsport" || return 1
  # Two descriptors per subscriber (browser side, ws-server side).
  local nofile=$((2 * SUBS + 1000))
  sed -e "s#@USER_LINE@#$USER_LINE#" -e "s#@RUN@#$n#g" -e "s#@SITE@#$n/site.conf#g" \
      -e "s#@NOFILE@#$nofile#g" "$HERE/servers/nginx-proxy.conf.in" >"$n/nginx.conf"
  spawn "$OUT/nginx-proxy.log" nginx -e "$n/error.log" -p "$n" -c "$n/nginx.conf"
  local master=$SPAWNED
  wait_port "$PORT" "$master" || { log "nginx (proxy) did not start"; cat "$n/error.log" >&2; return 1; }
  MPIDS+=("$(nginx_worker "$master")") || return 1
  SUBPATH="/ws?channels=bench/x"
}
start_wsserver-nginx() { start_proxied; }
start_wsserver-nginx-tls() { start_proxied tls; }

# start_redis [tcp]: a redis-server of its own for one server's runs, on
# REDIS_SOCK (and 127.0.0.1:REDIS_PORT with tcp), nothing persisted; its
# pid goes to XPIDS (its CPU is counted; its memory is the redismem row's).
start_redis() {
  local d=$RT/redis
  mkdir -p "$d"
  rm -f "$d/redis.sock"
  REDIS_SOCK=$d/redis.sock
  REDIS_PORT=0
  [ "${1:-}" = tcp ] && REDIS_PORT=$(free_port)
  spawn "$OUT/redis.log" nice -n "$REDIS_NICE" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
      --unixsocket "$REDIS_SOCK" --unixsocketperm 700 --dir "$d" --save '' --appendonly no \
      --daemonize no --protected-mode no
  XPIDS+=("$SPAWNED")
  for _ in $(seq 100); do
    redis-cli -s "$REDIS_SOCK" ping 2>/dev/null | grep -q PONG && return 0
    kill -0 "$SPAWNED" 2>/dev/null || break
    sleep 0.1
  done
  log "redis-server did not start (build/bench/redis.log)"
  return 1
}
redis_used_memory() {
  redis-cli -s "$REDIS_SOCK" info memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)$/\1/p'
}
# Two ws-server nodes on one Redis: subscribers alternate between PORT and
# PORT2 (--port2), messages go to node 1's publish socket.
start_wsserver-redis2() {
  start_redis || return 1
  local ws_lines="engine = redis" extra="[redis]
address = $REDIS_SOCK" pub port1
  NODE_DIR=$RT/ws NODE_WS_LINES=$ws_lines NODE_EXTRA=$extra start_wsserver_common || return 1
  pub=("${PUB[@]}")
  port1=$PORT
  NODE_DIR=$RT/ws2 NODE_WS_LINES=$ws_lines NODE_EXTRA=$extra start_wsserver_common || return 1
  COPTS=(--port2 "$PORT")
  PORT=$port1
  PUB=("${pub[@]}")
}
start_wsserver-redis1() {
  start_redis || return 1
  NODE_DIR=$RT/ws NODE_WS_LINES="engine = redis" NODE_EXTRA="[redis]
address = $REDIS_SOCK" start_wsserver_common
}
start_nchan-redis() {
  start_redis tcp || return 1
  NCHAN_REDIS="nchan_redis_url redis://127.0.0.1:$REDIS_PORT; nchan_use_redis on;" start_nchan_common
}

# start_nchan_common [TLS]: nchan on PORT (and a TLS listener on TLS_PORT);
# it is always published on the plain PORT.
start_nchan_common() {
  local n=$RT/nchan tls=""
  mkdir -p "$n"
  PORT=$(free_port)
  if [ "${1:-}" = tls ]; then
    make_cert || return 1
    TLS_PORT=$(free_port)
    tls="listen 127.0.0.1:$TLS_PORT ssl backlog=4096; ssl_certificate $CERT; ssl_certificate_key $KEY;"
  fi
  sed -e "s#@USER_LINE@#$USER_LINE#" -e "s#@RUN@#$n#g" -e "s#@PORT@#$PORT#g" -e "s#@NOFILE@#$NOFILE#g" \
      -e "s#@TLS@#$tls#" -e "s#@EXTRA@#${BENCH_NCHAN_EXTRA:-}#" -e "s#@REDIS@#${NCHAN_REDIS:-}#" \
      "$HERE/servers/nginx-nchan.conf.in" >"$n/nginx.conf"
  spawn "$OUT/nginx-nchan.log" nginx -e "$n/error.log" -p "$n" -c "$n/nginx.conf"
  local master=$SPAWNED
  wait_port "$PORT" "$master" || { log "nginx (nchan) did not start"; cat "$n/error.log" >&2; return 1; }
  MPIDS=("$(nginx_worker "$master")") || return 1
  SUBPATH="/sub?id=x"
  PROTO=ws
  COPTS=()
  PUB=(--pub "http:127.0.0.1:$PORT" --pub-path "/pub?id=x")
  if [ -n "$tls" ]; then
    wait_port "$TLS_PORT" "$master" || return 1
    PORT=$TLS_PORT
    COPTS=(--tls)
  fi
}
start_nchan() { start_nchan_common; }
start_nchan-tls() { start_nchan_common tls; }
start_nchan-sse() { start_nchan_common && SUBPATH="/sse?id=x" && PROTO=sse; }
start_node() {
  PORT=$(free_port)
  spawn "$OUT/$1.log" node "$HERE/servers/$1-server.js" "$PORT"
  MPIDS=("$SPAWNED")
  COPTS=()
  wait_port "$PORT" "$SPAWNED" || { log "$1 did not start (build/bench/$1.log)"; return 1; }
  PUB=(--pub "http:127.0.0.1:$PORT" --pub-path /publish)
}
start_nodews() { start_node node-ws && SUBPATH=/ && PROTO=ws; }
start_socketio() { start_node socketio && SUBPATH="/socket.io/?EIO=4&transport=websocket" && PROTO=socketio; }

# ---- results ---------------------------------------------------------------
declare -A RES    # "row|server" -> values of the rounds, space separated
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
record() { RES["$1|$2"]="${RES["$1|$2"]:-} $3"; }
num() { [[ $1 =~ ^[0-9.]+$ ]]; }

# run_client ROW SERVER KEY ARGS...: one loadclient run against the started
# server; records field KEY of its RESULT line.
run_client() {
  local row=$1 srv=$2 key=$3; shift 3
  local out
  out=$(timeout $((TIMEOUT + 60)) "$LC" "$@" --timeout "$TIMEOUT" --host 127.0.0.1 --port "$PORT" \
        --path "$SUBPATH" --proto "$PROTO" "${COPTS[@]}" "${PUB[@]}" 2>>"$OUT/loadclient.log" | grep '^RESULT')
  echo "[$row] $srv: $out" >>"$OUT/raw.txt"
  if [ -z "$out" ]; then
    log "  $srv: no result (see build/bench/loadclient.log)"
    record "$row" "$srv" "-"
    return
  fi
  local v
  v=$(field "$key" "$out")
  log "  $srv: $key=$v  ($(field delivered "$out")/$(field expected "$out") delivered," \
      "subs=$(field subs "$out") closed=$(field subs_closed "$out") pub_err=$(field pub_err "$out"))"
  record "$row" "$srv" "$v"
  # The server side's CPU per 1,000 deliveries of the big back-to-back run.
  if [ "$row" = d-big-b2b ]; then
    local cpu dl
    cpu=$(field server_cpu_ms "$out"); dl=$(field delivered "$out")
    if num "$cpu" && num "$dl" && [ "$dl" -gt 0 ]; then
      record cpu "$srv" "$(awk -v c="$cpu" -v d="$dl" 'BEGIN { printf "%.2f", c * 1000 / d }')"
    else
      record cpu "$srv" "-"
    fi
  fi
}

# idle_rss ROW SERVER N [PATH --sub-spread]: resident memory of every
# process on the path before and while N subscribers sit idle, per
# connection; with --sub-spread subscriber i asks for PATH<i> (a channel of
# its own).
idle_rss() {
  local row=$1 srv=$2 n=$3 path=${4:-$SUBPATH}
  shift 3; shift $(( $# > 0 ? 1 : 0 ))
  sleep 0.5
  local before after idle=$RT/idle.$row.$srv.out
  before=$(rss_sum_kb "${MPIDS[@]}")
  timeout $((TIMEOUT + 120)) "$LC" idle --subs "$n" --hold $((TIMEOUT + 60)) --timeout $((TIMEOUT + 60)) \
      --host 127.0.0.1 --port "$PORT" --path "$path" --proto "$PROTO" "${COPTS[@]}" "$@" \
      >"$idle" 2>>"$OUT/loadclient.log" &
  local lc=$! ready=0 i
  for ((i = 0; i < (TIMEOUT + 60) * 5; i++)); do
    grep -q '^READY' "$idle" 2>/dev/null && break
    kill -0 "$lc" 2>/dev/null || break
    sleep 0.2
  done
  ready=$(sed -n 's/^READY subs=\([0-9]*\).*/\1/p' "$idle" 2>/dev/null)
  sleep 2
  after=$(rss_sum_kb "${MPIDS[@]}")
  kill "$lc" 2>/dev/null; wait "$lc" 2>/dev/null
  if [ "${ready:-0}" -gt 0 ]; then
    local per=$(( (after - before) * 1024 / ready ))
    log "  $srv: RSS $before kB -> $after kB with $ready idle connections: $per B/conn" \
        "(pids ${MPIDS[*]})"
    echo "[$row] $srv: before_kb=$before after_kb=$after conns=$ready per_conn_bytes=$per" \
         "pids=${MPIDS[*]// /,}" >>"$OUT/raw.txt"
    record "$row" "$srv" "$per"
  else
    log "  $srv: idle connections did not come up: [$(head -c 300 "$idle")] $(tail -2 "$OUT/loadclient.log" | tr '\n' ' ')"
    record "$row" "$srv" "-"
  fi
}

# redis_mem ROW SERVER: Redis's used_memory before and after publishing
# REDIS_MSGS messages, 100 into each of REDIS_MSGS/100 channels (both
# engines keep the last 100 per channel), per message.
redis_mem() {
  local row=$1 srv=$2 before after out spread=$(( (REDIS_MSGS + 99) / 100 ))
  local target=(--channel bench/r)
  [[ " ${PUB[*]} " == *" ipc:"* ]] || target=(--pub-path "/pub?id=r")
  before=$(redis_used_memory)
  out=$(timeout $((TIMEOUT + 60)) "$LC" deliver --subs 0 --msgs "$REDIS_MSGS" --publishers 4 \
        --timeout "$TIMEOUT" "${PUB[@]}" "${target[@]}" --pub-spread "$spread" \
        2>>"$OUT/loadclient.log" | grep '^RESULT')
  sleep 0.5
  after=$(redis_used_memory)
  local ok
  ok=$(field pub_ok "$out")
  echo "[$row] $srv: before=$before after=$after msgs=${ok:-0} channels=$spread $out" >>"$OUT/raw.txt"
  if num "${ok:-}" && [ "$ok" -gt 0 ] && num "$before" && num "$after"; then
    local per=$(( (after - before) / ok ))
    log "  $srv: Redis used_memory $before -> $after B after $ok messages in $spread channels: $per B/msg"
    record "$row" "$srv" "$per"
  else
    log "  $srv: no Redis memory figure (published ${ok:-0}; see build/bench/raw.txt)"
    record "$row" "$srv" "-"
  fi
}

# latency_run ROW SERVER N: one run gives p50 and p99; records both.
latency_run() {
  local row=$1 srv=$2 n=$3 out p50 p99
  out=$(timeout $((TIMEOUT + 60)) "$LC" latency --subs "$n" --rate "$RATE" \
        --duration "$LAT_SECS" --window 16 --timeout "$TIMEOUT" --host 127.0.0.1 \
        --port "$PORT" --path "$SUBPATH" --proto "$PROTO" "${COPTS[@]}" "${PUB[@]}" \
        2>>"$OUT/loadclient.log" | grep '^RESULT')
  echo "[$row] $srv: $out" >>"$OUT/raw.txt"
  p50=$(field p50_ms "$out"); p99=$(field p99_ms "$out")
  log "  $srv: p50=${p50:-?} ms p99=${p99:-?} ms ($(field delivered "$out")/$(field expected "$out") delivered, late=$(field late "$out"))"
  record "lat-$n-p50" "$srv" "${p50:--}"
  record "$row" "$srv" "${p99:--}"
}

# scenario_run ROW SERVER: the measurement behind one table row.
scenario_run() {
  local row=$1 srv=$2
  case $row in
    d-small-b2b) run_client "$row" "$srv" rate deliver --subs "$SMALL" --msgs "$SMALL_MSGS" ;;
    d-big-b2b)   run_client "$row" "$srv" rate deliver --subs "$SUBS" --msgs "$MSGS" \
                     --cpu-pids "$(IFS=,; echo "${MPIDS[*]} ${XPIDS[*]}" | tr ' ' ,)" ;;
    d-small-burst) run_client "$row" "$srv" rate deliver --subs "$SMALL" --msgs "$SMALL_MSGS" \
                     --publishers "$PUBLISHERS" --burst "$BURST" --burst-gap-ms 100 ;;
    d-big-burst) run_client "$row" "$srv" rate deliver --subs "$SUBS" --msgs "$MSGS" \
                     --publishers "$PUBLISHERS" --burst "$BURST" --burst-gap-ms 100 ;;
    lat-*-p99)   n=${row#lat-}; latency_run "$row" "$srv" "${n%-p99}" ;;
    httppub)     run_client "$row" "$srv" rate httppub --subs "$HTTP_SUBS" \
                     --publishers "$HTTP_CONNS" --duration "$HTTP_SECS" ;;
    idle)        idle_rss "$row" "$srv" "$SUBS" ;;
    idle-spread) idle_rss "$row" "$srv" "$CHAN_SUBS" "${SUBPATH%x}c" --sub-spread ;;
    redismem)    redis_mem "$row" "$srv" ;;
  esac
}

# Rows per scenario and which servers run them: the socket publisher is not
# an HTTP path, idle memory does not depend on the publisher, and the
# deployed paths measure delivery back to back, latency at the largest
# count and memory.
ROWS=()
for s in $SCENARIOS; do
  case $s in
    deliver) ROWS+=(d-small-b2b d-big-b2b d-small-burst d-big-burst) ;;
    b2b)     ROWS+=(d-small-b2b d-big-b2b) ;;
    latency) for n in $LAT_SUBS; do ROWS+=("lat-$n-p99"); done ;;
    httppub) ROWS+=(httppub) ;;
    idle)    ROWS+=(idle) ;;
    chanmem) [[ " $SCENARIOS " == *" idle "* ]] || ROWS+=(idle)
             ROWS+=(idle-spread) ;;
    redismem) ROWS+=(redismem) ;;
  esac
done
deployed() { case $1 in *-tls|*-nginx|*-sse) return 0 ;; esac; return 1; }
applies() {
  case "$1|$2" in
    idle\|wsserver-http) return 1 ;;
    idle-spread\|wsserver|idle-spread\|nchan|idle-spread\|*-redis*) return 0 ;;
    idle-spread\|*) return 1 ;;
    redismem\|*-redis*) return 0 ;;
    redismem\|*) return 1 ;;
  esac
  if deployed "$2"; then
    case $1 in
      d-small-b2b|d-big-b2b|idle|"lat-$LAT_MAX-p99") return 0 ;;
      *) return 1 ;;
    esac
  fi
  return 0
}

: >"$OUT/raw.txt"
: >"$OUT/loadclient.log"
T0=$SECONDS
log "servers: $SERVERS; subscribers $SMALL/$SUBS, $SMALL_MSGS/$MSGS msgs, latency at $RATE/s"
for row in "${ROWS[@]}"; do
  for ((r = 1; r <= ROUNDS; r++)); do
    log "$row (round $r/$ROUNDS)"
    for srv in $SERVERS; do
      applies "$row" "$srv" || continue
      if [[ " $UNAVAILABLE " == *" $srv "* ]]; then
        record "$row" "$srv" n/a
        [[ $row == lat-*-p99 ]] && record "${row%-p99}-p50" "$srv" n/a
        continue
      fi
      MPIDS=() XPIDS=()
      if "start_$srv"; then
        scenario_run "$row" "$srv"
      else
        record "$row" "$srv" "-"
        [[ $row == lat-*-p99 ]] && record "${row%-p99}-p50" "$srv" "-"
      fi
      stop_server
    done
  done
done

# ---- perf: where the servers spend a big delivery run ----------------------
if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
  for srv in $PERF_SERVERS; do
    [[ " $SERVERS " == *" $srv "* && " $UNAVAILABLE " != *" $srv "* ]] || continue
    log "perf: recording $srv during a $SUBS-subscriber burst delivery run"
    MPIDS=() XPIDS=()
    start_"$srv" || { stop_server; continue; }
    name=$srv; [ "$srv" = wsserver ] && name=ws-server
    pids=$(IFS=,; echo "${MPIDS[*]}")
    ( sleep 3; perf record -F 999 -g -p "$pids" -o "$OUT/perf-$name.data" -- sleep 8 ) \
        >"$OUT/perf-record.log" 2>&1 &
    perfpid=$!
    "$LC" deliver --subs "$SUBS" --msgs $((MSGS * 3)) --publishers "$PUBLISHERS" --burst "$BURST" \
        --burst-gap-ms 100 --timeout "$TIMEOUT" --host 127.0.0.1 --port "$PORT" --path "$SUBPATH" \
        --proto "$PROTO" "${COPTS[@]}" "${PUB[@]}" 2>>"$OUT/loadclient.log" >>"$OUT/raw.txt"
    wait "$perfpid"
    perf report -i "$OUT/perf-$name.data" --no-children --sort comm,dso,sym --stdio -g none \
        2>/dev/null | grep -E '^ +[0-9]' | head -40 >"$OUT/perf-$name.txt"
    stop_server
    log "perf: top of build/bench/perf-$name.txt:"
    head -12 "$OUT/perf-$name.txt" >&2
  done
fi

# ---- the table ---------------------------------------------------------------
median() {
  local vals
  vals=$(tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' | sort -g)
  if [ -z "$vals" ]; then
    [[ $1 == *n/a* ]] && echo n/a || echo "-"
    return
  fi
  local n
  n=$(wc -l <<<"$vals")
  sed -n "$(( (n + 1) / 2 ))p" <<<"$vals"
}
val() {
  # chanmem: what a subscribed channel adds to an idle connection.
  if [ "$1" = chanmem ]; then
    local a b
    a=$(val idle-spread "$2"); b=$(val idle "$2")
    num "$a" && num "$b" || { echo "${a:--}"; return; }
    echo $((a - b))
    return
  fi
  median "${RES["$1|$2"]:-}"
}
ratio() {  # ratio A B [lower]: A/B, or B/A when lower is better
  local a=$1 b=$2
  num "$a" && num "$b" || { echo "-"; return; }
  awk -v a="$a" -v b="$b" -v low="${3:-0}" \
      'BEGIN { if (low) { if (a <= 0) { print "-"; exit } printf "%.2f", b / a }
               else { if (b <= 0) { print "-"; exit } printf "%.2f", a / b } }'
}
fmt() {
  num "$1" || { echo "${1:--}"; return; }
  awk -v v="$1" 'BEGIN { if (v >= 1000) printf "%\047d", v; else print v }'
}
label() {
  case $1 in
    d-small-b2b)   echo "deliveries/s, $SMALL subs, back to back" ;;
    d-big-b2b)     echo "deliveries/s, $SUBS subs, back to back" ;;
    d-small-burst) echo "deliveries/s, $SMALL subs, bursts of $BURST from $PUBLISHERS publishers" ;;
    d-big-burst)   echo "deliveries/s, $SUBS subs, bursts of $BURST from $PUBLISHERS publishers" ;;
    lat-*-p50)     n=${1#lat-}; echo "latency p50 ms, ${n%-p50} subs, $RATE msg/s" ;;
    lat-*-p99)     n=${1#lat-}; echo "latency p99 ms, ${n%-p99} subs, $RATE msg/s" ;;
    httppub)       echo "publish req/s, $HTTP_CONNS keep-alive conns" ;;
    idle)          echo "RSS bytes / idle conn ($SUBS), every process on the path" ;;
    chanmem)       echo "RSS bytes / subscribed channel ($CHAN_SUBS channels, a subscriber each), every process on the path but Redis" ;;
    redismem)      echo "Redis used_memory bytes / retained message ($REDIS_MSGS msgs, 100 per channel)" ;;
    cpu)           echo "server CPU ms / 1000 deliveries, $SUBS subs back to back, every process on the path" ;;
  esac
}
lower_better() { [[ $1 == lat-* || $1 == idle || $1 == cpu || $1 == *mem ]] && echo 1 || echo 0; }
column() {
  case $1 in
    wsserver) echo "ws-server" ;;
    wsserver-http) echo "ws-server http" ;;
    nodews) echo "node ws" ;;
    socketio) echo "socket.io" ;;
    wsserver-tls) echo "ws-server wss" ;;
    wsserver-nginx) echo "ws-server via nginx" ;;
    wsserver-nginx-tls) echo "ws-server wss via nginx" ;;
    nchan-tls) echo "nchan wss" ;;
    wsserver-sse) echo "ws-server SSE" ;;
    nchan-sse) echo "nchan SSE" ;;
    wsserver-redis2) echo "2 ws-server nodes, Redis" ;;
    wsserver-redis1) echo "1 ws-server node, Redis" ;;
    nchan-redis) echo "nchan Redis" ;;
    *) echo "$1" ;;
  esac
}
# Ratio columns: ours:theirs:heading, shown when both ran.
PAIRS=(wsserver:nchan:ws/nchan wsserver:nodews:"ws/node ws" wsserver:socketio:ws/socket.io
       wsserver-tls:nchan-tls:"wss/nchan wss" wsserver-nginx-tls:nchan-tls:"wss via nginx/nchan wss"
       wsserver-nginx:nchan:"via nginx/nchan" wsserver-sse:nchan-sse:"SSE/nchan SSE"
       wsserver-redis2:wsserver:"2 nodes Redis/1 node memory"
       wsserver-redis1:wsserver:"1 node Redis/1 node memory"
       wsserver-redis2:nchan-redis:"2 nodes Redis/nchan Redis")
SHOWN_PAIRS=()
for p in "${PAIRS[@]}"; do
  IFS=: read -r a b _ <<<"$p"
  [[ " $SERVERS " == *" $a "* && " $SERVERS " == *" $b "* ]] && SHOWN_PAIRS+=("$p")
done

TABLE_ROWS=()
for row in "${ROWS[@]}"; do
  [[ $row == lat-*-p99 ]] && { n=${row#lat-}; TABLE_ROWS+=("lat-${n%-p99}-p50"); }
  if [ "$row" = idle-spread ]; then TABLE_ROWS+=(chanmem); else TABLE_ROWS+=("$row"); fi
  [ "$row" = d-big-b2b ] && TABLE_ROWS+=(cpu)
done

# target TEXT VALUE OP LIMIT: one line of the targets block.
target() {
  local text=$1 v=$2 op=$3 lim=$4 verdict
  if ! num "$v"; then verdict="not measured"
  elif awk -v v="$v" -v l="$lim" -v op="$op" 'BEGIN { exit !((op == ">=") ? v >= l : v <= l) }'; then
    verdict="met"
  else verdict="**MISSED**"; fi
  echo "- $text: $v (target $op $lim) — $verdict"
}

{
  echo "## wspush fan-out benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r))"
  echo
  head="| scenario |"; rule="|---|"
  for srv in $SERVERS; do head="$head $(column "$srv") |"; rule="$rule---:|"; done
  for p in "${SHOWN_PAIRS[@]}"; do head="$head ${p#*:*:} |"; rule="$rule---:|"; done
  echo "$head"
  echo "$rule"
  for row in "${TABLE_ROWS[@]}"; do
    line="| $(label "$row") |"
    for srv in $SERVERS; do line="$line $(fmt "$(val "$row" "$srv")") |"; done
    low=$(lower_better "$row")
    for p in "${SHOWN_PAIRS[@]}"; do
      IFS=: read -r a b _ <<<"$p"
      # Publish throughput is an HTTP figure: compare ws-server's HTTP path.
      [ "$row" = httppub ] && [ "$a" = wsserver ] && a=wsserver-http
      # ... which the Redis nodes are not measured on (their socket rate
      # against nchan's HTTP one would compare two different paths).
      if [ "$row" = httppub ] && [ "$b" = nchan-redis ]; then line="$line - |"; continue; fi
      line="$line $(ratio "$(val "$row" "$a")" "$(val "$row" "$b")" "$low") |"
    done
    echo "$line"
  done
  echo
  echo "Ratios are ws-server's advantage (>1 = ws-server better; for latency and memory"
  echo "the inverse ratio is shown). ws-server = published on its Unix socket; \"http\" ="
  echo "published through nginx + fcgi-publisher (the publish req/s ratio uses it);"
  echo "nchan, node ws and socket.io are published over HTTP. The deployed paths"
  echo "(wss, via nginx, SSE) are published like their plain peer. n/a: the ws-server"
  echo "binary lacks that path. 2 ws-server nodes = engine = redis, subscribers split"
  echo "half/half, published on node 1's socket (its publish req/s row: through the Redis"
  echo "engine); nchan Redis = nchan_redis_url; their CPU row includes redis-server."
  echo "Rounds: $ROUNDS (median)."
  [ "$REDIS_NICE" != 0 ] && echo "redis-server ran at nice $REDIS_NICE (BENCH_REDIS_NICE)."
  [ "$HTTP_OK" = 0 ] && echo "HTTP publish path SKIPPED: fcgi-publisher not built."
  L=$LAT_MAX
  # The targets of issue 13 that this run measured.
  if [ ${#SHOWN_PAIRS[@]} -gt 0 ]; then
    echo
    echo "Targets:"
    for p in "${SHOWN_PAIRS[@]}"; do
      IFS=: read -r a b _ <<<"$p"
      case $a in
        wsserver)
          target "direct ws:// deliveries/s, $SUBS subs, over nchan's" \
                 "$(ratio "$(val d-big-b2b wsserver)" "$(val d-big-b2b nchan)")" ">=" 10
          break ;;
      esac
    done
    for p in "${SHOWN_PAIRS[@]}"; do
      IFS=: read -r a b _ <<<"$p"
      case $a in
        wsserver-tls)
          target "wss:// direct deliveries/s, $SMALL subs, over nchan wss" \
                 "$(ratio "$(val d-small-b2b "$a")" "$(val d-small-b2b "$b")")" ">=" 3
          target "wss:// direct deliveries/s, $SUBS subs, over nchan wss" \
                 "$(ratio "$(val d-big-b2b "$a")" "$(val d-big-b2b "$b")")" ">=" 3
          target "wss:// direct bytes/idle conn, share of nchan wss's" \
                 "$(ratio "$(val idle "$a")" "$(val idle "$b")")" "<=" 0.5 ;;
        wsserver-redis2)
          for row in "${ROWS[@]}"; do
            [[ $row == d-* ]] || continue
            if [ "$b" = wsserver ]; then
              target "2 Redis nodes $(label "$row"), share of 1 memory node's" \
                     "$(ratio "$(val "$row" "$a")" "$(val "$row" "$b")")" ">=" 0.8
            else
              target "2 Redis nodes $(label "$row"), over nchan Redis" \
                     "$(ratio "$(val "$row" "$a")" "$(val "$row" "$b")")" ">=" 3
            fi
          done ;;
        wsserver-nginx|wsserver-nginx-tls)
          target "$(column "$a") bytes/idle conn, share of $(column "$b")'s" \
                 "$(ratio "$(val idle "$a")" "$(val idle "$b")")" "<=" 1
          target "$(column "$a") p50 at $L subs, share of $(column "$b")'s" \
                 "$(ratio "$(val "lat-$L-p50" "$a")" "$(val "lat-$L-p50" "$b")")" "<=" 1.2 ;;
      esac
    done
  fi
  if [[ " $SERVERS " == *" wsserver-redis2 "* && " $UNAVAILABLE " != *" wsserver-redis2 "* ]]; then
    [[ " $SCENARIOS " == *" httppub "* ]] && \
      target "publishes/s through the Redis engine (node 1's socket, $HTTP_CONNS conns)" \
             "$(val httppub wsserver-redis2)" ">=" 10000
    [[ " $SCENARIOS " == *" redismem "* ]] && \
      echo "- Redis memory per retained message: $(fmt "$(val redismem wsserver-redis2)") B (nchan Redis: $(fmt "$(val redismem nchan-redis)") B) — reported"
    [[ " $SCENARIOS " == *" chanmem "* ]] && \
      echo "- node memory per subscribed channel, 2 Redis nodes: $(fmt "$(val chanmem wsserver-redis2)") B (1 memory node: $(fmt "$(val chanmem wsserver)") B, nchan Redis: $(fmt "$(val chanmem nchan-redis)") B) — reported"
  fi
  echo
  echo "Raw client output: build/bench/raw.txt. Total time $((SECONDS - T0)) s."
} | tee "$OUT/results.md"
