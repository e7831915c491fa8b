"""Server-Sent Events (GET /sse) end to end: the real ws-server, a raw
event-stream client (harness.SseClient) that keeps every byte, the same
publish socket as the WebSocket tests. The event format is checked byte
for byte; the rest as a page's EventSource or fetch() would see it."""
import json
import socket
import time

import pytest

from harness import SseClient, RawWs, make_token, slow_reader, wait_for


def sse(env, query, **kw):
    return SseClient(env.ws_port, "/sse?" + query, **kw)


def stream_in_slot(env):
    """A stream once a slot is free (the harness's start-up probe may still
    hold one for a moment)."""
    def opened():
        c = sse(env, "channels=public/a")
        if c.status == 200:
            return c
        c.close()
        return None
    return wait_for(opened, what="a slot")


def greeting(c, resuming=False):
    """The subscribed event: with id: <its last_id> when the stream does
    not resume (where an EventSource reconnects from when its stream ends
    before the first message), without an id when it does."""
    event, data, eid = c.json_event()
    assert event == "subscribed", event
    assert eid == (None if resuming else data["last_id"]), (eid, data)
    return data


def expect_end(c, code, timeout=5.0):
    """The stream's last event is close with code, then the server hangs up."""
    event, data, _ = c.json_event(timeout)
    while event == "message":
        event, data, _ = c.json_event(timeout)
    assert (event, data) == ("close", {"type": "close", "code": code})
    assert c.event(timeout) is None and c.eof


# ---- the stream and its events

def test_head_greeting_and_message_events_byte_exact(ws):
    c = sse(ws, "channels=public/a,news")
    assert c.status == 200
    assert c.headers["content-type"] == "text/event-stream"
    assert c.headers["cache-control"] == "no-cache"
    assert c.headers["x-accel-buffering"] == "no"
    assert c.headers["connection"] == "close"
    for absent in ("content-length", "transfer-encoding", "access-control-allow-origin"):
        assert absent not in c.headers
    hello = greeting(c)
    assert hello == {"type": "subscribed", "channels": ["public/a", "news"], "last_id": hello["last_id"]}
    assert c.raw == ('id: %s\nevent: subscribed\ndata: {"type":"subscribed","channels":["public/a","news"],'
                     '"last_id":"%s"}\n\n' % (hello["last_id"], hello["last_id"])).encode()

    # Pretty-printed JSON: LF, CRLF and a lone CR between tokens, an
    # escaped newline inside a string. One data line per line.
    data = b'{\n  "text": "a\\nb",\r\n  "n": [1,\r2]\n}'
    before = len(c.raw)
    ack = ws.publish(["public/a"], data)
    _, got, eid = c.json_event()
    mid = ack["id"]
    assert c.raw[before:] == (
        'id: %s\ndata: {"type":"message","channel":"public/a","id":"%s","data":{\n'
        'data:   "text": "a\\nb",\ndata:   "n": [1,\ndata: 2]\ndata: }}\n\n' % (mid, mid)).encode()
    assert eid == mid
    assert got == {"type": "message", "channel": "public/a", "id": mid,
                   "data": {"text": "a\nb", "n": [1, 2]}}

    # One message on two channels: an event per channel, one id.
    ack2 = ws.publish(["news", "public/a"], "two")
    evs = [c.json_event() for _ in range(2)]
    assert {e[1]["channel"] for e in evs} == {"news", "public/a"}
    assert all(e[2] == ack2["id"] and e[1]["data"] == "two" for e in evs)
    assert ack2["subscribers"] == 2
    c.close()


