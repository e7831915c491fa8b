"""fcgi-publisher hardening (issue 10, items 4, 10, 13 and 14), against the
real fcgi-publisher, ws-server and wspush CLI. The web server is replaced
by raw FastCGI (the helpers of test_fastcgi.py), so a request can carry
what nginx or Caddy send and a test can send what they should not: a
param twice, CONTENT_LENGTH=-1, a login JWT that is really a subscribe
token. Delivered data is read off the WebSocket as text, byte for byte."""
import json
import subprocess
import time

import pytest

from harness import BIN, IpcError, free_port, make_token
from test_fastcgi import PARAMS, STDIN, Conn, begin, pair, record
from webservers import Publisher, WsClient

ORIGIN = "http://127.0.0.1"


def start_publisher(env, **publisher):
    """ws-server and one fcgi-publisher worker on a loopback port."""
    port = free_port()
    env.sections["publisher"].update({"listen": f"127.0.0.1:{port}", "workers": "1",
                                      "max_body": "1k", "ack_timeout": "2s", **publisher})
    env.sections["channels"].update({"publish": "news user/{user}/*",
                                     "subscribe": "user/{user}/*"})
    env.write_ini()
    env.start_ws()
    p = Publisher(env, port)
    p.start()
    return p


@pytest.fixture
def pub(env):
    p = start_publisher(env)
    yield p
    assert p.stop() == 0, p.log_text()[-3000:]


@pytest.fixture
def jwt_pub(env):
    p = start_publisher(env, auth="jwt", jwt_cookie="site_jwt")
    yield p
    assert p.stop() == 0, p.log_text()[-3000:]


def head(method="POST", uri="/push/publish", body=b"", ctype="application/json", **extra):
    """A request head as a list of pairs (a list, so a name may repeat):
    what conf/nginx/wspush.conf passes for a same-origin page of alice's."""
    pairs = [("REQUEST_METHOD", method), ("REQUEST_URI", uri),
             ("QUERY_STRING", uri.partition("?")[2]), ("REMOTE_USER", "alice"),
             ("HTTP_HOST", "127.0.0.1"), ("REQUEST_SCHEME", "http"), ("HTTP_ORIGIN", ORIGIN)]
    if method == "POST":
        pairs += [("CONTENT_TYPE", ctype), ("CONTENT_LENGTH", str(len(body)))]
    return pairs + list(extra.items())


def send(conn, rid, pairs, body=b""):
    """One request on conn; returns (status, headers, body)."""
    p = b"".join(pair(k, v) for k, v in pairs)
    data = begin(rid) + record(PARAMS, rid, p) + record(PARAMS, rid)
    if body:
        data += record(STDIN, rid, body)
    conn.send(data + record(STDIN, rid))
    status, headers, out, _ = conn.answer(rid)
    return status, headers, out


def error(answer, status, code):
    got, headers, out = answer
    assert got == status, answer
    assert headers["Content-Type"] == "application/json", answer
    e = json.loads(out)
    assert e["error"] == code and e["message"], answer
    return e["message"]


def published_data(text):
    """The data of ws-server's message frame, as the text it holds:
    {"type":"message","channel":...,"id":...,"data":<data>}."""
    msg = json.loads(text)
    assert msg["type"] == "message", text
    _, sep, data = text.partition(',"data":')
    assert sep and data.endswith("}"), text
    return data[:-1]


def subscribe(env, channel="news"):
    ws = WsClient(env.ws_url("channels=" + channel))
    assert ws.recv_json()["type"] == "subscribed"
    return ws


# ---- 4: a subscribe token is never a login


