"""fcgi-publisher end to end: the real binary behind a real nginx and a real
Apache, each started from the shipped conf/nginx/wspush.conf and
conf/apache/wspush.conf (rendered for loopback ports and temporary paths),
in front of the real ws-server; WebSocket subscribers connect through the
same web server's /ws. Every test runs once per web server."""
import base64
import json
import os
import signal
import subprocess
import threading
import time

import pytest
import websockets

from harness import BIN, SECRET, make_token
from webservers import Site, WsClient

SERVERS = ["nginx", "apache"]


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
    assert rc == 0, "fcgi-publisher exited %r:\n%s" % (rc, s.publisher.log_text()[-4000:])


def subscribe(site, query, **kw):
    ws = WsClient(site.ws_url(query), origin=site.origin, **kw)
    hello = ws.recv_json()
    assert hello["type"] == "subscribed", hello
    return ws


def error(r, status, code):
    assert r.status == status, r
    assert r.json is not None, r
    assert r.json["error"] == code, r
    assert isinstance(r.json["message"], str) and r.json["message"], r


def form(site, body, marker=True, user="alice"):
    h = {"Content-Type": "application/x-www-form-urlencoded", "Origin": site.origin}
    if marker:
        h["X-Requested-With"] = "XMLHttpRequest"
    return site.request("POST", "/push/publish", body, headers=h, user=user)


def wspush(site, *args, timeout=10):
    return subprocess.run([str(BIN / "wspush"), "-s", str(site.env.publish_socket), *args],
                          capture_output=True, text=True, timeout=timeout)


# ---- the happy path


def test_authenticated_publish_reaches_subscriber(site):
    ws = subscribe(site, "channels=news")
    try:
        r = site.publish("news", {"headline": "hello", "n": 9007199254740993})
        assert r.status == 200, r
        assert r.json["channel"] == "news" and r.json["subscribers"] == 1, r
        assert r.headers.get("Content-Type", "").startswith("application/json")
        m = ws.recv_json()
        assert m == {"type": "message", "channel": "news", "id": r.json["id"],
                     "data": {"headline": "hello", "n": 9007199254740993}}
    finally:
        ws.close()


def test_publish_to_several_channels_and_form_body(site):
    ws = subscribe(site, "channels=news")
    ws2 = subscribe(site, "channels=public/a")
    try:
        r = site.publish(["news", "public/a"], [1, 2])
        assert r.status == 200, r
        assert r.json["channels"] == ["news", "public/a"] and r.json["subscribers"] == 2, r
        for w, ch in ((ws, "news"), (ws2, "public/a")):
            m = w.recv_json()
            assert (m["channel"], m["data"], m["id"]) == (ch, [1, 2], r.json["id"])
        r = form(site, "channels=news,public/a&data=caf%C3%A9+%22ok%22")
        assert r.status == 200 and r.json["channels"] == ["news", "public/a"], r
        assert ws.recv_json()["data"] == 'café "ok"'
        assert ws2.recv_json()["data"] == 'café "ok"'
    finally:
        ws.close()
        ws2.close()


def test_publish_with_no_subscriber_counts_zero(site):
    r = site.publish("user/alice/inbox", "x")
    assert r.status == 200 and r.json["subscribers"] == 0, r


def test_concurrent_publishes(site):
    """Several workers, each with its own publish connection: every message
    is acknowledged once and delivered once."""
    ws = subscribe(site, "channels=news")
    results = []
    lock = threading.Lock()

    def one(i):
        r = site.publish("news", i)
        with lock:
            results.append(r)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert len(results) == 24 and all(r.status == 200 for r in results), results
        assert len({r.json["id"] for r in results}) == 24
        got = sorted(ws.recv_json()["data"] for _ in range(24))
        assert got == list(range(24))
    finally:
        ws.close()


def test_reload_on_sighup(site):
    assert site.publish("news", "x" * 600).status == 200
    site.env.sections["publisher"]["max_body"] = "512"
    site.env.write_ini()
    site.publisher.proc.send_signal(signal.SIGHUP)
    # Every worker reloads on its own and logs it: a publish may reach any.
    workers = int(site.env.sections["publisher"]["workers"])
    deadline = time.monotonic() + 5
    while site.publisher.log_text().count("configuration reloaded") < workers:
        assert time.monotonic() < deadline, site.publisher.log_text()
        time.sleep(0.05)
    error(site.publish("news", "x" * 600), 413, "too_large")