def test_keep_alive_comment_every_ping_interval(env):
    env.sections["ws-server"]["ping_interval"] = "200"
    env.write_ini()
    env.start_ws()
    c = sse(env, "channels=public/k")
    greeting(c)
    t0 = time.monotonic()
    before = len(c.raw)
    wait_for(lambda: c._fill(1.0) and c.raw.count(b": keep-alive\n") >= 3, timeout=3,
             what="three keep-alives")
    took = time.monotonic() - t0
    assert 0.5 <= took < 1.5, took
    assert set(c.raw[before:].split(b"\n")) <= {b": keep-alive", b""}
    # A silent stream (nothing to pong) stays open: no pong_timeout here.
    ws_ack = env.publish("public/k", 1)
    while True:
        ev = c.event()
        if ev["id"] == ws_ack["id"]:
            break
    c.close()


# ---- resume

def test_resume_with_last_id_last_event_id_wins_reset_where_websocket(ws):
    ids = [ws.publish("public/r", i)["id"] for i in range(4)]

    c = sse(ws, "channels=public/r&last_id=" + ids[0])
    greeting(c, resuming=True)
    got = [c.json_event() for _ in range(3)]
    assert [(e[2], e[1]["data"]) for e in got] == [(ids[1], 1), (ids[2], 2), (ids[3], 3)]
    c.close()

    # EventSource reconnects with its original URL and the id it saw last
    # in Last-Event-ID: the header wins.
    c = sse(ws, "channels=public/r&last_id=" + ids[2], headers={"Last-Event-ID": ids[0]})
    greeting(c, resuming=True)
    got = [c.json_event() for _ in range(3)]
    assert [e[2] for e in got] == ids[1:]
    c.close()

    # A gap that cannot be filled: reset right after the greeting, as over
    # WebSocket; then live messages.
    for bad in ("ffffffff-1", "zz"):
        c = sse(ws, "channels=public/r", headers={"Last-Event-ID": bad})
        greeting(c, resuming=True)
        assert c.json_event()[:2] == ("reset", {"type": "reset", "channels": ["public/r"]})
        live = ws.publish("public/r", "live")["id"]
        assert c.json_event()[2] == live
        c.close()
    # Two Last-Event-ID headers: a malformed request.
    c = sse(ws, "channels=public/r", headers={"Last-Event-ID": ids[0], "last-event-id": ids[1]})
    assert c.status == 400
    c.close()


def test_stream_ended_before_first_message_loses_nothing(env):
    """EventSource's lastEventId is the greeting's id until a message comes:
    a stream ended (here idle_timeout, 1000) before any message reconnects
    from it and gets what was published in the gap, exactly once."""
    env.sections["ws-server"]["idle_timeout"] = "300"
    env.write_ini()
    env.start_ws()
    env.publish("public/g", "before")
    c = sse(env, "channels=public/g")
    hello = greeting(c)
    assert c.raw.startswith(('id: %s\nevent: subscribed\n' % hello["last_id"]).encode())
    expect_end(c, 1000)
    gap = env.publish("public/g", "in the gap")["id"]
    # EventSource's reconnect: the original URL, Last-Event-ID the id it saw.
    c = sse(env, "channels=public/g", headers={"Last-Event-ID": hello["last_id"]})
    again = greeting(c, resuming=True)
    assert c.raw.startswith(('event: subscribed\ndata: {"type":"subscribed","channels":["public/g"],'
                            '"last_id":"%s"}\n\n' % again["last_id"]).encode())
    _, msg, eid = c.json_event()
    assert (eid, msg["data"]) == (gap, "in the gap")
    expect_end(c, 1000)      # nothing else: not twice, not "before"


# ---- the end of a stream: a close event where WebSocket closes

def test_disconnect_user_ends_stream_with_4401_then_401(ws):
    tok = make_token()
    c = sse(ws, "channels=user/alice/x&token=" + tok)
    greeting(c)
    assert ws.disconnect("alice") == 1
    expect_end(c, 4401)
    # EventSource would reconnect with the same URL: 401 now.
    again = sse(ws, "channels=user/alice/x&token=" + tok)
    assert again.status == 401
    again.close()


def test_sigterm_ends_streams_with_1001(ws):
    c = sse(ws, "channels=public/a")
    greeting(c)
    ws.stop_ws()
    expect_end(c, 1001)


