#!/usr/bin/python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/: a few small
valid (and a few nearly valid) inputs per target, in the input layout each
fuzz_<target>.c documents. Re-run after changing a layout; the files are
kept in the repository so a fresh checkout replays them."""
import base64
import hashlib
import hmac
import json
import os
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def mask_frame(opcode, payload=b"", fin=True, rsv=0, key=b"\x11\x22\x33\x44", length=None):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if length is None else length
    if n < 126:
        hdr = bytes([b0, 0x80 | n])
    elif n < 65536:
        hdr = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def handshake():
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    up = ("GET /ws?channels=news,user/alice/inbox&token=abc HTTP/1.1\r\nHost: site.example\r\n"
          "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    put("handshake", "upgrade", up + "\r\n")
    put("handshake", "upgrade-origin", up + "Origin: http://good.example\r\n\r\n")
    put("handshake", "upgrade-evil-origin", up + "Origin: http://evil.example\r\n\r\n")
    put("handshake", "upgrade-bare-lf", (up + "\r\n").replace("\r\n", "\n"))
    put("handshake", "upgrade-pipelined-ping", (up + "\r\n").encode() + mask_frame(0x9, b"hi"))
    put("handshake", "healthz", "GET /healthz HTTP/1.0\r\n\r\n")
    put("handshake", "plain-get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    put("handshake", "post", "POST /ws HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    put("handshake", "version-8", up.replace("Version: 13", "Version: 8") + "\r\n")
    sse = "GET /sse?channels=news&last_id=1-2 HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n"
    put("handshake", "sse", sse + "Origin: http://good.example\r\nLast-Event-ID: 6b-1\r\n\r\n")
    put("handshake", "sse-dup-last-event-id", sse + "Last-Event-ID: 1\r\nLast-Event-ID: 2\r\n\r\n")
    put("handshake", "dup-host", up + "Host: other\r\n\r\n")
    put("handshake", "absolute-target", up.replace("GET /ws", "GET http://a/ws") + "\r\n")
    put("handshake", "folded-header", up + "X-Long: a\r\n  continued\r\n\r\n")
    ext = "Sec-WebSocket-Extensions: "
    put("handshake", "deflate-chromium", up + ext + "permessage-deflate; client_max_window_bits\r\n\r\n")
    put("handshake", "deflate-params", up + ext + "permessage-deflate; server_no_context_takeover; "
        "client_no_context_takeover; server_max_window_bits=15; client_max_window_bits=9\r\n\r\n")
    put("handshake", "deflate-declined-then-ok", up + ext + "permessage-deflate; server_max_window_bits=10, "
        "permessage-deflate; x=\"a,\\\"b\"\r\n" + ext + "permessage-deflate\r\n\r\n")
    put("handshake", "deflate-broken", up + ext + "foo; a=\"x, permessage-deflate;\r\n\r\n")


def frame():
    # byte 0 picks max_payload: 2 -> 125, 4 -> 65535
    lim125, lim64k = b"\x02", b"\x04"
    put("frame", "ping", lim125 + mask_frame(0x9, b"hello"))
    put("frame", "pong-empty", lim125 + mask_frame(0xA))
    put("frame", "close-1000-reason", lim125 + mask_frame(0x8, b"\x03\xe8bye"))
    put("frame", "close-bad-utf8", lim125 + mask_frame(0x8, b"\x03\xe8\xff"))
    put("frame", "close-empty", lim125 + mask_frame(0x8))
    put("frame", "text", lim125 + mask_frame(0x1, b"data"))
    put("frame", "fragments", lim125 + mask_frame(0x1, b"ab", fin=False) + mask_frame(0x9, b"p")
        + mask_frame(0x0, b"cd", fin=False) + mask_frame(0x0, b"ef"))
    put("frame", "len16", lim64k + mask_frame(0x2, b"x" * 300))
    put("frame", "len64", b"\x07" + mask_frame(0x2, b"y" * 70000))
    put("frame", "len64-top-bit", lim125 + bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1]))
    put("frame", "unmasked", lim125 + bytes([0x89, 0x00]))
    put("frame", "rsv1", lim125 + mask_frame(0x9, rsv=4))
    put("frame", "many", lim125 + b"".join(mask_frame(0x9, bytes([i]) * i) for i in range(10)))


def ipc():
    def fr(t, rid, body):
        return struct.pack(">IBI", 5 + len(body), t, rid) + body
    lim = b"\x05"   # 65600
    data = b'{"a":[1,2,"x"]}'
    pub = fr(1, 7, b"\x02\x04news\x0cuser/a/inbox" + struct.pack(">I", len(data)) + data)
    put("ipc", "publish", lim + pub)
    put("ipc", "disconnect", lim + fr(2, 8, b"\x05alice"))
    put("ipc", "ack", lim + fr(0x81, 7, struct.pack(">I", 3) + b"\x0a5f3a-00042"))
    put("ipc", "disconnected", lim + fr(0x82, 8, struct.pack(">I", 2)))
    put("ipc", "error", lim + fr(0xFF, 9, struct.pack(">H", 2) + b"\x0fbad channel nam"))
    put("ipc", "pipelined", lim + pub + fr(2, 8, b"\x01u") + pub)
    put("ipc", "too-big-then-ok", b"\x01" + pub + fr(2, 8, b"\x01u"))
    put("ipc", "truncated", lim + pub[:-3])


def body():
    # byte 0: bit 0 form, bit 1 first line is the Content-Type
    put("body", "json-channel", b"\x00" + b'{"channel":"news","data":{"a":1,"b":[true,null]}}')
    put("body", "json-channels", b"\x00" + b'{"channels":["a","b/c"],"data":"hi \\u00e9"}')
    put("body", "json-number", b"\x00" + b' { "data" : 12345678901234567890.5e3 , "channel" : "x" } ')
    put("body", "json-dup", b"\x00" + b'{"channel":"a","channel":"b","data":1}')
    put("body", "form", b"\x01" + b"channel=news&data=hello+world%21")
    put("body", "form-channels", b"\x01" + b"channels=a%2Cb,c&data=%E2%82%AC%22%5C%0A")
    put("body", "ctype-json", b"\x02" + b"application/json; charset=utf-8\n"
        + b'{"channel":"n","data":[]}')
    put("body", "ctype-form", b"\x02" + b"Application/X-WWW-Form-Urlencoded\nchannel=n&data=")
    put("body", "ctype-latin1", b"\x02" + b"application/json;charset=\"latin1\"\n{}")


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def jwt(claims, secret, alg="HS256"):
    signing = b64u(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + b"." + \
        b64u(json.dumps(claims).encode())
    return signing + b"." + b64u(hmac.new(secret, signing, hashlib.sha256).digest())


def token():
    cur, prev = b"fuzz-current-secret-01", b"fuzz-previous-secret-02"
    exp = 4000000000
    claims = {"sub": "alice", "exp": exp, "channels": ["user/alice/*", "news"]}
    put("token", "raw-cur", b"\x00" + jwt(claims, cur))
    put("token", "raw-prev", b"\x00" + jwt(claims, prev))
    put("token", "raw-wrong", b"\x00" + jwt(claims, b"wrong"))
    put("token", "raw-none", b"\x04" + b64u(b'{"alg":"none"}') + b"." + b64u(b'{"exp":1}') + b".")
    put("token", "raw-expired", b"\x00" + jwt(dict(claims, exp=1), cur))
    hdr = b'{"alg":"HS256","typ":"JWT"}'
    put("token", "sign-cur", b"\x01" + hdr + b"\n" + json.dumps(claims).encode())
    put("token", "sign-prev", b"\x03" + hdr + b"\n" + json.dumps(
        {"sub": "bob", "exp": exp, "publish": ["news", "user/bob/*"]}).encode())
    put("token", "sign-no-exp", b"\x01" + hdr + b'\n{"sub":"x"}')
    put("token", "sign-bad-types", b"\x01" + hdr + b'\n{"sub":7,"exp":"1","channels":"a"}')
    put("token", "sign-big-exp", b"\x01" + hdr + b'\n{"sub":"z","exp":1e300,"channels":[]}')
    put("token", "sign-hs384", b"\x01" + b'{"alg":"HS384"}\n{"exp":4000000000}')


def cfg():
    full = """log_level = debug