def test_listening_on_fd0(env):
    """Started by the web server's process manager: the socket is fd 0."""
    s = Site(env, "nginx")
    try:
        s.start(on_fd0=True)
        ws = subscribe(s, "channels=news")
        try:
            r = s.publish("news", "via fd 0")
            assert r.status == 200, r
            assert ws.recv_json()["data"] == "via fd 0"
        finally:
            ws.close()
    finally:
        rc = s.stop()
    assert rc == 0, s.publisher.log_text()


# ---- authentication and authorization


def test_unauthenticated_is_401(site):
    r = site.request("POST", "/push/publish", {"channel": "news", "data": 1}, user=None,
                     headers={"Content-Type": "application/json", "Origin": site.origin})
    assert r.status == 401, r
    r = site.request("GET", "/push/token?channels=user/alice/x", user=None)
    assert r.status == 401, r


def test_channel_outside_publish_is_403(site):
    for ch in ("user/bob/inbox", "private/alice", "user/alice/a/b"):
        error(site.publish(ch, 1), 403, "forbidden")
    # one forbidden channel in a list refuses the whole message
    error(site.publish(["news", "user/bob/inbox"], 1), 403, "forbidden")
    assert site.publish("user/bob/inbox", 1, user="bob").status == 200


# ---- same-origin / CSRF


def test_foreign_origin_is_403(site):
    ws = subscribe(site, "channels=news")
    try:
        for h in ({"Origin": "http://evil.example"},
                  {"Origin": "null"},
                  {"Origin": site.origin.replace("127.0.0.1", "localhost")},
                  {"Origin": None, "Referer": "http://evil.example/page"},
                  {"Origin": None},
                  {"Sec-Fetch-Site": "cross-site"}):
            headers = {k: v for k, v in h.items() if v is not None}
            r = site.publish("news", "csrf", origin="Origin" not in h, headers=headers)
            error(r, 403, "forbidden")
        # Referer stands in for a missing Origin
        r = site.publish("news", "ok", origin=False,
                         headers={"Referer": site.origin + "/page.html?x=1"})
        assert r.status == 200, r
        assert ws.recv_json()["data"] == "ok"
    finally:
        ws.close()


def test_basic_auth_form_without_x_requested_with_is_403(site):
    error(form(site, "channel=news&data=x", marker=False), 403, "forbidden")
    assert form(site, "channel=news&data=x", marker=True).status == 200


# ---- request errors


def test_bad_bodies_are_400(site):
    for body in ('{"channel":"news","data":', '{"channel":"news"}', '["news"]',
                 '{"channel":"news","data":1,"x":2}', '{"channel":"bad channel","data":1}',
                 '{"channels":[],"data":1}', ''):
        r = site.request("POST", "/push/publish", body,
                         headers={"Content-Type": "application/json", "Origin": site.origin})
        error(r, 400, "bad_request")
    error(form(site, "channel=news&data=%zz"), 400, "bad_request")


def test_body_over_max_body_is_413(site):
    ws = subscribe(site, "channels=news")
    try:
        r = site.publish("news", "x" * 2000)
        error(r, 413, "too_large")
        # the connection and the worker are fine afterwards
        r = site.publish("news", "small")
        assert r.status == 200, r
        assert ws.recv_json()["data"] == "small"
    finally:
        ws.close()


def test_method_type_and_path_errors(site):
    r = site.request("GET", "/push/publish")
    error(r, 405, "method_not_allowed")
    assert "POST" in r.headers.get("Allow", ""), r.headers
    error(site.request("POST", "/push/token?channels=user/alice/x",
                       headers={"Origin": site.origin}), 405, "method_not_allowed")
    r = site.request("POST", "/push/publish", "channel=news",
                     headers={"Content-Type": "text/plain", "Origin": site.origin,
                              "X-Requested-With": "x"})
    error(r, 415, "unsupported_media_type")
    error(site.request("GET", "/push/nothing"), 404, "not_found")


# ---- ws-server availability


def test_ws_server_stopped_is_503_then_recovers(site):
    assert site.publish("news", "before").status == 200
    assert site.env.stop_ws() == 0
    r = site.publish("news", "while down")
    error(r, 503, "unavailable")
    site.env.start_ws()
    ws = subscribe(site, "channels=news")
    try:
        r = site.publish("news", "after")
        assert r.status == 200, r
        assert ws.recv_json()["data"] == "after"
    finally:
        ws.close()


