"""The other common web servers in front of wspush, each started from its
shipped config (rendered for loopback ports and temporary paths) with
Basic auth: Apache with mod_fcgid (conf/apache/wspush-fcgid.conf, Apache
starts fcgi-publisher on fd 0), lighttpd (conf/lighttpd/wspush.conf),
Caddy (conf/caddy/Caddyfile) and H2O (conf/h2o/wspush.conf). nginx and
Apache with mod_proxy_fcgi are covered by test_publisher.py and
test_hardening_edge.py.

One site per server for the whole module: a publish through the server
reaches a subscriber on its /ws proxy; its 401/403/405/413 reach the page
as the contract's JSON; a body between the server's default limit and
max_body passes; pings keep /ws open across twice the proxy's idle timeout
(short in these tests), and without pings the proxy does close it."""
import grp
import os
import pwd
import shutil
import signal
import tempfile
import time

import pytest

from harness import Env
from test_hardening_edge import assert_json_error, basic, http, publish_head
from webservers import Site, WsClient

SERVERS = ["apache-fcgid", "lighttpd", "caddy", "h2o"]

IDLE = 1.0          # the proxies' /ws idle timeout here, seconds
PING_MS = 300       # ws-server's ping_interval, below IDLE
# Above mod_fcgid's default FcgidMaxRequestLen (128 KiB), below the
# configs' own bound (1 MiB).
MAX_BODY = 192 * 1024
SERVER_LIMIT = 1048576

SHORT_IDLE = {
    # Apache's tunnel idles out after the larger of timeout= and Timeout.
    "apache-fcgid": {"timeout=3600": "timeout=1",
                     "ProxyPreserveHost On": "ProxyPreserveHost On\n    Timeout 1"},
    "lighttpd": {"server.max-read-idle = 3600": "server.max-read-idle = 1"},
    "caddy": {"read_timeout 1h": "read_timeout 1s"},
    "h2o": {"proxy.websocket.timeout: 3600000": "proxy.websocket.timeout: 1000"},
}

# Whether the server hands fcgi-publisher a chunked request body with its
# length (it reads the body first) or passes CONTENT_LENGTH=-1 (Caddy's
# fastcgi transport streams it), which fcgi-publisher answers with 411.
CHUNKED_PASSES = {"apache-fcgid": True, "lighttpd": True, "caddy": False, "h2o": True}

# Whether the server refuses a Content-Length over its bound before
# reading the body (Caddy reads up to max_size first).
REFUSES_ON_LENGTH = {"apache-fcgid": True, "lighttpd": True, "caddy": False, "h2o": True}


def sanitizer_report(text):
    return any(s in text for s in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                   "runtime error:"))


@pytest.fixture(scope="module", params=SERVERS)
def site(request):
    # Under mod_fcgid fcgi-publisher runs as Apache's user and reads the
    # ini and the secret from here. As root, the recipe of
    # conf/apache/wspush-fcgid.conf: ws-server runs as its own user
    # (nobody here) and group, which www-data is in (www-data's own group
    # stands in for wspush, the one group www-data has on this machine);
    # the ini and the secret are root:GROUP 0640, the directory ws-server's
    # (as /run/wspush), and the publish socket gets ws-server's group.
    d = tempfile.mkdtemp(prefix="wspush-webservers-")
    ws = {"ping_interval": str(PING_MS), "max_message_bytes": "256k"}
    if os.geteuid() != 0:
        os.chmod(d, 0o755)
        ws["publish_socket_group"] = "www-data"
    env = Env(d, ws=ws)
    if os.geteuid() == 0:
        group = grp.getgrnam("www-data").gr_gid
        env.ws_user = (pwd.getpwnam("nobody").pw_uid, group)
        os.chown(d, env.ws_user[0], group)
        os.chmod(d, 0o750)
        for f in (env.ini_path, env.secret_file):
            os.chown(f, 0, group)
            os.chmod(f, 0o640)
    s = Site(env, request.param)
    env.sections["publisher"]["max_body"] = str(MAX_BODY)
    env.write_ini()
    s.web.overrides = SHORT_IDLE[request.param]
    try:
        s.start()
        yield s
    finally:
        web_log = s.web.log_text()
        rc = s.stop()
        ws_rc = env.stop_ws()
        shutil.rmtree(d, ignore_errors=True)
    assert rc in (0, None), "fcgi-publisher exited %r:\n%s" % (rc, s.publisher.log_text()[-4000:])
    # mod_fcgid's fcgi-publisher logs to Apache's error log.
    assert not sanitizer_report(web_log), web_log[-4000:]
    assert ws_rc == 0, "ws-server exited %r:\n%s" % (ws_rc, env.log_text()[-4000:])


