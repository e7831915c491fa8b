"""Hardening at the edges: what a hostile client can make the programs
write into their logs, and what the web servers in front of fcgi-publisher
answer on their own.

Log injection: every control byte a client sends (Origin, Referer, Host, a
user name) reaches the log escaped (\\xNN), never raw, so a terminal or a
log viewer shows it and cannot be driven by it."""
import base64
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from harness import BIN, ROOT, IpcError, free_port, stop_process, wait_for, ws_handshake
from test_fastcgi import Conn, publish_params, request
from webservers import SERVERS as SERVERS_BY_NAME, USERS, Site

ESC_RED = "\x1b[31m"


def assert_no_raw_controls(log):
    """log: bytes. Only newlines end lines; no other byte < 0x20 or 0x7f."""
    bad = re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", log)
    assert bad is None, "raw control byte %r in the log:\n%r" % (
        bad.group(), log[max(0, bad.start() - 200):bad.end() + 200])


# ---- log injection (item 16)

def test_ws_server_log_escapes_control_bytes(env):
    env.sections["ws-server"]["allowed_origins"] = "http://good.example"
    env.write_ini()
    env.start_ws()
    # ESC in a header value is malformed (400); a tab is allowed in one,
    # so that Origin reaches the origin check (403). Neither may reach the
    # log raw.
    for origin, want in (("http://evil" + ESC_RED + ".example", 400),
                         ("http://evil\t.example", 403)):
        s, status, _, _ = ws_handshake(env.ws_port, origin=origin)
        s.close()
        assert status == want, origin
    # The user of a disconnect comes from the publish-socket client and is
    # logged by ws-server.
    user = "mallory" + ESC_RED + "\x07\r\nforged line\\"
    try:
        assert env.disconnect(user) == 0
    except IpcError as e:   # a server that refuses such a name logs nothing
        pytest.fail("disconnect refused: %s" % e)
    log = env.ws_log.read_bytes()
    assert b"mallory\\x1b[31m\\x07\\x0d\\x0aforged line\\\\'" in log, log[-2000:]
    assert_no_raw_controls(log)


@pytest.fixture
def pub(env):
    site = Site(env, "nginx")
    env.start_ws()
    site.publisher.start()
    yield site.publisher
    rc = site.publisher.stop()
    assert rc == 0, "fcgi-publisher exited %r:\n%s" % (rc, site.publisher.log_text()[-4000:])


def test_fcgi_publisher_log_escapes_control_bytes(pub):
    body = b'{"channel":"news","data":1}'
    c = Conn(pub.port)
    try:
        # A cross-site publish: refused, and the refusal logs Origin,
        # Referer and Host; the request line logs the user.
        p = publish_params(body)
        p.update(HTTP_ORIGIN="http://evil" + ESC_RED + ".example",
                 HTTP_REFERER="http://evil.example/\x1b]0;title\x07",
                 HTTP_HOST="127.0.0.1\x1b[2J", REMOTE_USER="ali\x1bce\x7f")
        c.send(request(1, p, body))
        status, _, _, _ = c.answer(1)
        assert status == 403
    finally:
        c.close()
    log = pub.log.read_bytes()
    for escaped in (b"http://evil\\x1b[31m.example", b"http://evil.example/\\x1b]0;title\\x07",
                    b"127.0.0.1\\x1b[2J", b"ali\\x1bce\\x7f"):
        assert escaped in log, (escaped, log[-2000:])
    assert_no_raw_controls(log)


# ---- the web servers' own answers under /push/ are JSON (item 15)

SERVERS = ["nginx", "apache"]
LIMIT = 1048576     # client_max_body_size 1m / the Apache Content-Length bound


