"""ws-server with workers = N (the Redis engine): one supervisor, N worker
processes, each a node of the same Redis, sharing the TCP listeners
(SO_REUSEPORT, one socket per worker) and the one publish socket the
supervisor binds. A real redis-server on a Unix socket in the test's
directory (redis_servers.py); connections are attributed to workers
through /proc."""
import os
import pathlib
import re
import signal
import subprocess
import time

import pytest

from harness import BIN, RawWs, free_port, wait_for
from redis_servers import RedisServer, redis_ini
from test_metrics import scrape

N = 2


@pytest.fixture
def wenv(env):
    """env configured for N workers on a redis-server (the Redis pass's own,
    or one of this test's), not started yet."""
    redis = env.redis or RedisServer(env.dir)
    env.metrics = f"127.0.0.1:{free_port()}"
    env.unix_listen = env.dir / "ws.sock"
    env.sections["ws-server"].update(engine="redis", workers=str(N), metrics_listen=env.metrics,
                                     unix_listen=str(env.unix_listen))
    env.sections["redis"] = redis_ini(redis)
    env.write_ini()
    env.worker_redis = redis
    yield env
    if redis is not env.redis:
        redis.stop()


def slot_pid(env, i):
    """The pid the supervisor last started in worker slot i (1-based)."""
    pids = re.findall(rf"ws-server: worker {i} started \(pid (\d+)\)", env.log_text())
    return int(pids[-1]) if pids else None


def children(pid):
    try:
        text = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(x) for x in text.split())


def worker_ready(env, n=N):
    """Every worker logged its publish socket: it is serving."""
    text = env.log_text()
    return all(f"ws-server worker {i}: publish socket" in text for i in range(1, n + 1))


def start_workers(env, n=N):
    env.start_ws()
    wait_for(lambda: len(children(env.ws_proc.pid)) == n and worker_ready(env, n),
             what=f"{n} workers serving")
    return children(env.ws_proc.pid)


def established(port):
    """Socket inodes of the server side of established TCP connections on port."""
    inodes = set()
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port and f[3] == "01":
            inodes.add(f[9])
    return inodes


def connections_of(pid, port):
    """Established connections on port held by process pid."""
    want, n = established(port), 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in want:
            n += 1
    return n


def subscribe(env, k, query="channels=public/a"):
    pages = [RawWs(env.ws_port, f"/ws?{query}") for _ in range(k)]
    assert [p.status for p in pages] == [101] * k
    for p in pages:
        op, payload = p.recv_frame()
        assert op == 0x1 and b'"subscribed"' in payload
    return pages


def next_message(page, timeout=5.0):
    """The next published message a page gets (its data frame), or None at EOF."""
    while True:
        f = page.recv_frame(timeout)
        if f is None or (f[0] == 0x1 and b'"message"' in f[1]):
            return f
        if f[0] == 0x8:
            return None


def message_id(frame):
    import json
    return json.loads(frame[1])["id"]


def kill_worker(env, victim):
    """kill -9 of worker pid victim; returns once the supervisor's new
    worker in its slot serves: (the slot, the log since the kill)."""
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: f"(pid {victim}) killed by signal 9" in env.log_text(),
             what="the supervisor to see it")
    wait_for(lambda: len(children(env.ws_proc.pid)) == N and victim not in
             children(env.ws_proc.pid), what="a new worker")
    slot = re.search(rf"worker (\d+) \(pid {victim}\) killed", env.log_text()).group(1)
    wait_for(lambda: f"worker {slot}: publish socket" in
             env.log_text().split(f"(pid {victim}) killed", 1)[1], what="the new worker serving")
    return slot, env.log_text().split(f"(pid {victim}) killed", 1)[1]


