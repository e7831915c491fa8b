"""One id order across a page's channels while a node catches a channel
up (must-have 5 of issue 12), and live delivery that never waits for more
than the catch-ups begun before a copy came (engine_redis.c, "order").

Each test slows one direction of one connection between node A and Redis
with a proxy, so that the window the engine must cover lasts long enough
to be hit for sure; node B publishes straight to Redis."""
import tempfile
import time

from harness import wait_for
from cluster_pages import Ledger, Page, check_page
from redis_servers import (Node, SlowRepliesProxy, cluster_factory, redis_factory,  # noqa: F401
                           wait_redis_up)
from test_redis_resume_order import ids_in_order


class _LateOnSubscribed(SlowRepliesProxy):
    """Bytes of a connection that has sent a SUBSCRIBE (node A's PUB/SUB
    connection) wait `delay` seconds: node-to-Redis ones (down False) or
    Redis-to-node ones (down True), as `down` says."""

    def __init__(self, dir, server, delay, down):
        self.subscribed = set()
        self.slow_down = down
        super().__init__(dir, server, delay=delay)

    def late(self, index, down, data):
        if not down and b"SUBSCRIBE" in data.upper():
            self.subscribed.add(index)
        return self.delay if down == self.slow_down and index in self.subscribed else 0


def _slow_node(tmp_path, redis, proxy_kind, **kw):
    dir = tempfile.mkdtemp(prefix="wpx-")
    px = proxy_kind(dir, redis, **kw)
    a = Node(tmp_path, "slow", redis=px,
             redis_keys={"connect_timeout": "3s", "command_timeout": "3s"})
    a.start_ws()
    return a, px


def _wait_subscribed(redis, channel):
    wait_for(lambda: redis.command("PUBSUB", "NUMSUB", "wspush:m:" + channel)[1] >= 1,
             what=f"a node subscribed to {channel}")


def test_a_page_joining_a_channel_new_to_its_node_gets_ids_in_order(redis_factory,
                                                                     cluster_factory, tmp_path):
    """Node A's SUBSCRIBEs reach Redis 0.5 s late. A page joins A on
    [X, Y]: Y is subscribed on A already (another page), X is new to A.
    Within the 0.5 s, B publishes X:n then Y:n+1. X:n comes from X's
    catch-up, once the SUBSCRIBE is confirmed. Y's copy used to reach the
    page at once, before it (the hold began at the confirmation): X is in
    doubt from the page's join on, so Y's copy waits for X's catch-up."""
    redis = redis_factory.server()
    b = cluster_factory(redis=redis, n=1, prefix="plain")[0]
    a, px = _slow_node(tmp_path, redis, _LateOnSubscribed, delay=0.5, down=False)
    try:
        wait_redis_up(a, timeout=15)
        wait_redis_up(b, timeout=15)
        X, Y = "public/jx", "public/jy"
        led = Ledger()
        keep = Page(a, [Y])
        _wait_subscribed(redis, Y)
        p = Page(a, [X, Y])
        since = len(led.entries)
        x = led.publish(b, X, {"x": 1})
        y = led.publish(b, Y, {"y": 1})
        got = set()
        p.read_until(lambda m: got.add(m.get("id")) or {x["id"], y["id"]} <= got, 5,
                     "both messages")
        seq, bad = ids_in_order(p)
        assert bad is None, f"cross-channel order broken: {bad} in {seq}"
        check_page(p, led, since)
        keep.close()
    finally:
        rc = a.stop_ws()
        px.close()
    assert rc == 0, a.log_text()[-3000:]


def test_a_catch_up_read_ahead_of_late_copies_waits_for_them(redis_factory, cluster_factory,
                                                            tmp_path):
    """Redis's bytes on node A's PUB/SUB connection come 0.4 s late; its
    commands are answered at once. A page joins A on [X, Y], Y subscribed
    already, X new. B publishes Y:n then X:n+1 at once. X's catch-up is
    read when the SUBSCRIBE's confirmation comes (0.4 s late) and answered
    at once: it holds X:n+1, while Y:n's copy, published before the read,
    is still on its way. The entries used to go out as the answer came,
    before Y:n: now they are placed when the read's marker comes, on the
    PUB/SUB connection, after every copy published before the read."""
    redis = redis_factory.server()
    b = cluster_factory(redis=redis, n=1, prefix="plain")[0]
    a, px = _slow_node(tmp_path, redis, _LateOnSubscribed, delay=0.4, down=True)
    try:
        wait_redis_up(a, timeout=15)
        wait_redis_up(b, timeout=15)
        X, Y = "public/mx", "public/my"
        led = Ledger()
        keep = Page(a, [Y])
        _wait_subscribed(redis, Y)
        time.sleep(0.5)            # A has Y's confirmation (0.4 s late): Y's copies flow
        p = Page(a, [X, Y])
        _wait_subscribed(redis, X)   # in Redis: A hears of it 0.4 s later
        since = len(led.entries)
        y = led.publish(b, Y, {"y": 1})
        x = led.publish(b, X, {"x": 1})
        got = set()
        p.read_until(lambda m: got.add(m.get("id")) or {x["id"], y["id"]} <= got, 5,
                     "both messages")
        seq, bad = ids_in_order(p)
        assert bad is None, f"cross-channel order broken: {bad} in {seq}"
        check_page(p, led, since)
        keep.close()
    finally:
        rc = a.stop_ws()
        px.close()
    assert rc == 0, a.log_text()[-3000:]


def test_pages_joining_without_pause_do_not_stall_the_copies_of_other_channels(
        redis_factory, cluster_factory, tmp_path):
    """Node A's command replies come 0.3 s late, so each catch-up takes
    0.3 s; a page joins A on a channel new to it every 40 ms, so there is
    always a catch-up in flight. A copy of a channel A has subscribed for
    long used to wait until none was (until the joins stop, or until
    max_held_bytes resets every joining page): it must come while they go
    on, having waited only for the catch-ups begun before it came."""
    redis = redis_factory.server()
    b = cluster_factory(redis=redis, n=1, prefix="plain")[0]
    a, px = _slow_node(tmp_path, redis, SlowRepliesProxy, delay=0.3)
    joined = []
    try:
        wait_redis_up(a, timeout=15)
        wait_redis_up(b, timeout=15)
        L = "public/live"
        p = Page(a, [L])
        _wait_subscribed(redis, L)
        led = Ledger()
        came_at = None
        for i in range(200):
            joined.append(Page(a, ["public/join%d" % i]))
            if i == 15:
                led.publish(b, L, {"n": 1})
            if i < 15:
                time.sleep(0.04)
                continue
            m = p.next(0.04)
            if m is not None:
                p.events.append(m)
                came_at = i
                break
        assert came_at is not None, "the copy waited for every page joining after it came"
        assert p.events[0]["type"] == "message", p.events
        joins = len(joined) - 16
        print(f"the copy came after {joins} more joins")
        for j in joined:
            j.read(quiet=0.05, limit=0.5)
            assert j.resets() == [], (j.channels, j.events)
    finally:
        for j in joined:
            j.close()
        rc = a.stop_ws()
        px.close()
    assert rc == 0, a.log_text()[-3000:]
