"""RFC 6455 conformance of ws-server on raw sockets, modelled on the server
case groups of Autobahn|Testsuite (1 framing, 2 ping/pong, 3 reserved bits,
4 opcodes, 5 fragmentation, 6 UTF-8, 7 close handling, 9 limits) and adapted
to a push-only server: every client data frame, whole or fragmented, is a
policy violation (1008), so the Autobahn echo cases become "closed with
1008" and what remains to check is framing, control frames and closing.

Each table row is (id, bytes the client sends after the upgrade, expected
events). An expected event is
    PONG(payload)  a pong with exactly that payload,
    CLOSE(code)    a close frame with that code, after which the client
                   answers the close and the server must drop TCP,
    OPEN           the connection is still usable: a clean close handshake
                   (1000 echoed, then EOF) must still work.
Any other frame from the server (bar the "subscribed" greeting, read first)
fails the case. Defaults of the harness apply: max_frame_bytes = 125.
"""
import json
import os
import socket
import struct
import time

import pytest

from harness import Env, RawWs, encode_frame

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def PONG(payload=b""):
    return ("pong", payload)


def CLOSE(code):
    return ("close", code)


OPEN = ("open", None)


def f(opcode, payload=b"", **kw):
    return encode_frame(opcode, payload, **kw)


def close_frame(code, reason=b""):
    return f(OP_CLOSE, struct.pack(">H", code) + reason)


def raw_header(b0, b1, ext=b"", key=b"\x01\x02\x03\x04"):
    """A frame header built by hand (for lengths encode_frame won't make)."""
    return bytes([b0, b1]) + ext + key


