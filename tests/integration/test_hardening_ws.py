"""ws-server hardening (issue 10, items 3, 6, 7, 8, 9): the replay budget,
the close handshake after a refused frame, data frames refused at their
header, connections per client address and /healthz past every limit, and
the ACK's count of subscribers that are closing.

Every test here failed on the binaries built before these changes."""
import asyncio
import json
import os
import socket
import struct
import time

import pytest
import websockets

from harness import RawWs, encode_frame, ws_handshake, wait_for

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x1, 0x2, 0x8, 0x9


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def close_frame(code):
    return encode_frame(OP_CLOSE, struct.pack(">H", code))


def open_raw(env, channels="public/a", query=""):
    r = RawWs(env.ws_port, path="/ws?channels=" + channels + query)
    assert r.status == 101, r.head
    greeting = r.recv_frame()
    assert greeting is not None and json.loads(greeting[1])["type"] == "subscribed"
    return r


def close_code(frame):
    assert frame is not None, "EOF without a close frame"
    assert frame[0] == OP_CLOSE, frame
    return struct.unpack(">H", frame[1][:2])[0]


def eof_within(r, seconds):
    """True when the server closes TCP within seconds (bytes before the
    EOF fail the test: nothing may follow the close frame)."""
    r.sock.settimeout(seconds)
    try:
        chunk = r.buf or r.sock.recv(4096)
        assert not chunk, "bytes after the close frame: %r" % chunk[:40]
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


# ---- item 6: the close handshake

def test_data_then_close_in_one_write_gets_the_close_frame(env):
    """Autobahn 7.1.5 by hand: a text fragment, the page's close and the
    rest of the message in one write. The server refuses the data frame
    (1008) and the close that follows is the answer: the 1008 close frame
    must still go out before TCP ends (it was dropped: a bare FIN, in most
    runs). Twelve runs, each must get it."""
    env.start_ws()
    data = (encode_frame(OP_TEXT, b"fragment1", fin=False) + close_frame(1000)
            + encode_frame(0x0, b"fragment2"))
    missing = 0
    for _ in range(12):
        r = open_raw(env)
        r.send(data)
        f = r.recv_frame(timeout=3)
        if f is None:
            missing += 1
        else:
            assert close_code(f) == 1008
            assert eof_within(r, 3)
        r.close()
    assert missing == 0, "%d of 12 runs ended with a bare FIN" % missing


@pytest.mark.parametrize("bad,code", [
    (encode_frame(OP_PING, b"x", rsv=1), 1002),           # protocol error
    (encode_frame(0x3, b"reserved"), 1002),               # reserved opcode
    (encode_frame(OP_TEXT, b"hi", mask=False), 1002),     # unmasked
    (encode_frame(OP_BINARY, b"x" * 1000), 1008),         # data over max_frame_bytes
], ids=["rsv", "opcode", "unmasked", "too-long-data"])
def test_close_reply_after_a_refused_frame_ends_tcp_at_once(env, bad, code):
    """After a 1002 (or a refused frame over max_frame_bytes) the page's
    close reply ends the connection at once; it used to be ignored, and
    the connection lingered for close_timeout (20 s here)."""
    env.sections["ws-server"]["close_timeout"] = "20000"
    env.write_ini()
    env.start_ws()
    r = open_raw(env)
    r.send(bad)
    assert close_code(r.recv_frame()) == code
    t0 = time.monotonic()
    r.send(close_frame(code))
    assert eof_within(r, 5), "no EOF after the close reply"
    assert time.monotonic() - t0 < 2
    r.close()


# ---- item 7: data frames refused at their header

def test_data_frame_refused_at_its_header_without_buffering(env):
    """With max_frame_bytes raised to 1 MiB, a text frame announcing 900 KB
    is refused with 1008 as soon as its header is in; the server does not
    wait for (and buffer) the payload. The page's close still ends it."""
    env.sections["ws-server"]["max_frame_bytes"] = "1M"
    env.sections["ws-server"]["close_timeout"] = "20000"
    env.write_ini()
    env.start_ws()
    for opcode in (OP_TEXT, OP_BINARY):
        r = open_raw(env)
        header = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", 900_000) + os.urandom(4)
        r.send(header + b"a" * 1000)          # a little of the payload, not all
        assert close_code(r.recv_frame(timeout=3)) == 1008
        r.send(b"b" * (900_000 - 1000))       # the rest: skipped, not parsed
        r.send(close_frame(1008))
        assert eof_within(r, 5)
        r.close()


def test_data_frame_over_max_frame_bytes_is_1008_not_1009(env):
    """The opcode decides: a text or binary frame longer than
    max_frame_bytes is still a data frame from a client (1008)."""
    env.start_ws()
    for frame in (encode_frame(OP_TEXT, b"x" * 126), encode_frame(OP_BINARY, b"y" * 70000),
                  bytes([0x82, 0x80 | 127]) + struct.pack(">Q", 1 << 62)):
        r = open_raw(env)
        r.send(frame)
        assert close_code(r.recv_frame()) == 1008
        r.close()
