"""fcgi-publisher's FastCGI side spoken raw, the way nginx and Apache speak
it and the way they never do: management records, a second request on a
busy connection, another role, ABORT_REQUEST, a corrupt stream, params and
bodies over the limits. The real binary and the real ws-server; the web
server is replaced by this file's few lines of FastCGI client, and by
cgi-fcgi (libfcgi-bin), libfcgi's own client, written by others."""
import json
import os
import socket
import struct
import subprocess
import time

import pytest

from webservers import Site, WsClient

BEGIN, ABORT, END, PARAMS, STDIN, STDOUT = 1, 2, 3, 4, 5, 6
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, AUTHORIZER = 1, 2
COMPLETE, CANT_MPX, UNKNOWN_ROLE = 0, 1, 3


def record(rtype, rid, content=b"", padding=0):
    return struct.pack(">BBHHBB", 1, rtype, rid, len(content), padding, 0) + content + b"\0" * padding


def pair(name, value):
    def ln(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    name, value = name.encode(), value.encode()
    return ln(len(name)) + ln(len(value)) + name + value


def begin(rid, role=RESPONDER, keep=True):
    return record(BEGIN, rid, struct.pack(">HB5x", role, 1 if keep else 0))


def request(rid, params, body=b"", keep=True):
    """A whole request: BEGIN, the params in one record, the body, the ends."""
    p = b"".join(pair(k, v) for k, v in params.items())
    out = begin(rid, keep=keep)
    for i in range(0, len(p), 65535):
        out += record(PARAMS, rid, p[i:i + 65535])
    out += record(PARAMS, rid)
    for i in range(0, len(body), 65535):
        out += record(STDIN, rid, body[i:i + 65535])
    return out + record(STDIN, rid)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def record(self):
        """The next record as (type, id, content), or None at EOF."""
        while True:
            if len(self.buf) >= 8:
                _, t, rid, clen, plen, _ = struct.unpack(">BBHHBB", self.buf[:8])
                if len(self.buf) >= 8 + clen + plen:
                    content = self.buf[8:8 + clen]
                    self.buf = self.buf[8 + clen + plen:]
                    return t, rid, content
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def answer(self, rid):
        """STDOUT of request rid up to its END_REQUEST: (status, headers,
        body, protocol_status)."""
        out = b""
        while True:
            r = self.record()
            assert r is not None, "connection closed before END_REQUEST"
            t, got, content = r
            assert got == rid, r
            if t == STDOUT:
                out += content
            elif t == END:
                head, _, body = out.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n") if head else []
                headers = dict(line.split(": ", 1) for line in lines)
                status = int(headers["Status"].split()[0]) if "Status" in headers else None
                return status, headers, body, content[4]

    def closed(self, timeout=5):
        self.s.settimeout(timeout)
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


def params(method="GET", uri="/push/token?channels=private/alice", **extra):
    p = {"REQUEST_METHOD": method, "REQUEST_URI": uri, "QUERY_STRING": uri.partition("?")[2],
         "REMOTE_USER": "alice",
         "HTTP_HOST": "127.0.0.1", "REQUEST_SCHEME": "http"}
    p.update(extra)
    return p


def publish_params(body, **extra):
    return params("POST", "/push/publish", CONTENT_TYPE="application/json",
                  CONTENT_LENGTH=str(len(body)), HTTP_ORIGIN="http://127.0.0.1",
                  **extra)


@pytest.fixture
def pub(env):
    # The same [publisher] section as the web-server tests, no web server.
    site = Site(env, "nginx")
    env.start_ws()
    site.publisher.start()
    yield site.publisher
    assert site.publisher.stop() == 0, site.publisher.log_text()[-3000:]


def test_keep_conn_serves_requests_one_after_another(pub):
    c = Conn(pub.port)
    for rid in (1, 2, 7):
        c.send(request(rid, params()))
        status, headers, body, ps = c.answer(rid)
        assert (status, ps) == (200, COMPLETE)
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body)["channels"] == ["private/alice"]
    c.close()