def test_a_subscribe_token_made_by_the_site_is_not_a_login(jwt_pub):
    now = int(time.time())
    # docs/php.md's wspush_subscribe_token() without its scope, as sites
    # copied the earlier recipe; then with scope and no channels.
    by_channels = make_token("alice", ("user/alice/*",), claims={"iat": now})
    by_scope = make_token("alice", (), claims={"iat": now, "scope": "subscribe"})
    login = make_token("alice", (), claims={"iat": now})   # channels: [] names none
    body = json.dumps({"channel": "news", "data": 1}).encode()
    c = Conn(jwt_pub.port)
    rid = 0
    for tok, mark in ((by_channels, "a channels claim"), (by_scope, 'scope "subscribe"'),
                      (login, None)):
        for cred in ({"HTTP_AUTHORIZATION": "Bearer " + tok},
                     {"HTTP_COOKIE": "sid=1; site_jwt=" + tok}):
            for method, uri in (("POST", "/push/publish"),
                                ("GET", "/push/token?channels=user/alice/inbox")):
                rid += 1
                pairs = [kv for kv in head(method, uri, body) if kv[0] != "REMOTE_USER"]
                answer = send(c, rid, pairs + list(cred.items()), body if method == "POST" else b"")
                if mark is None:
                    assert answer[0] == 200, answer
                    continue
                msg = error(answer, 401, "unauthenticated")
                assert "subscribe token is not a login" in msg and mark in msg, msg
                assert answer[1]["WWW-Authenticate"] == "Bearer", answer
    c.close()
    log = jwt_pub.log_text()
    assert "login refused: the JWT of 'alice' has a channels claim" in log, log[-2000:]
    assert "login refused: the JWT of 'alice' has scope \"subscribe\"" in log, log[-2000:]


# ---- 10: a param that decides the answer, sent twice


SINGLE = ["REMOTE_USER", "HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_ORIGIN", "HTTP_REFERER",
          "HTTP_SEC_FETCH_SITE", "HTTP_HOST", "REQUEST_SCHEME", "HTTPS", "CONTENT_LENGTH",
          "CONTENT_TYPE"]
# Harmless values for those the head does not carry already.
EXTRA = {"HTTP_AUTHORIZATION": "Basic YWxpY2U6eA==", "HTTP_COOKIE": "sid=1",
         "HTTP_REFERER": ORIGIN + "/page", "HTTP_SEC_FETCH_SITE": "same-origin", "HTTPS": "off"}


def test_a_param_sent_twice_is_refused_and_logged(pub, env):
    ws = subscribe(env)
    body = json.dumps({"channel": "news", "data": "refused"}).encode()
    c = Conn(pub.port)
    rid = 0
    for name in SINGLE:
        # The same value twice: even an identical copy means a config that
        # adds a line where it should replace one.
        pairs = head(body=body, **({name: EXTRA[name]} if name in EXTRA else {}))
        pairs.append(next(kv for kv in pairs if kv[0] == name))
        rid += 1
        msg = error(send(c, rid, pairs, body), 400, "bad_request")
        assert f"{name} sent twice" in msg, msg
    # The case: nginx's $remote_user (the client's own Basic header,
    # unchecked) from an included fastcgi_params, then the auth_request user.
    pairs = [("REMOTE_USER", "mallory")] + head(body=body)
    rid += 1
    assert "REMOTE_USER sent twice" in error(send(c, rid, pairs, body), 400, "bad_request")
    # A token request is refused the same way.
    rid += 1
    pairs = head("GET", "/push/token?channels=user/alice/inbox") + [("HTTP_HOST", "evil.example")]
    assert "HTTP_HOST sent twice" in error(send(c, rid, pairs), 400, "bad_request")
    # A repeated param that decides nothing is no reason to refuse.
    ok = json.dumps({"channel": "news", "data": "accepted"}).encode()
    rid += 1
    answer = send(c, rid, head(body=ok, HTTP_X_FOO="1") + [("HTTP_X_FOO", "2")], ok)
    assert answer[0] == 200, answer
    c.close()
    # Nothing refused was published: the first message is the accepted one.
    assert json.loads(ws.recv())["data"] == "accepted"
    ws.close()
    log = pub.log_text()
    for name in SINGLE:
        assert f"FastCGI param {name} sent twice" in log, (name, log[-3000:])
    assert "replace the line, do not add a second" in log


# ---- 13: valid JSON passes through exactly, everywhere

