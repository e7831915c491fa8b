"""One id order across a page's channels while a node catches a channel
up (must-have 5 of issue 12), and live delivery that never waits for more
than the catch-ups begun before a copy came (engine_redis.c, "order").

Each test slows one direction of one connection between node A and Redis
with a proxy, so that the window the engine must cover lasts long enough
to be hit for sure; node B publishes straight to Redis."""
import time

from harness import wait_for
from cluster_pages import Ledger, Page, check_page
from redis_servers import SlowRepliesProxy, cluster_factory, redis_factory  # noqa: F401
from test_redis_engine import slow_node
from test_redis_resume_order import ids_in_order


class _LateByRole(SlowRepliesProxy):
    """Node A's bytes held back by what its connection does: on one that
    has sent a SUBSCRIBE (PUB/SUB, the first and the rebuilt ones),
    Redis-to-node bytes wait `pubsub_down` seconds and node-to-Redis ones
    `pubsub_up`; on one that has sent a script (the command connection
    from its first script on: the handshake is on time), node-to-Redis
    bytes wait `scripts_up`."""

    def __init__(self, dir, server, delay=0, pubsub_down=0, pubsub_up=0, scripts_up=0):
        self.subscribed, self.scripting = set(), set()
        self.pubsub_down, self.pubsub_up, self.scripts_up = pubsub_down, pubsub_up, scripts_up
        super().__init__(dir, server, delay=delay)

    def late(self, index, down, data):
        if not down and b"SUBSCRIBE" in data.upper():
            self.subscribed.add(index)
        if not down and b"EVAL" in data.upper():
            self.scripting.add(index)
        if index in self.subscribed:
            return self.pubsub_down if down else self.pubsub_up
        return self.scripts_up if not down and index in self.scripting else 0


def _wait_subscribed(redis, channel):
    wait_for(lambda: redis.command("PUBSUB", "NUMSUB", "wspush:m:" + channel)[1] >= 1,
             what=f"a node subscribed to {channel}")


def _joins_and_gets_both(redis, a, b, x_chan, y_chan, y_first):
    """A page on Y (subscribed on A), then a page on [X, Y] (X new to A);
    B publishes one message on each (Y's first when y_first); returns the
    second page, its ledger and where its part of the ledger begins."""
    led = Ledger()
    keep = Page(a, [y_chan])
    _wait_subscribed(redis, y_chan)
    time.sleep(0.6)        # the confirmation reaches A even when it comes late
    p = Page(a, [x_chan, y_chan])
    _wait_subscribed(redis, x_chan)
    since = len(led.entries)
    order = [y_chan, x_chan] if y_first else [x_chan, y_chan]
    ids = [led.publish(b, c, {"on": c})["id"] for c in order]
    got = set()
    p.read_until(lambda m: got.add(m.get("id")) or set(ids) <= got, 5, "both messages")
    keep.close()
    return p, led, since


def test_a_page_joining_a_channel_new_to_its_node_gets_ids_in_order(redis_factory,
                                                                     cluster_factory, tmp_path):
    """Node A's SUBSCRIBEs reach Redis 0.5 s late. A page joins A on
    [X, Y]: Y is subscribed on A already (another page), X is new to A.
    Within the 0.5 s, B publishes X:n then Y:n+1. X:n comes from X's
    catch-up, once the SUBSCRIBE is confirmed. Y's copy used to reach the
    page at once, before it (the hold began at the confirmation): X is in
    doubt from the page's join on, so Y's copy waits for X's catch-up."""
    with slow_node(redis_factory, cluster_factory, tmp_path, 0, proxy=_LateByRole,
                   pubsub_up=0.5) as (redis, a, b):
        p, led, since = _joins_and_gets_both(redis, a, b, "public/jx", "public/jy", False)
        seq, bad = ids_in_order(p)
        assert bad is None, f"cross-channel order broken: {bad} in {seq}"
        check_page(p, led, since)


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
    with slow_node(redis_factory, cluster_factory, tmp_path, 0, proxy=_LateByRole,
                   pubsub_down=0.4) as (redis, a, b):
        p, led, since = _joins_and_gets_both(redis, a, b, "public/mx", "public/my", True)
        seq, bad = ids_in_order(p)
        assert bad is None, f"cross-channel order broken: {bad} in {seq}"
        check_page(p, led, since)


def test_pages_joining_without_pause_do_not_stall_the_copies_of_other_channels(
        redis_factory, cluster_factory, tmp_path):
    """Node A's command replies come 0.3 s late, so each catch-up takes
    0.3 s; a page joins A on a channel new to it every 40 ms, so there is
    always a catch-up in flight. A copy of a channel A has subscribed for
    long used to wait until none was (until the joins stop, or until
    max_held_bytes resets every joining page): it must come while they go
    on, having waited only for the catch-ups begun before it came."""
    joined = []
    with slow_node(redis_factory, cluster_factory, tmp_path, 0.3) as (redis, a, b):
        try:
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
            print(f"the copy came after {came_at - 15} more joins")
            for j in joined:
                j.read(quiet=0.05, limit=0.5)
                assert j.resets() == [], (j.channels, j.events)
        finally:
            for j in joined:
                j.close()