def test_without_keep_conn_the_connection_closes_after_the_answer(pub):
    c = Conn(pub.port)
    c.send(request(1, params(), keep=False))
    assert c.answer(1)[0] == 200
    assert c.closed()


def test_records_split_byte_by_byte_still_make_a_request(pub):
    c = Conn(pub.port)
    data = request(3, params())
    for i in range(len(data)):
        c.send(data[i:i + 1])
    assert c.answer(3)[0] == 200
    c.close()


def test_padding_and_a_publish_body_arrive_whole(pub, env):
    ws = WsClient(env.ws_url("channels=news"))
    assert ws.recv_json()["type"] == "subscribed"
    body = json.dumps({"channel": "news", "data": {"n": 1}}).encode()
    c = Conn(pub.port)
    data = begin(5) + record(PARAMS, 5, b"".join(pair(k, v) for k, v in publish_params(body).items()), padding=7)
    data += record(PARAMS, 5) + record(STDIN, 5, body[:10], padding=3) + record(STDIN, 5, body[10:])
    c.send(data + record(STDIN, 5))
    status, _, out, _ = c.answer(5)
    assert status == 200, out
    assert json.loads(out)["subscribers"] == 1
    assert ws.recv_json()["data"] == {"n": 1}
    ws.close()
    c.close()


def test_get_values_announces_no_multiplexing(pub):
    c = Conn(pub.port)
    c.send(record(GET_VALUES, 0, pair("FCGI_MPXS_CONNS", "") + pair("FCGI_MAX_CONNS", "") +
                  pair("X_UNKNOWN", "")))
    t, rid, content = c.record()
    assert (t, rid) == (GET_VALUES_RESULT, 0)
    assert pair("FCGI_MPXS_CONNS", "0") in content
    assert b"FCGI_MAX_CONNS" in content and b"X_UNKNOWN" not in content
    c.close()


def test_unknown_management_record_gets_unknown_type(pub):
    c = Conn(pub.port)
    c.send(record(42, 0, b"x"))
    t, rid, content = c.record()
    assert (t, rid, content[0]) == (UNKNOWN_TYPE, 0, 42)
    # The connection still serves requests.
    c.send(request(1, params()))
    assert c.answer(1)[0] == 200
    c.close()


def test_second_request_on_a_busy_connection_is_refused(pub):
    c = Conn(pub.port)
    c.send(begin(1) + record(PARAMS, 1, pair("REQUEST_METHOD", "GET")) + begin(2))
    t, rid, content = c.record()
    assert (t, rid, content[4]) == (END, 2, CANT_MPX)
    # Request 1 goes on and is answered.
    c.send(record(PARAMS, 1, b"".join(pair(k, v) for k, v in params().items() if k != "REQUEST_METHOD")))
    c.send(record(PARAMS, 1) + record(STDIN, 1))
    assert c.answer(1)[0] == 200
    c.close()


def test_other_roles_are_refused(pub):
    c = Conn(pub.port)
    c.send(begin(4, role=AUTHORIZER))
    t, rid, content = c.record()
    assert (t, rid, content[4]) == (END, 4, UNKNOWN_ROLE)
    c.close()


def test_abort_request_ends_it(pub):
    c = Conn(pub.port)
    c.send(begin(9) + record(PARAMS, 9, pair("REQUEST_METHOD", "POST")) + record(ABORT, 9))
    t, rid, content = c.record()
    assert (t, rid, content[4]) == (END, 9, COMPLETE)
    c.send(request(10, params()))
    assert c.answer(10)[0] == 200
    c.close()


def test_corrupt_stream_closes_only_that_connection(pub):
    bad = Conn(pub.port)
    bad.send(b"\x07" + b"\0" * 15)           # version 7
    assert bad.closed()
    good = Conn(pub.port)
    good.send(request(1, params()))
    assert good.answer(1)[0] == 200
    good.close()