@pytest.mark.memory_only(reason="with Redis the late 'stalled' message may be published after the page's greeting (past its last_id), and then reaches the page, rightly")
def test_no_ack_in_time_is_504(site):
    assert site.publish("news", "warm").status == 200
    pid = site.env.ws_proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = site.publish("news", "stalled")
        error(r, 504, "timeout")
        assert time.monotonic() - t0 < 5
    finally:
        os.kill(pid, signal.SIGCONT)
    # the late ack is never taken for the next request's answer
    ws = subscribe(site, "channels=news")
    try:
        r = site.publish("news", "next")
        assert r.status == 200, r
        got = ws.recv_json()
        if got["data"] == "stalled":
            # A 504 may or may not be published: ws-server takes the
            # stalled message when it runs again, and with the Redis engine
            # it can still be on its way when this page subscribes.
            got = ws.recv_json()
        assert got["data"] == "next" and got["id"] == r.json["id"], (got, r)
    finally:
        ws.close()


# ---- subscribe tokens


def test_ws_server_refusal_passes_the_proxy_whole(site):
    """ws-server's longest answer head on /ws (426, with its Upgrade and
    Sec-WebSocket-Version headers) reaches the page as ws-server sent it:
    it has to fit the shipped proxy_buffer_size (512), or nginx answers 502
    ("upstream sent too big header")."""
    r = site.request("GET", "/ws?channels=news", user=None)
    assert r.status == 426, r
    assert r.headers.get("Sec-WebSocket-Version") == "13", r
    assert "handshake is required" in r.body, r


def test_token_opens_private_channel(site):
    r = site.request("GET", "/push/token?channels=user/alice/inbox,private/alice")
    assert r.status == 200, r
    assert r.json["channels"] == ["user/alice/inbox", "private/alice"]
    assert r.json["expires"] > time.time() + 200
    assert r.headers.get("Cache-Control") == "no-store"
    tok = r.json["token"]
    # Dated, so that `wspush disconnect alice` can revoke it (revoke.h).
    claims = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
    assert abs(claims["iat"] - time.time()) < 5 and claims["exp"] > claims["iat"]
    ws = subscribe(site, "channels=user/alice/inbox,private/alice&token=" + tok)
    try:
        r = site.publish("user/alice/inbox", {"mail": 1})
        assert r.status == 200 and r.json["subscribers"] == 1, r
        assert ws.recv_json()["data"] == {"mail": 1}
    finally:
        ws.close()


def test_forged_token_is_refused(site):
    forged = make_token("alice", ["user/alice/inbox"], secret=b"not-the-secret")
    try:
        ws = WsClient(site.ws_url("channels=user/alice/inbox&token=" + forged), origin=site.origin)
    except websockets.InvalidStatusCode:
        return
    try:
        assert ws.wait_closed() == 4401
    finally:
        ws.close()


def test_token_only_for_subscribe_patterns(site):
    for q in ("user/bob/inbox", "news", "user/alice/inbox,private/bob"):
        error(site.request("GET", "/push/token?channels=" + q), 403, "forbidden")
    error(site.request("GET", "/push/token"), 400, "bad_request")
    error(site.request("GET", "/push/token?channels=a%20b"), 400, "bad_request")
    r = site.request("GET", "/push/token?channels=user/bob/inbox", user="bob")
    assert r.status == 200, r


# ---- the command-line publisher


def test_cli_publish_and_disconnect(site):
    tok_a = site.request("GET", "/push/token?channels=user/alice/inbox").json["token"]
    tok_b = site.request("GET", "/push/token?channels=user/bob/inbox", user="bob").json["token"]
    a1 = subscribe(site, "channels=user/alice/inbox&token=" + tok_a)
    a2 = subscribe(site, "channels=user/alice/inbox,news&token=" + tok_a)
    b = subscribe(site, "channels=user/bob/inbox&token=" + tok_b)
    try:
        p = wspush(site, "publish", "user/alice/inbox,user/bob/inbox", '{"n": 1}')
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("id=") and p.stdout.strip().endswith("subscribers=3"), p.stdout
        for ws in (a1, a2, b):
            assert ws.recv_json()["data"] == {"n": 1}
        p = wspush(site, "publish", "news", "plain text")
        assert p.returncode == 0, p.stderr
        assert a2.recv_json()["data"] == "plain text"

        p = wspush(site, "disconnect", "alice")
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "disconnected=2"
        assert a1.wait_closed() == 4401
        assert a2.wait_closed() == 4401
        # bob is untouched
        assert wspush(site, "publish", "user/bob/inbox", "still here").returncode == 0
        assert b.recv_json()["data"] == "still here"
    finally:
        for ws in (a1, a2, b):
            ws.close()