def subscribe(site):
    ws = WsClient(site.ws_url("channels=news"), origin=site.origin)
    assert ws.recv_json()["type"] == "subscribed"
    return ws


def publish_raw(site, body, extra=(), auth=True, length=None):
    head = publish_head(site.web.port, len(body) if length is None else length, auth)
    return http(site.web.port, "\r\n".join([head, *extra]), body)


def test_publish_reaches_subscriber_through_ws_proxy(site):
    ws = subscribe(site)
    try:
        r = site.publish("news", {"via": site.web.name})
        assert r.status == 200, r
        assert r.json["subscribers"] == 1, r
        assert ws.recv_json() == {"type": "message", "channel": "news", "id": r.json["id"],
                                  "data": {"via": site.web.name}}
        # The user is the one Basic auth let in: alice may publish to her
        # own channels, not to bob's.
        assert site.publish("user/alice/x", 1).status == 200
        assert_json_error(publish_raw(site, b'{"channel":"user/bob/x","data":1}'),
                          403, "forbidden")
    finally:
        ws.close()


def test_no_credentials_is_json_401(site):
    for head in (publish_head(site.web.port, 2, auth=False),
                 f"GET /push/token?channels=user/alice/x HTTP/1.1\r\nHost: 127.0.0.1:{site.web.port}",
                 publish_head(site.web.port, 2, auth=False) + "\r\nAuthorization: Basic YWxpY2U6d3Jvbmc="):
        st, hdrs, body = http(site.web.port, head, b"{}")
        assert_json_error((st, hdrs, body), 401, "unauthorized")
        assert hdrs.get("www-authenticate", "").startswith('Basic realm="'), hdrs


def test_wrong_origin_is_json_403(site):
    body = b'{"channel":"news","data":1}'
    head = publish_head(site.web.port, len(body)).replace(
        f"Origin: http://127.0.0.1:{site.web.port}", "Origin: http://evil.example")
    assert_json_error(http(site.web.port, head, body), 403, "forbidden")


def test_get_on_publish_is_json_405(site):
    head = f"GET /push/publish HTTP/1.1\r\nHost: 127.0.0.1:{site.web.port}\r\n{basic()}"
    st, hdrs, body = http(site.web.port, head)
    assert_json_error((st, hdrs, body), 405, "method_not_allowed")
    assert "POST" in hdrs.get("allow", ""), hdrs


def test_body_limits(site):
    ws = subscribe(site)
    try:
        # Just under max_body, and over mod_fcgid's default bound: passes.
        data = "x" * (MAX_BODY - 100)
        body = b'{"channel":"news","data":"' + data.encode() + b'"}'
        st, _, got = publish_raw(site, body)
        assert st == 200, got
        assert ws.recv_json()["data"] == data
    finally:
        ws.close()
    # Over max_body, under the server's bound: fcgi-publisher's own 413.
    body = b'{"channel":"news","data":"' + b"x" * MAX_BODY + b'"}'
    assert_json_error(publish_raw(site, body), 413, "too_large")
    # Over the server's bound: its own 413, in JSON too.
    if REFUSES_ON_LENGTH[site.web.name]:
        answer = publish_raw(site, b"{}", length=SERVER_LIMIT + 1)
    else:
        answer = publish_raw(site, b"{" + b" " * SERVER_LIMIT + b"}")
    assert_json_error(answer, 413, "too_large")