def test_idle_timeout_ends_stream_with_1000(env):
    env.sections["ws-server"]["idle_timeout"] = "300"
    env.write_ini()
    env.start_ws()
    c = sse(env, "channels=public/i")
    greeting(c)
    t0 = time.monotonic()
    expect_end(c, 1000)
    assert time.monotonic() - t0 >= 0.25


def test_slow_consumer_ends_with_1013_stream_well_formed(env):
    env.sections["ws-server"]["send_buffer_bytes"] = "65536"
    env.sections["ws-server"]["close_timeout"] = "20000"
    env.write_ini()
    env.start_ws()
    slow = slow_reader(env.ws_port, b"GET /sse?channels=public/s HTTP/1.1\r\nHost: x\r\n\r\n")
    pub = env.client()
    payload = "z" * 8000
    for i in range(2000):
        pub.publish("public/s", payload)
        if i % 20 == 0 and "closing 1013" in env.log_text():
            break
    pub.close()
    assert "slow consumer" in env.log_text()
    # Read it all now: whole events only, the last one close 1013.
    slow.settimeout(5)
    data = b""
    while True:
        chunk = slow.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    slow.close()
    body = data.partition(b"\r\n\r\n")[2]
    events = body.split(b"\n\n")
    assert events[-1] == b""
    assert events[-2] == b'event: close\ndata: {"type":"close","code":1013}'
    for e in events[1:-2]:
        assert e.startswith(b"id: ") and e.endswith(b'"data":"' + payload.encode() + b'"}'), e[:80]
    assert len(data) < 4_000_000


# ---- refusals before the stream: HTTP statuses with JSON bodies

# A token (its make_token arguments) is made when the test runs: the
# sanitizer stage outlives a token made at collection (300 s).
@pytest.mark.parametrize("query,token,status,error", [
    ("channels=", None, 400, "bad_channels"),
    ("channels=bad%20name", None, 400, "bad_channels"),
    ("foo=1", None, 400, "bad_channels"),
    ("channels=user/alice/x", None, 401, "token"),
    ("channels=user/alice/x&token=garbage", None, 401, "token"),
    ("channels=user/alice/x", dict(exp_in=-10), 401, "token"),
    ("channels=user/bob/x", dict(), 403, "not_covered"),
], ids=["empty", "bad-name", "no-channels", "no-token", "garbage", "expired", "not-covered"])
def test_refusals_are_statuses_with_json(ws, query, token, status, error):
    if token is not None:
        query += "&token=" + make_token(**token)
    c = sse(ws, query)
    assert c.status == status
    assert c.headers["content-type"] == "application/json"
    body = json.loads(c.body())
    assert body["error"] == error and body["message"]
    assert c._fill(2) is False and c.eof     # the server hung up after it
    c.close()


def test_origin_rule_and_cors(env):
    env.sections["ws-server"]["allowed_origins"] = "https://site.example"
    env.write_ini()
    env.start_ws()
    c = sse(env, "channels=public/a", headers={"Origin": "https://site.example"})
    assert c.status == 200
    assert c.headers["access-control-allow-origin"] == "https://site.example"
    assert c.headers["vary"] == "Origin"
    greeting(c)
    c.close()
    # An allowed page's fetch() can read a refusal too.
    c = sse(env, "channels=user/x/y", headers={"Origin": "https://site.example"})
    assert c.status == 401 and c.headers["access-control-allow-origin"] == "https://site.example"
    c.close()
    # A refused origin reads its 403 too (else its page retries for ever);
    # the body grants nothing.
    c = sse(env, "channels=public/a", headers={"Origin": "https://evil.example"})
    assert c.status == 403
    assert c.headers["access-control-allow-origin"] == "https://evil.example"
    assert c.headers["vary"] == "Origin"
    assert json.loads(c.body()) == {"error": "origin", "message": "origin not allowed"}
    c.close()
    # No Origin (not a browser): nothing to check, no CORS header.
    c = sse(env, "channels=public/a")
    assert c.status == 200 and "access-control-allow-origin" not in c.headers
    c.close()