def test_params_over_the_limit_get_431(pub):
    c = Conn(pub.port)
    c.send(request(1, params(HTTP_X_BIG="x" * (300 * 1024))))
    status, _, body, _ = c.answer(1)
    assert status == 431
    assert json.loads(body)["error"] == "too_large"
    c.close()


def test_max_params_is_the_configured_limit(env):
    env.sections["publisher"]["max_params"] = "8k"
    site = Site(env, "nginx")        # writes the ini with the key above
    env.start_ws()
    site.publisher.start()
    try:
        c = Conn(site.publisher.port)
        c.send(request(1, params(HTTP_X_BIG="x" * 6000)))
        assert c.answer(1)[0] == 200
        c.send(request(2, params(HTTP_X_BIG="x" * 9000)))
        status, _, body, _ = c.answer(2)
        assert status == 431 and b"max_params" in body
        c.close()
    finally:
        assert site.publisher.stop() == 0


def test_a_request_sent_halfway_is_given_up_after_request_timeout(env):
    env.sections["publisher"]["request_timeout"] = "500ms"
    site = Site(env, "nginx")
    env.start_ws()
    site.publisher.start()
    try:
        stuck = Conn(site.publisher.port)
        stuck.send(begin(1) + record(PARAMS, 1, pair("REQUEST_METHOD", "POST")))
        t0 = time.monotonic()
        assert stuck.closed(timeout=5)
        assert 0.4 < time.monotonic() - t0 < 3
        # Bytes keep a slow request alive: 3 x 300 ms, then it completes.
        slow = Conn(site.publisher.port)
        data = request(2, params())
        third = len(data) // 3
        for i in range(3):
            slow.send(data[i * third:(i + 1) * third] if i < 2 else data[2 * third:])
            time.sleep(0.3)
        assert slow.answer(2)[0] == 200
        slow.close()
        assert "received only in part" in site.publisher.log_text()
    finally:
        assert site.publisher.stop() == 0


def test_a_web_server_that_never_reads_cannot_grow_the_worker(pub):
    """Records that each cost an answer, sent without ever reading: the
    worker stops reading this connection once its answers back up, so the
    sender blocks instead of the worker's memory growing."""
    c = Conn(pub.port)
    c.s.setblocking(False)
    junk = record(42, 0) * 8192                  # 64 KiB in, 128 KiB of answers out
    sent = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sent < 64 * 1024 * 1024:
        try:
            sent += c.s.send(junk)
        except BlockingIOError:
            time.sleep(0.2)
            try:
                sent += c.s.send(junk)
            except BlockingIOError:
                break
    assert sent < 16 * 1024 * 1024, sent         # the worker stopped reading
    rss = [int(line.split()[1]) for p in pub_worker_pids(pub)
           for line in open(f"/proc/{p}/status") if line.startswith("VmRSS:")]
    assert rss and max(rss) < 32 * 1024, rss     # kB
    c.close()
    # And the worker still serves.
    d = Conn(pub.port)
    d.send(request(1, params()))
    assert d.answer(1)[0] == 200
    d.close()


