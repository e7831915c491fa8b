"""The Redis engine against replication with real redis-server processes:
wait_replicas (one WAIT at a time on the command connection, covering
every publish the scripts answered before it) and a master that stops
being one (READONLY, MASTERDOWN, LOADING): no false ack, no needless
reconnection, and publishing resumes without restarting the node."""
import threading
import time

import pytest

from harness import IpcError, free_port, wait_for
from cluster_pages import Page
from redis_servers import Node, RedisServer, SlowRepliesProxy, engine_is_redis, wait_redis_up
from redis_servers import wait_synced

# These start their own Redis and nodes: once per run, not again in the
# suites' second pass with WSPUSH_ENGINE=redis.
pytestmark = pytest.mark.skipif(engine_is_redis(), reason="runs in the first pass")
RECONNECTS = ("no answer within command_timeout", "connection lost")


def replicated(tmp_path, link_delay=0.0, **keys):
    """A master with one synced replica and a node on the master; with
    link_delay, what the master sends its replica arrives that late (a
    replica farther away: each WAIT takes a round trip of it)."""
    # the first sync at once, not after the default 5 s for more replicas
    master = RedisServer(tmp_path, name="m", tcp=True, extra=("--repl-diskless-sync-delay", "0"))
    upstream = master
    if link_delay:
        upstream = SlowRepliesProxy(tmp_path, master, delay=link_delay, tcp=True)
        master.proxy = upstream
    replica = RedisServer(tmp_path, name="r", replicaof=upstream)
    wait_synced(replica)
    node = Node(tmp_path, "a", redis=master, redis_keys=keys)
    node.start_ws()
    wait_redis_up(node)
    return master, replica, node


def publish_loops(node, threads, per_thread=None, seconds=None, tag="p"):
    """threads publishers, each on its own publish-socket connection, one
    publish after the other's answer; every outcome with its time taken."""
    out, lock = [], threading.Lock()

    def loop(t):
        c = node.client()
        end = time.monotonic() + (seconds or 0)
        i = 0
        try:
            while (per_thread is not None and i < per_thread) or \
                    (seconds is not None and time.monotonic() < end):
                t0 = time.monotonic()
                try:
                    res = ("ok", c.publish(f"public/{tag}{t}", {"t": t, "i": i})["id"])
                except IpcError as e:
                    res = ("error", e.code)
                with lock:
                    out.append((res[0], res[1], time.monotonic() - t0))
                i += 1
        finally:
            c.close()
    ts = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def stop_all(node, *servers):
    rc = node.stop_ws()
    for s in servers:
        s.stop()
        if getattr(s, "proxy", None):
            s.proxy.close()
    assert rc == 0, node.log_text()[-3000:]


def test_concurrent_publishes_with_wait_replicas_are_all_acked_without_reconnecting(tmp_path):
    """16 publishers at once, wait_replicas = 1, a healthy replica 100 ms
    away (command_timeout 500 ms): every publish gets its ack, a page
    resuming meanwhile (a read on the same command connection) gets
    exactly what it missed, and the command connection is never rebuilt.
    One WAIT per publish, in a row, took 100 ms each and passed
    command_timeout."""
    master, replica, node = replicated(tmp_path, link_delay=0.1, wait_replicas=1)
    try:
        first = node.publish("public/h", {"n": 0})["id"]
        node.publish("public/h", {"n": 1})
        resumed = []

        def resume():
            p = Page(node, ["public/h"], last_id=first)
            try:
                p.read_until(lambda m: m.get("data") == {"n": 1}, 5, "the replay")
            finally:
                resumed.extend(p.events)
                p.close()
        r = threading.Thread(target=resume)
        r.start()
        t0 = time.monotonic()
        out = publish_loops(node, 16, per_thread=6)
        print("16 publishers x 6 behind a replica 100 ms away: %.2f s" % (time.monotonic() - t0))
        r.join()
        assert [o for o in out if o[0] != "ok"] == []
        assert len({o[1] for o in out}) == 16 * 6
        assert [e.get("data") for e in resumed] == [{"n": 1}], resumed
        log = node.log_text()
        assert not any(s in log for s in RECONNECTS), log[-3000:]
    finally:
        stop_all(node, replica, master)


def test_a_stopped_replica_gives_504_within_the_deadline_then_acks_again(tmp_path):
    """The replica frozen (SIGSTOP): concurrent publishes get 504 (the
    master has them, the replica does not), each within its own deadline
    (command_timeout), none 200, and the command connection is not
    rebuilt; the replica thawed, every publish is acked again."""
    master, replica, node = replicated(tmp_path, wait_replicas=1, command_timeout="400ms")
    try:
        # Acked once first (the first publish also loads the script: under
        # a sanitizer on a loaded machine it may pass the 400 ms).
        wait_for(lambda: _acked(node), timeout=10, what="a first publish acked")
        replica.pause()
        out = publish_loops(node, 8, per_thread=3, tag="s")
        assert {(o[0], o[1]) for o in out} == {("error", 8)}, out
        assert max(o[2] for o in out) < 0.4 + 0.25, out
        replica.resume()
        wait_for(lambda: _acked(node), timeout=10, what="acks once the replica is back")
        out = publish_loops(node, 8, seconds=1.0, tag="t")
        assert [o for o in out if o[0] != "ok"] == []
        print("wait_replicas=1, 8 publishers: %.0f publishes/s, slowest %.1f ms"
              % (len(out) / 1.0, 1000 * max(o[2] for o in out)))
        log = node.log_text()
        assert not any(s in log for s in RECONNECTS), log[-3000:]
    finally:
        stop_all(node, replica, master)


