"""The Redis engine (engine = redis) with real redis-server processes and
two ws-server nodes sharing one: ids across nodes, cross-node delivery in
id order, resume on the other node, 503 / 504 when Redis is down or
silent, a missed PUB/SUB copy recovered from the stream (or reset), an
epoch change resetting resumes, and disconnect across nodes."""
import asyncio
import contextlib
import json
import time

import pytest
import websockets

from harness import IpcError, free_port, make_token, wait_for
from cluster_pages import Ledger, Page
from redis_servers import RedisServer, freezable_pair, redis_node, wait_redis_up
from redis_servers import cluster_factory, redis_factory  # noqa: F401 (fixtures)
from test_history import drain, run
from test_metrics import metrics_up, scrape


@pytest.fixture
def cluster(tmp_path):
    """One Redis, nodes A and B on it (started, connected)."""
    redis = RedisServer(tmp_path)
    nodes = [redis_node(tmp_path, redis, n) for n in ("a", "b")]
    for n in nodes:
        n.start_ws()
    for n in nodes:
        wait_redis_up(n)
    yield redis, nodes[0], nodes[1]
    for n in nodes:
        if n.ws_proc is not None:
            rc = n.stop_ws()
            assert rc == 0, "ws-server exited %r:\n%s" % (rc, n.log_text()[-4000:])
    redis.stop()


async def connect(env, query):
    ws = await websockets.connect(env.ws_url(query), close_timeout=1)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert hello["type"] == "subscribed"
    return ws, hello


