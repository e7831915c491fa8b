"""History and resume: last_id replays exactly what was missed, a gap that
cannot be filled gives a reset, and history survives a planned restart."""
import asyncio
import json
import signal

import pytest
import websockets

from harness import make_token


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(env, query):
    ws = await websockets.connect(env.ws_url(query))
    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert hello["type"] == "subscribed"
    return ws, hello


async def drain(ws, quiet=0.3):
    """Every frame until the connection stays quiet."""
    out = []
    while True:
        try:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), quiet)))
        except asyncio.TimeoutError:
            return out


def test_resume_replays_missed_messages_in_order_no_dup_no_gap(ws):
    async def go():
        c, hello = await connect(ws, "channels=public/a,public/b")
        first = ws.publish("public/a", 0)
        assert json.loads(await c.recv())["id"] == first["id"]
        last_seen = first["id"]
        await c.close()
        # Published while the page was away, interleaved with other channels.
        missed = []
        for i in range(1, 20):
            ch = ["public/a", "public/b", "public/other"][i % 3]
            ack = ws.publish(ch, i)
            if ch != "public/other":
                missed.append((ch, ack["id"], i))
        c, _ = await connect(ws, "channels=public/a,public/b&last_id=" + last_seen)
        live = ws.publish("public/b", "live")
        got = await drain(c)
        assert [(m["channel"], m["id"], m["data"]) for m in got[:-1]] == missed
        assert got[-1]["id"] == live["id"] and got[-1]["data"] == "live"
        assert all(m["type"] == "message" for m in got)
        await c.close()
    run(go())


def test_resume_at_latest_id_replays_nothing(ws):
    async def go():
        ack = ws.publish("public/a", 1)
        c, hello = await connect(ws, "channels=public/a&last_id=" + ack["id"])
        assert hello["last_id"] == ack["id"]
        assert await drain(c) == []
        await c.close()
    run(go())


def test_multi_channel_message_replayed_per_channel(ws):
    async def go():
        base = ws.publish("public/a", "before")["id"]
        ack = ws.publish(["public/a", "public/b"], "both")
        c, _ = await connect(ws, "channels=public/a,public/b&last_id=" + base)
        got = await drain(c)
        assert sorted(m["channel"] for m in got) == ["public/a", "public/b"]
        assert {m["id"] for m in got} == {ack["id"]}
        await c.close()
    run(go())


@pytest.mark.memory_only(reason="history_size is the memory engine's global cap; Redis keeps channel_history_size per channel")
def test_evicted_gap_gives_reset_for_that_channel_only(env):
    env.sections["ws-server"]["history_size"] = "5"
    env.write_ini()
    env.start_ws()

    async def go():
        base = env.publish("public/quiet", "q")["id"]
        for i in range(10):
            env.publish("public/busy", i)       # evicts the quiet message too
        c, _ = await connect(env, "channels=public/busy,public/quiet2&last_id=" + base)
        got = await drain(c)
        assert got[0] == {"type": "reset", "channels": ["public/busy", "public/quiet2"]}
        await c.close()
        # A channel whose messages are all still held resumes exactly.
        mark = env.publish("public/x", "m")["id"]
        for i in range(3):
            env.publish("public/x", i)
        c, _ = await connect(env, "channels=public/x&last_id=" + mark)
        assert [m["data"] for m in await drain(c)] == [0, 1, 2]
        await c.close()
    run(go())


def test_foreign_or_garbage_id_gives_reset(ws):
    async def go():
        ws.publish("public/a", 1)
        for bad in ["1-1", "zz", "", "ffffffff-1", "%ff"]:
            c, _ = await connect(ws, "channels=public/a&last_id=" + bad)
            got = await drain(c, 0.2)
            assert got[0] == {"type": "reset", "channels": ["public/a"]}, bad
            await c.close()
    run(go())


def test_an_id_past_the_newest_gives_reset_then_live_messages(ws):
    """A last_id of this server's epoch but past its newest id was never
    given (made up, or from another site): the page gets a reset, then
    the live messages (on Redis the page used to get no reset and, from
    the id it claimed to have, none of the live messages below it)."""
    async def go():
        epoch, _, seq = ws.publish("public/p", 1)["id"].partition("-")
        c, _ = await connect(ws, "channels=public/p&last_id=%s-%d" % (epoch, int(seq) + 1000))
        assert await drain(c, 0.3) == [{"type": "reset", "channels": ["public/p"]}]
        live = ws.publish("public/p", 2)["id"]
        got = await drain(c, 0.5)
        assert [m.get("id") for m in got] == [live], got
        await c.close()
    run(go())


