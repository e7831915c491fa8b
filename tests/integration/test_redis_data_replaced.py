"""What a node does when Redis loses or replaces data under it, and two
more cases found by the second review of issue 12 (each failed before its
fix): a page opened before a revocation this node missed, covered by
Redis's floor, is closed when the records are loaded; a reload lowering
wait_replicas does not ack a publish made under the old value; a server
whose data a full resync replaced (REPLICAOF, then master again) keeps its
run_id but not its replication id, so its revocation "since" and its
epoch are not trusted; a connected page whose node missed a copy that a
failover lost gets a reset (a new epoch proves nothing); a resume reads
every entry of a stream longer than its node's channel_history_size, and
gets a reset where the channel's keys may have expired."""
import signal
import threading
import time

from cluster_pages import Ledger, Page, check_page, user_token
from harness import IpcError, wait_for
from redis_servers import FreezingProxy, RedisServer, freezable_pair, redis_node, wait_redis_up
from redis_servers import cluster_factory, redis_factory  # noqa: F401 (fixtures)
from test_redis_replication import replicated, stop_all



def test_open_page_of_a_user_whose_record_left_redis_is_closed_on_load(tmp_path):
    """Node C's PUB/SUB connection is silently dead while A disconnects
    alice, then bob (max_revocations = 1: alice's record leaves Redis's
    set, revoked_floor covers it). C rebuilds the connection and loads the
    records: new alice tokens are refused (the floor), but alice's page
    already open on C must be closed too ("disconnect reaches the user's
    pages everywhere"), not left open getting alice's messages."""
    with freezable_pair(tmp_path, a=lambda r: redis_node(tmp_path, r, "a",
                                                         ws={"max_revocations": "1"}),
                        b=lambda r: redis_node(tmp_path, r, "c")) as (redis, proxy, a, c):
        time.sleep(1.1)                   # a token dated after C's start
        tok = user_token("alice", iat=int(time.time()))
        page = Page(c, ["user/alice/x"], token=tok)
        time.sleep(1.1)                   # the disconnect a second later
        proxy.freeze(1)                   # C's PUB/SUB connection
        assert a.disconnect("alice") == 0
        assert a.disconnect("bob") == 0
        assert redis.command("ZCARD", "wspush:revoked") == 1
        wait_for(lambda: c.log_text().count("PUB/SUB connection up") >= 2, timeout=5,
                 what="C's PUB/SUB connection rebuilt")
        # the floor is in force on C for new pages ...
        from cluster_pages import opens
        wait_for(lambda: opens(c, tok) == 4401, timeout=3, what="C to refuse alice's token")
        # ... but the page opened with that same token before is still served
        a.publish("user/alice/x", "after the disconnect")
        m = page.next(2.0)
        assert page.closed == 4401, (
            f"alice's page on C still open after her disconnect; it got {m!r}")


def test_reload_lowering_wait_replicas_does_not_ack_a_publish_the_replica_lacks(tmp_path):
    """wait_replicas = 1, command_timeout 3 s, the replica frozen: publish
    P1 waits in a WAIT; P2, 0.5 s later, waits on r->unwaited behind it.
    A SIGHUP then sets wait_replicas = 0. P2 was made under
    wait_replicas = 1: it must not be acked (it was, by a "WAIT 0" sent
    with the reloaded value) while no replica has it."""
    master, replica, node = replicated(tmp_path, wait_replicas=1, command_timeout="3s")
    try:
        node.publish("public/w", "warm")
        replica.pause()
        out = {}

        def pub(name):
            try:
                out[name] = ("ok", node.publish("public/w", name)["id"])
            except IpcError as e:
                out[name] = ("error", e.code)
        t1 = threading.Thread(target=pub, args=("p1",))
        t1.start()
        time.sleep(0.5)
        t2 = threading.Thread(target=pub, args=("p2",))
        t2.start()
        time.sleep(0.5)                   # P1 in its WAIT, P2 behind it
        node.sections["redis"]["wait_replicas"] = "0"
        node.write_ini()
        node.ws_proc.send_signal(signal.SIGHUP)
        t1.join(10)
        t2.join(10)
        assert out.get("p1", ("?",))[0] == "error", out
        assert out.get("p2", ("?",))[0] == "error", (
            f"P2 acked under wait_replicas=1 with the replica frozen: {out}")
    finally:
        replica.resume()
        stop_all(node, replica, master)