def test_cli_errors(site, tmp_path):
    p = wspush(site, "publish", "bad channel", "1")
    assert p.returncode == 2
    p = subprocess.run([str(BIN / "wspush"), "-s", str(tmp_path / "nothing.sock"), "publish",
                        "news", "1"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 3, p.stderr
    p = subprocess.run([str(BIN / "wspush"), "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "exit status" in p.stdout
    p = subprocess.run([str(BIN / "wspush"), "-c", str(site.env.ini_path), "publish", "news",
                        "-"], input='{"from": "stdin"}\n', capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0, p.stderr


# ---- auth = jwt (the web server does no authentication of its own)


@pytest.fixture(params=SERVERS)
def jwt_site(request, env):
    env.sections["publisher"]["auth"] = "jwt"
    env.sections["publisher"]["jwt_cookie"] = "site_jwt"
    s = Site(env, request.param, web_auth=False)
    try:
        s.start()
    except BaseException:
        s.stop()
        raise
    yield s
    rc = s.stop()
    assert rc == 0, "fcgi-publisher exited %r:\n%s" % (rc, s.publisher.log_text()[-4000:])


def jwt(sub="alice", **claims):
    return make_token(sub, channels=(), claims=claims or None)


def test_jwt_bearer_and_cookie(jwt_site):
    s = jwt_site
    ws = subscribe(s, "channels=news")
    try:
        # Bearer: not ambient, no Origin needed
        r = s.request("POST", "/push/publish", {"channel": "news", "data": "bearer"}, user=None,
                      headers={"Content-Type": "application/json",
                               "Authorization": "Bearer " + jwt()})
        assert r.status == 200, r
        assert ws.recv_json()["data"] == "bearer"
        # cookie: ambient, so the origin check applies
        cookie = {"Cookie": "other=1; site_jwt=" + jwt(), "Content-Type": "application/json"}
        error(s.request("POST", "/push/publish", {"channel": "news", "data": 1}, user=None,
                        headers=cookie), 403, "forbidden")
        r = s.request("POST", "/push/publish", {"channel": "news", "data": "cookie"}, user=None,
                      headers={**cookie, "Origin": s.origin})
        assert r.status == 200, r
        assert ws.recv_json()["data"] == "cookie"
        # and the token endpoint answers for the JWT's subject
        r = s.request("GET", "/push/token?channels=user/alice/inbox", user=None,
                      headers={"Authorization": "Bearer " + jwt()})
        assert r.status == 200, r
        # ... but a subscribe token (seen in WebSocket URLs and proxy logs)
        # is never accepted as a login.
        sub_tok = r.json["token"]
        r = s.request("POST", "/push/publish", {"channel": "news", "data": "x"}, user=None,
                      headers={"Content-Type": "application/json",
                               "Authorization": "Bearer " + sub_tok})
        error(r, 401, "unauthenticated")
    finally:
        ws.close()


def test_jwt_refusals(jwt_site):
    s = jwt_site
    body = {"channel": "news", "data": 1}
    ct = {"Content-Type": "application/json"}
    r = s.request("POST", "/push/publish", body, user=None, headers={**ct, "Origin": s.origin})
    error(r, 401, "unauthenticated")
    for tok in (make_token("alice", (), secret=b"forged"),
                make_token("alice", (), exp_in=-10),
                make_token("alice", (), exp_in=None),
                make_token("alice", (), alg="HS384"),
                "garbage"):
        r = s.request("POST", "/push/publish", body, user=None,
                      headers={**ct, "Authorization": "Bearer " + tok})
        error(r, 401, "unauthenticated")
    # a publish claim narrows [channels] publish
    narrow = jwt(publish=["user/{user}/*"])
    r = s.request("POST", "/push/publish", body, user=None,
                  headers={**ct, "Authorization": "Bearer " + narrow})
    error(r, 403, "forbidden")
    r = s.request("POST", "/push/publish", {"channel": "user/alice/x", "data": 1}, user=None,
                  headers={**ct, "Authorization": "Bearer " + narrow})
    assert r.status == 200, r