def test_a_catch_up_read_after_a_rebuilt_pubsub_connection_is_not_placed_early(
        redis_factory, cluster_factory, tmp_path):
    """Node A's scripts reach Redis 3 s late, Redis's bytes on its PUB/SUB
    connection come 1 s late. A page joins A on [X, Y], Y subscribed
    there already: X's catch-up read is sent when its SUBSCRIBE is
    confirmed (1 s), runs 3 s later. Meanwhile A's PUB/SUB connection is
    cut and rebuilt, X and Y subscribed again and confirmed; then B
    publishes Y, Y, X, half a second before the read runs: the read finds
    X's message and is answered before the copies of Y, 1 s late, come.
    The rebuilt connection used to count the read's marker as come: its
    entry was placed first, the copies after it, and the page got X's
    message before Y's older ones. A read not answered when the connection
    is rebuilt is moot now (X is read again after its SUBSCRIBE), and
    copies join the ones waiting in id order. The timings are aimed, not
    awaited: on a slow machine the scenario may not line up, and the page
    must get the three messages once, in id order, whatever happens."""
    late_copies, late_scripts = 1.0, 3.0
    with slow_node(redis_factory, cluster_factory, tmp_path, 0, timeout="9s", proxy=_LateByRole,
                   pubsub_down=late_copies, scripts_up=late_scripts) as (redis, a, b):
        X, Y = "public/rx", "public/ry"
        led = Ledger()
        keep = Page(a, [Y])
        _wait_subscribed(redis, Y)
        warm = led.publish(b, Y, {"warm": 1})["id"]
        keep.read_until(lambda m: m.get("id") == warm, 20, "Y flowing on A")
        p = Page(a, [X, Y])
        _wait_subscribed(redis, X)
        joined = time.monotonic()
        read_runs = joined + late_copies + late_scripts
        time.sleep(late_copies + 0.3)      # X's confirmation came: its read is on its way
        ups = a.log_text().count("PUB/SUB connection up")
        redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        wait_for(lambda: a.log_text().count("PUB/SUB connection up") > ups, timeout=10,
                 what="A's PUB/SUB connection rebuilt")
        _wait_subscribed(redis, X)
        time.sleep(max(0.0, read_runs - 0.5 - time.monotonic()))
        since = len(led.entries)
        ids = [led.publish(b, c, {"on": c, "i": i})["id"] for i, c in enumerate((Y, Y, X))]
        got = set()
        p.read_until(lambda m: got.add(m.get("id")) or set(ids) <= got, 20, "the three messages")
        p.read(quiet=0.5)
        seq, bad = ids_in_order(p)
        assert bad is None, f"cross-channel order broken: {bad} in {seq}"
        check_page(p, led, since)
        keep.close()


def test_a_page_joining_a_channel_left_during_its_catch_up_gets_nothing_older_than_its_greeting(
        redis_factory, cluster_factory, tmp_path):
    """Node A's command replies come 1.5 s late. A's PUB/SUB connection is
    cut while B publishes three messages on C: A's catch-up of C, from the
    last one its page saw, is sent when C is subscribed again, its answer
    on the way; a fourth message's copy waits for it. A copy on D then
    tells A of a newer id. C's page leaves and a new one joins: its
    greeting's last_id is that newer id, and it must get nothing older (it
    used to get the three messages from the catch-up asked for the page
    gone, and the copy held for it), only the next message."""
    with slow_node(redis_factory, cluster_factory, tmp_path, 1.5, "5s") as (redis, a, b):
        C, D = "public/lc", "public/ld"
        led = Ledger()
        p1 = Page(a, [C])
        keep = Page(a, [D])
        _wait_subscribed(redis, D)
        _wait_subscribed(redis, C)
        first = led.publish(b, C, {"c": 0})["id"]
        p1.read_until(lambda m: m.get("id") == first, 10, "C flowing on A")
        ups = a.log_text().count("PUB/SUB connection up")
        redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        for i in range(1, 4):
            led.publish(b, C, {"c": i})           # in the stream while A is not subscribed
        wait_for(lambda: a.log_text().count("PUB/SUB connection up") > ups, timeout=10,
                 what="A's PUB/SUB connection rebuilt")
        _wait_subscribed(redis, C)                # C's catch-up is on its way
        _wait_subscribed(redis, D)
        led.publish(b, C, {"c": "held"})          # its copy waits for that catch-up
        newer = led.publish(b, D, {"d": 1})["id"]
        wait_for(lambda: a.log_text().count("PUB/SUB connection up") > ups, what="rebuilt")
        time.sleep(0.2)                           # D's copy came (held: D is caught up too)
        p1.close()
        wait_for(lambda: redis.command("PUBSUB", "NUMSUB", "wspush:m:" + C)[1] == 0,
                 what="A unsubscribed from C")
        p2 = Page(a, [C])
        greeting = p2.hello["last_id"]
        assert greeting == newer, (greeting, newer)
        # Published before the old read is answered: the read asked again
        # after it finds this one, so C's position is not set from the
        # stream's last id (which would hide the old read's entries).
        nxt = led.publish(b, C, {"c": 4})["id"]
        p2.read_until(lambda m: m.get("id") == nxt, 10, "the next message")
        p2.read(quiet=0.3)
        older = [m for m in p2.messages() if _id_key(m["id"]) <= _id_key(greeting)]
        assert older == [], f"older than the greeting's {greeting}: {older}"
        assert [m["id"] for m in p2.messages()] == [nxt], p2.events
        keep.close()


def _id_key(i):
    epoch, _, seq = i.partition("-")
    return int(epoch, 16), int(seq)
