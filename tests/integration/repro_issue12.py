"""Scenarios of the reviews of issue 12 kept as reproductions (not collected
by pytest: the file name does not start with test_). Two of them pass
(test_storm_with_pubsub_kills, test_pause_during_resumes: stress runs kept
for by-hand use); test_many_channels_pubsub_cut cuts PUB/SUB under 8,000
channels (read since in calls of at most 256 channels, which
test_redis_engine.py checks).
The reviews' other scenarios were fixed and became regression tests:
test_redis_engine.py, test_redis_replication.py, test_cluster_tokens.py
and test_redis_data_replaced.py.
Run one by hand:
  cp tests/integration/repro_issue12.py tests/integration/test_repro12.py
  WSPUSH_BIN=$PWD/build/bin bash tests/run-integration.sh test_repro12.py -k NAME
"""
import threading
import time

from cluster_pages import Ledger, Page, check_page, parse_id
from redis_servers import cluster, cluster_factory, redis_factory, redis_server  # noqa: F401


def order_ok(page):
    prev = None
    for ev in page.events:
        if ev["type"] == "reset":
            prev = None
            continue
        cur = parse_id(ev["id"])
        cur = (int(cur[0], 16), cur[1])
        if prev is not None:
            assert cur >= prev, f"cross-channel order broken: {ev['id']} after {prev}"
        prev = cur


def test_storm_with_pubsub_kills(cluster):
    redis = cluster.redis
    a, b = cluster[0], cluster[1]
    led = Ledger()
    chans = ["public/s1", "public/s2", "public/s3"]
    pages = [Page(a, chans), Page(b, chans), Page(b, chans[:1]), Page(a, chans[1:])]
    for p in pages:
        pass
    e = led.publish(a, chans, {"warm": 1})
    for p in pages:
        p.read_until(lambda m: m.get("data") == {"warm": 1}, 5, "warm")
    since = len(led.entries)
    stop = threading.Event()
    kills = [0]

    def killer():
        while not stop.is_set():
            try:
                redis.command("CLIENT", "KILL", "TYPE", "pubsub")
                kills[0] += 1
            except Exception:
                pass
            stop.wait(0.03)

    def churn():
        while not stop.is_set():
            try:
                q = Page(b, ["public/s3"])
                stop.wait(0.05)
                q.close()
            except Exception:
                pass
    t = threading.Thread(target=killer); t.start()
    t2 = threading.Thread(target=churn); t2.start()
    try:
        for i in range(4000):
            ch = [chans[i % 3]] if i % 4 else chans[: 1 + i % 3]
            led.publish((a, b)[i % 2], ch, {"i": i})
            if i % 50 == 0:
                for p in pages:
                    p.read(quiet=0.01, limit=0.2)
    finally:
        stop.set(); t.join(); t2.join()
    led.publish(a, chans, {"end": 1})
    for p in pages:
        p.read(quiet=1.5, limit=20)
        assert p.closed is None
    print("kills", kills[0], "acked", len(led.acked()), "errors", led.errors()[:5])
    for p in pages:
        print("page", p.channels, "msgs", len(p.messages()), "resets", len(p.resets()))
        check_page(p, led, since)
        order_ok(p)


def test_pause_during_resumes(cluster):
    redis = cluster.redis
    a, b = cluster[0], cluster[1]
    led = Ledger()
    chans = ["public/r1", "public/r2"]
    stay = [Page(a, chans), Page(b, chans)]
    led.publish(a, chans, {"warm": 1})
    for p in stay:
        p.read_until(lambda m: m.get("data") == {"warm": 1}, 5, "warm")
    since = len(led.entries)
    movers = []
    for i in range(200):
        led.publish((a, b)[i % 2], chans[i % 2], {"i": i})
        if i % 20 == 5:
            q = Page((b, a)[i % 2], chans)
            q.read(quiet=0.05, limit=0.3)
            movers.append((q, len(led.entries)))
        if i == 60:
            redis.pause()
        if i == 62:
            # resumes while Redis is paused
            for q, _ in movers[:3]:
                lid = q.last_id(); q.close()
                movers.append((Page((a, b)[i % 2], chans, last_id=lid), None))
        if i == 70:
            time.sleep(1.5)
            redis.resume()
    led.publish(a, chans, {"end": 1})
    # resumes of the others now
    res = []
    for q, _ in movers[3:8]:
        lid = q.last_id(); q.close()
        res.append(Page(a, chans, last_id=lid))
    led.publish(b, chans, {"end": 2})
    for p in stay + [m for m, _ in movers] + res:
        p.read(quiet=1.0, limit=15)
    for p in stay:
        assert p.closed is None
        check_page(p, led, since)
        order_ok(p)
    for p in res:
        order_ok(p)
        print("resumed", len(p.messages()), len(p.resets()))
    print("errors", led.errors())


def test_many_channels_pubsub_cut(cluster):
    redis = cluster.redis
    a, b = cluster[0], cluster[1]
    led = Ledger()
    pages = []
    for k in range(250):
        pages.append(Page(a, [f"public/m{k}-{j}" for j in range(32)]))
    for k in range(0, 250, 25):
        assert led.publish(b, f"public/m{k}-0", {"k": k})["id"]
    t0 = time.monotonic()
    redis.command("CLIENT", "KILL", "TYPE", "pubsub")
    for k in range(0, 250, 25):
        assert led.publish(b, f"public/m{k}-1", {"after": k})["id"]
    time.sleep(3)
    log = a.log_text()
    print(log[-2500:])
    print("pubsub ups", log.count("PUB/SUB connection up"), "lost", log.count("connection lost"))
    assert log.count("command connection lost") == 0

