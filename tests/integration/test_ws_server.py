"""ws-server end to end: the real binary, real sockets, a real WebSocket
client (python3-websockets) and a raw one for frames a library won't send."""
import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import time

import pytest
import websockets

from harness import (PublishClient, IpcError, RawWs, encode_frame, make_token, ws_handshake,
                     wait_for, run_as, slow_reader, SECRET, free_port)


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def subscribe(env, query, **kw):
    ws = await websockets.connect(env.ws_url(query), **kw)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, hello


async def expect_close(env, query, code):
    ws = await websockets.connect(env.ws_url(query))
    try:
        with pytest.raises(websockets.ConnectionClosed) as e:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert e.value.code == code, e.value
    finally:
        await ws.close()


# ---- publish and the envelope

def test_publish_reaches_subscribers_with_exact_envelope(ws):
    async def go():
        a, hello = await subscribe(ws, "channels=public/a,news")
        b, _ = await subscribe(ws, "channels=public/a")
        assert hello == {"type": "subscribed", "channels": ["public/a", "news"],
                         "last_id": hello["last_id"]}
        ack = ws.publish(["public/a"], {"n": 1, "s": "é"})
        assert ack["subscribers"] == 2
        want = ('{"type":"message","channel":"public/a","id":"%s","data":%s}'
                % (ack["id"], json.dumps({"n": 1, "s": "é"})))
        assert await asyncio.wait_for(a.recv(), 5) == want
        assert await asyncio.wait_for(b.recv(), 5) == want
        ack2 = ws.publish(["news", "public/a"], "two")
        got = {json.loads(await a.recv())["channel"] for _ in range(2)}
        assert got == {"news", "public/a"}
        assert json.loads(await b.recv())["id"] == ack2["id"]
        assert ack2["subscribers"] == 3
        await a.close()
        await b.close()
    run(go())


def test_message_ids_increase_and_last_id_in_greeting(ws):
    async def go():
        ids = [ws.publish("public/x", i)["id"] for i in range(3)]
        epoch = {i.split("-")[0] for i in ids}
        assert len(epoch) == 1
        assert [int(i.split("-")[1]) for i in ids] == sorted(int(i.split("-")[1]) for i in ids)
        c, hello = await subscribe(ws, "channels=public/x")
        assert hello["last_id"] == ids[-1]
        await c.close()
    run(go())


def test_publish_socket_errors_and_pipelining(ws):
    c = ws.client()
    with pytest.raises(IpcError) as e:
        c.publish(["bad channel!"], 1)
    assert e.value.code == 2
    with pytest.raises(IpcError) as e:
        c.publish(["public/a"], b"{not json")
    assert e.value.code == 5
    with pytest.raises(IpcError) as e:
        c.publish(["public/a"], b'"' + b"x" * 70000 + b'"')
    assert e.value.code == 3
    with pytest.raises(IpcError) as e:
        c.publish(["public/a", "public/a"], 1)
    assert e.value.code == 2
    # The connection survives every refusal; 100 pipelined requests are
    # answered in order.
    frames = [c.publish_frame("public/p", i) for i in range(100)]
    c.sock.sendall(b"".join(f for _, f in frames))
    for rid, _ in frames:
        t, got, body = c.read_answer()
        assert got == rid and t == 0x81
    # A frame far over the limit is refused and skipped, not fatal.
    rid, big = c.publish_frame("public/a", "y" * 300000)
    c.sock.sendall(big)
    t, got, body = c.read_answer()
    assert (t, got) == (0xFF, rid) and struct.unpack(">H", body[:2])[0] == 3
    assert c.publish("public/a", 1)["subscribers"] == 0
    # Garbage loses the framing: one error answer, then the socket closes.
    c.sock.sendall(b"\x00\x00\x00\x05\x42\x00\x00\x00\x07")
    t, got, body = c.read_answer()
    assert t == 0xFF
    assert c.sock.recv(1) == b""
    c.close()


