#!/usr/bin/env bash
# `make bench`: the fan-out benchmark. Runs one C load client
# (tests/bench/loadclient.c) against ws-server and its peers, one server at
# a time, alternating per scenario, and prints one markdown table (also
# written to build/bench/results.md).
#
#   usage: tests/bench/run.sh BINDIR      (BINDIR holds ws-server, fcgi-publisher)
#
# Peers: ws-server published through its socket ("ws-server") and through
# nginx + fcgi-publisher ("ws-server http"), nchan (Debian's
# libnginx-mod-nchan, one worker), a Node `ws` broadcast server and
# socket.io (npm, installed into tests/bench/servers/node_modules here).
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
#   BENCH_TIMEOUT [40]      cap of one run, seconds
#   BENCH_ROUNDS [1]        repetitions (alternating); the median is shown
#   BENCH_SERVERS ["wsserver wsserver-http nchan nodews socketio"]
#   BENCH_SCENARIOS ["deliver latency httppub idle"]
#   BENCH_PERF [1]          perf record ws-server in one extra 10k run
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
  : "${BENCH_TIMEOUT:=15}" "${BENCH_PERF:=0}"
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
TIMEOUT=${BENCH_TIMEOUT:-40}
ROUNDS=${BENCH_ROUNDS:-1}
SERVERS=${BENCH_SERVERS:-wsserver wsserver-http nchan nodews socketio}
SCENARIOS=${BENCH_SCENARIOS:-deliver latency httppub idle}
PERF=${BENCH_PERF:-1}

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

