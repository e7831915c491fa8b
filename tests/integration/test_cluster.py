"""Several ws-server nodes on one real Redis behave, to a page and to a
publisher, like one server: a message published through any node reaches
pages on every node in id order; a page resumes on another node; a
disconnect and its revocation reach every node (issue 12, items 2-5, 8).
Faults (Redis stopped, killed, failed over; a node killed) are in
test_cluster_faults.py."""
import threading
import time

import pytest

from cluster_pages import Ledger, Page, check_page, opens, parse_id, user_token
from harness import IpcError, PublishClient, SseClient, wait_for
from redis_servers import engine_is_redis
from redis_servers import cluster, cluster_factory, redis_factory, redis_server  # noqa: F401 (fixtures)

# These start their own Redis and nodes: once per run, not again in the
# suites' second pass with WSPUSH_ENGINE=redis.
pytestmark = pytest.mark.skipif(engine_is_redis(), reason="runs in the first pass")


def warm(page, via, ledger, channel):
    """Until page (on one node) sees a publish through via (another node) on
    channel: the page's node is subscribed in Redis from then on."""
    e = ledger.publish(via, channel, {"warm": len(ledger.entries)})
    assert e["id"], e
    page.read_until(lambda m: m.get("id") == e["id"], 5, "the warm-up message")


def test_cross_node_delivery_in_id_order(cluster):
    a, b = cluster[0], cluster[1]
    led = Ledger()
    pa = Page(a, ["public/x", "public/y"])
    pb = Page(b, ["public/x", "public/y"])
    warm(pb, a, led, "public/x")
    warm(pa, b, led, "public/y")
    since = len(led.entries)
    for i in range(40):
        via = (a, b)[i % 2]
        ch = ["public/x", "public/y", ["public/x", "public/y"], "public/other"][i % 4]
        assert led.publish(via, ch, {"n": i})["id"], led.entries[-1]
    # Ids strictly increase in the order the acks came, whichever node.
    ids = [parse_id(e["id"]) for e in led.acked()]
    assert len({ep for ep, _ in ids}) == 1, ids
    assert [s for _, s in ids] == sorted({s for _, s in ids}), "ids not strictly increasing"
    for p in (pa, pb):
        p.read()
        assert p.closed is None
        check_page(p, led, since)
        got = [(m["id"], m["channel"]) for m in p.messages() if "n" in m["data"]]
        want = [(e["id"], c) for e in led.entries[since:]
                for c in ("public/x", "public/y") if c in e["channels"]]
        assert got == want
        assert p.resets() == []


def test_message_right_after_the_greeting_reaches_a_page_on_another_node(cluster):
    """The greeting promises every message after its last_id: one published
    through another node just after it must arrive (the node's SUBSCRIBE in
    Redis is in place before the page is told it is subscribed)."""
    a, b = cluster[0], cluster[1]
    led = Ledger()
    for i in range(5):
        ch = f"public/fresh{i}"
        p = Page(b, [ch])
        e = led.publish(a, ch, {"first": i})
        assert e["id"]
        p.read_until(lambda m: m.get("id") == e["id"], 3, f"the first message on {ch}")
        check_page(p, led, len(led.entries) - 1)
        p.close()