# Data as written, and what a subscriber must receive.
EXACT = [
    "12345678901234567890123",
    "-12345678901234567890123.5e-7",
    '{"s":"a\\u0000b"}',
    '"a\\u0000b"',
    '[1e-400, -0.0, 1E+2, 0.1]',
    '{ "big" : 12345678901234567890123 ,\n  "nul" : "\\u0000" }',
]


def test_json_body_data_reaches_subscribers_byte_for_byte(pub, env):
    ws = subscribe(env)
    c = Conn(pub.port)
    for rid, data in enumerate(EXACT, 1):
        body = ('{"channel":"news","data":' + data + "}").encode()
        answer = send(c, rid, head(body=body), body)
        assert answer[0] == 200, (data, answer)
        assert published_data(ws.recv()) == data
    # A number beyond a double's range: ws-server refuses it too, so it is
    # a 400 that says why, not a 503 from ws-server's refusal.
    body = b'{"channel":"news","data":[1e400]}'
    msg = error(send(c, 99, head(body=body), body), 400, "bad_request")
    assert "range" in msg, msg
    with pytest.raises(IpcError) as e:
        env.publish("news", b"[1e400]")
    assert e.value.code == 5
    c.close()
    ws.close()


def test_form_data_reaches_subscribers_as_the_same_string(pub, env):
    ws = subscribe(env)
    c = Conn(pub.port)
    cases = [("12345678901234567890123", '"12345678901234567890123"'),
             ("a%00b", '"a\\u0000b"'),
             ("%7B%22s%22%3A1%7D", '"{\\"s\\":1}"')]
    for rid, (value, want) in enumerate(cases, 1):
        body = ("channel=news&data=" + value).encode()
        pairs = head(body=body, ctype="application/x-www-form-urlencoded",
                     HTTP_X_REQUESTED_WITH="XMLHttpRequest")
        answer = send(c, rid, pairs, body)
        assert answer[0] == 200, (value, answer)
        assert published_data(ws.recv()) == want
    c.close()
    ws.close()


def wspush(env, *args, stdin=None):
    return subprocess.run([str(BIN / "wspush"), "-s", str(env.publish_socket), *args],
                          input=stdin, capture_output=True, text=True, timeout=10)


def test_cli_data_that_is_json_is_sent_byte_for_byte(ws, env):
    sub = subscribe(env)
    for data in EXACT:
        p = wspush(env, "publish", "news", " " + data + "\n")
        assert p.returncode == 0, (data, p.stderr)
        assert published_data(sub.recv()) == data
    p = wspush(env, "publish", "news", "-", stdin='{"from":"stdin","n":12345678901234567890123}\n')
    assert p.returncode == 0, p.stderr
    assert published_data(sub.recv()) == '{"from":"stdin","n":12345678901234567890123}'
    # Not JSON: a string, as before.
    p = wspush(env, "publish", "news", "plain text")
    assert p.returncode == 0, p.stderr
    assert published_data(sub.recv()) == '"plain text"'
    # Valid JSON that ws-server refuses is refused, not turned into a string.
    for data in ("1e400", '{"x":[-2e999]}'):
        p = wspush(env, "publish", "news", data)
        assert p.returncode == 2, (data, p.stdout, p.stderr)
        assert "range" in p.stderr, p.stderr
    # ... so the next message the subscriber sees is this one.
    assert wspush(env, "publish", "news", '"1e400"').returncode == 0
    assert published_data(sub.recv()) == '"1e400"'
    sub.close()


# ---- 14: Caddy's CONTENT_LENGTH=-1 (a chunked body)


def test_content_length_minus_one_is_411_in_json(pub):
    body = json.dumps({"channel": "news", "data": 1}).encode()
    c = Conn(pub.port)
    pairs = [kv for kv in head(body=body) if kv[0] != "CONTENT_LENGTH"]
    msg = error(send(c, 1, pairs + [("CONTENT_LENGTH", "-1")], body), 411, "length_required")
    assert "Content-Length required" in msg, msg
    # Only -1 means "unknown"; another negative number is malformed.
    error(send(c, 2, pairs + [("CONTENT_LENGTH", "-2")], body), 400, "bad_request")
    # The connection still serves.
    assert send(c, 3, head(body=body), body)[0] == 200
    c.close()
