"""What pages and publishers see when Redis or a node fails (issue 12,
items 2, 3, 6, 7, 11): Redis stopped (SIGSTOP) during a publish loop,
killed and restarted with and without persistence, failed over by a real
redis-sentinel to its replica, its PUB/SUB connections cut; one node
killed. Always: no ack for a message nobody can get, pages stay connected,
and never a silent gap (a page's sequence continues exactly or it gets a
reset)."""
import signal
import time

import pytest

from cluster_pages import Ledger, Page, check_page, opens, user_token
from harness import IpcError, PublishClient, wait_for
from redis_servers import engine_is_redis, wait_redis_up
from redis_servers import cluster, cluster_factory, redis_factory, redis_server, wait_synced  # noqa: F401 (fixtures)

IPC_ERR_UNAVAILABLE = 7      # shared/ipc.h: Redis unreachable -> HTTP 503, CLI exit 3
IPC_ERR_TIMEOUT = 8          # no answer from Redis in command_timeout -> 504, CLI exit 4
RECOVERY_S = 10.0            # publishing works again this soon after Redis is back

# These start their own Redis and nodes: once per run, not again in the
# suites' second pass with WSPUSH_ENGINE=redis.
pytestmark = pytest.mark.skipif(engine_is_redis(), reason="runs in the first pass")


def warm(page, via, ledger, channel):
    e = ledger.publish(via, channel, {"warm": len(ledger.entries)})
    assert e["id"], e
    page.read_until(lambda m: m.get("id") == e["id"], 5, "the warm-up message")


def pages_on(cluster, channels, ledger):
    """A page per node on channels, each seeing the others' publishes."""
    pages = [Page(n, channels) for n in cluster.nodes]
    for i, p in enumerate(pages):
        warm(p, cluster.nodes[(i + 1) % len(pages)], ledger, channels[0])
    return pages


def publish_until_acked(ledger, node, channel, tag, timeout=RECOVERY_S):
    """Publishes every 50 ms until one is acked; returns the seconds it took.
    Every attempt is in the ledger (the failed ones may or may not have
    been published: the checks allow either)."""
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < timeout:
        e = ledger.publish(node, channel, {tag: n})
        n += 1
        if e["id"]:
            return time.monotonic() - t0
        assert e["error"] in (IPC_ERR_UNAVAILABLE, IPC_ERR_TIMEOUT), e
        time.sleep(0.05)
    raise AssertionError(f"no publish acked within {timeout}s; errors {ledger.errors()[-5:]}")


def test_redis_sigstop_during_a_publish_loop(cluster):
    """Redis stops answering for 1.5 s while a loop publishes through both
    nodes: those publishes get 504 (or 503), none a false ack; every acked
    message reaches every page, which stay connected."""
    redis = cluster.redis
    led = Ledger()
    pages = pages_on(cluster, ["public/loop"], led)
    since = len(led.entries)
    clients = [PublishClient(n.publish_socket, timeout=10) for n in cluster.nodes]
    stopped_at = resumed_at = None
    during = []
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 4.0:
        now = time.monotonic() - t0
        if stopped_at is None and now > 1.0:
            redis.pause()
            stopped_at = now
        if stopped_at is not None and resumed_at is None and now > 2.5:
            redis.resume()
            resumed_at = now
        t = time.monotonic()
        e = led.publish(clients[i % 2], "public/loop", {"i": i})
        took = time.monotonic() - t
        i += 1
        if stopped_at is not None and resumed_at is None:
            during.append(e)
        time.sleep(0.01)
        if e["error"] is not None:
            assert e["error"] in (IPC_ERR_TIMEOUT, IPC_ERR_UNAVAILABLE), e
            assert took < 3.0, f"an error took {took:.1f}s"
    for c in clients:
        c.close()
    assert resumed_at is not None
    assert any(e["error"] is not None for e in during), "no publish failed while Redis was stopped"
    assert not any(e["id"] for e in during), "acked while Redis was stopped"
    # Publishing works again through both nodes (their reconnect backs off
    # up to 2 s), and the loop's last acks came after the stop.
    for n in cluster.nodes:
        publish_until_acked(led, n, "public/loop", "after_" + n.name)
    for p in pages:
        p.read(quiet=1.0)
        assert p.closed is None, f"page on {p.node.name} closed {p.closed}"
        check_page(p, led, since)