def pub_worker_pids(pub):
    out = subprocess.run(["pgrep", "-P", str(pub.proc.pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def test_body_over_max_body_is_read_and_refused(pub):
    # max_body is 1k in these tests: 50 KiB are swallowed, then 413.
    body = b"x" * (50 * 1024)
    c = Conn(pub.port)
    c.send(request(1, publish_params(body), body))
    status, _, out, _ = c.answer(1)
    assert status == 413, out
    c.send(request(2, params()))
    assert c.answer(2)[0] == 200
    c.close()


def test_body_shorter_than_content_length_is_a_400(pub):
    body = json.dumps({"channel": "news", "data": 1}).encode()
    c = Conn(pub.port)
    c.send(request(1, publish_params(body + b"    "), body))
    status, _, out, _ = c.answer(1)
    assert status == 400 and b"shorter" in out
    c.close()


def test_a_web_server_leaving_mid_publish_does_not_disturb_the_others(pub, env):
    ws = WsClient(env.ws_url("channels=news"))
    assert ws.recv_json()["type"] == "subscribed"
    body = json.dumps({"channel": "news", "data": "x"}).encode()
    gone = Conn(pub.port)
    gone.send(request(1, publish_params(body), body))
    gone.close()                                 # before the answer
    c = Conn(pub.port)
    for rid in range(1, 20):
        c.send(request(rid, publish_params(body), body))
        assert c.answer(rid)[0] == 200
    c.close()
    # The abandoned publish itself was still delivered.
    got = [ws.recv_json()["data"] for _ in range(20)]
    assert got == ["x"] * 20
    ws.close()


def test_many_connections_publish_at_once(pub, env):
    ws = WsClient(env.ws_url("channels=news"))
    assert ws.recv_json()["type"] == "subscribed"
    conns = [Conn(pub.port) for _ in range(50)]
    for i, c in enumerate(conns):
        body = json.dumps({"channel": "news", "data": i}).encode()
        c.send(request(1, publish_params(body), body))
    for c in conns:
        assert c.answer(1)[0] == 200
        c.close()
    got = sorted(ws.recv_json()["data"] for _ in range(50))
    assert got == list(range(50))
    ws.close()


def cgi_fcgi(pub, env, body=b""):
    """Runs cgi-fcgi (libfcgi's client) against the publisher: its
    environment becomes the request's params, its stdin the body, and the
    CGI answer is its stdout. Returns (exit status, HTTP status, headers,
    body)."""
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    r = subprocess.run(["cgi-fcgi", "-bind", "-connect", f"127.0.0.1:{pub.port}"],
                       input=body, env=environ, capture_output=True, timeout=10)
    head, _, out = r.stdout.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if line)
    return r.returncode, int(headers["Status"].split()[0]), headers, out


def test_cgi_fcgi_publishes_and_the_subscriber_gets_it(pub, env):
    ws = WsClient(env.ws_url("channels=news"))
    assert ws.recv_json()["type"] == "subscribed"
    body = json.dumps({"channel": "news", "data": {"via": "cgi-fcgi"}}).encode()
    rc, status, headers, out = cgi_fcgi(pub, publish_params(body), body)
    assert (rc, status) == (0, 200), out
    assert headers["Content-Type"] == "application/json"
    assert json.loads(out)["subscribers"] == 1
    assert ws.recv_json()["data"] == {"via": "cgi-fcgi"}
    # And a subscribe token, a GET with a query string.
    rc, status, _, out = cgi_fcgi(pub, params())
    assert (rc, status) == (0, 200), out
    assert json.loads(out)["channels"] == ["private/alice"]
    ws.close()


def test_cgi_fcgi_publishes_that_are_refused_reach_nobody(pub, env):
    ws = WsClient(env.ws_url("channels=news"))
    assert ws.recv_json()["type"] == "subscribed"
    body = json.dumps({"channel": "news", "data": "refused"}).encode()
    # Another site's page (CSRF), no login, a body shorter than announced.
    for env_vars, want in ((dict(publish_params(body), HTTP_ORIGIN="http://evil.example"), 403),
                           ({k: v for k, v in publish_params(body).items() if k != "REMOTE_USER"}, 401),
                           (publish_params(body + b"  "), 400)):
        rc, status, _, out = cgi_fcgi(pub, env_vars, body)
        assert (rc, status) == (0, want), out
        assert "error" in json.loads(out)
    ok = json.dumps({"channel": "news", "data": "accepted"}).encode()
    assert cgi_fcgi(pub, publish_params(ok), ok)[1] == 200
    # The first message the subscriber sees is the accepted one.
    assert ws.recv_json()["data"] == "accepted"
    ws.close()