# ---- one server for the whole module

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Every case is its own connection, so one ws-server serves them all
    (which also checks that hostile clients leave it able to serve the
    next one). It must exit 0 at the end, as conftest's env fixture asks:
    a sanitizer or valgrind report fails the last test of the module."""
    env = Env(tmp_path_factory.mktemp("conformance"))
    env.start_ws()
    yield env
    if env.ws_proc is not None and env.ws_proc.poll() is None:
        rc = env.stop_ws(timeout=30)
        assert rc == 0, "ws-server exited %r:\n%s" % (rc, env.log_text()[-4000:])
    else:
        raise AssertionError("ws-server died during the conformance suite:\n"
                             + env.log_text()[-4000:])


@pytest.fixture
def ws(server):
    assert server.ws_proc.poll() is None, "ws-server died:\n" + server.log_text()[-4000:]
    return server


# ---- the session helpers

def open_session(env, channel="public/a"):
    r = RawWs(env.ws_port, path="/ws?channels=" + channel)
    assert r.status == 101, r.head
    greeting = r.recv_frame()
    assert greeting is not None and greeting[0] == OP_TEXT, greeting
    assert json.loads(greeting[1])["type"] == "subscribed"
    return r


def expect_eof(r, timeout=3.0):
    """The server must close TCP: EOF (or a reset) within timeout, and no
    frame before it."""
    r.sock.settimeout(timeout)
    try:
        while True:
            if r.buf:
                raise AssertionError(f"bytes after the close frame: {r.buf[:40]!r}")
            chunk = r.sock.recv(4096)
            if not chunk:
                return
            r.buf += chunk
    except ConnectionResetError:
        return
    except socket.timeout:
        raise AssertionError("server kept the TCP connection open after the close handshake")


def check_close_payload(payload):
    """A server close frame: empty or a 2-byte code plus UTF-8 reason."""
    assert len(payload) != 1, payload
    payload[2:].decode("utf-8")


def expect_events(r, events):
    for kind, arg in events:
        if kind == "open":
            r.send(close_frame(1000))
            fr = r.recv_frame()
            assert fr is not None, "EOF where the connection should have stayed open"
            assert fr[0] == OP_CLOSE, fr
            assert struct.unpack(">H", fr[1][:2])[0] == 1000, fr
            expect_eof(r)
            return
        fr = r.recv_frame()
        if kind == "pong":
            assert fr is not None, "EOF, expected a pong"
            assert fr == (OP_PONG, arg), fr
        elif kind == "close":
            assert fr is not None, "EOF without a close frame (expected %d)" % arg
            assert fr[0] == OP_CLOSE, fr
            check_close_payload(fr[1])
            code = struct.unpack(">H", fr[1][:2])[0] if len(fr[1]) >= 2 else 1005
            assert code == arg, "close %d, expected %d (reason %r)" % (code, arg, fr[1][2:])
            # Answer the close (the server may already be gone: fine).
            try:
                r.send(close_frame(code if code != 1005 else 1000))
            except OSError:
                pass
            expect_eof(r)
            return
        else:
            raise AssertionError(kind)
    raise AssertionError("case must end with CLOSE or OPEN")


# ---- the table

def _rsv_cases():
    out = []
    for rsv in range(1, 8):
        out.append((f"3.{rsv}-ping-rsv{rsv}", f(OP_PING, b"x", rsv=rsv), [CLOSE(1002)]))
    out += [
        ("3.8-text-rsv1", f(OP_TEXT, b"hi", rsv=4), [CLOSE(1002)]),
        ("3.9-close-rsv2", f(OP_CLOSE, struct.pack(">H", 1000), rsv=2), [CLOSE(1002)]),
        ("3.10-good-ping-then-rsv", f(OP_PING, b"a") + f(OP_PING, b"b", rsv=1),
         [PONG(b"a"), CLOSE(1002)]),
    ]
    return out


def _opcode_cases():
    out = []
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        out.append((f"4.op{op:x}-empty", f(op), [CLOSE(1002)]))
        out.append((f"4.op{op:x}-payload", f(op, b"reserved"), [CLOSE(1002)]))
    out.append(("4.good-ping-then-op5", f(OP_PING, b"p") + f(5, b"x") + f(OP_PING, b"q"),
                [PONG(b"p"), CLOSE(1002)]))
    return out


VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                     3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100,
                       2000, 2999, 5000, 65535]
BAD_UTF8 = {
    "ff": b"\xff",
    "overlong-nul": b"\xc0\x80",
    "overlong-3": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "truncated": b"\xe2\x82",
    "past-10ffff": b"\xf4\x90\x80\x80",
    "lone-continuation": b"ok\x80",
    "5-byte": b"\xf8\x88\x80\x80\x80",
}

CASES = [
    # 1 framing: every data frame is refused with 1008, whatever its size
    # within the limit or its length encoding.
    ("1.1.1-text-empty", f(OP_TEXT), [CLOSE(1008)]),
    ("1.1.2-text-125", f(OP_TEXT, b"*" * 125), [CLOSE(1008)]),
    ("1.1.3-text-len16-encoding", raw_header(0x81, 0x80 | 126, struct.pack(">H", 5)) + b"hello",
     [CLOSE(1008)]),
    ("1.1.4-text-len64-encoding", raw_header(0x81, 0x80 | 127, struct.pack(">Q", 5)) + b"hello",
     [CLOSE(1008)]),
    ("1.2.1-binary-empty", f(OP_BINARY), [CLOSE(1008)]),
    ("1.2.2-binary-125", f(OP_BINARY, bytes(range(125))), [CLOSE(1008)]),
    ("1.3-unmasked-text", f(OP_TEXT, b"hi", mask=False), [CLOSE(1002)]),
    ("1.4-unmasked-ping", f(OP_PING, b"hi", mask=False), [CLOSE(1002)]),
    ("1.5-unmasked-close", f(OP_CLOSE, struct.pack(">H", 1000), mask=False), [CLOSE(1002)]),
    ("1.6-text-then-ping", f(OP_TEXT, b"x") + f(OP_PING, b"late"), [CLOSE(1008)]),

    # 2 ping/pong
    ("2.1-ping-empty", f(OP_PING), [PONG(b""), OPEN]),
    ("2.2-ping-text-payload", f(OP_PING, b"Hello, world!"), [PONG(b"Hello, world!"), OPEN]),
    ("2.3-ping-binary-payload", f(OP_PING, bytes([0, 255, 254, 253, 252, 251, 0, 1])),
     [PONG(bytes([0, 255, 254, 253, 252, 251, 0, 1])), OPEN]),
    ("2.4-ping-125", f(OP_PING, b"\xfe" * 125), [PONG(b"\xfe" * 125), OPEN]),
    ("2.5-ping-126", f(OP_PING, b"\xfe" * 126), [CLOSE(1002)]),
    ("2.5b-ping-len16-encoding-small", raw_header(0x89, 0x80 | 126, struct.pack(">H", 3)) + b"abc",
     [CLOSE(1002)]),
    ("2.6-pong-unsolicited", f(OP_PONG, b"unsolicited"), [OPEN]),
    ("2.7-pong-unsolicited-then-ping", f(OP_PONG) + f(OP_PING, b"after"),
     [PONG(b"after"), OPEN]),
    ("2.8-ping-not-utf8", f(OP_PING, b"\xff\xfe"), [PONG(b"\xff\xfe"), OPEN]),
    ("2.10-ten-pings-pipelined", b"".join(f(OP_PING, b"%d" % i) for i in range(10)),
     [PONG(b"%d" % i) for i in range(10)] + [OPEN]),

    *_rsv_cases(),
    *_opcode_cases(),

    # 5 fragmentation: a data message in pieces is still a data message
    # (1008); frames that break the fragmentation rules are protocol errors.
    ("5.1-ping-fragmented", f(OP_PING, b"a", fin=False), [CLOSE(1002)]),
    ("5.2-pong-fragmented", f(OP_PONG, b"a", fin=False), [CLOSE(1002)]),
    ("5.3-close-fragmented", f(OP_CLOSE, struct.pack(">H", 1000), fin=False), [CLOSE(1002)]),
    ("5.4-text-first-fragment", f(OP_TEXT, b"frag", fin=False), [CLOSE(1008)]),
    ("5.5-binary-first-fragment", f(OP_BINARY, b"frag", fin=False), [CLOSE(1008)]),
    ("5.6-text-fragments-whole-message", f(OP_TEXT, b"fr", fin=False) + f(OP_CONT, b"ag"),
     [CLOSE(1008)]),
    ("5.7-fragments-with-ping-between",
     f(OP_TEXT, b"fr", fin=False) + f(OP_PING, b"p") + f(OP_CONT, b"ag"), [CLOSE(1008)]),
    ("5.8-continuation-without-start", f(OP_CONT, b"x"), [CLOSE(1002)]),
    ("5.9-continuation-without-start-nofin", f(OP_CONT, b"x", fin=False), [CLOSE(1002)]),
    ("5.10-continuation-empty", f(OP_CONT), [CLOSE(1002)]),
    ("5.11-ping-then-continuation", f(OP_PING, b"z") + f(OP_CONT, b"x"),
     [PONG(b"z"), CLOSE(1002)]),

    # 6 UTF-8: text frames are refused before their content matters; the
    # close reason is the one UTF-8 a client can send.
    ("6.1-text-bad-utf8", f(OP_TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
     [CLOSE(1008)]),
    ("6.2-close-reason-utf8", close_frame(1000, "κόσμε".encode()), [CLOSE(1000)]),
    ("6.3-close-reason-4-byte-utf8", close_frame(1000, "\U0001F600".encode()), [CLOSE(1000)]),
    *[(f"6.4-close-reason-{k}", close_frame(1000, v), [CLOSE(1007)])
      for k, v in BAD_UTF8.items()],

    # 7 close handling
    ("7.1.1-close-empty", f(OP_CLOSE), [CLOSE(1000)]),
    ("7.1.2-close-then-ping", close_frame(1000) + f(OP_PING, b"ignored"), [CLOSE(1000)]),
    ("7.1.3-close-then-text", close_frame(1000) + f(OP_TEXT, b"ignored"), [CLOSE(1000)]),
    ("7.1.4-close-then-garbage", close_frame(1000) + b"\xff\xff\xff\xff", [CLOSE(1000)]),
    ("7.1.5-ping-then-close", f(OP_PING, b"first") + close_frame(1001),
     [PONG(b"first"), CLOSE(1001)]),
    ("7.3.1-close-1-byte", f(OP_CLOSE, b"\x03"), [CLOSE(1002)]),
    ("7.3.2-close-max-reason", close_frame(1000, b"r" * 123), [CLOSE(1000)]),
    ("7.3.3-close-over-125", close_frame(1000, b"r" * 124), [CLOSE(1002)]),
    *[(f"7.7-close-code-{c}", close_frame(c), [CLOSE(c)]) for c in VALID_CLOSE_CODES],
    *[(f"7.7-close-code-{c}-reason", close_frame(c, b"why"), [CLOSE(c)])
      for c in (1000, 3000, 4999)],
    *[(f"7.9-close-code-{c}", close_frame(c), [CLOSE(1002)]) for c in INVALID_CLOSE_CODES],

    # 9 limits (max_frame_bytes = 125): a data frame is refused by its
    # opcode (1008) whatever its length, before the payload arrives.
    ("9.1-text-126", f(OP_TEXT, b"x" * 126), [CLOSE(1008)]),
    ("9.2-binary-64k", f(OP_BINARY, b"x" * 65536), [CLOSE(1008)]),
    ("9.3-announced-16-bit-no-payload", raw_header(0x82, 0x80 | 126, struct.pack(">H", 65535), b""),
     [CLOSE(1008)]),
    ("9.4-announced-2^62-no-payload", raw_header(0x82, 0x80 | 127, struct.pack(">Q", 1 << 62), b""),
     [CLOSE(1008)]),
    # A data frame with a broken length: its opcode is read first.
    ("9.5-len64-top-bit", raw_header(0x82, 0x80 | 127, struct.pack(">Q", 1 << 63), b""),
     [CLOSE(1008)]),
    ("9.6-len64-all-ones", raw_header(0x82, 0x80 | 127, b"\xff" * 8, b""), [CLOSE(1008)]),
]


@pytest.mark.parametrize("case_id,data,events", CASES, ids=[c[0] for c in CASES])
def test_case(ws, case_id, data, events):
    r = open_session(ws)
    try:
        r.send(data)
        expect_events(r, events)
    finally:
        r.close()


# ---- cases that need more than one write or a publish

def send_bytewise(r, data):
    """One byte per write. A server that has refused the frame may close
    before the rest arrives: what it said is then in the receive buffer."""
    r.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        try:
            r.send(data[i:i + 1])
        except OSError:
            return
        time.sleep(0.002)


BYTEWISE_CASES = [
    ("1b-ping-1-byte-writes", f(OP_PING, b"slowly"), [PONG(b"slowly"), OPEN]),
    ("1b-ping-125-1-byte-writes", f(OP_PING, bytes(range(125))), [PONG(bytes(range(125))), OPEN]),
    ("1b-two-pings-1-byte-writes", f(OP_PING, b"a") + f(OP_PING, b"b"),
     [PONG(b"a"), PONG(b"b"), OPEN]),
    ("1b-close-1-byte-writes", close_frame(4000, b"bye"), [CLOSE(4000)]),
    ("1b-text-1-byte-writes", f(OP_TEXT, b"no"), [CLOSE(1008)]),
    ("1b-rsv-1-byte-writes", f(OP_PING, b"x", rsv=1), [CLOSE(1002)]),
]


@pytest.mark.parametrize("case_id,data,events", BYTEWISE_CASES, ids=[c[0] for c in BYTEWISE_CASES])
def test_case_in_1_byte_writes(ws, case_id, data, events):
    r = open_session(ws)
    try:
        send_bytewise(r, data)
        expect_events(r, events)
    finally:
        r.close()


def test_pings_in_chunks_split_everywhere(ws):
    """Twenty pings cut into writes of 1..7 bytes: every pong, in order."""
    r = open_session(ws)
    try:
        stream = b"".join(f(OP_PING, os.urandom(i * 6)) for i in range(20))
        r.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        off, step = 0, 1
        while off < len(stream):
            r.send(stream[off:off + step])
            off += step
            step = step % 7 + 1
            time.sleep(0.001)
        pongs = [r.recv_frame() for _ in range(20)]
        assert [p[0] for p in pongs] == [OP_PONG] * 20
        # Check the payloads by unmasking the stream ourselves.
        want, pos = [], 0
        while pos < len(stream):
            n = stream[pos + 1] & 0x7F
            key = stream[pos + 2:pos + 6]
            body = stream[pos + 6:pos + 6 + n]
            want.append(bytes(b ^ key[i % 4] for i, b in enumerate(body)))
            pos += 6 + n
        assert [p[1] for p in pongs] == want
        expect_events(r, [OPEN])
    finally:
        r.close()


def test_hundred_pings_in_one_write(ws):
    r = open_session(ws)
    try:
        r.send(b"".join(f(OP_PING, struct.pack(">I", i)) for i in range(100)))
        for i in range(100):
            assert r.recv_frame() == (OP_PONG, struct.pack(">I", i))
        expect_events(r, [OPEN])
    finally:
        r.close()


def test_unsolicited_pong_keeps_the_subscription(ws):
    r = open_session(ws, "public/pong-test")
    try:
        r.send(f(OP_PONG, b"hello?") + f(OP_PONG))
        ack = ws.publish("public/pong-test", {"still": "here"})
        assert ack["subscribers"] == 1
        op, payload = r.recv_frame()
        assert op == OP_TEXT
        msg = json.loads(payload)
        assert msg["type"] == "message" and msg["data"] == {"still": "here"}
        expect_events(r, [OPEN])
    finally:
        r.close()


def test_ping_pipelined_with_the_handshake(ws):
    """A client may send frames right behind its upgrade request."""
    # ws_handshake() sends the head alone, so the request is built here.
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    req = (f"GET /ws?channels=public/a HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", ws.ws_port), timeout=5)
    try:
        s.sendall(req + f(OP_PING, b"early"))
        r = RawWs.__new__(RawWs)
        r.sock, r.buf = s, b""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, "EOF during the handshake"
            data += chunk
        head, _, r.buf = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        got = [r.recv_frame(), r.recv_frame()]
        ops = sorted(g[0] for g in got)
        assert ops == [OP_TEXT, OP_PONG], got
        assert (OP_PONG, b"early") in got
        expect_events(r, [OPEN])
    finally:
        s.close()


def test_server_close_without_client_answer_drops_tcp(ws):
    """The server's close goes unanswered: TCP is dropped after
    close_timeout (1 s in the harness), not held forever."""
    r = open_session(ws)
    try:
        r.send(f(OP_TEXT, b"x"))
        fr = r.recv_frame()
        assert fr[0] == OP_CLOSE and struct.unpack(">H", fr[1][:2])[0] == 1008
        t0 = time.monotonic()
        expect_eof(r, timeout=5.0)
        assert time.monotonic() - t0 < 4.0
    finally:
        r.close()


def test_nothing_after_the_close_handshake(ws):
    """Once the server has echoed a close, a publish to the channel must
    not reach the closed connection."""
    r = open_session(ws)
    try:
        r.send(close_frame(1000))
        fr = r.recv_frame()
        assert fr[0] == OP_CLOSE
        ws.publish("public/a", "too late")
        expect_eof(r)
    finally:
        r.close()


def test_larger_max_frame_bytes_still_refuses_data(env):
    """With max_frame_bytes raised, a data frame under it or over it is
    still a policy violation (1008), a ping is still <= 125."""
    env.sections["ws-server"]["max_frame_bytes"] = "4096"
    env.write_ini()
    env.start_ws()
    for data, events in ((f(OP_TEXT, b"t" * 1000), [CLOSE(1008)]),
                         (f(OP_BINARY, b"b" * 4097), [CLOSE(1008)]),
                         (f(OP_PING, b"p" * 126), [CLOSE(1002)]),
                         (f(OP_PING, b"p" * 125), [PONG(b"p" * 125), OPEN])):
        r = open_session(env)
        try:
            r.send(data)
            expect_events(r, events)
        finally:
            r.close()