def test_publish_through_the_site_answers_503_and_504(redis_factory, cluster_factory):
    """fcgi-publisher behind nginx: 504 {"error":"timeout"} while Redis is
    stopped, 503 {"error":"unavailable"} while it is down, 200 after."""
    from webservers import Site
    redis = redis_factory.server()
    c = cluster_factory(redis=redis, n=1, start=False)
    site = Site(c[0], "nginx").start()
    try:
        assert site.publish("public/s", "ok").status == 200
        redis.pause()
        r = site.publish("public/s", "stopped")
        assert r.status == 504 and r.json["error"] == "timeout", r
        redis.kill()
        r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(site.publish("public/s", "down")),
                     5, "a 503 while Redis is down")
        assert r.json["error"] == "unavailable", r
        redis.restart()
        wait_for(lambda: site.publish("public/s", "back").status == 200, RECOVERY_S,
                 "a 200 once Redis is back")
    finally:
        site.stop()


def pages_with_history(cluster, channel, ledger):
    """A page per node on channel, which has seen ten messages published
    through the nodes in turn; returns (pages, index of the first of them)."""
    nodes = cluster.nodes
    pages = pages_on(cluster, [channel], ledger)
    since = len(ledger.entries)
    for i in range(10):
        assert ledger.publish(nodes[i % len(nodes)], channel, {"before": i})["id"]
    for p in pages:
        p.read_until(lambda m: m.get("data") == {"before": 9}, 3, "the last message before")
    return pages, since


def pages_end_well(cluster, pages, channel, ledger, since):
    """Five more publishes through the nodes in turn; then every page is
    still connected and its sequence passes check_page."""
    nodes = cluster.nodes
    for i in range(5):
        assert ledger.publish(nodes[i % len(nodes)], channel, {"later": i})["id"]
    for p in pages:
        p.read(quiet=1.0)
        assert p.closed is None, f"page on {p.node.name} closed {p.closed}"
        check_page(p, ledger, since)


def run_kill_restart(redis, cluster):
    """Pages on both nodes; a page that left before Redis was killed and
    restarted comes back with its last_id. Returns (pages, that page, the
    seconds until a publish was acked again)."""
    a, b = cluster[0], cluster[1]
    led = Ledger()
    pages, since = pages_with_history(cluster, "public/k", led)
    gone_last = pages[0].last_id()
    left_at = len(led.entries)
    assert led.publish(b, "public/k", {"while_away": 1})["id"]
    redis.kill()
    e = led.publish(a, "public/k", {"down": 1})
    assert e["error"] in (IPC_ERR_UNAVAILABLE, IPC_ERR_TIMEOUT), e
    redis.restart()
    took = publish_until_acked(led, b, "public/k", "after")
    pages_end_well(cluster, pages, "public/k", led, since)
    back = Page(b, ["public/k"], last_id=gone_last)
    back.read(quiet=0.5)
    check_page(back, led, left_at)
    return pages, back, took


def test_redis_sigkill_and_restart_with_persistence(redis_factory, cluster_factory):
    redis = redis_factory.server(persist=True)
    c = cluster_factory(redis=redis)
    pages, back, took = run_kill_restart(redis, c)
    assert took < RECOVERY_S


def test_redis_sigkill_and_restart_without_persistence(redis_factory, cluster_factory):
    """The epoch is gone with the data: a page resuming from an id of
    before gets reset, and no id is given twice."""
    redis = redis_factory.server(persist=False)
    c = cluster_factory(redis=redis)
    pages, back, took = run_kill_restart(redis, c)
    assert back.events and back.events[0] == {"type": "reset", "channels": ["public/k"]}, back.events
    ids = [m["id"] for p in pages for m in p.messages()]
    by_id = {}
    for p in pages:
        for m in p.messages():
            assert by_id.setdefault(m["id"], m["data"]) == m["data"], f"id {m['id']} given twice"
    assert ids


def test_sentinel_failover(redis_factory, cluster_factory):
    """The master is killed; redis-sentinel promotes the replica; the nodes
    follow: publishing resumes within a bound, no false ack, pages stay,
    a page resuming from before the failover gets reset (the replica may
    have missed writes)."""
    master = redis_factory.server(tcp=True, extra=["--repl-diskless-sync-delay", "0"])
    replica = redis_factory.server(replicaof=master)
    wait_synced(replica)
    sentinel = redis_factory.sentinel(master)
    sentinel.wait_replicas(1)
    c = cluster_factory(sentinel=sentinel)
    a, b = c[0], c[1]
    led = Ledger()
    pages, since = pages_with_history(c, "public/f", led)
    before_last = pages[0].last_id()
    master.kill()
    t0 = time.monotonic()
    took = publish_until_acked(led, a, "public/f", "failover", timeout=15.0)
    wait_for(lambda: sentinel.master_port() == replica.port, 5, "sentinel to name the replica")
    publish_until_acked(led, b, "public/f", "failover_b", timeout=5.0)
    pages_end_well(c, pages, "public/f", led, since)
    back = Page(b, ["public/f"], last_id=before_last)
    back.read(quiet=0.5)
    assert back.events and back.events[0] == {"type": "reset", "channels": ["public/f"]}, back.events
    print(f"failover: publishing resumed {took:.2f}s after the master was killed "
          f"({time.monotonic() - t0:.2f}s in all)")