def test_a_server_that_lost_records_without_a_restart_keeps_older_tokens_out(tmp_path):
    """<prefix>revoked_since is trusted while its run_id is the server's.
    But a server keeps its run_id when its data is replaced by a full
    resync from another (made a replica, then master again: a failover
    and back, or an operator's REPLICAOF). Here R1 (the cluster's Redis)
    has the hash r=R1; R2, a copy of it, is cut off; alice is revoked on
    R1 while node A is down; R1 is resynced from R2 (alice's record gone,
    the hash still r=R1) and is master again, with a new replication id.
    A node restarted then must not trust the old "since" and let in
    alice's token issued before her disconnect."""
    from test_cluster_tokens import held_since, kill9, start_loaded
    from cluster_pages import opens
    from redis_servers import wait_synced
    fast = ("--repl-diskless-sync-delay", "0")
    r1 = RedisServer(tmp_path, name="r1", tcp=True, extra=fast)
    r2 = RedisServer(tmp_path, name="r2", replicaof=r1, extra=fast)
    held_since(r1)
    wait_synced(r2)
    r2.command("REPLICAOF", "NO", "ONE")
    a = redis_node(tmp_path, r1, "a")
    b = redis_node(tmp_path, r1, "b")
    for n in (a, b):
        n.start_ws()
        wait_redis_up(n)
    try:
        old = user_token("alice", iat=int(time.time()) - 5)
        run_id = r1.run_id()
        kill9(a)
        assert b.disconnect("alice") == 0
        assert r1.command("ZSCORE", "wspush:revoked", "alice") is not None
        r1.command("REPLICAOF", "127.0.0.1", str(r2.port))
        wait_synced(r1)
        r1.command("REPLICAOF", "NO", "ONE")
        assert r1.command("ZSCORE", "wspush:revoked", "alice") is None   # the record is lost
        assert r1.run_id() == run_id                                      # same process
        start_loaded(a)
        assert opens(a, old) == 4401, (
            "alice's token, issued before her disconnect, let in by a node restarted after "
            "Redis lost the record:\n" + "\n".join(
                l for l in a.log_text().splitlines() if "revocations" in l))
    finally:
        for n in (a, b):
            n.stop_ws()
        r2.stop()
        r1.stop()


def test_a_connected_page_on_a_node_that_missed_a_copy_lost_by_failover_gets_a_reset(tmp_path):
    """Master M, replica R whose replication stream is frozen (lagging).
    Node A's PUB/SUB connection is silently dead; m2 is published through
    node B and acked 200 (wait_replicas = 0): M has it, R does not, A's
    page did not get its copy. M dies, R becomes the master, both nodes
    reconnect to it. A catches public/x up from its own last copy (m1):
    R's chain (last id m1, then m3 with prev m1) would say it follows on,
    but it is a new epoch, which proves nothing: A's page gets a reset in
    m2's place, as a page resuming from m1 does."""
    fast = ("--repl-diskless-sync-delay", "0")
    m = RedisServer(tmp_path, name="m", tcp=True, extra=fast)
    rproxy = FreezingProxy(tmp_path, m, name="rp", tcp=True)
    r = RedisServer(tmp_path, name="r", replicaof=rproxy, extra=fast)
    from redis_servers import wait_synced
    wait_synced(r)
    pa = FreezingProxy(tmp_path, m, name="pa")
    pb = FreezingProxy(tmp_path, m, name="pb")
    a = redis_node(tmp_path, m, "a", probe_interval="30s")
    a.sections["redis"]["address"] = pa.address
    a.write_ini()
    b = redis_node(tmp_path, m, "b")
    b.sections["redis"]["address"] = pb.address
    b.write_ini()
    for n in (a, b):
        n.start_ws()
        wait_redis_up(n)
    try:
        page = Page(a, ["public/x"])
        time.sleep(0.3)
        m1 = b.publish("public/x", "m1")["id"]
        page.read_until(lambda e: e.get("id") == m1, 5, "m1")
        wait_for(lambda: r.command("XLEN", "wspush:s:public/x") == 1, 5, "R to have m1")
        rproxy.freeze(0)                   # R gets nothing more from M
        pa.freeze(1)                       # A's PUB/SUB: copies lost
        m2 = b.publish("public/x", "m2")["id"]          # acked 200
        assert m.command("XLEN", "wspush:s:public/x") == 2
        time.sleep(0.2)
        assert r.command("XLEN", "wspush:s:public/x") == 1   # R lags
        pa.server = pb.server = r
        r.command("REPLICAOF", "NO", "ONE")
        m.kill()                           # the proxies hang up: both nodes reconnect to R
        wait_for(lambda: a.log_text().count("PUB/SUB connection up") >= 2, 10, "A on R")
        wait_for(lambda: b.log_text().count("PUB/SUB connection up") >= 2, 10, "B on R")
        time.sleep(0.5)
        m3 = wait_for(lambda: _try_publish(b, "m3"), 10, "a publish on R")
        page.read_until(lambda e: e.get("id") == m3, 5, "m3")
        got = [e.get("id") or e.get("type") for e in page.events]
        assert m2 in got or "reset" in got, (
            f"acked {m2} never reached A's page and no reset in its place: {page.events}")
    finally:
        for n in (a, b):
            n.stop_ws()
        for p in (pa, pb, rproxy):
            p.close()
        r.stop()
        m.stop()


