"""Hardening at the edges: what a hostile client can make the programs
write into their logs, and what the web servers in front of fcgi-publisher
answer on their own.

Log injection: every control byte a client sends (Origin, Referer, Host, a
user name) reaches the log escaped (\\xNN), never raw, so a terminal or a
log viewer shows it and cannot be driven by it."""
import re

import pytest

from harness import IpcError, ws_handshake
from test_fastcgi import Conn, publish_params, request
from webservers import Site

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