def test_kill9_of_one_node_pages_resume_on_the_other(cluster):
    a, b = cluster[0], cluster[1]
    led = Ledger()
    pa = Page(a, ["public/n", "public/m"])
    warm(pa, b, led, "public/n")
    a.ws_proc.send_signal(signal.SIGKILL)
    a.ws_proc.wait(5)
    pa.read(quiet=0.5)
    assert pa.closed == 1006
    last = pa.last_id()
    since = len(led.entries)
    for i in range(8):
        assert led.publish(b, ["public/n", "public/m"][i % 2], {"while_dead": i})["id"]
    pb = Page(b, ["public/n", "public/m"], last_id=last)
    live = led.publish(b, "public/n", "live")
    pb.read_until(lambda m: m.get("id") == live["id"], 5, "the live message")
    assert pb.resets() == []
    assert [m["id"] for m in pb.messages()] == [e["id"] for e in led.entries[since:]]


def test_pubsub_connections_cut_then_caught_up(cluster):
    """Redis closes every PUB/SUB connection (CLIENT KILL TYPE pubsub)
    while messages keep coming: each node reconnects and catches its
    channels up from the streams, or resets them; nothing silent."""
    redis = cluster.redis
    a, b = cluster[0], cluster[1]
    led = Ledger()
    pages = pages_on(cluster, ["public/p"], led)
    since = len(led.entries)
    for i in range(30):
        if i == 10:
            assert redis.command("CLIENT", "KILL", "TYPE", "pubsub") >= 2
        e = led.publish((a, b)[i % 2], "public/p", {"i": i})
        assert e["id"] or e["error"] in (IPC_ERR_UNAVAILABLE, IPC_ERR_TIMEOUT), e
    publish_until_acked(led, a, "public/p", "end")
    for p in pages:
        p.read_until(lambda m: m.get("data") == {"end": 0} or m["type"] == "reset", 5,
                     "the node to catch up")
        p.read(quiet=0.5)
        assert p.closed is None
        check_page(p, led, since)


def test_redis_down_disconnect_and_revocation(redis_factory, cluster_factory):
    """While Redis is down: disconnect closes the local node's pages and
    answers an error naming the other nodes; every node still refuses a
    token revoked before the outage; new pages are let in, a resume gets
    reset; publishes get 503."""
    redis = redis_factory.server()
    c = cluster_factory(redis=redis)
    a, b = c[0], c[1]
    for n in (a, b):
        wait_redis_up(n)
    now = int(time.time())
    old = user_token("alice", iat=now)
    assert a.disconnect("alice") == 0
    for n in (a, b):             # every node has heard of it
        wait_for(lambda: opens(n, old) == 4401, 3, f"{n.name} to refuse the revoked token")
    carol = [Page(n, ["user/carol/x"], token=user_token("carol")) for n in (a, b)]
    resume_from = a.publish("public/d", "before")["id"]
    redis.kill()
    wait_for(lambda: publish_error(a) == IPC_ERR_UNAVAILABLE, 5, "a 503 from node A")
    for n in (a, b):
        assert opens(n, old) == 4401, f"{n.name} forgot the revocation during the outage"
    try:
        a.disconnect("carol")
        raise AssertionError("disconnect acked while Redis is down")
    except IpcError as e:
        assert e.code == IPC_ERR_UNAVAILABLE, e
        assert "node" in e.text, e.text
    carol[0].read(quiet=2.0, limit=2.0)
    assert carol[0].closed == 4401
    p = Page(b, ["public/d"], last_id=resume_from)
    p.read(quiet=0.5)
    assert p.events[:1] == [{"type": "reset", "channels": ["public/d"]}], p.events
    assert Page(b, ["public/d"]).closed is None
    redis.restart()
    led = Ledger()
    publish_until_acked(led, a, "public/d", "back")


def publish_error(node):
    try:
        node.publish("public/probe", "x")
        return None
    except IpcError as e:
        return e.code


def test_node_started_while_redis_is_down_links_up_when_it_comes(redis_factory, cluster_factory):
    redis = redis_factory.server()
    redis.kill()
    c = cluster_factory(redis=redis, n=1)
    a = c[0]
    p = Page(a, ["public/late"])
    led = Ledger()
    e = led.publish(a, "public/late", "down")
    assert e["error"] == IPC_ERR_UNAVAILABLE, e
    redis.restart()
    publish_until_acked(led, a, "public/late", "up")
    p.read(quiet=0.5)
    assert p.closed is None
    check_page(p, led, 0)
