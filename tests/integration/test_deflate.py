"""permessage-deflate (RFC 7692): what a client offers, what ws-server
answers, and what arrives. Python websockets negotiates and decodes it;
raw sockets check the wire itself: RSV1 on compressed frames only, the
payload a raw inflate (with 00 00 ff ff put back) turns into the exact
envelope, one compressed frame shared by every subscriber (the metrics
count one compression per message), and the refusals (declined offers,
deflate = off, RSV1 data frames from the client). Node ws and Chromium
decode it in the browser stage (tests/browser/deflate.test.mjs)."""
import asyncio
import json
import random
import zlib

import pytest
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from harness import RawWs, encode_frame, free_port, wait_for
from test_metrics import metrics_up, scrape

ANSWER = b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"
OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
OP_TEXT = 0x1
RSV1 = 0x40


def big_data(n=40):
    """A compressible JSON value of about 2 KB and up."""
    return {"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"], "price": i * 7.5}
                      for i in range(n)]}


def inflate(payload):
    d = zlib.decompressobj(-15)
    return d.decompress(payload + b"\x00\x00\xff\xff") + d.flush()


def raw(env, query="channels=public/a", extra=OFFER):
    r = RawWs(env.ws_port, "/ws?" + query, extra=extra)
    assert r.status == 101, r.head
    op, hello = r.recv_frame()
    assert op == OP_TEXT and json.loads(hello)["type"] == "subscribed"
    assert r.last_b0 & 0x70 == 0, "the subscribed greeting is never compressed"
    return r


def recv_message(r):
    """(compressed?, envelope dict, wire payload) of the next message."""
    op, payload = r.recv_frame()
    assert op == OP_TEXT
    assert r.last_b0 & 0x30 == 0, "RSV2/RSV3 set"
    compressed = bool(r.last_b0 & RSV1)
    text = inflate(payload) if compressed else payload
    return compressed, json.loads(text), payload


@pytest.fixture
def denv(env):
    """ws-server with a metrics listener."""
    env.metrics = f"127.0.0.1:{free_port()}"
    env.sections["ws-server"]["metrics_listen"] = env.metrics
    env.write_ini()
    env.start_ws()
    wait_for(lambda: metrics_up(env.metrics), what="metrics listener")
    return env


def test_python_websockets_negotiates_and_decodes(denv):
    big = big_data()
    small = {"n": 1}

    async def main():
        async with websockets.connect(denv.ws_url("channels=public/a"),
                                      compression="deflate") as ws:
            assert ws.response_headers["Sec-WebSocket-Extensions"] == ANSWER.split(b": ", 1)[1].decode()
            assert [type(e).__name__ for e in ws.extensions] == ["PerMessageDeflate"]
            assert json.loads(await ws.recv())["type"] == "subscribed"
            denv.publish(["public/a"], json.dumps(big).encode())
            denv.publish(["public/a"], json.dumps(small).encode())
            m1 = json.loads(await asyncio.wait_for(ws.recv(), 5))
            m2 = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return m1, m2
    m1, m2 = asyncio.run(main())
    assert m1["data"] == big and m1["channel"] == "public/a"
    assert m2["data"] == small
    s = scrape(denv)
    assert s("wspush_deflate_connections_total") == 1
    assert s("wspush_deflate_messages_total", result="compressed") == 1   # the big one only


def test_wire_rsv1_threshold_and_exact_bytes(ws):
    """Above deflate_min_bytes (512) RSV1 is set and the payload inflates
    to exactly the plain client's frame; below it the frame is plain."""
    z, p = raw(ws), raw(ws, extra=b"")
    assert ANSWER in z.head and b"Extensions" not in p.head
    data = json.dumps(big_data()).encode()
    ws.publish(["public/a"], data)
    compressed, env_z, wire = recv_message(z)
    _, plain = p.recv_frame()
    assert compressed and p.last_b0 & 0x70 == 0
    assert inflate(wire) == plain
    assert len(wire) < len(plain) / 3
    assert env_z["data"] == json.loads(data)

    # A 512-byte envelope is compressed, a 511-byte one is not (both
    # compress well). The next id is the last one's sequence plus one.
    last = ws.publish(["public/a"], b'""')["id"]
    recv_message(z), p.recv_frame()
    for size, want in ((512, True), (511, False)):
        epoch, seq = last.rsplit("-", 1)
        last = f"{epoch}-{int(seq) + 1}"
        head = len('{"type":"message","channel":"public/a","id":"' + last + '","data":""}')
        ws.publish(["public/a"], json.dumps("a" * (size - head)).encode())
        compressed, envelope, wire = recv_message(z)
        _, plain = p.recv_frame()
        assert envelope["id"] == last and len(plain) == size
        assert compressed is want, size
        assert (inflate(wire) if compressed else wire) == plain
    z.close()
    p.close()