# ---- build the client, fetch the Node peers --------------------------------
LC=$OUT/loadclient
cc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
   -Wformat=2 -Wvla -o "$LC" "$HERE/loadclient.c" "$HERE/lcproto.c" -lz || exit 1
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
if [[ " $SERVERS " == *" nchan "* ]] && [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  log "libnginx-mod-nchan is not installed (bash tests/deps.sh bench); skipping nchan"
  SERVERS=$(echo " $SERVERS " | sed 's/ nchan / /')
fi
HTTP_OK=1
if [ ! -x "$BIN/fcgi-publisher" ]; then
  log "no $BIN/fcgi-publisher: the HTTP publish path is skipped"
  HTTP_OK=0
  SERVERS=$(echo " $SERVERS " | sed 's/ wsserver-http / /')
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
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---- servers: start_<name> sets PORT SUBPATH PROTO PUB[] MPID (the process
# whose RSS is measured) and appends to PIDS; stop_server ends them.
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

start_wsserver_common() {
  local d=$RT/ws
  mkdir -p "$d"
  head -c 32 /dev/urandom | base64 >"$d/secret"
  PORT=$(free_port)
  cat >"$d/wspush.ini" <<EOF
[wspush]
publish_socket = $d/publish.sock
secret_file = $d/secret
log_level = warn

[ws-server]
listen = 127.0.0.1:$PORT
max_connections = $((SUBS + 1000))
handshake_timeout = 30s
ping_interval = 600s
pong_timeout = 60s

[publisher]
listen = $d/fcgi.sock
workers = ${BENCH_FCGI_WORKERS:-2}
mount = /push
auth = remote_user

[channels]
public = bench/*
publish = bench/*
EOF
  rm -f "$d/publish.sock" "$d/fcgi.sock"
  spawn "$OUT/ws-server.log" "$BIN/ws-server" -c "$d/wspush.ini"
  MPID=$SPAWNED
  wait_port "$PORT" "$MPID" || { log "ws-server did not start (build/bench/ws-server.log)"; return 1; }
  for _ in $(seq 50); do [ -S "$d/publish.sock" ] && break; sleep 0.1; done
  SUBPATH="/ws?channels=bench/x"
  PROTO=ws
  PUB=(--pub "ipc:$d/publish.sock" --channel bench/x)
}
start_wsserver() { start_wsserver_common; }
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
start_nchan() {
  local n=$RT/nchan
  mkdir -p "$n"
  PORT=$(free_port)
  sed -e "s#@USER_LINE@#$USER_LINE#" -e "s#@RUN@#$n#g" -e "s#@PORT@#$PORT#g" -e "s#@NOFILE@#$NOFILE#g" \
      "$HERE/servers/nginx-nchan.conf.in" >"$n/nginx.conf"
  spawn "$OUT/nginx-nchan.log" nginx -e "$n/error.log" -p "$n" -c "$n/nginx.conf"
  local master=$SPAWNED
  wait_port "$PORT" "$master" || { log "nginx (nchan) did not start"; cat "$n/error.log" >&2; return 1; }
  MPID=$(pgrep -P "$master" | head -1)
  SUBPATH="/sub?id=x"
  PROTO=ws
  PUB=(--pub "http:127.0.0.1:$PORT" --pub-path "/pub?id=x")
}
start_node() {
  PORT=$(free_port)
  spawn "$OUT/$1.log" node "$HERE/servers/$1-server.js" "$PORT"
  MPID=$SPAWNED
  wait_port "$PORT" "$MPID" || { log "$1 did not start (build/bench/$1.log)"; return 1; }
  PUB=(--pub "http:127.0.0.1:$PORT" --pub-path /publish)
}
start_nodews() { start_node node-ws && SUBPATH=/ && PROTO=ws; }
start_socketio() { start_node socketio && SUBPATH="/socket.io/?EIO=4&transport=websocket" && PROTO=socketio; }

# ---- results ---------------------------------------------------------------
declare -A RES    # "row|server" -> values of the rounds, space separated
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
record() { RES["$1|$2"]="${RES["$1|$2"]:-} $3"; }

# run_client ROW SERVER KEY ARGS...: one loadclient run against the started
# server; records field KEY of its RESULT line.
run_client() {
  local row=$1 srv=$2 key=$3; shift 3
  local out
  out=$(timeout $((TIMEOUT + 60)) "$LC" "$@" --timeout "$TIMEOUT" --host 127.0.0.1 --port "$PORT" \
        --path "$SUBPATH" --proto "$PROTO" "${PUB[@]}" 2>>"$OUT/loadclient.log" | grep '^RESULT')
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
}

idle_rss() {  # idle_rss ROW SERVER N
  local row=$1 srv=$2 n=$3
  sleep 0.5
  local before after idle=$RT/idle.out
  before=$(rss_kb "$MPID")
  timeout $((TIMEOUT + 120)) "$LC" idle --subs "$n" --hold $((TIMEOUT + 60)) --timeout $((TIMEOUT + 60)) \
      --host 127.0.0.1 --port "$PORT" --path "$SUBPATH" --proto "$PROTO" >"$idle" 2>>"$OUT/loadclient.log" &
  local lc=$! ready=0 i
  for ((i = 0; i < (TIMEOUT + 60) * 5; i++)); do
    grep -q '^READY' "$idle" 2>/dev/null && break
    kill -0 "$lc" 2>/dev/null || break
    sleep 0.2
  done
  ready=$(sed -n 's/^READY subs=\([0-9]*\).*/\1/p' "$idle" 2>/dev/null)
  sleep 2
  after=$(rss_kb "$MPID")
  kill "$lc" 2>/dev/null; wait "$lc" 2>/dev/null
  if [ "${ready:-0}" -gt 0 ]; then
    local per=$(( (after - before) * 1024 / ready ))
    log "  $srv: RSS $before kB -> $after kB with $ready idle connections: $per B/conn"
    echo "[$row] $srv: before_kb=$before after_kb=$after conns=$ready per_conn_bytes=$per" >>"$OUT/raw.txt"
    record "$row" "$srv" "$per"
  else
    log "  $srv: idle connections did not come up"
    record "$row" "$srv" "-"
  fi
}

# scenario_run ROW SERVER: the measurement behind one table row.
scenario_run() {
  local row=$1 srv=$2
  case $row in
    d-small-b2b) run_client "$row" "$srv" rate deliver --subs "$SMALL" --msgs "$SMALL_MSGS" ;;
    d-big-b2b)   run_client "$row" "$srv" rate deliver --subs "$SUBS" --msgs "$MSGS" ;;
    d-small-burst) run_client "$row" "$srv" rate deliver --subs "$SMALL" --msgs "$SMALL_MSGS" \
                     --publishers "$PUBLISHERS" --burst "$BURST" --burst-gap-ms 100 ;;
    d-big-burst) run_client "$row" "$srv" rate deliver --subs "$SUBS" --msgs "$MSGS" \
                     --publishers "$PUBLISHERS" --burst "$BURST" --burst-gap-ms 100 ;;
    httppub)     run_client "$row" "$srv" rate httppub --subs "$HTTP_SUBS" \
                     --publishers "$HTTP_CONNS" --duration "$HTTP_SECS" ;;
    idle)        idle_rss "$row" "$srv" "$SUBS" ;;
  esac
}

# Rows per scenario and which servers run them: the socket publisher is not
# an HTTP path, and idle memory does not depend on the publisher.
ROWS=()
for s in $SCENARIOS; do
  case $s in
    deliver) ROWS+=(d-small-b2b d-big-b2b d-small-burst d-big-burst) ;;
    latency) for n in $LAT_SUBS; do ROWS+=("lat-$n-p99"); done ;;
    httppub) ROWS+=(httppub) ;;
    idle)    ROWS+=(idle) ;;
  esac