# ---- limits, shared with WebSocket

@pytest.mark.parametrize("key", ["max_connections", "max_connections_per_ip"])
def test_connection_limits_count_streams_and_websockets(env, key):
    env.sections["ws-server"][key] = "2"
    env.write_ini()
    env.start_ws()
    a = stream_in_slot(env)
    b = RawWs(env.ws_port)
    assert b.status == 101
    c = sse(env, "channels=public/a")
    assert c.status == 503 and json.loads(c.body())["error"] == "unavailable"
    assert c.headers["retry-after"] == "5"
    c.close()
    a.close()
    stream_in_slot(env).close()
    b.close()


def test_bytes_after_the_request_head_end_the_stream(env):
    """A stream reads nothing after its head: a client that sends more is
    hung up on at once, not read (over TLS, decrypted) for ever."""
    env.start_ws()
    c = sse(env, "channels=public/a")
    greeting(c)
    c.sock.sendall(b"x" * 100)
    assert c._fill(2) is False and c.eof
    c.close()
    # Sent with the head, in the same read.
    s = socket.create_connection(("127.0.0.1", env.ws_port), timeout=2)
    s.sendall(b"GET /sse?channels=public/a HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()
    assert env.log_text().count("sent bytes after its request: hung up") == 2
    # A client that only reads keeps its stream.
    c = sse(env, "channels=public/a")
    greeting(c)
    assert env.publish("public/a", 1)["subscribers"] == 1
    c.close()


# ---- other paths unchanged

def test_only_exactly_sse_is_a_stream(ws):
    for path in ("/sse/", "/ssex", "/SSE", "/ws/sse"):
        r = RawWs(ws.ws_port, path + "?channels=public/a")
        assert r.status == 101, path
        r.close()
    # A plain GET elsewhere is still 426.
    c = SseClient(ws.ws_port, "/events?channels=public/a")
    assert c.status == 426
    c.close()
    # HTTP/1.0 without Host (nginx's default upstream): a stream all the same.
    s = socket.create_connection(("127.0.0.1", ws.ws_port))
    s.sendall(b"GET /sse?channels=public/a HTTP/1.0\r\n\r\n")
    data = b""
    while b"event: subscribed\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
    s.close()
    # Not GET: 400 as for any path.
    s = socket.create_connection(("127.0.0.1", ws.ws_port))
    s.sendall(b"POST /sse?channels=public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    s.close()


# ---- through the shipped web-server configs (conf/nginx, conf/apache)

@pytest.mark.parametrize("server", ["nginx", "apache"])
def test_through_the_shipped_proxy_configs_unbuffered(env, server):
    from webservers import Site
    # Apache notices that a page went away only when it next writes to
    # it: the keep-alive every ping_interval frees its thread.
    env.sections["ws-server"]["ping_interval"] = "300"
    site = Site(env, server).start()
    try:
        port = site.web.port
        c = SseClient(port, "/sse?channels=public/p")
        assert c.status == 200 and c.headers["content-type"] == "text/event-stream"
        # Unbuffered: the greeting and every event arrive while the stream
        # stays open, each before the next is published.
        greeting(c)
        ids = []
        for i in range(3):
            ids.append(env.publish("public/p", {"i": i})["id"])
            _, msg, eid = c.json_event(timeout=2)
            assert eid == ids[-1] and msg["data"] == {"i": i}
        assert not c.eof
        c.close()
        # Last-Event-ID reaches ws-server through the proxy.
        c = SseClient(port, "/sse?channels=public/p", headers={"Last-Event-ID": ids[0]})
        greeting(c, resuming=True)
        assert [c.json_event()[2] for _ in range(2)] == ids[1:]
        c.close()
        # Refusals pass through as they are.
        c = SseClient(port, "/sse?channels=user/alice/x")
        assert c.status == 401 and json.loads(c.body())["error"] == "token"
        c.close()
    finally:
        site.stop()