def _try_publish(node, data):
    try:
        return node.publish("public/x", data)["id"]
    except IpcError:
        return None


def test_an_id_is_never_given_twice_after_a_resync_under_the_same_run_id(tmp_path):
    """The same root as the revoked_since finding, for message ids: the
    epoch hash is trusted while its r is the server's run_id. R1 resynced
    from a copy (R2) taken before m2 and m3, then master again: its epoch
    hash says r=R1, seq 1, so the next publish is given m2's id again (a
    page that has m3 and resumes from it skips the new messages)."""
    from redis_servers import wait_synced
    fast = ("--repl-diskless-sync-delay", "0")
    r1 = RedisServer(tmp_path, name="r1", tcp=True, extra=fast)
    a = redis_node(tmp_path, r1, "a")
    a.start_ws()
    wait_redis_up(a)
    r2 = RedisServer(tmp_path, name="r2", replicaof=r1, extra=fast)
    try:
        given = [a.publish("public/i", "m1")["id"]]
        wait_synced(r2)
        wait_for(lambda: r2.command("XLEN", "wspush:s:public/i") == 1, 5, "R2 to have m1")
        r2.command("REPLICAOF", "NO", "ONE")
        given += [a.publish("public/i", m)["id"] for m in ("m2", "m3")]
        r1.command("REPLICAOF", "127.0.0.1", str(r2.port))
        wait_synced(r1)
        r1.command("REPLICAOF", "NO", "ONE")
        after = wait_for(lambda: _try_publish_on(a, "public/i", "m4"), 10, "a publish on R1")
        assert after not in given, f"id {after} given twice: before {given}"
    finally:
        a.stop_ws()
        r2.stop()
        r1.stop()


def _try_publish_on(node, channel, data):
    try:
        return node.publish(channel, data)["id"]
    except IpcError:
        return None


def test_a_resume_after_channel_history_size_was_lowered_gets_every_message_or_a_reset(
        redis_factory, cluster_factory):
    """20 messages are published after the page's last id; the node's
    channel_history_size is then lowered to 5 by a reload (documented
    reloadable; two nodes with different values do the same). The stream
    still holds all 20 until the next publish trims it, but the resume
    read XRANGE ... COUNT 5: the page got the 5 oldest, no `more`, no
    reset, and never the other 15 (a silent gap). Every entry is read."""
    redis = redis_factory.server()
    a = cluster_factory(redis=redis, n=1)[0]
    wait_redis_up(a)
    led = Ledger()
    lid = led.publish(a, "public/cap", {"l": 0})["id"]
    since = len(led.entries)
    for i in range(20):
        led.publish(a, "public/cap", {"i": i})
    a.sections["redis"]["channel_history_size"] = "5"
    a.write_ini()
    a.reload_ws()
    p = Page(a, ["public/cap"], last_id=lid)
    p.read(quiet=0.5)
    end = led.publish(a, "public/cap", {"end": 1})
    p.read_until(lambda m: m.get("id") == end["id"], 5, "the live message")
    print("page got", [e.get("data") for e in p.events])
    check_page(p, led, since)


def test_a_resume_after_the_channel_s_keys_expired_gets_a_reset(redis_factory, cluster_factory):
    """A page saw id L and went away (a laptop asleep overnight). Three
    messages were published on its channel, then nothing for more than a
    day: the stream (channel_history_ttl) and the last-id key (l:, one day)
    expired — done here with DEL, which is what the expiry does. The
    epoch is the same (Redis kept running), and older than the keys live.
    The page resumes after L: no stream and no last id prove nothing in
    such an epoch (they may have expired), so it gets a reset — it got
    neither the three messages nor a reset before."""
    redis = redis_factory.server()
    a = cluster_factory(redis=redis, n=1)[0]
    wait_redis_up(a)
    # The epoch began two days ago (Redis kept running since): its keys
    # may have expired, which DEL stands for below.
    redis.command("HSET", "wspush:epoch", "e", str(int(time.time()) - 2 * 86400), "s", "0",
                  "r", redis.server_id())
    led = Ledger()
    lid = led.publish(a, "public/sleepy", {"l": 0})["id"]
    since = len(led.entries)
    for i in range(3):
        led.publish(a, "public/sleepy", {"i": i})
    redis.command("DEL", "wspush:s:public/sleepy", "wspush:l:public/sleepy")   # expired
    p = Page(a, ["public/sleepy"], last_id=lid)
    p.read(quiet=0.5)
    end = led.publish(a, "public/sleepy", {"end": 1})
    p.read_until(lambda m: m.get("id") == end["id"], 5, "the live message")
    print("page got", p.events)
    check_page(p, led, since)