async def recv(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def id_key(i):
    e, s = i.split("-")
    return (int(e, 16), int(s))


def test_ids_increase_across_nodes_and_pages_get_every_node_s_messages_in_order(cluster):
    redis, a, b = cluster

    async def go():
        pa, _ = await connect(a, "channels=public/x,public/y")
        pb, _ = await connect(b, "channels=public/x,public/y")
        await asyncio.sleep(0.3)       # both nodes subscribed in Redis
        acks = []
        for i in range(40):
            node = (a, b)[i % 2]
            acks.append(node.publish(["public/x", "public/y"][i % 3 % 2], i)["id"])
        keys = [id_key(i) for i in acks]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        for page in (pa, pb):
            got = await drain(page)
            assert [m["id"] for m in got] == acks
            assert [m["data"] for m in got] == list(range(40))
            await page.close()
    run(go())


def test_resume_on_the_other_node_is_exact(cluster):
    redis, a, b = cluster

    async def go():
        p, _ = await connect(a, "channels=public/r,public/s")
        await asyncio.sleep(0.3)
        first = a.publish("public/r", "first")
        assert (await recv(p))["id"] == first["id"]
        await p.close()
        missed = []
        for i in range(12):
            ch = ["public/r", "public/s", "public/other"][i % 3]
            ack = (a, b)[i % 2].publish(ch, i)
            if ch != "public/other":
                missed.append((ch, ack["id"], i))
        p, _ = await connect(b, "channels=public/r,public/s&last_id=" + first["id"])
        live = a.publish("public/s", "live")
        got = await drain(p)
        assert [(m["channel"], m["id"], m["data"]) for m in got] == \
            missed + [("public/s", live["id"], "live")]
        await p.close()
    run(go())


def test_redis_down_gives_503_code_pages_stay_and_it_comes_back(cluster):
    redis, a, b = cluster

    async def go():
        p, _ = await connect(b, "channels=public/d")
        await asyncio.sleep(0.3)
        before = a.publish("public/d", 1)
        assert (await recv(p))["id"] == before["id"]
        redis.stop()
        with pytest.raises(IpcError) as e:
            a.publish("public/d", 2)
        assert e.value.code == 7
        # The page stays connected; a new page is accepted, its resume reset.
        p2, _ = await connect(b, "channels=public/d&last_id=" + before["id"])
        assert (await recv(p2))["type"] == "reset"
        redis.start()
        wait_for(lambda: a.log_text().count("PUB/SUB connection up") >= 2 and
                 b.log_text().count("PUB/SUB connection up") >= 2, timeout=10, what="reconnect")
        await asyncio.sleep(0.3)
        after = a.publish("public/d", 3)
        # A new epoch (Redis lost everything): never an id given twice.
        assert id_key(after["id"]) > id_key(before["id"])
        for page in (p, p2):
            got = [m for m in await drain(page) if m["type"] == "message"]
            assert [m["data"] for m in got] == [3]
            await page.close()
    run(go())


def test_redis_silent_gives_504_code_and_no_false_ack(cluster):
    redis, a, b = cluster
    a.publish("public/t", 0)
    redis.pause()
    try:
        with pytest.raises(IpcError) as e:
            a.publish("public/t", 1)
        assert e.value.code == 8
    finally:
        redis.resume()
    wait_for(lambda: _publishes(a), timeout=10, what="publishing again")


def _publishes(node):
    try:
        node.publish("public/t", 2)
        return True
    except IpcError:
        return False


def _write_without_publish(redis, channel, data, prefix="wspush:", stream=True):
    """What the publish script does, minus the PUBLISH: a copy every node
    misses (the PUB/SUB message lost), kept in the stream."""
    with redis.client() as r:
        e = int(r.command("HGET", prefix + "epoch", "e"))
        s = r.command("HINCRBY", prefix + "epoch", "s", 1)
        mid = "%x-%d" % (e, s)
        prev = (r.command("GET", prefix + "l:" + channel) or b"").decode()
        if stream:
            r.command("XADD", prefix + "s:" + channel, "%d-%d" % (e, s), "p", prev, "d",
                      json.dumps(data))
        r.command("SET", prefix + "l:" + channel, mid)
    return mid


def test_a_missed_copy_is_recovered_from_the_stream_in_order(cluster):
    redis, a, b = cluster

    async def go():
        p, _ = await connect(b, "channels=public/g")
        await asyncio.sleep(0.3)
        one = a.publish("public/g", 1)
        lost = _write_without_publish(redis, "public/g", 2)
        three = a.publish("public/g", 3)
        got = await drain(p)
        assert [(m["type"], m.get("id")) for m in got] == \
            [("message", one["id"]), ("message", lost), ("message", three["id"])]
        await p.close()
    run(go())


def test_a_missed_copy_not_in_the_stream_resets_the_channel(tmp_path):
    redis = RedisServer(tmp_path)
    a = redis_node(tmp_path, redis, "a", channel_history_size=0)
    a.start_ws()
    try:
        wait_redis_up(a)

        async def go():
            p, _ = await connect(a, "channels=public/g")
            await asyncio.sleep(0.3)
            a.publish("public/g", 1)
            _write_without_publish(redis, "public/g", 2, stream=False)
            three = a.publish("public/g", 3)
            got = await drain(p)
            assert [m["type"] for m in got] == ["message", "reset", "message"]
            assert got[1]["channels"] == ["public/g"] and got[2]["id"] == three["id"]
            await p.close()
        run(go())
    finally:
        assert a.stop_ws() == 0
        redis.stop()


def test_disconnect_closes_the_user_s_pages_on_every_node(tmp_path):
    redis = RedisServer(tmp_path)
    nodes = [redis_node(tmp_path, redis, n) for n in ("a", "b")]
    for n in nodes:
        n.sections["channels"]["subscribe"] = "user/{user}/*"
        n.write_ini()
        n.start_ws()
    a, b = nodes
    try:
        for n in nodes:
            wait_redis_up(n)
        tok = make_token(sub="alice", channels=("user/alice/*",))

        async def go():
            pb, _ = await connect(b, "channels=user/alice/inbox&token=" + tok)
            assert a.disconnect("alice") == 0        # none on A itself
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(pb.recv(), 5)
            assert e.value.code == 4401
            # B refuses the old token now.
            p2 = await websockets.connect(b.ws_url("channels=user/alice/inbox&token=" + tok),
                                          close_timeout=1)
            with pytest.raises(websockets.ConnectionClosed) as e2:
                await asyncio.wait_for(p2.recv(), 5)
            assert e2.value.code == 4401
            redis.stop()
            with pytest.raises(IpcError) as ie:
                a.disconnect("bob")
            assert ie.value.code == 7 and "other nodes were not reached" in ie.value.text
        run(go())
    finally:
        for n in nodes:
            assert n.stop_ws() == 0
        redis.stop()


def test_a_rebuilt_pubsub_connection_catches_every_channel_up(cluster):
    """The PUB/SUB connections are cut (as a dead connection the probe
    finds would be): what is published meanwhile comes from the streams,
    in order, then live messages."""
    redis, a, b = cluster

    async def go():
        p, _ = await connect(b, "channels=public/k,public/l")
        await asyncio.sleep(0.3)
        acks = [a.publish("public/k", 0)["id"]]
        assert (await recv(p))["id"] == acks[0]
        ups = b.log_text().count("PUB/SUB connection up")
        redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        for i in range(1, 8):
            acks.append(a.publish(["public/k", "public/l"][i % 2], i)["id"])
        wait_for(lambda: b.log_text().count("PUB/SUB connection up") > ups, what="rebuilt")
        await asyncio.sleep(0.3)
        acks.append(a.publish("public/l", 8)["id"])
        got = await drain(p)
        assert [m["id"] for m in got] == acks[1:]
        assert all(m["type"] == "message" for m in got)
        await p.close()
    run(go())


def test_a_rebuilt_pubsub_connection_reads_its_many_channels_in_bounded_calls(cluster):
    """A node with 600 channels has its PUB/SUB connection cut: their
    catch-up is read in calls of at most 256 channels (one script over
    every stream would hold Redis, single-threaded, for all its clients),
    and the pages get what was published meanwhile on channels of every
    call. Redis's slow log, set to keep every command, shows the calls."""
    redis, a, b = cluster
    names = [f"public/many{k}" for k in range(600)]
    pages = [Page(b, names[i:i + 30]) for i in range(0, len(names), 30)]
    wait_for(lambda: redis.command("PUBSUB", "NUMSUB", "wspush:m:" + names[-1])[1] >= 1,
             what="the channels subscribed")
    led = Ledger()
    # A copy waits for the catch-ups of the joins before it: once it is
    # here, they are all read, and the slow log below has the cut's only.
    warm = led.publish(a, names[-1], {"warm": 1})
    pages[-1].read_until(lambda m: m.get("id") == warm["id"], 10, "the joins' catch-ups done")
    redis.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    redis.command("CONFIG", "SET", "slowlog-max-len", "10000")
    redis.command("SLOWLOG", "RESET")
    ups = b.log_text().count("PUB/SUB connection up")
    redis.command("CLIENT", "KILL", "TYPE", "pubsub")
    cut = [led.publish(a, names[k], {"k": k}) for k in (0, 299, 599)]
    wait_for(lambda: b.log_text().count("PUB/SUB connection up") > ups, what="rebuilt")
    for e in cut:
        page = pages[names.index(e["channels"][0]) // 30]
        page.read_until(lambda m: m.get("id") == e["id"], 10, "the message of the cut")
    redis.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
    calls = [e[3] for e in redis.command("SLOWLOG", "GET", "10000")
             if e[3][0].upper() == b"EVALSHA" and e[3][3] == b"wspush:epoch" and
             e[3][4].startswith(b"wspush:s:public/many")]
    # The history script is the one read over more than one channel.
    history = {c[1] for c in calls if int(c[2]) > 3}
    read = [(int(c[2]) - 1) // 2 for c in calls if c[1] in history]
    assert len(history) == 1 and sum(read) == 600 and max(read) <= 256, read
    for p in pages:
        p.close()


def test_redis_restarted_empty_resets_resumes_and_never_reuses_an_id(cluster):
    redis, a, b = cluster

    async def go():
        old = a.publish("public/e", 1)
        redis.restart()                  # no persistence: everything lost
        wait_for(lambda: _publishes(a), timeout=10, what="publishing again")
        p, _ = await connect(b, "channels=public/e&last_id=" + old["id"])
        assert (await recv(p)) == {"type": "reset", "channels": ["public/e"]}
        new = a.publish("public/e", 2)
        assert id_key(new["id"]) > id_key(old["id"])
        assert (await recv(p))["id"] == new["id"]
        await p.close()
    run(go())


def test_wait_replicas_acks_only_what_the_replicas_confirm(tmp_path):
    """wait_replicas = 1: with a replica the ack comes; without one the
    publish is answered 504 (the master has it, the replicas do not)."""
    master = RedisServer(tmp_path, name="m", tcp=True)
    replica = RedisServer(tmp_path, name="r", replicaof=master)
    a = redis_node(tmp_path, master, "a", wait_replicas=1)
    a.start_ws()
    try:
        wait_redis_up(a)
        wait_for(lambda: b"state=online" in master.command("INFO", "replication"),
                 timeout=10, what="the replica in sync")
        assert a.publish("public/w", 1)["id"]
        replica.stop()
        wait_for(lambda: b"connected_slaves:0" in master.command("INFO", "replication"),
                 what="the replica gone")
        with pytest.raises(IpcError) as e:
            a.publish("public/w", 2)
        assert e.value.code == 8
    finally:
        assert a.stop_ws() == 0
        replica.stop()
        master.stop()


def test_a_page_joining_while_its_channel_is_unsubscribed_gets_exactly_the_new_messages(cluster):
    """The last page leaves and a new one joins before Redis confirmed the
    UNSUBSCRIBE: the new page gets the later messages once, no old one."""
    redis, a, b = cluster

    async def go():
        for round_ in range(5):
            p1, _ = await connect(b, "channels=public/u")
            await asyncio.sleep(0.2)
            old = a.publish("public/u", "old%d" % round_)
            assert (await recv(p1))["id"] == old["id"]
            closing = asyncio.ensure_future(p1.close())
            p2, _ = await connect(b, "channels=public/u")
            await closing
            await asyncio.sleep(0.2)
            new = a.publish("public/u", "new%d" % round_)
            got = await drain(p2, quiet=0.3)
            assert [m.get("id") for m in got] == [new["id"]]
            await p2.close()
    run(go())


def test_a_silently_dead_pubsub_connection_is_found_by_the_probe(tmp_path):
    """Redis's bytes stop reaching the node's PUB/SUB connection, which
    stays open: the probe does not come back within command_timeout, the
    connection is rebuilt, and the page gets what was published meanwhile."""
    with freezable_pair(tmp_path, b=lambda r: metered_node(tmp_path, r, "b")) as (redis, proxy,
                                                                                  a, b):
        async def go():
            p, _ = await connect(b, "channels=public/p")
            await asyncio.sleep(0.3)
            first = a.publish("public/p", 0)
            assert (await recv(p))["id"] == first["id"]
            proxy.freeze(1)                  # b's second connection: PUB/SUB
            acks = [a.publish("public/p", i)["id"] for i in range(1, 4)]
            wait_for(lambda: "liveness probe did not come back" in b.log_text(), timeout=5,
                     what="the probe to fail")
            got = await drain(p, quiet=1.0)
            assert [m["id"] for m in got] == acks
            await p.close()
            m = scrape(b)
            assert m("wspush_redis_probe_failures_total") == 1
            assert m("wspush_redis_catchups_total", result="recovered") == 1
            assert m("wspush_redis_catchups_total", result="reset") == 0
            assert m("wspush_redis_reconnects_total") == 1       # PUB/SUB only
            assert m("wspush_redis_up", link="pubsub") == 1
        run(go())


def test_a_node_that_missed_revocations_loads_them_even_past_max_revocations(tmp_path):
    """Node C's PUB/SUB connection is silently dead while A disconnects
    alice then bob: C missed both broadcasts, and loads the records from
    Redis once the probe rebuilt the connection. max_revocations = 1: the
    older record (alice) was dropped and fails closed: every token dated
    up to it is refused."""
    def node_c(r):
        c = redis_node(tmp_path, r, "c")
        c.sections["channels"]["subscribe"] = "user/{user}/*"
        return c

    with freezable_pair(tmp_path, a=lambda r: redis_node(tmp_path, r, "a",
                                                         ws={"max_revocations": "1"}),
                        b=node_c) as (redis, proxy, a, c):
        time.sleep(1.1)                  # tokens dated after C's start
        now = int(time.time())
        alice = make_token(sub="alice", channels=("user/alice/*",), claims={"iat": now})
        bob = make_token(sub="bob", channels=("user/bob/*",), claims={"iat": now})
        time.sleep(1.1)                  # the disconnects come a second later
        proxy.freeze(1)
        assert a.disconnect("alice") == 0
        assert a.disconnect("bob") == 0
        assert redis.command("ZCARD", "wspush:revoked") == 1
        wait_for(lambda: c.log_text().count("PUB/SUB connection up") >= 2, timeout=5,
                 what="C's PUB/SUB connection rebuilt")
        time.sleep(0.3)

        async def refused(tok, user):
            ws = await websockets.connect(c.ws_url("channels=user/%s/x&token=%s" % (user, tok)),
                                          close_timeout=1)
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 5)
            return e.value.code

        async def go():
            assert await refused(bob, "bob") == 4401      # its record
            assert await refused(alice, "alice") == 4401  # the floor
            # Dated the second after now: the floor refuses tokens of its
            # own second, and alice's disconnect may have been this one.
            fresh = make_token(sub="carol", channels=("user/carol/*",),
                               claims={"iat": int(time.time()) + 1})
            ws, _ = await connect(c, "channels=user/carol/x&token=" + fresh)
            await ws.close()
        run(go())


def test_publishers_see_503_and_504_and_the_cli_exits_3_and_4(tmp_path):
    """What a publisher gets from fcgi-publisher (FastCGI, no web server)
    and from the wspush CLI when Redis is down (503, exit 3: not
    published) or silent (504, exit 4: may be published)."""
    import subprocess
    from harness import BIN
    from test_fastcgi import Conn, publish_params, request
    from webservers import Site
    redis = RedisServer(tmp_path)
    node = redis_node(tmp_path, redis, "a")
    site = Site(node, "nginx")
    node.start_ws()
    wait_redis_up(node)
    site.publisher.start()
    try:
        body = json.dumps({"channel": "news", "data": 1}).encode()

        def http():
            c = Conn(site.publisher.port)
            c.send(request(1, publish_params(body), body))
            status, _, out, _ = c.answer(1)
            c.close()
            return status, json.loads(out)

        def cli():
            return subprocess.run([str(BIN / "wspush"), "-s", str(node.publish_socket), "publish",
                                   "news", "1"], capture_output=True, text=True, timeout=10)

        assert http()[0] == 200
        assert cli().returncode == 0
        # Silent: the first publish times out; the connection is then
        # rebuilt, so while Redis stays silent the next ones get 503.
        redis.pause()
        r = cli()
        assert r.returncode == 4, r.stderr
        redis.resume()
        wait_for(lambda: _publishes(node), timeout=10, what="publishing again")
        redis.pause()
        status, out = http()
        assert status == 504 and out["error"] == "timeout", out
        redis.resume()
        redis.stop()
        status, out = http()
        assert status == 503 and out["error"] == "unavailable", out
        r = cli()
        assert r.returncode == 3 and "not published" in r.stderr, r.stderr
    finally:
        assert site.publisher.stop() == 0
        assert node.stop_ws() == 0
        redis.stop()


def test_sentinel_failover_publishing_resumes_in_a_new_epoch(tmp_path):
    """The master is asked of Sentinel; when it dies the replica Sentinel
    promotes is found, publishing resumes without a restart, and a new
    epoch starts (writes may have been lost): a page resuming from before
    gets a reset."""
    from redis_servers import Node, Sentinel
    master = RedisServer(tmp_path, name="m", tcp=True)
    replica = RedisServer(tmp_path, name="r", replicaof=master)
    sentinel = Sentinel(tmp_path, master)
    sentinel.wait_replicas(1)
    node = Node(tmp_path, "a", sentinel=sentinel)
    node.start_ws()
    try:
        wait_redis_up(node)
        before = node.publish("public/f", 1)
        master.kill()
        after = wait_for(lambda: _publish_or_none(node), timeout=20, what="a publish after failover")
        assert sentinel.master_port() == replica.port
        assert "failover" in node.log_text()
        assert id_key(after["id"]) > id_key(before["id"])
        assert id_key(after["id"])[0] > id_key(before["id"])[0]     # a new epoch

        async def go():
            p, _ = await connect(node, "channels=public/f&last_id=" + before["id"])
            assert (await recv(p)) == {"type": "reset", "channels": ["public/f"]}
            await p.close()
        run(go())
    finally:
        assert node.stop_ws() == 0
        sentinel.stop()
        replica.stop()
        master.stop()


def metered_node(tmp_path, redis, name, **ws):
    """A redis_node with metrics_listen (test_metrics.scrape reads it)."""
    node = redis_node(tmp_path, redis, name,
                      ws={"metrics_listen": f"127.0.0.1:{free_port()}", **ws})
    node.metrics = node.sections["ws-server"]["metrics_listen"]
    return node


def test_redis_link_metrics_follow_an_outage_and_a_restart(tmp_path):
    """wspush_redis_up drops to 0 for both links while Redis is stopped and
    comes back to 1; the restart counts one reconnect of each link and one
    epoch change (a restarted Redis has a new run_id)."""
    redis = RedisServer(tmp_path)
    node = metered_node(tmp_path, redis, "a")
    node.start_ws()
    try:
        wait_redis_up(node)
        wait_for(lambda: metrics_up(node.metrics), what="metrics listener")

        def up():
            m = scrape(node)
            return m("wspush_redis_up", link="commands"), m("wspush_redis_up", link="pubsub")
        wait_for(lambda: up() == (1, 1), timeout=5, what="both links up")
        m = scrape(node)
        assert (m("wspush_redis_reconnects_total"), m("wspush_redis_epoch_changes_total"),
                m("wspush_redis_probe_failures_total")) == (0, 0, 0)
        redis.stop()
        wait_for(lambda: up() == (0, 0), timeout=10, what="both links down")
        redis.start()
        wait_for(lambda: up() == (1, 1), timeout=10, what="both links up again")
        m = scrape(node)
        assert m("wspush_redis_reconnects_total") == 2
        assert m("wspush_redis_epoch_changes_total") == 1
    finally:
        assert node.stop_ws() == 0
        redis.stop()


def test_redis_up_counts_the_workers_linked(tmp_path):
    """workers = 2: wspush_redis_up is the sum over the workers (2 per
    link), whichever worker answers the scrape."""
    redis = RedisServer(tmp_path)
    node = metered_node(tmp_path, redis, "a", workers="2")
    node.start_ws()
    try:
        wait_for(lambda: node.log_text().count("PUB/SUB connection up") >= 2, timeout=10,
                 what="both workers linked")
        wait_for(lambda: metrics_up(node.metrics), what="metrics listener")
        wait_for(lambda: [scrape(node)("wspush_redis_up", link=k) for k in ("commands", "pubsub")]
                 == [2, 2], timeout=5, what="wspush_redis_up 2 per link")
    finally:
        assert node.stop_ws() == 0
        redis.stop()


def _publish_or_none(node):
    try:
        return node.publish("public/f", 2)
    except IpcError:
        return None


def test_publishes_refused_during_an_outage_are_logged_once_and_summed_after(tmp_path):
    """Every publish refused while Redis is down is answered (error 7) and
    counted, but only the first is logged; the number refused is logged
    once when a publish is accepted again."""
    redis = RedisServer(tmp_path)
    node = redis_node(tmp_path, redis, "a")
    node.start_ws()
    try:
        wait_redis_up(node)
        redis.stop()
        wait_for(lambda: "unreachable" in node.log_text() or "connection lost" in node.log_text(),
                 timeout=10, what="the outage logged")
        for i in range(200):
            with pytest.raises(IpcError) as e:
                node.publish("public/o", i)
            assert e.value.code == 7
        assert node.log_text().count("refused: Redis is unreachable") == 1
        redis.start()
        wait_for(lambda: node.log_text().count("PUB/SUB connection up") >= 2, timeout=10,
                 what="reconnect")
        node.publish("public/o", "back")
        log = node.log_text()
        assert log.count("refused: Redis is unreachable") == 1
        assert "200 publish(es) refused while Redis was unreachable or silent" in log, log[-3000:]
    finally:
        assert node.stop_ws() == 0
        redis.stop()


def test_lost_writes_resume_before_first_publish(redis_factory, cluster_factory):
    """An RDB snapshot, three more acked publishes, SIGKILL and restart
    (they are lost). A page that left before them resumes before anyone
    publishes again: it gets a reset, not silence and then the next epoch."""
    redis = redis_factory.server(persist=False)
    c = cluster_factory(redis=redis)
    a, b = c[0], c[1]
    led = Ledger()
    p = Page(a, ["public/L"])
    for i in range(3):
        assert led.publish(b, "public/L", {"i": i})["id"]
    p.read_until(lambda m: m.get("data") == {"i": 2}, 5, "m2")
    last = p.last_id()
    p.close()
    assert redis.command("SAVE") in ("OK", b"OK")
    for i in range(3, 6):
        assert led.publish(b, "public/L", {"i": i})["id"]
    redis.kill()
    redis.start()
    for n in (a, b):
        wait_for(lambda n=n: n.log_text().count("PUB/SUB connection up") >= 2, timeout=10,
                 what="the node to link again")
    back = Page(b, ["public/L"], last_id=last)
    back.read(quiet=1.0)
    led.publish(a, "public/L", {"i": 6})
    back.read(quiet=1.0)
    assert back.events and back.events[0] == {"type": "reset", "channels": ["public/L"]}, back.events


@contextlib.contextmanager
def slow_node(redis_factory, cluster_factory, tmp_path, delay, timeout="3s", proxy=None, ws=None,
              **proxy_kw):
    """A Redis, node B on it directly and node A behind a proxy (by default
    a SlowRepliesProxy: command replies `delay` seconds late, PUB/SUB on
    time; else the class `proxy`, given proxy_kw), A's [ws-server] keys
    ws, both linked; yields (redis, a, b). A is stopped (and must exit 0)
    and the proxy closed at the end."""
    import tempfile
    from redis_servers import Node, SlowRepliesProxy

    redis = redis_factory.server()
    b = cluster_factory(redis=redis, n=1, prefix="plain")[0]
    px = (proxy or SlowRepliesProxy)(tempfile.mkdtemp(prefix="wpx-"), redis, delay=delay,
                                     **proxy_kw)
    a = Node(tmp_path, "slow", redis=px, ws=ws, redis_keys={"connect_timeout": timeout,
                                                            "command_timeout": timeout})
    a.start_ws()
    try:
        wait_redis_up(a, timeout=15)
        wait_redis_up(b, timeout=15)
        yield redis, a, b
    finally:
        rc = a.stop_ws()
        px.close()
    assert rc == 0, a.log_text()[-3000:]


def test_a_catch_up_asked_while_one_is_in_flight_delivers_nothing_twice(redis_factory,
                                                                       cluster_factory, tmp_path):
    """Replies on the command connection come 300 ms late; the PUB/SUB
    connection is killed while the page's first catch-up is read, so the
    new subscription asks for another of the same range: the page gets
    every message once, in order."""
    from cluster_pages import check_page

    with slow_node(redis_factory, cluster_factory, tmp_path, 0.3) as (redis, a, b):
        led = Ledger()
        assert led.publish(b, "public/w0", {"w": 0})["id"]    # the epoch exists
        p = Page(a, ["public/dup"])
        for i in range(3):
            assert led.publish(b, "public/dup", {"i": i})["id"]
        redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        wait_for(lambda: a.log_text().count("PUB/SUB connection up") >= 2, timeout=10,
                 what="the PUB/SUB connection to come back")
        end = led.publish(b, "public/dup", {"end": 1})
        p.read_until(lambda m: m.get("id") == end["id"], 5, "the last message")
        p.read(quiet=0.7)
        check_page(p, led, 1)
        assert [m["data"] for m in p.messages()] == [{"i": 0}, {"i": 1}, {"i": 2}, {"end": 1}]


def test_scripts_refused_by_redis_are_logged_once_per_run(tmp_path):
    """Redis out of memory (maxmemory, noeviction) refuses every publish
    script: each publish gets an error, the first refusal is logged, the
    rest are counted and summed once when a script runs again."""
    redis = RedisServer(tmp_path)
    node = redis_node(tmp_path, redis, "a")
    node.start_ws()
    try:
        wait_redis_up(node)
        node.publish("public/r", "before")
        redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        redis.command("CONFIG", "SET", "maxmemory", "1")
        for i in range(50):
            with pytest.raises(IpcError):
                node.publish("public/r", i)
        assert node.log_text().count("script refused") == 1
        redis.command("CONFIG", "SET", "maxmemory", "0")
        node.publish("public/r", "back")
        log = node.log_text()
        assert log.count("script refused") == 1, log[-3000:]
        assert "scripts run again; 50 refused meanwhile" in log, log[-3000:]
    finally:
        assert node.stop_ws() == 0
        redis.stop()


def test_a_resume_storm_does_not_stall_live_delivery(redis_factory, cluster_factory, tmp_path):
    """Replies on the command connection come 200 ms late; pages keep
    resuming on one channel (a reconnect storm, a few hundred resumes)
    while a page on another channel waits for live messages: each comes
    within a second (no node-wide hold while history is read), and the
    resuming pages get exactly what they missed."""
    import threading

    stop = threading.Event()
    threads = []
    with slow_node(redis_factory, cluster_factory, tmp_path, 0.2) as (redis, a, b):
        try:
            led = Ledger()
            assert led.publish(b, "public/live", {"w": 0})["id"]
            p = Page(a, ["public/live"])
            warm = led.publish(b, "public/live", {"w": 1})
            p.read_until(lambda m: m.get("id") == warm["id"], 5, "the first live message")
            lid = led.publish(b, "public/other", {"x": 0})["id"]
            missed = led.publish(b, "public/other", {"x": 1})["id"]
            resumed, wrong = [0], []
            tick = threading.Event()      # a resume ended: time to measure again

            def resumer():
                for _ in range(20):
                    if stop.is_set():
                        return
                    q = Page(a, ["public/other"], last_id=lid)
                    first = q.next(5.0)
                    q.close()
                    if first is None or first.get("id") != missed:
                        wrong.append(first)
                    resumed[0] += 1
                    tick.set()
            threads = [threading.Thread(target=resumer) for _ in range(10)]
            [t.start() for t in threads]
            wait_for(lambda: resumed[0] >= 10, timeout=10, what="the storm to start")
            delays = []
            while any(t.is_alive() for t in threads):
                tick.wait(5)
                tick.clear()
                t0 = time.monotonic()
                e = led.publish(b, "public/live", {"i": len(delays)})
                p.read_until(lambda m: m.get("id") == e["id"], 5, "a live message during the storm")
                delays.append(time.monotonic() - t0)
            [t.join(30) for t in threads]
            print("live delay during the storm: worst %.3fs, median %.3fs over %d messages, %d resumes"
                  % (max(delays), sorted(delays)[len(delays) // 2], len(delays), resumed[0]))
            assert max(delays) < 1.0, delays
            assert resumed[0] == 200 and not wrong, wrong[:3]
        finally:
            stop.set()
            [t.join(30) for t in threads]


def test_copies_held_past_max_held_bytes_reset_the_channels_being_caught_up(
        redis_factory, cluster_factory, tmp_path):
    """Replies on the command connection come 2 s late. The PUB/SUB
    connection is cut: every channel catches up from its stream, and live
    copies are held meanwhile. Past max_held_bytes (4 KiB, set by a
    reload) the catch-ups
    are given up: the pages get a reset in place of what the streams would
    have filled, the held messages go out at once, in order, and the log
    says so once."""
    from cluster_pages import check_page

    with slow_node(redis_factory, cluster_factory, tmp_path, 2.0, "5s") as (redis, a, b):
        led = Ledger()
        chans = ["public/cap1", "public/cap2"]
        p1, p2 = Page(a, chans), Page(a, chans[1:])
        warm = led.publish(b, chans, {"warm": 1})
        for p in (p1, p2):
            p.read_until(lambda m: m.get("id") == warm["id"], 10, "the first message")
        since = len(led.entries)
        a.sections["redis"]["max_held_bytes"] = "4k"     # applied by a reload
        a.sections["ws-server"]["max_message_bytes"] = "2k"   # must fit in it (-t)
        a.write_ini()
        a.reload_ws()
        ups = a.log_text().count("PUB/SUB connection up")
        redis.command("CLIENT", "KILL", "TYPE", "pubsub")
        led.publish(b, chans[0], {"gap": 1})
        led.publish(b, chans[1], {"gap": 2})
        wait_for(lambda: a.log_text().count("PUB/SUB connection up") > ups, timeout=10,
                 what="the PUB/SUB connection to come back")
        big = "x" * 1000
        for i in range(8):
            e = led.publish(b, chans[i % 2], {"i": i, "pad": big})
        t0 = time.monotonic()
        p1.read_until(lambda m: m.get("id") == e["id"], 10, "the last held message")
        took = time.monotonic() - t0
        end = led.publish(b, chans, {"end": 1})
        for p in (p1, p2):
            for c in p.channels:
                p.read_until(lambda m, c=c: m.get("id") == end["id"] and m["channel"] == c, 10,
                             "the last message")
            check_page(p, led, since)
            assert p.resets(), p.events
        assert took < 1.0, took            # not held until the 2 s answer
        log = a.log_text()
        assert log.count("past max_held_bytes") == 1, log[-3000:]


def test_reload_applies_the_history_cap_and_refuses_another_store(cluster):
    """SIGHUP applies [redis] channel_history_size from the next publish;
    a changed prefix (another store) fails the reload as a whole, with the
    reason, and the node stays on the keys it was using."""
    redis, a, _ = cluster
    for i in range(5):
        a.publish("public/cap", i)
    assert redis.command("XLEN", "wspush:s:public/cap") == 5

    a.sections["redis"]["channel_history_size"] = "2"
    a.write_ini()
    a.reload_ws()
    a.publish("public/cap", 5)
    assert redis.command("XLEN", "wspush:s:public/cap") == 2

    a.sections["redis"]["prefix"] = "other:"
    a.sections["redis"]["channel_history_size"] = "50"
    a.write_ini()
    a.reload_ws("reload failed, keeping the running config: [redis] prefix changed")
    for i in range(6, 9):
        a.publish("public/cap", i)
    assert redis.command("XLEN", "wspush:s:public/cap") == 2   # the whole reload was refused
    assert redis.command("KEYS", "other:*") == []


def test_a_copy_lost_with_the_writes_redis_lost_is_a_reset(tmp_path):
    """B's PUB/SUB connection stops getting Redis's bytes; a message is
    published and acked meanwhile; then Redis loses every write (FLUSHALL:
    what a restart without persistence or a failover to an empty replica
    does, without the reconnections that would race the catch-up). B's
    catch-up from the last copy it delivered finds an empty stream and no
    last id: nothing proves nothing was missed, so its page gets a reset
    for the channel, then the next messages (before the fix it got
    neither the message nor a reset: a silent gap)."""
    with freezable_pair(tmp_path) as (redis, proxy, a, b):
        async def go():
            p, _ = await connect(b, "channels=public/q")
            await asyncio.sleep(0.3)
            first = a.publish("public/q", 0)
            assert (await recv(p))["id"] == first["id"]
            proxy.freeze(1)                  # b's second connection: PUB/SUB
            a.publish("public/q", 1)         # acked; its copy never reaches b
            redis.command("FLUSHALL")
            wait_for(lambda: "liveness probe did not come back" in b.log_text(), timeout=5,
                     what="the probe to fail")
            got = await drain(p, quiet=1.0)
            assert got == [{"type": "reset", "channels": ["public/q"]}], got
            after = a.publish("public/q", 2)
            assert (await recv(p))["id"] == after["id"]
            await p.close()
        run(go())