def test_deflate_max_bytes(env):
    """An envelope of deflate_max_bytes is compressed, one byte more goes
    plain (compression runs in the event loop: a huge message would stall
    it), and is not counted as a compression tried."""
    env.sections["ws-server"].update(deflate_max_bytes="4k",
                                     metrics_listen=f"127.0.0.1:{free_port()}")
    env.metrics = env.sections["ws-server"]["metrics_listen"]
    env.write_ini()
    env.start_ws()
    wait_for(lambda: metrics_up(env.metrics), what="metrics listener")
    z = raw(env)
    last = env.publish(["public/a"], b'""')["id"]
    recv_message(z)
    for size, want in ((4096, True), (4097, False), (20000, False)):
        epoch, seq = last.rsplit("-", 1)
        last = f"{epoch}-{int(seq) + 1}"
        head = len('{"type":"message","channel":"public/a","id":"' + last + '","data":""}')
        env.publish(["public/a"], json.dumps("a" * (size - head)).encode())
        compressed, envelope, wire = recv_message(z)
        assert envelope["id"] == last and compressed is want, size
        assert len(inflate(wire) if compressed else wire) == size
    s = scrape(env)
    assert s("wspush_deflate_messages_total", result="compressed") == 1
    assert s("wspush_deflate_messages_total", result="plain") == 0
    z.close()


def test_one_compression_shared_by_every_subscriber(denv):
    subs = [raw(denv) for _ in range(3)]
    other = raw(denv, "channels=public/b")
    plain = raw(denv, extra=b"")
    before = scrape(denv)
    data = json.dumps(big_data(60)).encode()
    denv.publish(["public/a", "public/b"], data)
    wires = [recv_message(r) for r in subs]
    assert all(w[0] for w in wires)
    assert wires[0][2] == wires[1][2] == wires[2][2]
    ob = recv_message(other)
    assert ob[0] and ob[1]["channel"] == "public/b"
    _, pl = plain.recv_frame()
    assert inflate(wires[0][2]) == pl
    after = scrape(denv)
    # One compression per channel of the message, whatever the subscriber count.
    assert after("wspush_deflate_messages_total", result="compressed") - \
        before("wspush_deflate_messages_total", result="compressed") == 2
    saved_in = after("wspush_deflate_input_bytes_total") - before("wspush_deflate_input_bytes_total")
    saved_out = after("wspush_deflate_output_bytes_total") - before("wspush_deflate_output_bytes_total")
    assert saved_in == 2 * len(pl) - len("public/a") + len("public/b")
    assert saved_out == len(wires[0][2]) + len(ob[2])
    for r in subs + [other, plain]:
        r.close()


def incompressible_string():
    """A JSON string whose envelope (first message of a run, public/a)
    raw deflate at level 6 does not make shorter: 20 astral characters
    whose UTF-8 bytes all take 9-bit codes, too few for a Huffman table
    of their own to pay. Checked with the same zlib, on an id ("0"*8)
    that compresses better than the real one."""
    rnd = random.Random(20)

    def char():
        while True:
            cp = rnd.randint(0, 4) << 18 | rnd.randint(16, 63) << 12 | \
                rnd.randint(16, 63) << 6 | rnd.randint(16, 63)
            if 0x10000 <= cp <= 0x10FFFF:
                return chr(cp)
    for _ in range(1000):
        s = "".join(char() for _ in range(20))
        envelope = ('{"type":"message","channel":"public/a","id":"00000000-1","data":%s}'
                    % json.dumps(s, ensure_ascii=False)).encode()
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        if len(c.compress(envelope) + c.flush(zlib.Z_SYNC_FLUSH)) - 4 > len(envelope):
            return s
    raise AssertionError("no incompressible string found")


def test_not_smaller_goes_plain(env):
    """deflate_min_bytes = 0: a message that does not shrink is sent
    plain (and the choice is counted once, as 'plain')."""
    env.metrics = f"127.0.0.1:{free_port()}"
    env.sections["ws-server"].update(deflate_min_bytes="0", metrics_listen=env.metrics)
    env.write_ini()
    env.start_ws()
    wait_for(lambda: metrics_up(env.metrics), what="metrics listener")
    a, b = raw(env), raw(env)
    s = incompressible_string()
    env.publish(["public/a"], json.dumps(s, ensure_ascii=False).encode())
    for r in (a, b):
        compressed, envelope, _ = recv_message(r)
        assert not compressed and envelope["data"] == s
    s = scrape(env)
    assert s("wspush_deflate_messages_total", result="plain") == 1
    assert s("wspush_deflate_messages_total", result="compressed") == 0