def http(port, head, body=b"", timeout=10):
    """One raw request (head: the request line and headers, without the
    blank line); returns (status, headers with lower-case names, body).
    Reads by Content-Length or chunks, not until EOF: after a refused body
    the server may linger for the rest of it; until EOF only when the
    answer has neither (HTTP/1.1 allows it, H2O does it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        data = b""
        while True:
            head_b, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                lines = head_b.decode("latin-1").split("\r\n")
                hdrs = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                status = int(lines[0].split()[1])
                n = hdrs.get("content-length")
                if n is not None and len(rest) >= int(n):
                    return status, hdrs, rest[:int(n)]
                if hdrs.get("transfer-encoding") == "chunked" and rest.endswith(b"0\r\n\r\n"):
                    out = b""
                    while True:
                        size, _, rest = rest.partition(b"\r\n")
                        size = int(size.split(b";")[0], 16)
                        if size == 0:
                            return status, hdrs, out
                        out, rest = out + rest[:size], rest[size + 2:]
            chunk = s.recv(65536)
            if not chunk and sep and "content-length" not in hdrs and \
                    "transfer-encoding" not in hdrs:
                return status, hdrs, rest      # a body ended by the close (H2O)
            if not chunk:
                raise AssertionError("connection closed mid-answer: %r" % data[:500])
            data += chunk
    finally:
        s.close()


def assert_json_error(answer, status, code):
    st, hdrs, body = answer
    assert st == status, answer
    assert hdrs.get("content-type", "").split(";")[0].strip() == "application/json", answer
    doc = json.loads(body)
    assert doc["error"] == code, answer
    assert isinstance(doc["message"], str) and doc["message"], answer
    return hdrs


def basic(user="alice"):
    cred = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    return "Authorization: Basic " + cred


def publish_head(port, length, auth=True):
    return "\r\n".join([
        "POST /push/publish HTTP/1.1", f"Host: 127.0.0.1:{port}",
        f"Origin: http://127.0.0.1:{port}", "Content-Type: application/json",
        f"Content-Length: {length}"] + ([basic()] if auth else []))


@pytest.fixture(params=SERVERS)
def site(request, env):
    s = Site(env, request.param)
    try:
        s.start()
    except BaseException:
        s.stop()
        raise
    yield s
    rc = s.stop()
    assert rc in (0, None), "fcgi-publisher exited %r:\n%s" % (rc, s.publisher.log_text()[-4000:])


def test_web_server_401_is_json(site):
    for head in (publish_head(site.web.port, 2, auth=False), "GET /push/token?channels=user/alice/x HTTP/1.1\r\n"
                 f"Host: 127.0.0.1:{site.web.port}"):
        hdrs = assert_json_error(http(site.web.port, head, b"{}"), 401, "unauthorized")
        assert hdrs.get("www-authenticate", "").startswith("Basic realm="), hdrs
    # A wrong password too.
    head = publish_head(site.web.port, 2, auth=False) + "\r\nAuthorization: Basic " + \
        base64.b64encode(b"alice:wrong").decode()
    assert_json_error(http(site.web.port, head, b"{}"), 401, "unauthorized")


def test_web_server_413_is_json(site):
    # Over the web server's limit: its own 413, before reading the body.
    assert_json_error(http(site.web.port, publish_head(site.web.port, LIMIT + 1), b"{}"),
                      413, "too_large")
    # Under it but over max_body (1k here): fcgi-publisher's own JSON 413
    # passes through.
    body = b'{"channel":"news","data":"' + b"x" * 2000 + b'"}'
    assert_json_error(http(site.web.port, publish_head(site.web.port, len(body)), body),
                      413, "too_large")
    # And an ordinary publish still works.
    body = b'{"channel":"news","data":1}'
    st, hdrs, got = http(site.web.port, publish_head(site.web.port, len(body)), body)
    assert st == 200, got


def test_web_server_502_is_json_when_publisher_is_down(site):
    assert site.publisher.stop() == 0
    body = b'{"channel":"news","data":1}'
    # nginx: connection refused is 502; Apache's mod_proxy answers 503
    # (the worker is in error), which it also gives in JSON.
    want = {"nginx": (502, "bad_gateway"), "apache": (503, "unavailable")}[site.web.name]
    assert_json_error(http(site.web.port, publish_head(site.web.port, len(body)), body), *want)


class SilentBackend:
    """A FastCGI 'backend' on a loopback port that accepts and reads but
    never answers (mode "silent") or hangs up at once (mode "hangup")."""

    def __init__(self, mode):
        self.mode = mode
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.mode == "hangup":
                # Wait for the request's first bytes, then close: an answer
                # that never starts.
                c.settimeout(5)
                try:
                    c.recv(8)
                except OSError:
                    pass
                c.close()
            else:
                self.conns.append(c)

    def stop(self):
        self.stopping = True
        # shutdown wakes the thread blocked in accept(); close alone would not.
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for c in self.conns:
            c.close()
        self.thread.join(5)


SHORT_TIMEOUT = {"nginx": {"fastcgi_read_timeout 30s;": "fastcgi_read_timeout 1s;"},
                 "apache": {"timeout=30 enablereuse=on": "timeout=1 enablereuse=on"},
                 "lighttpd": {},
                 "caddy": {"read_timeout 30s": "read_timeout 1s"},
                 "h2o": {"fastcgi.timeout.io: 30000": "fastcgi.timeout.io: 1000"}}


# What each server answers for a backend that does not answer in time and
# for one that hangs up: Apache's mod_proxy_fcgi says 503 where nginx says
# 502 (it gives 503 for a refused connection too); lighttpd says 500 for a
# hang-up and has no FastCGI read timeout; H2O says 503 for both.
BACKEND_FAILURES = {
    ("nginx", "silent"): (504, "timeout"),
    ("apache", "silent"): (504, "timeout"),
    ("caddy", "silent"): (504, "timeout"),
    ("h2o", "silent"): (503, "unavailable"),
    ("nginx", "hangup"): (502, "bad_gateway"),
    ("apache", "hangup"): (503, "unavailable"),
    ("lighttpd", "hangup"): (500, "internal"),
    ("caddy", "hangup"): (502, "bad_gateway"),
    ("h2o", "hangup"): (503, "unavailable"),
}


@pytest.mark.parametrize("server,mode", sorted(BACKEND_FAILURES))
def test_web_server_502_504_are_json(env, server, mode):
    """A backend that never answers (504 after a test-only 1 s timeout) or
    hangs up, behind the shipped config."""
    backend = SilentBackend(mode)
    web = SERVERS_BY_NAME[server](env.ws_port, backend.port, overrides=SHORT_TIMEOUT[server])
    try:
        web.start()
        body = b'{"channel":"news","data":1}'
        t0 = time.monotonic()
        assert_json_error(http(web.port, publish_head(web.port, len(body)), body),
                          *BACKEND_FAILURES[server, mode])
        assert time.monotonic() - t0 < 5
    finally:
        web.stop()
        backend.stop()


@pytest.fixture
def demo():
    """`make run`'s demo (conf/demo/run.sh) on free ports."""
    port, ws_port, metrics_port, pub_metrics_port = free_port(), free_port(), free_port(), free_port()
    env = dict(os.environ, WSPUSH_DEMO_PORT=str(port), WSPUSH_DEMO_WS_PORT=str(ws_port),
               WSPUSH_DEMO_METRICS_PORT=str(metrics_port),
               WSPUSH_DEMO_PUB_METRICS_PORT=str(pub_metrics_port))
    p = subprocess.Popen(["bash", str(ROOT / "conf" / "demo" / "run.sh"), str(BIN)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    try:
        for line in p.stdout:   # run.sh prints the banner once all three listen
            out.append(line)
            if "wspush demo running" in line:
                break
        else:
            raise AssertionError("demo did not start:\n" + "".join(out))
        assert f"metrics on 127.0.0.1:{metrics_port}" in "".join(out)
        assert f"fcgi-publisher: metrics on 127.0.0.1:{pub_metrics_port}" in "".join(out)

        def ready(mport):
            with socket.create_connection(("127.0.0.1", mport), timeout=5) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200 ")
        assert ready(metrics_port), "demo's ws-server metrics_listen not ready"
        # fcgi-publisher is ready once a worker's link to ws-server is up.
        wait_for(lambda: ready(pub_metrics_port), what="demo's fcgi-publisher /readyz")
        yield port
    finally:
        rc = stop_process(p, timeout=15)
        rest = p.stdout.read()
        p.stdout.close()
        assert rc == 0, "demo exited %r:\n%s%s" % (rc, "".join(out), rest)


def test_demo_push_answers_are_json(demo):
    port = demo

    def head(n, auth):
        lines = publish_head(port, n, auth=False).split("\r\n")
        if auth:
            lines.append("Authorization: Basic " + base64.b64encode(b"demo:demo").decode())
        return "\r\n".join(lines)

    body = b'{"channel":"public/demo","data":1}'
    hdrs = assert_json_error(http(port, head(len(body), False), body), 401, "unauthorized")
    assert hdrs.get("www-authenticate", "").startswith("Basic realm="), hdrs
    # 70 KB: over fcgi-publisher's max_body (64k), under nginx's limit, so
    # fcgi-publisher answers.
    big = b'{"channel":"public/demo","data":"' + b"x" * 70000 + b'"}'
    st, hdrs, got = http(port, head(len(big), True), big)
    assert_json_error((st, hdrs, got), 413, "too_large")
    assert "max_body" in json.loads(got)["message"], got
    # Over nginx's own limit: its 413, in JSON.
    assert_json_error(http(port, head(2 * LIMIT, True), b"{}"), 413, "too_large")
    st, _, got = http(port, head(len(body), True), body)
    assert st == 200, got