def test_publish_socket_peer_allow_list(env):
    import tempfile
    public_dir = tempfile.mkdtemp(prefix="wspush-pub-")
    os.chmod(public_dir, 0o755)   # nobody must reach the socket file itself
    env.publish_socket = env.dir.__class__(public_dir) / "publish.sock"
    env.sections["wspush"]["publish_socket"] = str(env.publish_socket)
    env.sections["ws-server"]["publish_allow_uids"] = "4242"
    env.sections["ws-server"]["publish_socket_mode"] = "0666"
    env.write_ini()
    env.start_ws()
    # Our own uid (the server's) is always allowed.
    assert env.publish("public/a", 1)["subscribers"] == 0
    # nobody (65534) is not in the list: every request is refused. nobody
    # may not be able to read the checkout: run_as gives it a copy of the
    # harness.
    script = ("from harness import PublishClient, IpcError\n"
              "c = PublishClient(%r)\n"
              "try:\n    c.publish('public/a', 1)\nexcept IpcError as e:\n    print(e.code)\n"
              % str(env.publish_socket))
    out = run_as(65534, 65534, script)
    assert out.stdout.strip() == "4", out.stderr


# ---- tokens and private channels

# The tokens are made when the test runs, not when it is collected: a
# stage slower than their 300 s lifetime (the sanitizer one) would see the
# valid one expired.
@pytest.mark.parametrize("token,code", [
    (None, 4401),
    (dict(exp_in=-10), 4401),
    (dict(secret=b"wrong-secret"), 4401),
    (dict(exp_in=None), 4401),
    (dict(alg="none"), 4401),
    (dict(alg="HS384"), 4401),
    (dict(channels=["user/bob/*"]), 4403),
    ("garbage", 4401),
], ids=["none", "expired", "wrong-secret", "no-exp", "alg-none", "alg-hs384", "not-covered",
        "garbage"])
def test_private_channel_refusals(ws, token, code):
    q = "channels=user/alice/inbox"
    if token is not None:
        q += "&token=" + (make_token(**token) if isinstance(token, dict) else token)
    run(expect_close(ws, q, code))


def test_private_channel_with_valid_token(ws):
    async def go():
        c, hello = await subscribe(ws, "channels=user/alice/inbox,public/a&token=" + make_token())
        assert hello["channels"] == ["user/alice/inbox", "public/a"]
        ack = ws.publish("user/alice/inbox", [1, 2])
        assert ack["subscribers"] == 1
        assert json.loads(await c.recv())["data"] == [1, 2]
        await c.close()
    run(go())


def test_previous_secret_accepted_during_rotation(env):
    old = b"the-old-secret-before-the-rotation"
    (env.dir / "old").write_bytes(old)
    env.sections["wspush"]["previous_secret_file"] = str(env.dir / "old")
    env.write_ini()
    env.start_ws()

    async def go():
        c, _ = await subscribe(env, "channels=user/alice/x&token=" + make_token(secret=old))
        await c.close()
    run(go())


@pytest.mark.parametrize("query", [
    "", "channels=", "channels=a,,b", "channels=bad%20name", "channels=" + "x" * 201,
    "channels=public/a,public/a", "channels=" + ",".join(f"public/{i}" for i in range(33)),
    "channels=public/%zz",
])
def test_bad_channels_close_4400(ws, query):
    run(expect_close(ws, query, 4400))


def test_max_channels_is_a_limit(env):
    env.sections["ws-server"]["max_channels"] = "2"
    env.write_ini()
    env.start_ws()
    run(expect_close(env, "channels=public/1,public/2,public/3", 4400))


# ---- handshake

def test_origin_allow_list(env):
    env.sections["ws-server"]["allowed_origins"] = "http://good.example"
    env.write_ini()
    env.start_ws()
    s, status, head, _ = ws_handshake(env.ws_port, origin="http://evil.example")
    assert status == 403
    assert b"upgrade" not in head.lower().split(b"\r\n")[0]
    s.close()
    r = RawWs(env.ws_port, origin="http://good.example")
    assert r.status == 101
    r.close()


