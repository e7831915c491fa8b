#!/usr/bin/env bash
# The `make run-cluster` demo: one Redis on a Unix socket and two complete
# sites of `make run` (conf/demo/run.sh, each its nginx, fcgi-publisher and
# ws-server) sharing it and one secret, ws-server with engine = redis: a
# message published on one site's page shows on the other's.
#
# Usage: conf/demo/run-cluster.sh [BIN_DIR]   (default: build/bin of this checkout)
# Environment (all optional):
#   WSPUSH_DEMO_PORT, WSPUSH_DEMO_WS_PORT, WSPUSH_DEMO_TLS_PORT,
#   WSPUSH_DEMO_METRICS_PORT, WSPUSH_DEMO_PUB_METRICS_PORT
#                        site A's ports, as for run.sh (8080 8081 8443 8082 8083)
#   WSPUSH_DEMO_B_PORT, WSPUSH_DEMO_B_WS_PORT, WSPUSH_DEMO_B_TLS_PORT,
#   WSPUSH_DEMO_B_METRICS_PORT, WSPUSH_DEMO_B_PUB_METRICS_PORT
#                        site B's ports (default: site A's + 10)
#   WSPUSH_DEMO_DIR      runtime directory to create; it must not exist yet
#                        (default: a fresh mktemp directory)
#
# The runtime directory holds the secret, Redis (socket, log) and the two
# sites' own runtime directories a/ and b/. Ctrl-C or SIGTERM stops both
# sites and Redis and removes it. If Redis dies (or is shut down to watch
# what pages do) it is started again after 5 s; if a site dies, everything
# stops.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/build/bin}
host=127.0.0.1
a_port=${WSPUSH_DEMO_PORT:-8080}
a_ws=${WSPUSH_DEMO_WS_PORT:-8081}
a_tls=${WSPUSH_DEMO_TLS_PORT:-8443}
a_met=${WSPUSH_DEMO_METRICS_PORT:-8082}
a_pmet=${WSPUSH_DEMO_PUB_METRICS_PORT:-8083}
b_port=${WSPUSH_DEMO_B_PORT:-$((a_port + 10))}
b_ws=${WSPUSH_DEMO_B_WS_PORT:-$((a_ws + 10))}
b_tls=${WSPUSH_DEMO_B_TLS_PORT:-$((a_tls + 10))}
b_met=${WSPUSH_DEMO_B_METRICS_PORT:-$((a_met + 10))}
b_pmet=${WSPUSH_DEMO_B_PUB_METRICS_PORT:-$((a_pmet + 10))}

say() { printf 'cluster demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
. "$here/lib.sh"

redis_bin=$(command -v redis-server 2>/dev/null || echo /usr/bin/redis-server)
[ -x "$redis_bin" ] || die "redis-server is not installed (apt-get install redis-server)"
for p in "$a_port" "$a_ws" "$a_tls" "$a_met" "$a_pmet" "$b_port" "$b_ws" "$b_tls" "$b_met" "$b_pmet"; do
  port_busy "$p" && die "port $p is in use (another demo running?); set WSPUSH_DEMO_PORT ... / WSPUSH_DEMO_B_PORT ..."
done

make_runtime_dir wspush-cluster
sock=$run/redis.sock

redis_pid=""
site_pids=()
stopping=0

# Both sites first (each stops its own processes, newest first), then
# Redis, then the directory. The processes started here ignore SIGINT (a
# non-interactive shell starts them so), so Ctrl-C reaches this script only.
cleanup() {
  trap - EXIT
  trap '' INT TERM
  stopping=1
  local pid t
  for pid in "${site_pids[@]}" $redis_pid; do
    kill -TERM "$pid" 2>/dev/null
    for ((t = 0; t < 120; t++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && { say "pid $pid did not stop in 12s: killing it"; kill -KILL "$pid" 2>/dev/null; }
    wait "$pid" 2>/dev/null
  done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'say "stopping"; exit 0' INT TERM

start_redis() {
  rm -f "$sock"
  "$redis_bin" --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$run" \
    --logfile "$run/redis.log" --save '' --appendonly no --daemonize no &
  redis_pid=$!
  wait_up "redis-server (see $run/redis.log)" "$redis_pid" 5 test -S "$sock"
}

# A site: run.sh with its own ports and runtime directory, on the shared
# Redis and secret, without its banner.
start_site() {
  local name=$1 port=$2 ws=$3 tls=$4 met=$5 pmet=$6
  WSPUSH_DEMO_PORT=$port WSPUSH_DEMO_WS_PORT=$ws WSPUSH_DEMO_TLS_PORT=$tls \
  WSPUSH_DEMO_METRICS_PORT=$met WSPUSH_DEMO_PUB_METRICS_PORT=$pmet \
  WSPUSH_DEMO_DIR=$run/$name WSPUSH_DEMO_REDIS=$sock WSPUSH_DEMO_SECRET_FILE=$run/secret \
  WSPUSH_DEMO_BANNER=0 WSPUSH_DEMO_SITE=static \
    bash "$here/run.sh" "$bin" &
  site_pids+=("$!")
  wait_up "site $name (its messages are above)" "$!" 20 test -e "$run/$name/ready"
}

head -c 32 /dev/urandom | base64 > "$run/secret"
chmod 0600 "$run/secret"
start_redis
start_site a "$a_port" "$a_ws" "$a_tls" "$a_met" "$a_pmet"
start_site b "$b_port" "$b_ws" "$b_tls" "$b_met" "$b_pmet"

cat <<EOF

  wspush cluster demo running: two sites, one Redis
    site A      http://$host:$a_port/          login: demo / demo   (ws-server also on $a_ws)
    site B      http://$host:$b_port/          login: demo / demo   (ws-server also on $b_ws)
                publish on one site's page: the other site's page shows it
    publish     $bin/wspush -s $run/a/publish.sock publish public/demo '"hello"'   (site A)
                $bin/wspush -s $run/b/publish.sock publish public/demo '"hello"'   (site B)
    metrics     http://$host:$a_met/metrics   http://$host:$b_met/metrics
    Redis       $sock  (pid $redis_pid, no persistence)
      freeze it:  kill -STOP $redis_pid   (publishes get 504, pages stay connected)
                  kill -CONT $redis_pid   (back: publishing works again)
      stop it:    redis-cli -s $sock shutdown nosave
                  (publishes get 503, pages stay connected; this demo starts Redis
                  again 5 s later, empty: a page that reconnects gets a reset)
    runtime     $run  (removed on exit)
  Ctrl-C stops everything.

EOF

# Redis gone: started again (empty) after 5 s; a site gone: the end.
while :; do
  wait -n "${site_pids[@]}" "$redis_pid"
  rc=$?
  [ "$stopping" = 1 ] && break
  if ! kill -0 "$redis_pid" 2>/dev/null; then
    say "redis-server exited (status $rc): starting it again in 5 s"
    sleep 5 &
    wait $!
    start_redis
    say "redis-server running again (pid $redis_pid)"
    continue
  fi
  say "a site exited (status $rc): stopping the demo"
  exit 1
done