done
applies() {
  case "$1|$2" in
    idle\|wsserver-http) return 1 ;;
  esac
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
      if "start_$srv"; then
        if [[ $row == lat-*-p99 ]]; then
          # One latency run gives p50 and p99; record both.
          local_n=${row#lat-}; local_n=${local_n%-p99}
          out=$(timeout $((TIMEOUT + 60)) "$LC" latency --subs "$local_n" --rate "$RATE" \
                --duration "$LAT_SECS" --window 16 --timeout "$TIMEOUT" --host 127.0.0.1 \
                --port "$PORT" --path "$SUBPATH" --proto "$PROTO" "${PUB[@]}" \
                2>>"$OUT/loadclient.log" | grep '^RESULT')
          echo "[$row] $srv: $out" >>"$OUT/raw.txt"
          p50=$(field p50_ms "$out"); p99=$(field p99_ms "$out")
          log "  $srv: p50=${p50:-?} ms p99=${p99:-?} ms ($(field delivered "$out")/$(field expected "$out") delivered, late=$(field late "$out"))"
          record "lat-$local_n-p50" "$srv" "${p50:--}"
          record "$row" "$srv" "${p99:--}"
        else
          scenario_run "$row" "$srv"
        fi
      else
        record "$row" "$srv" "-"
      fi
      stop_server
    done
  done
done

# ---- perf: where ws-server spends the big delivery run ---------------------
if [ "$PERF" = 1 ] && command -v perf >/dev/null && [[ " $SERVERS " == *" wsserver "* ]]; then
  log "perf: recording ws-server during a $SUBS-subscriber burst delivery run"
  if start_wsserver; then
    ( sleep 3; perf record -F 999 -g -p "$MPID" -o "$OUT/perf-ws-server.data" -- sleep 8 ) \
        >"$OUT/perf-record.log" 2>&1 &
    perfpid=$!
    "$LC" deliver --subs "$SUBS" --msgs $((MSGS * 3)) --publishers "$PUBLISHERS" --burst "$BURST" \
        --burst-gap-ms 100 --timeout "$TIMEOUT" --host 127.0.0.1 --port "$PORT" --path "$SUBPATH" \
        "${PUB[@]}" 2>>"$OUT/loadclient.log" >>"$OUT/raw.txt"
    wait "$perfpid"
    perf report -i "$OUT/perf-ws-server.data" --no-children --sort dso,sym --stdio -g none \
        2>/dev/null | grep -E '^ +[0-9]' | head -40 >"$OUT/perf-ws-server.txt"
    stop_server
    log "perf: top of build/bench/perf-ws-server.txt:"
    head -12 "$OUT/perf-ws-server.txt" >&2
  fi
fi

# ---- the table ---------------------------------------------------------------
median() {
  local vals
  vals=$(tr ' ' '\n' <<<"$1" | grep -v '^-\?$' | sort -g)
  [ -z "$vals" ] && { echo "-"; return; }
  local n
  n=$(wc -l <<<"$vals")
  sed -n "$(( (n + 1) / 2 ))p" <<<"$vals"
}
val() { median "${RES["$1|$2"]:-}"; }
ratio() {  # ratio A B [lower]: A/B, or B/A when lower is better
  local a=$1 b=$2
  [[ $a == - || $b == - || -z $a || -z $b ]] && { echo "-"; return; }
  awk -v a="$a" -v b="$b" -v low="${3:-0}" \
      'BEGIN { if (low) { if (a <= 0) { print "-"; exit } printf "%.2f", b / a }
               else { if (b <= 0) { print "-"; exit } printf "%.2f", a / b } }'
}
fmt() {
  [[ $1 == - || -z $1 ]] && { echo "-"; return; }
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
    idle)          echo "server RSS bytes / idle conn ($SUBS)" ;;
  esac
}
lower_better() { [[ $1 == lat-* || $1 == idle ]] && echo 1 || echo 0; }

TABLE_ROWS=()
for row in "${ROWS[@]}"; do
  [[ $row == lat-*-p99 ]] && { n=${row#lat-}; TABLE_ROWS+=("lat-${n%-p99}-p50"); }
  TABLE_ROWS+=("$row")
done

{
  echo "## wspush fan-out benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r))"
  echo
  echo "| scenario | ws-server | ws-server http | nchan | node ws | socket.io | ws/nchan | ws/node ws | ws/socket.io |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for row in "${TABLE_ROWS[@]}"; do
    ws=$(val "$row" wsserver)
    wh=$(val "$row" wsserver-http)
    # Publish throughput is an HTTP figure: compare ws-server's HTTP path.
    base=$ws; [ "$row" = httppub ] && base=$wh
    low=$(lower_better "$row")
    nc=$(val "$row" nchan); nw=$(val "$row" nodews); si=$(val "$row" socketio)
    echo "| $(label "$row") | $(fmt "$ws") | $(fmt "$wh") | $(fmt "$nc") | $(fmt "$nw") | $(fmt "$si")" \
         "| $(ratio "$base" "$nc" "$low") | $(ratio "$base" "$nw" "$low") | $(ratio "$base" "$si" "$low") |"
  done
  echo
  echo "Ratios are ws-server's advantage (>1 = ws-server better; for latency and memory"
  echo "the inverse ratio is shown). ws-server = published on its Unix socket; \"http\" ="
  echo "published through nginx + fcgi-publisher (the publish req/s ratio uses it);"
  echo "nchan, node ws and socket.io are published over HTTP. Rounds: $ROUNDS (median)."
  [ "$HTTP_OK" = 0 ] && echo "HTTP publish path SKIPPED: fcgi-publisher not built."
  echo "Raw client output: build/bench/raw.txt. Total time $((SECONDS - T0)) s."
} | tee "$OUT/results.md"
