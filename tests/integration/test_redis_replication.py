"""The Redis engine against replication with real redis-server processes:
wait_replicas (one WAIT at a time on the command connection, covering
every publish the scripts answered before it) and a master that stops
being one (READONLY, MASTERDOWN, LOADING): no false ack, no needless
reconnection, and publishing resumes without restarting the node."""
import threading
import time

import pytest

from harness import IpcError, wait_for
from cluster_pages import Page
from redis_servers import Node, RedisServer, SlowRepliesProxy, wait_redis_up, wait_synced

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
        node.publish("public/s", "warm")
        replica.pause()
        out = publish_loops(node, 8, per_thread=3, tag="s")
        assert {(o[0], o[1]) for o in out} == {("error", 8)}, out
        assert max(o[2] for o in out) < 0.4 + 0.25, out
        replica.resume()
        wait_for(lambda: _acked(node), timeout=10, what="acks once the replica is back")
        out = publish_loops(node, 8, seconds=2.0, tag="t")
        assert [o for o in out if o[0] != "ok"] == []
        print("wait_replicas=1, 8 publishers: %.0f publishes/s, slowest %.1f ms"
              % (len(out) / 2.0, 1000 * max(o[2] for o in out)))
        log = node.log_text()
        assert not any(s in log for s in RECONNECTS), log[-3000:]
    finally:
        stop_all(node, replica, master)


def _acked(node):
    try:
        return node.publish("public/s", "again")["id"]
    except IpcError:
        return None