@pytest.mark.memory_only(reason="history_ttl is the memory engine's; Redis streams expire by channel_history_ttl")
def test_history_ttl(env):
    env.sections["ws-server"]["history_ttl"] = "1"
    env.write_ini()
    env.start_ws()

    async def go():
        base = env.publish("public/t", 0)["id"]
        env.publish("public/t", 1)
        await asyncio.sleep(1.3)
        c, _ = await connect(env, "channels=public/t&last_id=" + base)
        assert (await drain(c))[0]["type"] == "reset"
        await c.close()
    run(go())


def test_private_channel_resume_needs_token(ws):
    async def go():
        base = ws.publish("user/alice/inbox", "a")["id"]
        ws.publish("user/alice/inbox", "b")
        c, _ = await connect(ws, "channels=user/alice/inbox&last_id=%s&token=%s" % (base, make_token()))
        assert [m["data"] for m in await drain(c)] == ["b"]
        await c.close()
    run(go())


@pytest.mark.memory_only(reason="history_file is the memory engine's; Redis keeps the history itself")
def test_history_survives_planned_restart(env):
    env.sections["ws-server"]["history_file"] = str(env.dir / "history.bin")
    env.write_ini()
    env.start_ws()

    async def go():
        seen = env.publish("public/r", "seen")["id"]
        ids = [env.publish("public/r", i)["id"] for i in range(3)]
        assert env.stop_ws(signal.SIGTERM) == 0
        assert (env.dir / "history.bin").exists()
        env.start_ws()
        after = env.publish("public/r", "after restart")
        # Ids continue the saved run: same epoch, larger sequence.
        assert after["id"].split("-")[0] == seen.split("-")[0]
        assert int(after["id"].split("-")[1]) == int(ids[-1].split("-")[1]) + 1
        c, _ = await connect(env, "channels=public/r&last_id=" + seen)
        got = await drain(c)
        assert [m["id"] for m in got] == ids + [after["id"]]
        await c.close()
    run(go())


@pytest.mark.memory_only(reason="history_file is the memory engine's")
def test_corrupt_history_file_is_reported_and_ignored(env):
    hist = env.dir / "history.bin"
    env.sections["ws-server"]["history_file"] = str(hist)
    env.write_ini()
    env.start_ws()
    old = env.publish("public/r", 1)["id"]
    env.publish("public/r", 2)
    assert env.stop_ws() == 0
    good = hist.read_bytes()
    for bad in [good[:len(good) // 2], b"garbage", good[:-1] + bytes([good[-1] ^ 1]), b""]:
        hist.write_bytes(bad)
        env.start_ws()
        assert "history not restored" in env.log_text()

        async def go():
            c, _ = await connect(env, "channels=public/r&last_id=" + old)
            assert (await drain(c, 0.2))[0]["type"] == "reset"
            await c.close()
        run(go())
        assert env.stop_ws() == 0


def _fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


@pytest.mark.memory_only(reason="history_file is the memory engine's")
def test_history_file_of_the_frame_format_is_refused_with_a_reset(env):
    """A history_file saved by a wspush that kept WebSocket frames (format
    1, "WSPUSHH1") is refused with a clear message; pages resuming from
    that run get a reset, and the file is not read twice."""
    import struct
    hist = env.dir / "history.bin"
    epoch, chan = 0x6000_0000, b"public/r"
    payload = b'{"type":"message","channel":"public/r","id":"60000000-1","data":1}'
    frame = bytes([0x81, len(payload)]) + payload
    body = b"WSPUSHH1" + struct.pack(">IQQI", epoch, 1, 0, 1)
    body += struct.pack(">QQB", 1, 0, len(chan)) + chan + struct.pack(">I", len(frame)) + frame
    hist.write_bytes(body + struct.pack(">I", _fnv1a(body)))
    env.sections["ws-server"]["history_file"] = str(hist)
    env.write_ini()
    env.start_ws()
    log = env.log_text()
    assert "history not restored" in log and "older wspush" in log
    assert not hist.exists()

    async def go():
        c, hello = await connect(env, "channels=public/r&last_id=60000000-0")
        assert hello["last_id"].split("-")[0] != "60000000"
        assert (await drain(c, 0.2)) == [{"type": "reset", "channels": ["public/r"]}]
        await c.close()
    run(go())
