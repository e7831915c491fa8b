# What conf/demo/run.sh and conf/demo/run-cluster.sh share; sourced after
# they define say() and die().

# True when something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Creates the runtime directory and sets $run to its absolute path:
# $WSPUSH_DEMO_DIR, which must not exist yet, or a fresh mktemp directory
# named after $1.
make_runtime_dir() {
  if [ -n "${WSPUSH_DEMO_DIR:-}" ]; then
    [ -e "$WSPUSH_DEMO_DIR" ] && die "WSPUSH_DEMO_DIR=$WSPUSH_DEMO_DIR already exists"
    { mkdir -p "$WSPUSH_DEMO_DIR" && chmod 0700 "$WSPUSH_DEMO_DIR"; } || die "cannot create $WSPUSH_DEMO_DIR"
    run=$(cd "$WSPUSH_DEMO_DIR" && pwd)
  else
    run=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || die "mktemp failed"
  fi
}

# wait_up WHAT PID SECONDS CMD...: until CMD succeeds, every 50 ms; dies
# when PID exits first or after SECONDS.
wait_up() {
  local what=$1 pid=$2 secs=$3 t
  shift 3
  for ((t = 0; t < secs * 20; t++)); do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || die "$what exited during start-up"
    sleep 0.05
  done
  die "$what did not come up in ${secs}s"
}