@pytest.mark.parametrize("offer", [
    b"permessage-deflate; server_max_window_bits=10",
    b"permessage-deflate; x-unknown",
    b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    b"permessage-deflate; client_max_window_bits=16",
    b"permessage-deflate; server_max_window_bits=\"15",
], ids=["window-10", "unknown-param", "duplicate", "bad-value", "broken"])
def test_declined_offer_opens_uncompressed(ws, offer):
    r = raw(ws, extra=b"Sec-WebSocket-Extensions: " + offer + b"\r\n")
    assert b"Extensions" not in r.head
    ws.publish(["public/a"], json.dumps(big_data()).encode())
    compressed, envelope, _ = recv_message(r)
    assert not compressed and envelope["data"] == big_data()
    r.close()


def test_declined_offer_then_acceptable_one(ws):
    """The acceptable offer names server_max_window_bits=15: the answer
    names it back (RFC 7692 7.1.2.1)."""
    r = raw(ws, extra=b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10, "
                      b"permessage-deflate; server_max_window_bits=15\r\n")
    assert ANSWER + b"; server_max_window_bits=15" in r.head.split(b"\r\n")
    r.close()


@pytest.mark.parametrize("offer,params", [
    (b"permessage-deflate; client_max_window_bits", b""),
    (b"permessage-deflate; client_no_context_takeover", b"; client_no_context_takeover"),
], ids=["not-offered", "offered"])
def test_client_no_context_takeover_only_when_offered(ws, offer, params):
    """Named in the answer only when offered: a client that did not offer
    it may refuse it (Node ws with clientNoContextTakeover: false)."""
    r = raw(ws, extra=b"Sec-WebSocket-Extensions: " + offer + b"\r\n")
    assert ANSWER + params in r.head.split(b"\r\n")
    r.close()


def test_python_websockets_server_max_window_bits_15(denv):
    """A client that asks for server_max_window_bits=15 negotiates and
    decodes a compressed message (it refuses an answer without it)."""
    async def main():
        f = ClientPerMessageDeflateFactory(server_max_window_bits=15)
        async with websockets.connect(denv.ws_url("channels=public/a"), extensions=[f],
                                      compression=None) as c:
            assert c.response_headers["Sec-WebSocket-Extensions"].endswith(
                "; server_max_window_bits=15")
            assert [type(e).__name__ for e in c.extensions] == ["PerMessageDeflate"]
            await c.recv()
            denv.publish(["public/a"], json.dumps(big_data()).encode())
            return json.loads(await asyncio.wait_for(c.recv(), 5))
    assert asyncio.run(main())["data"] == big_data()
    assert scrape(denv)("wspush_deflate_messages_total", result="compressed") == 1


def test_python_websockets_small_window_declined(ws):
    """A client that insists on server_max_window_bits=10 gets no
    compression, and still every message."""
    async def main():
        f = ClientPerMessageDeflateFactory(server_max_window_bits=10)
        async with websockets.connect(ws.ws_url("channels=public/a"), extensions=[f],
                                      compression=None) as c:
            assert "Sec-WebSocket-Extensions" not in c.response_headers
            assert c.extensions == []
            await c.recv()
            ws.publish(["public/a"], json.dumps(big_data()).encode())
            return json.loads(await asyncio.wait_for(c.recv(), 5))
    assert asyncio.run(main())["data"] == big_data()


def test_deflate_off_declines(env):
    env.sections["ws-server"]["deflate"] = "off"
    env.write_ini()
    env.start_ws()
    r = raw(env)
    assert b"Extensions" not in r.head
    env.publish(["public/a"], json.dumps(big_data()).encode())
    compressed, _, _ = recv_message(r)
    assert not compressed
    r.close()


@pytest.mark.parametrize("negotiated,want", [(True, 1008), (False, 1002)])
def test_client_rsv1_data_frame(ws, negotiated, want):
    """With the extension a compressed-looking data frame is still a data
    frame: 1008 (push-only). Without it RSV1 is a protocol error: 1002."""
    r = raw(ws, extra=OFFER if negotiated else b"")
    assert (ANSWER in r.head) is negotiated
    r.send(encode_frame(OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=4))
    assert r.recv_close() == want
    r.close()


def test_rsv1_control_frame_still_1002(ws):
    r = raw(ws)
    r.send(encode_frame(0x9, b"x", rsv=4))
    assert r.recv_close() == 1002
    r.close()


def test_reload_keeps_negotiated_connections(ws):
    """SIGHUP with deflate = off: new connections decline, an open one
    keeps receiving compressed frames (what it negotiated); a new
    deflate_level applies to the next message."""
    import signal
    before = raw(ws)
    ws.sections["ws-server"].update(deflate="off", deflate_level="1")
    ws.write_ini()
    ws.ws_proc.send_signal(signal.SIGHUP)
    def declines():
        r = raw(ws)
        r.close()
        return b"Extensions" not in r.head
    wait_for(declines, what="the reload")
    ws.publish(["public/a"], json.dumps(big_data()).encode())
    compressed, envelope, _ = recv_message(before)
    assert compressed and envelope["data"] == big_data()
    before.close()