def test_concurrent_publishers_on_both_nodes_one_order(cluster):
    a, b = cluster[0], cluster[1]
    led = Ledger()
    pages = [Page(n, ["public/c"]) for n in (a, b, a, b)]
    for p, via in zip(pages, (b, a, b, a)):
        warm(p, via, led, "public/c")
    since = len(led.entries)
    lock = threading.Lock()
    results = []

    def loop(node, tag):
        c = PublishClient(node.publish_socket)
        try:
            for i in range(150):
                pub = c.publish(["public/c"], {"t": tag, "n": i})
                with lock:
                    results.append((tag, i, pub["id"]))
        finally:
            c.close()
    threads = [threading.Thread(target=loop, args=(n, t)) for n, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 300
    ids = {r[2] for r in results}
    assert len(ids) == 300, "an id was given twice"
    for tag in "ab":
        mine = [parse_id(r[2])[1] for r in results if r[0] == tag]
        assert mine == sorted(mine), f"node {tag}'s own acks out of order"
    order = sorted(results, key=lambda r: parse_id(r[2])[1])
    for p in pages:
        p.read(quiet=0.5)
        got = [m for m in p.messages() if "t" in m["data"]]
        assert [(m["data"]["t"], m["data"]["n"], m["id"]) for m in got] == order
        assert p.resets() == [] and p.closed is None
    assert since


def test_resume_on_the_other_node(cluster):
    a, b = cluster[0], cluster[1]
    led = Ledger()
    pa = Page(a, ["public/r", "public/s"])
    first = led.publish(b, "public/r", "first")
    pa.read_until(lambda m: m.get("id") == first["id"], 3, "the first message")
    last = pa.last_id()
    pa.close()
    since = len(led.entries)
    for i in range(12):
        ch = ["public/r", "public/s", "public/elsewhere"][i % 3]
        assert led.publish((a, b)[i % 2], ch, {"missed": i})["id"]
    pb = Page(b, ["public/r", "public/s"], last_id=last)
    missed = [(e["id"], c, e["data"]) for e in led.entries[since:]
              for c in ("public/r", "public/s") if c in e["channels"]]
    pb.read_until(lambda m: len(pb.messages()) >= len(missed), 5, "the missed messages")
    live = led.publish(a, "public/s", "live")
    pb.read_until(lambda m: m.get("id") == live["id"], 3, "the live message")
    pb.read(quiet=0.2)
    assert pb.resets() == []
    got = [(m["id"], m["channel"], m["data"]) for m in pb.messages()]
    assert got == missed + [(live["id"], "public/s", "live")]


def test_resume_on_the_other_node_over_sse(cluster):
    """EventSource reconnects with Last-Event-ID; another node answers it."""
    a, b = cluster[0], cluster[1]
    led = Ledger()
    s = SseClient(a.ws_port, "/sse?channels=public/e")
    assert s.status == 200
    assert s.json_event()[1]["type"] == "subscribed"
    first = led.publish(b, "public/e", "one")
    _, m, eid = s.json_event()
    assert m["id"] == first["id"] == eid
    s.close()
    ids = [led.publish(a, "public/e", {"k": i})["id"] for i in range(5)]
    s = SseClient(b.ws_port, "/sse?channels=public/e", headers={"Last-Event-ID": eid})
    assert s.status == 200
    assert s.json_event()[1]["type"] == "subscribed"
    assert [s.json_event()[2] for _ in ids] == ids
    s.close()


def test_resume_beyond_the_channel_history_gets_reset(redis_server, cluster_factory):
    c = cluster_factory(redis=redis_server, redis_keys={"channel_history_size": 5})
    a, b = c[0], c[1]
    base = a.publish("public/h", "base")["id"]
    for i in range(8):
        b.publish("public/h", i)
    p = Page(a, ["public/h"], last_id=base)
    p.read()
    assert p.events[0] == {"type": "reset", "channels": ["public/h"]}
    # Within the kept five: exact.
    mark = b.publish("public/h", "mark")["id"]
    ids = [a.publish("public/h", {"after": i})["id"] for i in range(4)]
    p = Page(b, ["public/h"], last_id=mark)
    p.read()
    assert [m["id"] for m in p.messages()] == ids and p.resets() == []


def test_node_subscribes_in_redis_only_to_channels_with_local_pages(cluster):
    a, b = cluster[0], cluster[1]

    def subscribed():
        """Subscriptions in Redis, all nodes together (a channel two nodes
        subscribe to counts twice)."""
        chans = cluster.redis.command("PUBSUB", "CHANNELS")
        if not chans:
            return 0
        counts = cluster.redis.command("PUBSUB", "NUMSUB", *chans)
        return sum(counts[1::2])
    # Both nodes linked (a publish acked through each), then their own
    # channels (probe, control) counted once the count holds still.
    for n in (a, b):
        wait_for(lambda: publish_ok(n), 5, f"{n.name} to link up")
    counts = []

    def steady():
        counts.append(subscribed())
        return len(counts) >= 3 and counts[-1] == counts[-2] == counts[-3]
    wait_for(lambda: steady() or time.sleep(0.2), 5, "the nodes' own Redis channels")
    base = counts[-1]
    p = Page(b, ["public/f1", "public/f2", "public/f3"])
    wait_for(lambda: subscribed() == base + 3, 3, "three more Redis channels")
    q = Page(a, ["public/f1"])                 # another node, same channel: one more
    wait_for(lambda: subscribed() == base + 4, 3, "node A's channel")
    q2 = Page(a, ["public/f1"])                # same node, same channel: none more
    time.sleep(0.3)
    assert subscribed() == base + 4
    p.close()
    wait_for(lambda: subscribed() == base + 1, 3, "node B to unsubscribe")
    q.close()
    q2.close()
    wait_for(lambda: subscribed() == base, 3, "node A to unsubscribe")


def publish_ok(node):
    try:
        return bool(node.publish("public/link", "up")["id"])
    except IpcError:
        return False


def test_disconnect_closes_the_users_pages_on_every_node(redis_server, cluster_factory):
    c = cluster_factory(redis=redis_server, n=2)
    a, b = c[0], c[1]
    now = int(time.time())
    tok = user_token("alice", iat=now)
    pages = [Page(n, ["user/alice/x"], token=tok) for n in (a, b, b)]
    bob = Page(b, ["user/bob/x"], token=user_token("bob", iat=now))
    s = int(time.time())
    assert a.disconnect("alice") >= 1
    for p in pages:
        p.read(quiet=3.0, limit=3.0)
        assert p.closed == 4401, f"alice's page on {p.node.name}: {p.closed}"
    bob.read(quiet=0.2)
    assert bob.closed is None
    # Every node refuses alice's older tokens, also one started afterwards:
    # the record is in Redis.
    late = c.add(start=True)
    for n in (a, b, late):
        for t in (tok, user_token("alice", iat=s)):
            r = opens(n, t)
            assert r == 4401, f"{n.name} let a revoked token in: {r}"
        assert opens(n, user_token("alice", iat=s + 1)) == "open"