publish_socket = /run/wspush/publish.sock
[ws-server]
listen = 127.0.0.1:8081 [::1]:8081
listen = *:9000
allowed_origins = https://site.example http://localhost:8080
max_connections = 100
max_header_bytes = 4k
handshake_timeout = 5s
idle_timeout = 0
ping_interval = 1m
max_frame_bytes = 1M
publish_socket_mode = 0660
publish_allow_uids = 0 33
history_size = 10
history_bytes = 1M
history_ttl = 1h
history_file = history.bin ; relative
[publisher]
listen = /run/wspush/fcgi.sock
workers = 4
mount = /push
auth = jwt
jwt_cookie = session
max_body = 64k
token_ttl = 2h
[channels]
public = news public/*
publish = user/{user}/* news
subscribe = user/{user}/*
"""
    put("cfg", "full", full)
    put("cfg", "empty", "")
    put("cfg", "unknown-key", "[ws-server]\nlisten_on = 1\n")
    put("cfg", "unknown-section", "[nope]\n")
    put("cfg", "bad-size", "[ws-server]\nmax_frame_bytes = 12q\n")
    put("cfg", "dup-scalar", "[ws-server]\nmax_channels = 3\nmax_channels = 4\n")
    put("cfg", "no-listen", "[ws-server]\nlisten =\n")
    put("cfg", "long-line", "[channels]\npublic = " + "a" * 250 + "\n")
    put("cfg", "no-prefix", "![wspush]\nsecret_file = /nonexistent/secret\n")
    put("cfg", "previous-secret", "previous_secret_file = /nonexistent/old\n")


def rec(t, rid, content=b"", pad=0):
    """A FastCGI record."""
    return struct.pack(">BBHHBB", 1, t, rid, len(content), pad, 0) + content + b"\0" * pad


def nv_len(n):
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def pair(name, value):
    """A FastCGI name-value pair."""
    return nv_len(len(name)) + nv_len(len(value)) + name + value


BEGIN, ABORT, PARAMS, STDIN, DATA, GET_VALUES = 1, 2, 4, 5, 8, 9


def fcgi():
    # The input is the record stream itself (see fuzz_fcgi.c).
    begin_keep = rec(BEGIN, 1, struct.pack(">HB5x", 1, 1))
    params = (pair(b"SCRIPT_NAME", b"/push") + pair(b"REQUEST_METHOD", b"POST")
              + pair(b"CONTENT_TYPE", b"application/json") + pair(b"CONTENT_LENGTH", b"24")
              + pair(b"QUERY_STRING", b"") + pair(b"HTTP_COOKIE", b"session=" + b"c" * 150))
    body = b'{"channel":"n","data":1}'

    def request_for(rid):
        return (rec(BEGIN, rid, struct.pack(">HB5x", 1, 1)) + rec(PARAMS, rid, params)
                + rec(PARAMS, rid) + rec(STDIN, rid, body) + rec(STDIN, rid))
    request = request_for(1)
    put("fcgi", "request", request)
    # The same PARAMS cut every 5 bytes (pairs straddle records), padded to 8.
    cut = b"".join(rec(PARAMS, 1, params[i:i + 5], (8 - len(params[i:i + 5]) % 8) % 8)
                   for i in range(0, len(params), 5))
    put("fcgi", "params-split", begin_keep + cut + rec(PARAMS, 1) + rec(STDIN, 1))
    put("fcgi", "two-requests", request + request_for(2))
    put("fcgi", "begin-padded-abort", rec(BEGIN, 7, struct.pack(">HB5x", 1, 0), 8)
        + rec(ABORT, 7))
    put("fcgi", "begin-short", rec(BEGIN, 1, b"\x00\x01\x01"))
    put("fcgi", "long-pair", begin_keep + rec(PARAMS, 1, pair(b"N" * 200, b"v" * 300)))
    put("fcgi", "get-values", rec(GET_VALUES, 0, pair(b"FCGI_MAX_CONNS", b"")
                                  + pair(b"FCGI_MAX_REQS", b"") + pair(b"FCGI_MPXS_CONNS", b"")))
    put("fcgi", "zero-name", begin_keep + rec(PARAMS, 1, b"\x00\x03abc"))
    put("fcgi", "huge-length", begin_keep + rec(PARAMS, 1, b"\xff\xff\xff\xff\x01ab"))
    put("fcgi", "non-minimal-length", begin_keep + rec(PARAMS, 1, b"\x80\x00\x00\x03\x01abcv"))
    put("fcgi", "bad-version", b"\x02" + begin_keep[1:])
    put("fcgi", "truncated", request[:-13])


def fcgi_libfcgi():
    # A stream on one connection (see fuzz_fcgi_libfcgi.c): whole requests
    # both sides serve, and one stream for each intended difference.
    def begin(rid, role=1, keep=1, pad=0):
        return rec(BEGIN, rid, struct.pack(">HB5x", role, keep), pad)

    params = (pair(b"REQUEST_METHOD", b"POST") + pair(b"REQUEST_URI", b"/push/publish")
              + pair(b"CONTENT_TYPE", b"application/json") + pair(b"CONTENT_LENGTH", b"24")
              + pair(b"REMOTE_USER", b"alice") + pair(b"HTTP_COOKIE", b"s=" + b"c" * 150))
    body = b'{"channel":"n","data":1}'

    def request(rid=1, p=params, b=body):
        return (begin(rid) + (rec(PARAMS, rid, p) if p else b"") + rec(PARAMS, rid)
                + (rec(STDIN, rid, b) if b else b"") + rec(STDIN, rid))
    put("fcgi_libfcgi", "publish", request())
    put("fcgi_libfcgi", "no-params-no-body", request(7, b"", b""))
    split = b"".join(rec(PARAMS, 1, params[i:i + 5], 3) for i in range(0, len(params), 5))
    put("fcgi_libfcgi", "split-padded", begin(1) + split + rec(PARAMS, 1)
        + rec(STDIN, 1, body[:9], 7) + rec(STDIN, 1, body[9:]) + rec(STDIN, 1, b"", 5))
    put("fcgi_libfcgi", "long-lengths", request(2, pair(b"N" * 200, b"v" * 1500)
                                                + b"\x80\x00\x00\x01\x80\x00\x00\x01xy"))
    put("fcgi_libfcgi", "management-around", rec(GET_VALUES, 0, pair(b"FCGI_MPXS_CONNS", b""), 4)
        + begin(3) + rec(11, 0) + rec(PARAMS, 3, params) + rec(PARAMS, 3)
        + rec(STDIN, 3, body) + rec(STDIN, 3))
    put("fcgi_libfcgi", "second-id", begin(1) + begin(2) + rec(PARAMS, 2, b"\x01\x01ab")
        + rec(PARAMS, 1, params) + rec(PARAMS, 1) + rec(STDIN, 2, b"x") + rec(STDIN, 1, body)
        + rec(STDIN, 1))
    put("fcgi_libfcgi", "two-requests", request(1) + request(2))
    put("fcgi_libfcgi", "truncated", request()[:-3])
    put("fcgi_libfcgi", "bad-version", b"\x02" + request()[1:])
    # The intended differences (docs/design.md).
    put("fcgi_libfcgi", "role-authorizer", begin(1, role=2) + request()[16:])
    put("fcgi_libfcgi", "begin-id0", begin(0) + request())
    put("fcgi_libfcgi", "begin-again", begin(1) + request())
    put("fcgi_libfcgi", "data-in-body", begin(1) + rec(PARAMS, 1, params) + rec(PARAMS, 1)
        + rec(DATA, 1, b"d") + rec(STDIN, 1, body) + rec(STDIN, 1))
    put("fcgi_libfcgi", "abort-then-next", begin(1) + rec(ABORT, 1) + request(2))
    put("fcgi_libfcgi", "empty-name", request(1, params + pair(b"", b"v")))
    put("fcgi_libfcgi", "over-max-params", request(1, pair(b"X", b"v" * 2100)))
    put("fcgi_libfcgi", "get-values-cut", rec(GET_VALUES, 0, b"\x0e\x00FCGI") + request())
    put("fcgi_libfcgi", "get-values-4", rec(GET_VALUES, 0, pair(b"FCGI_MAX_CONNS", b"") * 4)
        + request())
    put("fcgi_libfcgi", "huge-pair", begin(1) + rec(PARAMS, 1, b"\x7f\xff\xff\xfe\x7f\xff\xff\xfe"))
    put("fcgi_libfcgi", "padded-begin", begin(1, pad=8) + request()[16:])
    put("fcgi_libfcgi", "management-content", rec(99, 0, b"12345678") + request())
    put("fcgi_libfcgi", "padding-cut", request()[:-8] + rec(STDIN, 1, b"", 4)[:-2])
    put("fcgi_libfcgi", "skip-next", begin(1) + rec(STDIN, 2) + request()[16:])



def sse():
    put("sse", "json", '{"type":"message","channel":"news","id":"6b-1","data":{"a":[1,2]}}')
    put("sse", "pretty", '{\n  "a": [1,\r\n  2],\r  "b": "x"\n}\n')
    put("sse", "control", '{"type":"subscribed","channels":["a"],"last_id":"6b-0"}')
    put("sse", "origin", "https://site.example:8443")
    put("sse", "breaks", "\r\n\r\r\n\n\r")



for gen in (handshake, frame, ipc, body, token, cfg, fcgi, fcgi_libfcgi, sse):
    gen()