def test_handshake_http_answers(ws):
    def raw(req):
        with socket.create_connection(("127.0.0.1", ws.ws_port), timeout=5) as s:
            s.sendall(req)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return data
                data += chunk
    assert raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
    plain = raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    assert plain.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in plain
    v8 = raw(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
    assert v8.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in v8
    assert raw(b"POST /ws HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")


def test_header_size_limit(env):
    env.sections["ws-server"]["max_header_bytes"] = "1024"
    env.write_ini()
    env.start_ws()
    s, status, _, _ = ws_handshake(env.ws_port, extra=b"X-Pad: " + b"a" * 2000 + b"\r\n")
    assert status == 431
    s.close()
    r = RawWs(env.ws_port)   # a normal request still fits
    assert r.status == 101
    r.close()


def test_handshake_timeout_drops_slowloris(env):
    env.sections["ws-server"]["handshake_timeout"] = "300"
    env.write_ini()
    env.start_ws()
    s = socket.create_connection(("127.0.0.1", env.ws_port), timeout=5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert 0.2 < time.monotonic() - t0 < 3
    s.close()


def test_max_connections_503(env):
    env.sections["ws-server"]["max_connections"] = "3"
    env.write_ini()
    env.start_ws()
    def upgraded():
        # The harness's start-up probe may still hold a slot for a moment.
        r = RawWs(env.ws_port)
        if r.status != 101:
            r.close()
            return None
        return r
    held = [wait_for(upgraded, what="a slot") for _ in range(3)]
    s, status, _, _ = ws_handshake(env.ws_port)
    assert status == 503
    s.close()
    held.pop().close()
    wait_for(lambda: RawWs(env.ws_port).status == 101, what="a slot to free up")
    for r in held:
        r.close()


def test_ipv6_listen(env):
    port = free_port()
    env.sections["ws-server"]["listen"] = [f"127.0.0.1:{env.ws_port}", f"[::1]:{port}"]
    env.write_ini()
    env.start_ws()
    s = socket.create_connection(("::1", port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    s.close()


# ---- frames from the client

def test_client_text_frame_closes_1008(ws):
    async def go():
        c, _ = await subscribe(ws, "channels=public/a")
        await c.send("hello")
        with pytest.raises(websockets.ConnectionClosed) as e:
            await asyncio.wait_for(c.recv(), 5)
        assert e.value.code == 1008
    run(go())


def test_oversized_data_frame_closes_1008(ws):
    """A data frame over max_frame_bytes: the opcode decides (1008)."""
    r = RawWs(ws.ws_port)
    assert r.recv_frame()[0] == 0x1     # the greeting
    r.send(encode_frame(0x2, b"x" * 1000))
    assert r.recv_close() == 1008
    r.close()


def test_ping_gets_pong_with_same_payload(ws):
    r = RawWs(ws.ws_port)
    r.recv_frame()
    r.send(encode_frame(0x9, b"are you there?"))
    assert r.recv_frame() == (0xA, b"are you there?")
    r.close()


def test_server_pings_and_drops_a_silent_peer(env):
    env.sections["ws-server"].update(ping_interval="200", pong_timeout="300")
    env.write_ini()
    env.start_ws()
    r = RawWs(env.ws_port)
    r.recv_frame()
    op, payload = r.recv_frame(timeout=3)
    assert op == 0x9
    t0 = time.monotonic()
    assert r.recv_frame(timeout=5) is None   # no pong from us: dropped
    assert time.monotonic() - t0 < 3
    r.close()

    async def answers_pings():
        c, _ = await subscribe(env, "channels=public/a")
        await asyncio.sleep(1.2)   # several ping rounds, answered by the library
        ack = env.publish("public/a", 1)
        assert ack["subscribers"] == 1
        assert json.loads(await c.recv())["data"] == 1
        await c.close()
    run(answers_pings())


def test_pings_every_interval_when_answered(env):
    """A pong puts the next ping at ping_interval, also when pong_timeout
    is longer (the timer used to stay on the pong deadline, so pings came
    every pong_timeout and a proxy's shorter idle timeout cut the
    connection)."""
    env.sections["ws-server"].update(ping_interval="200", pong_timeout="5000")
    env.write_ini()
    env.start_ws()
    r = RawWs(env.ws_port)
    r.recv_frame()
    for _ in range(3):
        t0 = time.monotonic()
        assert r.recv_frame(timeout=3) == (0x9, b"")
        assert time.monotonic() - t0 < 1.0
        r.send(encode_frame(0xA))
    r.close()


def test_close_handshake_echoes_code(ws):
    r = RawWs(ws.ws_port)
    r.recv_frame()
    r.send(encode_frame(0x8, struct.pack(">H", 1000) + b"bye"))
    assert r.recv_close() == 1000
    assert r.recv_frame() is None
    r.close()


# ---- slow consumers, revocation, lifecycle

def test_slow_consumer_closed_1013_others_keep_receiving(env):
    env.sections["ws-server"]["send_buffer_bytes"] = "65536"
    # Long enough for this test to come back and read the close frame.
    env.sections["ws-server"]["close_timeout"] = "20000"
    env.write_ini()
    env.start_ws()
    slow = slow_reader(env.ws_port, b"GET /ws?channels=public/s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n")

    async def go():
        fast, _ = await subscribe(env, "channels=public/s", max_size=None)
        pub = env.client()
        payload = "z" * 8000
        n = 1500
        received = 0
        for i in range(n):
            pub.publish("public/s", payload)
            while True:   # drain the fast subscriber as we go
                try:
                    await asyncio.wait_for(fast.recv(), 0.0001 if i < n - 1 else 5)
                    received += 1
                except asyncio.TimeoutError:
                    break
                if received == n:
                    break
        while received < n:
            await asyncio.wait_for(fast.recv(), 5)
            received += 1
        assert received == n
        await fast.close()
    run(go(), timeout=60)
    # The slow one was cut off with 1013 (its queue capped at 64 KiB).
    log = env.log_text()
    assert "slow consumer" in log and "closing 1013" in log
    slow.settimeout(5)
    data = b""
    while not data.endswith(b"\x88\x02\x03\xf5"):   # close frame, code 1013
        chunk = slow.recv(1 << 20)
        assert chunk, "connection ended without a 1013 close frame"
        data += chunk
    # Memory stayed bounded: far less than the 12 MB published was queued.
    assert len(data) < 12_000_000
    slow.close()


def test_disconnect_user_closes_only_that_users_sockets(ws):
    async def go():
        a1, _ = await subscribe(ws, "channels=user/alice/x&token=" + make_token())
        a2, _ = await subscribe(ws, "channels=public/a&token=" + make_token())
        b, _ = await subscribe(ws, "channels=user/bob/x&token=" +
                               make_token(sub="bob", channels=["user/bob/*"]))
        assert ws.disconnect("alice") == 2
        for c in (a1, a2):
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(c.recv(), 5)
            assert e.value.code == 4401
        ws.publish("user/bob/x", "still here")
        assert json.loads(await asyncio.wait_for(b.recv(), 5))["data"] == "still here"
        assert ws.disconnect("nobody") == 0
        await b.close()
    run(go())


def test_sigterm_closes_1001_and_exits_0(ws):
    async def go():
        clients = [(await subscribe(ws, "channels=public/a"))[0] for _ in range(5)]
        t0 = time.monotonic()
        ws.ws_proc.send_signal(signal.SIGTERM)
        for c in clients:
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(c.recv(), 5)
            assert e.value.code == 1001
        rc = await asyncio.get_running_loop().run_in_executor(None, ws.ws_proc.wait, 5)
        assert rc == 0
        assert time.monotonic() - t0 < 1.5
    run(go())
    ws.ws_proc = None
    assert not ws.publish_socket.exists()


def test_sigterm_with_unresponsive_clients_still_exits_fast(ws):
    raws = [RawWs(ws.ws_port) for _ in range(3)]   # never answer the close
    t0 = time.monotonic()
    ws.ws_proc.send_signal(signal.SIGTERM)
    assert ws.ws_proc.wait(5) == 0
    assert time.monotonic() - t0 < 1.5
    ws.ws_proc = None
    for r in raws:
        r.close()


def test_sighup_reloads_without_dropping(ws):
    async def go():
        c, _ = await subscribe(ws, "channels=public/a")
        # Reload with a new public pattern and a bad value that must not apply.
        ws.sections["channels"]["public"] = "public/* extra/*"
        ws.write_ini()
        ws.ws_proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in ws.log_text(), what="reload")
        e, _ = await subscribe(ws, "channels=extra/1")
        ws.publish(["public/a", "extra/1"], "after reload")
        assert json.loads(await c.recv())["data"] == "after reload"
        assert json.loads(await e.recv())["data"] == "after reload"
        # A broken file is refused and the running config stays.
        ws.ini_path.write_text(ws.ini_path.read_text() + "\nbogus_key = 1\n")
        ws.ws_proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in ws.log_text(), what="failed reload")
        ws.publish("public/a", "still")
        assert json.loads(await c.recv())["data"] == "still"
        await c.close()
        await e.close()
    run(go())


def test_config_check_flag(env):
    out = subprocess.run([str(env_bin(env)), "-c", str(env.ini_path), "-t"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    env.ini_path.write_text(env.ini_path.read_text() + "\n[ws-server]\nmax_connections = many\n")
    out = subprocess.run([str(env_bin(env)), "-c", str(env.ini_path), "-t"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0
    assert "max_connections" in out.stderr and str(env.ini_path) in out.stderr


def env_bin(env):
    from harness import BIN
    return BIN / "ws-server"


def test_unix_listen_for_a_reverse_proxy(env):
    path = env.dir / "ws.sock"
    env.sections["ws-server"]["unix_listen"] = str(path)
    env.write_ini()
    env.start_ws()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    s.sendall(b"GET /ws?channels=public/u HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    data = b""
    while b"subscribed" not in data:
        chunk = s.recv(4096)
        assert chunk
        data += chunk
    assert data.startswith(b"HTTP/1.1 101")
    ack = env.publish("public/u", "via unix")
    assert ack["subscribers"] == 1
    s.close()
    assert env.stop_ws() == 0
    assert not path.exists()


def test_ping_flood_without_reading_is_capped(env):
    env.sections["ws-server"]["send_buffer_bytes"] = "65536"
    env.write_ini()
    env.start_ws()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", env.ws_port))
    s.sendall(b"GET /ws?channels=public/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    ping = encode_frame(0x9, b"p" * 125)
    s.settimeout(10)
    try:
        for _ in range(200):            # up to 25 MB of pings, never reading
            s.sendall(ping * 1000)
    except OSError:
        pass                            # the server hung up: expected
    wait_for(lambda: "pongs not read" in env.log_text(), what="the ping-flood cap")
    s.close()


def test_idle_timeout_closes_1000_after_no_messages(env):
    # Generous times: the valgrind stage runs this slowly too.
    env.sections["ws-server"]["idle_timeout"] = "1500"
    env.write_ini()
    env.start_ws()

    async def go():
        c, _ = await subscribe(env, "channels=public/i")
        await asyncio.sleep(0.5)
        env.publish("public/i", "keeps it alive")      # resets the idle clock
        assert json.loads(await c.recv())["data"] == "keeps it alive"
        t_msg = time.monotonic()
        with pytest.raises(websockets.ConnectionClosed) as e:
            await asyncio.wait_for(c.recv(), 10)
        assert e.value.code == 1000
        # Closed about idle_timeout after the message, not after connecting.
        assert 1.0 < time.monotonic() - t_msg < 6
    run(go())