def test_chunked_publish(site):
    ws = subscribe(site)
    try:
        body = b'{"channel":"news","data":"chunked"}'
        head = "\r\n".join([
            "POST /push/publish HTTP/1.1", f"Host: 127.0.0.1:{site.web.port}",
            f"Origin: {site.origin}", "Content-Type: application/json",
            "Transfer-Encoding: chunked", basic()])
        answer = http(site.web.port, head, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        if CHUNKED_PASSES[site.web.name]:
            assert answer[0] == 200, answer
            assert ws.recv_json()["data"] == "chunked"
        else:
            assert_json_error(answer, 411, "length_required")
    finally:
        ws.close()


def test_pings_keep_ws_open_past_the_proxy_idle_timeout(site):
    ws = subscribe(site)
    try:
        # Twice the idle timeout with no message: the client's loop runs
        # (so it answers ws-server's pings) and sees no data frame.
        deadline = time.monotonic() + 2 * IDLE + 0.2
        while time.monotonic() < deadline:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=max(0.05, deadline - time.monotonic()))
        r = site.publish("news", "still here")
        assert r.status == 200 and r.json["subscribers"] == 1, r
        assert ws.recv_json()["data"] == "still here"
        # Without pings (ws-server stopped), the proxy does close the idle
        # connection: the timeout above is real.
        site.env.ws_proc.send_signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            ws.wait_closed(timeout=IDLE + 3)
            assert time.monotonic() - start >= IDLE / 2
        finally:
            site.env.ws_proc.send_signal(signal.SIGCONT)
    finally:
        ws.close()


def fastcgi_peers(port):
    """The client ports of the established TCP connections to port."""
    peers = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, remote, state = line.split()[1:4]
            if state == "01" and int(local.split(":")[1], 16) == port:
                peers.add(int(remote.split(":")[1], 16))
    return peers


def test_h2o_keeps_fastcgi_connections(site):
    """fastcgi.timeout.keepalive: without it H2O closes the FastCGI
    connection after every request."""
    if site.web.name != "h2o":
        pytest.skip("only H2O's config keeps FastCGI connections")
    assert site.publish("news", 1).status == 200
    first = fastcgi_peers(site.pub_port)
    assert len(first) == 1, first
    assert site.publish("news", 2).status == 200
    assert fastcgi_peers(site.pub_port) == first


def test_fcgid_starts_publisher_as_apache_user(site):
    """mod_fcgid starts fcgi-publisher as Apache's user (www-data), which
    therefore needs the ini, the secret and the publish socket."""
    if not site.web.spawns_publisher:
        pytest.skip("the publisher runs on its own")
    assert site.publish("news", 1).status == 200
    uids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        if str(site.env.ini_path).encode() in cmdline and cmdline[0].endswith(b"fcgi-publisher"):
            uids.add(int(status.split("\nUid:")[1].split()[0]))
    assert uids == {pwd.getpwnam("www-data").pw_uid}, uids


# What each server answers when fcgi-publisher does not accept
# connections (mod_fcgid starts it itself: not applicable).
PUBLISHER_DOWN = {"lighttpd": (503, "unavailable"), "caddy": (502, "bad_gateway"),
                  "h2o": (503, "unavailable")}


def test_publisher_down_is_json(site):
    """Last in the file: lighttpd keeps a backend it found down out of use
    for a few seconds, so no test of the same site may follow it."""
    if site.web.spawns_publisher:
        pytest.skip("mod_fcgid starts fcgi-publisher on demand")
    assert site.publisher.stop() == 0
    try:
        body = b'{"channel":"news","data":1}'
        assert_json_error(publish_raw(site, body), *PUBLISHER_DOWN[site.web.name])
    finally:
        site.publisher.start()