def test_workers_with_the_memory_engine_are_refused(env):
    env.sections["ws-server"].update(workers="2", engine="memory")
    env.write_ini()
    r = subprocess.run([str(BIN / "ws-server"), "-c", str(env.ini_path), "-t"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "key 'workers': 2 needs engine = redis" in r.stderr
    assert "each worker process would keep its own message ids and history" in r.stderr
    # A start is refused the same way, before anything is bound.
    r = subprocess.run([str(BIN / "ws-server"), "-c", str(env.ini_path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "needs engine = redis" in r.stderr
    assert not env.publish_socket.exists()


def test_connections_spread_and_a_publish_reaches_every_worker(wenv):
    pids = start_workers(wenv)
    pages = subscribe(wenv, 24)
    wait_for(lambda: sum(connections_of(p, wenv.ws_port) for p in pids) == 24,
             what="24 connections held by the workers")
    per_worker = [connections_of(p, wenv.ws_port) for p in pids]
    # The kernel spreads by a hash of the client's port: 24 connections
    # all on one of two sockets would be a 1 in 8 million chance.
    assert all(n > 0 for n in per_worker), per_worker
    # Each publish connects anew, so any worker may take it; every page
    # on every worker gets every message, in order.
    ids = [wenv.publish("public/a", {"n": i})["id"] for i in range(4)]
    for p in pages:
        assert [message_id(next_message(p)) for _ in ids] == ids
    # One scrape answers for all workers: the sum of their counters, each
    # worker's at most TALLY_PUBLISH_MS old.
    def summed():
        s = scrape(wenv)
        return (s("wspush_connections", transport="ws") == 24 and
                s("wspush_deliveries_total") == 24 * 4)
    wait_for(summed, what="the scrape to count every worker's connections and deliveries")
    for p in pages:
        p.close()


def test_a_killed_worker_is_restarted_and_its_pages_resume(wenv):
    pids = start_workers(wenv)
    pages = subscribe(wenv, 12)
    wait_for(lambda: sum(connections_of(p, wenv.ws_port) for p in pids) == 12,
             what="12 connections held")
    first = wenv.publish("public/a", {"n": 1})["id"]
    for p in pages:
        assert message_id(next_message(p)) == first
    victim = max(pids, key=lambda p: connections_of(p, wenv.ws_port))
    held = connections_of(victim, wenv.ws_port)
    # The new worker opens its sockets only once Redis answers it, so a
    # page resuming there is answered from Redis, not reset.
    slot, after = kill_worker(wenv, victim)
    assert after.index(f"worker {slot}: redis: connected") < \
        after.index(f"worker {slot}: publish socket")
    # Its pages saw their connection end, the others keep theirs; a
    # message published meanwhile reaches the kept ones live and the
    # reconnected ones by resuming from the last id they had.
    second = wenv.publish("public/a", {"n": 2})["id"]
    lost, kept = [], []
    for p in pages:
        f = next_message(p)
        (kept if f is not None else lost).append(p)
        if f is not None:
            assert message_id(f) == second
    assert len(lost) == held and len(kept) == 12 - held
    back = subscribe(wenv, held, f"channels=public/a&last_id={first}")
    for p in back:
        assert message_id(next_message(p)) == second
    for p in pages + back:
        p.close()


def test_sighup_reaches_every_worker_and_sigterm_stops_them_all(wenv):
    pids = start_workers(wenv)
    wenv.ws_proc.send_signal(signal.SIGHUP)
    wait_for(lambda: all(f"ws-server worker {i}: configuration reloaded" in wenv.log_text()
                         for i in range(1, N + 1)), what="every worker to reload")
    assert "ws-server: configuration reloaded" in wenv.log_text()
    # A file with an error is refused once, by the supervisor; the workers
    # are not told and keep theirs.
    wenv.sections["ws-server"]["bogus"] = "1"
    wenv.write_ini()
    wenv.ws_proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, the workers keep the running config" in wenv.log_text(),
             what="the supervisor to refuse the file")
    assert "key 'bogus'" in wenv.log_text()
    # Another store is refused by the supervisor too: a worker it restarts
    # later would otherwise join another Redis keyspace than its siblings.
    del wenv.sections["ws-server"]["bogus"]
    wenv.sections["redis"]["prefix"] = "elsewhere:"
    wenv.write_ini()
    wenv.ws_proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "keep the running config: [redis] prefix changed" in wenv.log_text(),
             what="the supervisor to refuse another store")
    wenv.sections["redis"]["prefix"] = "wspush:"
    # Fixed and reloaded: by the workers' second reload, a forwarded bad
    # one would have been logged before it.
    wenv.write_ini()
    wenv.ws_proc.send_signal(signal.SIGHUP)
    wait_for(lambda: all(wenv.log_text().count(f"ws-server worker {i}: configuration reloaded")
                         == 2 for i in range(1, N + 1)), what="every worker to reload again")
    assert "reload failed, keeping the running config" not in wenv.log_text()
    pages = subscribe(wenv, 4)
    assert wenv.stop_ws() == 0
    for p in pages:
        assert p.recv_close() == 1001
    for pid in pids:
        assert not pathlib.Path(f"/proc/{pid}").exists()
    assert not wenv.publish_socket.exists() and not wenv.unix_listen.exists()


def test_max_connections_is_a_total_over_the_workers(wenv):
    wenv.sections["ws-server"]["max_connections"] = "5"
    wenv.write_ini()
    start_workers(wenv)
    pages = [RawWs(wenv.ws_port, "/ws?channels=public/a") for _ in range(12)]
    assert sorted(p.status for p in pages) == [101] * 5 + [503] * 7
    for p in pages:
        p.close()


def test_the_per_address_limit_is_split_over_the_workers(wenv):
    wenv.sections["ws-server"]["max_connections_per_ip"] = "4"
    wenv.write_ini()
    pids = start_workers(wenv)
    pages = [RawWs(wenv.ws_port, "/ws?channels=public/a") for _ in range(12)]
    ok = [p for p in pages if p.status == 101]
    # Each worker admits ceil(4 / 2) = 2 of an address's connections: at
    # most 4 in all, fewer when they land unevenly (docs/operations.md).
    assert 2 <= len(ok) <= 4
    # A refused page has its 503 before its worker's socket is closed: wait
    # until the workers hold only the admitted pages, then count per worker.
    wait_for(lambda: sum(connections_of(p, wenv.ws_port) for p in pids) == len(ok),
             what="the refused connections closed")
    assert all(connections_of(p, wenv.ws_port) <= 2 for p in pids)
    for p in pages:
        p.close()


def test_a_crash_loop_stops_the_server(wenv):
    start_workers(wenv)
    t0 = time.monotonic()
    for k in range(6):
        victim = slot_pid(wenv, 1)
        os.kill(victim, signal.SIGKILL)
        if k < 5:
            wait_for(lambda: slot_pid(wenv, 1) != victim, timeout=10, what="the restart")
    assert wenv.ws_proc.wait(10) == 1
    assert "worker 1 died 6 times within 60 s: giving up" in wenv.log_text()
    # Restarts backed off (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s) instead of spinning.
    assert time.monotonic() - t0 >= 3.0
    assert not wenv.publish_socket.exists()
    wenv.ws_proc = None