def _acked(node):
    try:
        return node.publish("public/s", "again")["id"]
    except IpcError:
        return None


def _publish_code(node, data):
    """The publish's answer: its id, or the error code."""
    try:
        return node.publish("public/d", data)["id"]
    except IpcError as e:
        return e.code


def test_a_demoted_master_answers_503_and_the_node_follows_sentinel_to_the_new_one(tmp_path):
    """The master the node reached through Sentinel is made a replica at run
    time (REPLICAOF; its replica promoted): every publish is answered 503
    (READONLY: not published), never 200, logged once. Once Sentinel names
    the new master (re-pointed by the operator), the node asks it again and
    publishes there, without a restart (it used to keep its connection to
    the replica: 503 forever)."""
    from redis_servers import MASTER_NAME, Sentinel
    master = RedisServer(tmp_path, name="m", tcp=True, extra=("--repl-diskless-sync-delay", "0"))
    replica = RedisServer(tmp_path, name="r", replicaof=master)
    wait_synced(replica)
    sentinel = Sentinel(tmp_path, master)
    node = Node(tmp_path, "a", sentinel=sentinel)
    node.start_ws()
    try:
        wait_redis_up(node)
        before = node.publish("public/d", 0)["id"]
        replica.command("REPLICAOF", "NO", "ONE")
        master.command("REPLICAOF", "127.0.0.1", replica.port)
        assert [_publish_code(node, i) for i in range(1, 6)] == [7] * 5
        sentinel.command("SENTINEL", "REMOVE", MASTER_NAME)
        sentinel.command("SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", replica.port, 1)
        after = wait_for(lambda: _publish_or_none(node), timeout=10,
                         what="a publish on the new master")
        assert after > before      # a new epoch: the new master's own, later
        log = node.log_text()
        assert log.count("READONLY") == 1, log[-3000:]
        assert "script refused" not in log, log[-3000:]
    finally:
        rc = node.stop_ws()
        sentinel.stop()
        replica.stop()
        master.stop()
        assert rc == 0


def _publish_or_none(node):
    r = _publish_code(node, "again")
    return r if isinstance(r, str) else None


def test_a_replica_cut_off_from_its_master_answers_503_until_it_is_master_again(tmp_path):
    """The node's address made a replica of a master that is gone, serving
    no stale data: MASTERDOWN to every command. Publishes get 503, the
    link is down (the node reconnects and is refused: ROLE, PING), and
    REPLICAOF NO ONE brings publishing back without a restart."""
    redis = RedisServer(tmp_path)
    node = Node(tmp_path, "a", redis=redis)
    node.start_ws()
    try:
        wait_redis_up(node)
        assert isinstance(_publish_code(node, 0), str)
        redis.command("CONFIG", "SET", "replica-serve-stale-data", "no")
        redis.command("REPLICAOF", "127.0.0.1", free_port())     # nobody there
        assert [_publish_code(node, i) for i in range(1, 6)] == [7] * 5
        redis.command("REPLICAOF", "NO", "ONE")
        wait_for(lambda: _publish_or_none(node), timeout=10, what="publishing again")
        log = node.log_text()
        assert log.count("MASTERDOWN") == 1, log[-3000:]
        assert "command connection lost: MASTERDOWN" in log, log[-3000:]
    finally:
        rc = node.stop_ws()
        redis.stop()
        assert rc == 0


def test_a_redis_loading_its_data_is_not_up_until_it_has_loaded(tmp_path):
    """Redis restarted with data to load (slowed: key-load-delay) answers
    INFO and ROLE but LOADING to the rest: the node does not count it as
    up (wspush_redis_up 0, publishes 503) until the data is loaded, then
    publishes without a restart."""
    from test_metrics import metrics_up, scrape
    redis = RedisServer(tmp_path, extra=("--key-load-delay", "100",
                                         "--loading-process-events-interval-bytes", "1024"))
    node = Node(tmp_path, "a", redis=redis, ws={"metrics_listen": f"127.0.0.1:{free_port()}"})
    node.metrics = node.sections["ws-server"]["metrics_listen"]
    node.write_ini()
    node.start_ws()
    try:
        wait_redis_up(node)
        wait_for(lambda: metrics_up(node.metrics), what="metrics listener")
        redis.command("EVAL", "for i = 1, 10000 do redis.call('SET', 'k' .. i, i) end", "0")
        redis.command("SAVE")
        restart = threading.Thread(target=redis.restart)
        restart.start()
        loading = []

        def while_loading():
            try:
                return redis.command("INFO", "persistence").find(b"loading:1") >= 0
            except (OSError, ConnectionError):
                return False
        wait_for(while_loading, timeout=10, what="Redis loading its data")
        while while_loading():
            loading.append((_publish_code(node, "loading"),
                            scrape(node)("wspush_redis_up", link="commands")))
        restart.join()
        assert loading and {l for l in loading} == {(7, 0)}, loading
        wait_for(lambda: _publish_or_none(node), timeout=10, what="publishing once loaded")
    finally:
        rc = node.stop_ws()
        redis.stop()
        assert rc == 0
