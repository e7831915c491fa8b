"""ws-server's TLS listeners (tls_listen) with real clients: Python's ssl
and websockets. Protocol versions and ALPN, delivery (bursts, a reader
that stops, a slow consumer cut with 1013), the TLS slowloris, the
connection limits, `-t` on bad certificate pairs, the certificate swap on
SIGHUP with a connection held across it, and the memory of an idle TLS
connection. Certificates are made here with python3-cryptography."""
import asyncio
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import warnings
import struct
import subprocess
import time

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import BIN, ROOT, PublishClient, RawWs, SseClient, free_port, wait_for
from test_faults import idle_connection_bytes, raise_fd_limit
from test_hardening_ws import publish_many as pipelined

DAY = datetime.timedelta(days=1)


def make_pair(dirpath, name, cn="localhost", not_before=-DAY, not_after=30 * DAY, key=None):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost:
    returns (cert path, key path, DER of the certificate)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + not_before).not_valid_after(now + not_after)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cpath, kpath = dirpath / f"{name}.crt", dirpath / f"{name}.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    os.chmod(kpath, 0o600)
    return cpath, kpath, cert.public_bytes(serialization.Encoding.DER)


def make_chain(dirpath, name, ca_not_before=-DAY, ca_not_after=30 * DAY):
    """A leaf for 127.0.0.1 signed by an intermediate CA with the given
    validity: returns (chain path: leaf then intermediate, key path)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name + " intermediate")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now + ca_not_before).not_valid_after(now + ca_not_after)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cpath, kpath = dirpath / f"{name}.crt", dirpath / f"{name}.key"
    cpath.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca)))
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    os.chmod(kpath, 0o600)
    return cpath, kpath


def client_ctx(cafile, version=None, alpn=("http/1.1",)):
    ctx = ssl.create_default_context(cafile=str(cafile))
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def tenv(env):
    """env with a TLS listener and its pair (tenv.cert, tenv.key, tenv.der);
    not started."""
    env.cert, env.key, env.der = make_pair(env.dir, "site")
    env.tls_port = free_port()
    env.sections["ws-server"].update(tls_listen=f"127.0.0.1:{env.tls_port}",
                                     tls_certificate=str(env.cert), tls_certificate_key=str(env.key))
    env.write_ini()
    env.ctx = lambda **kw: client_ctx(env.cert, **kw)
    env.wrap = lambda s, **kw: env.ctx(**kw).wrap_socket(s, server_hostname="127.0.0.1")
    env.wss = lambda q: f"wss://127.0.0.1:{env.tls_port}/ws?{q}"
    return env


def tls_sub(env, channels="public/a", **kw):
    """A raw WebSocket over TLS, upgraded and greeted."""
    r = RawWs(env.tls_port, "/ws?channels=" + channels, wrap=lambda s: env.wrap(s, **kw))
    assert r.status == 101, r.head
    op, hello = r.recv_frame()
    assert json.loads(hello)["type"] == "subscribed"
    return r


def publish_many(env, channel, payloads):
    """Pipelines every publish, then reads the acks: one burst reaches
    ws-server in as few reads as the socket allows."""
    c = PublishClient(env.publish_socket, timeout=20)
    try:
        return pipelined(c, channel, payloads)
    finally:
        c.close()


def ws_check(env, *extra):
    p = subprocess.run([str(BIN / "ws-server"), "-t", "-c", str(env.ini_path), *extra],
                       capture_output=True, text=True, timeout=10)
    return p.returncode, p.stdout + p.stderr


# ---- handshakes

@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_handshake_each_version_alpn_http11_delivery_no_ticket(tenv, version):
    tenv.start_ws()
    r = tls_sub(tenv, "public/v", version=version)
    assert r.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    assert r.sock.selected_alpn_protocol() == "http/1.1"
    assert r.sock.getpeercert(binary_form=True) == tenv.der
    ack = tenv.publish("public/v", {"over": "tls"})
    op, payload = r.recv_frame()
    assert json.loads(payload)["id"] == ack["id"] and json.loads(payload)["data"] == {"over": "tls"}
    # No session ticket (TLS 1.3 sends them after the handshake, before
    # the first data read here; TLS 1.2 within it): no resumption.
    assert r.sock.session is not None and not r.sock.session.has_ticket
    r.close()


def test_old_versions_weak_ciphers_and_foreign_alpn_are_refused(tenv):
    tenv.start_ws()
    cases = []
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version, old.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    cases.append((old, "PROTOCOL_VERSION"))
    weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    weak.check_hostname, weak.verify_mode = False, ssl.CERT_NONE
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA")          # no forward secrecy: not in the intermediate list
    cases.append((weak, "HANDSHAKE_FAILURE"))
    cases.append((tenv.ctx(alpn=("h2",)), "no application protocol"))
    for ctx, alert in cases:
        with socket.create_connection(("127.0.0.1", tenv.tls_port), timeout=5) as s:
            with pytest.raises(ssl.SSLError) as e:
                ctx.wrap_socket(s, server_hostname="127.0.0.1")
        assert alert in str(e.value), e.value
    # No ALPN at all is HTTP/1.1 too.
    r = tls_sub(tenv, alpn=None)
    assert r.sock.selected_alpn_protocol() is None
    r.close()


def test_websockets_client_over_wss(tenv):
    tenv.start_ws()

    async def go():
        async with websockets.connect(tenv.wss("channels=public/w"), ssl=tenv.ctx()) as ws:
            assert json.loads(await ws.recv())["type"] == "subscribed"
            ack = tenv.publish("public/w", "hello over wss")
            m = json.loads(await ws.recv())
            assert (m["id"], m["data"]) == (ack["id"], "hello over wss")
    run(go())
    # /healthz answers over TLS too (the listeners share the request path).
    with tenv.wrap(socket.create_connection(("127.0.0.1", tenv.tls_port), timeout=5)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")


# ---- delivery: records, partial writes

def test_server_sent_events_over_tls(tenv):
    """GET /sse on the TLS listener: the same stream, byte for byte, with
    Last-Event-ID, refusals and the close event."""
    tenv.start_ws()
    sse = lambda q, **kw: SseClient(tenv.tls_port, "/sse?" + q, wrap=tenv.wrap, **kw)
    c = sse("channels=public/t")
    assert c.status == 200 and c.headers["content-type"] == "text/event-stream"
    assert c.json_event()[0] == "subscribed"
    before = len(c.raw)
    ids = [tenv.publish("public/t", {"n": i})["id"] for i in range(3)]
    assert [c.json_event()[2] for _ in range(3)] == ids
    assert c.raw[before:].startswith(b'id: %s\ndata: {"type":"message","channel":"public/t","id":"%s",'
                                     b'"data":{"n": 0}}\n\n' % (ids[0].encode(), ids[0].encode()))
    again = sse("channels=public/t", headers={"Last-Event-ID": ids[0]})
    assert again.json_event()[0] == "subscribed"
    assert [again.json_event()[2] for _ in range(2)] == ids[1:]
    again.close()
    refused = sse("channels=user/x/y")
    assert refused.status == 401 and json.loads(refused.body())["error"] == "token"
    refused.close()
    tenv.stop_ws()
    event, data, _ = c.json_event()
    assert (event, data) == ("close", {"type": "close", "code": 1001})
    assert c.event() is None


def frames_until(r, n, timeout=20):
    out = []
    while len(out) < n:
        f = r.recv_frame(timeout)
        assert f is not None, "connection ended after %d frames" % len(out)
        out.append(f)
    return out


def test_burst_of_small_and_large_frames_arrives_intact(tenv):
    """3000 messages of one burst, a few over a record's size, to two TLS
    subscribers: every frame whole and in order."""
    tenv.sections["ws-server"].update(send_buffer_bytes="16m")
    tenv.write_ini()
    tenv.start_ws()
    subs = [tls_sub(tenv, "public/burst") for _ in range(2)]
    payloads = [("s%05d" % i) * (1 + (i % 7)) if i % 500 else "L%05d" % i + "x" * 40000
                for i in range(3000)]
    ids = publish_many(tenv, "public/burst", payloads)
    for r in subs:
        got = frames_until(r, len(ids))
        msgs = [json.loads(p) for op, p in got]
        assert [m["id"] for m in msgs] == ids
        assert [m["data"] for m in msgs] == payloads
        r.close()


class RecordCounter:
    """A TLS client socket through memory BIOs that counts the
    application-data records it receives (sendall/recv/settimeout/close,
    enough for RawWs)."""

    def __init__(self, sock, ctx):
        self.sock, self.inc, self.out = sock, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="127.0.0.1")
        self.raw, self.records = b"", 0
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _feed(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.raw += chunk
        while len(self.raw) >= 5 and len(self.raw) >= 5 + struct.unpack(">H", self.raw[3:5])[0]:
            n = 5 + struct.unpack(">H", self.raw[3:5])[0]
            self.records += self.raw[0] == 23
            self.raw = self.raw[n:]
        self.inc.write(chunk)

    def sendall(self, data):
        self.obj.write(data)
        self._flush()

    def recv(self, n):
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


def test_frames_of_one_pass_share_records(tenv):
    """200 small messages published in one burst reach a TLS page in a
    handful of records (a flush gathers its frames into full records),
    not one record per frame."""
    tenv.start_ws()
    r = RawWs(tenv.tls_port, "/ws?channels=public/rec", wrap=lambda s: RecordCounter(s, tenv.ctx()))
    assert r.status == 101
    r.recv_frame()
    r.sock.records = 0
    ids = publish_many(tenv, "public/rec", ["m%03d" % i for i in range(200)])
    got = [json.loads(p)["id"] for op, p in frames_until(r, len(ids))]
    assert got == ids
    print("200 frames in %d TLS records" % r.sock.records)
    assert r.sock.records <= 20, r.sock.records
    r.close()


def test_reader_that_stops_gets_everything_after_blocked_records(tenv):
    """A page stops reading while 12 MB are published: ws-server's TLS
    writes meet a full socket (a record held, retried later from the
    queue); once the page reads again every frame arrives whole."""
    tenv.sections["ws-server"].update(send_buffer_bytes="64m")
    tenv.write_ini()
    tenv.start_ws()
    r = tls_sub(tenv, "public/slow")
    payloads = ["%04d" % i + "y" * 60000 for i in range(200)]
    ids = publish_many(tenv, "public/slow", payloads)
    got = frames_until(r, len(ids), timeout=30)
    assert [json.loads(p)["id"] for op, p in got] == ids
    assert [json.loads(p)["data"] for op, p in got] == payloads
    r.close()


def test_slow_consumer_cut_1013_keeps_the_tls_stream_well_formed(tenv):
    """Past send_buffer_bytes a page that does not read is closed 1013.
    What was already taken into a blocked TLS record is kept in the queue
    (io.held): the page reads whole frames, in order, then the close."""
    tenv.sections["ws-server"].update(send_buffer_bytes="256k", close_timeout="20s")
    tenv.write_ini()
    tenv.start_ws()
    r = tls_sub(tenv, "public/sc")
    # Frames of a quarter record: the record a full socket blocks spans
    # several, which the 1013 must not drop. Bursts into the queue of a
    # page that reads nothing, until the kernel's buffers and then the
    # budget are full.
    sent = []
    while "slow consumer" not in tenv.log_text():
        assert len(sent) < 40000, "never a slow consumer"
        sent += publish_many(tenv, "public/sc", ["%05d" % (len(sent) + i) + "z" * 4000 for i in range(40)])
    got, code = [], None
    while True:
        f = r.recv_frame(10)
        assert f is not None, "no close frame after %d messages" % len(got)
        if f[0] == 0x8:
            code = struct.unpack(">H", f[1][:2])[0]
            break
        got.append(json.loads(f[1])["id"])
    assert code == 1013
    assert got == sent[:len(got)] and 0 < len(got) < len(sent)
    r.close()


def test_ktls_refused_by_the_kernel_falls_back_to_userland(tenv):
    """When tcp_available_ulp offers "tls" ws-server asks for kTLS; a
    kernel that then refuses it (this one has no tls module: the test
    names a file that says it has) leaves the connection on the userland
    path, logged once, and delivery is the same."""
    ulp = tenv.dir / "tcp_available_ulp"
    ulp.write_text("mptcp tls\n")
    os.environ["WSPUSH_TEST_TCP_ULP_FILE"] = str(ulp)
    try:
        tenv.start_ws()
    finally:
        del os.environ["WSPUSH_TEST_TCP_ULP_FILE"]
    assert "the kernel offers kTLS" in tenv.log_text()
    subs = [tls_sub(tenv, "public/k") for _ in range(3)]
    ids = publish_many(tenv, "public/k", ["k%d" % i + "x" * (i * 9000) for i in range(8)])
    for r in subs:
        assert [json.loads(p)["id"] for op, p in frames_until(r, len(ids))] == ids
        r.close()
    assert tenv.log_text().count("kTLS not taken") == 1, tenv.log_text()


# ---- limits

def test_tls_slowloris_is_cut_at_the_handshake_timeout(tenv):
    """Clients that open TLS connections and never finish the handshake
    (nothing sent, half a ClientHello) are closed at handshake_timeout,
    like a plain one, and counted as failed handshakes; a real client gets
    through meanwhile."""
    metrics = f"127.0.0.1:{free_port()}"
    tenv.sections["ws-server"].update(handshake_timeout="1000", metrics_listen=metrics)
    tenv.write_ini()
    tenv.start_ws()
    # Half of a real ClientHello, made by Python's TLS through memory BIOs.
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tenv.ctx().wrap_bio(inc, out, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    t0 = time.monotonic()
    silent = [socket.create_connection(("127.0.0.1", tenv.tls_port), timeout=5) for _ in range(20)]
    halves = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", tenv.tls_port), timeout=5)
        s.sendall(hello[:len(hello) // 2])
        halves.append(s)
    r = tls_sub(tenv, "public/real")
    ack = tenv.publish("public/real", "through")
    assert json.loads(r.recv_frame()[1])["id"] == ack["id"]
    for s in silent + halves:
        assert s.recv(100) == b""       # closed, no answer
    took = time.monotonic() - t0
    assert 0.9 <= took < 4, took
    r.close()
    from test_metrics import get
    wait_for(lambda: b'wspush_tls_handshakes_total{result="failed"} 40' in get(metrics, "/metrics")[2],
             what="40 failed handshakes counted")
    assert b'wspush_tls_handshakes_total{result="ok"} 1\n' in get(metrics, "/metrics")[2]


def test_max_connections_counts_tls_connections(tenv):
    tenv.sections["ws-server"].update(max_connections="2")
    tenv.write_ini()
    tenv.start_ws()
    a = tls_sub(tenv)
    b = RawWs(tenv.ws_port)
    assert b.status == 101
    # Full: a third one, TLS or not, is answered 503 from a reserve slot
    # (over TLS for a TLS client).
    for wrap in (tenv.wrap, None):
        c = RawWs(tenv.tls_port if wrap else tenv.ws_port, wrap=wrap)
        assert c.status == 503, c.head
        c.close()
    a.close()
    wait_for(lambda: RawWs(tenv.tls_port, wrap=tenv.wrap).status == 101, what="a slot freed by a TLS close")
    b.close()


# ---- the certificate pair

def test_t_refuses_bad_certificate_pairs(tenv):
    d = tenv.dir
    other_cert, other_key, _ = make_pair(d, "other")
    old_cert, old_key, _ = make_pair(d, "old", not_before=-30 * DAY, not_after=-DAY)
    future_cert, future_key, _ = make_pair(d, "future", not_before=DAY, not_after=30 * DAY)
    old_ca_chain, old_ca_key = make_chain(d, "old-ca", ca_not_before=-30 * DAY, ca_not_after=-DAY)
    future_ca_chain, future_ca_key = make_chain(d, "future-ca", ca_not_before=DAY)
    good_chain, good_chain_key = make_chain(d, "good-ca")
    key = serialization.load_pem_private_key(tenv.key.read_bytes(), None)
    enc = d / "enc.key"
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pass")))
    junk = d / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [
        (d / "missing.crt", tenv.key, "tls_certificate", "No such file"),
        (d, tenv.key, "tls_certificate", "not a regular file"),
        (junk, tenv.key, "tls_certificate", "no PEM certificate"),
        (tenv.cert, other_key, "tls_certificate_key", "does not match"),
        (old_cert, old_key, "tls_certificate", "expired on"),
        (future_cert, future_key, "tls_certificate", "not valid before"),
        # A valid leaf sent with an expired (or not yet valid) intermediate.
        (old_ca_chain, old_ca_key, "tls_certificate", "chain certificate 1 expired on"),
        (future_ca_chain, future_ca_key, "tls_certificate", "chain certificate 1 is not valid before"),
        (tenv.cert, enc, "tls_certificate_key", "encrypted key"),
        (tenv.cert, junk, "tls_certificate_key", "no PEM private key"),
    ]
    for cert, key_path, name, why in cases:
        tenv.sections["ws-server"].update(tls_certificate=str(cert), tls_certificate_key=str(key_path))
        tenv.write_ini()
        rc, out = ws_check(tenv)
        assert rc == 1 and f"key '{name}'" in out and why in out, (cert, key_path, out)
    # ws-server refuses to start with one too (the last case).
    p = subprocess.run([str(BIN / "ws-server"), "-c", str(tenv.ini_path)], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 1 and "no PEM private key" in p.stderr
    # tls_listen without the pair is a config error.
    del tenv.sections["ws-server"]["tls_certificate_key"]
    tenv.write_ini()
    rc, out = ws_check(tenv)
    assert rc == 1 and "key 'tls_certificate_key': not set, but tls_listen is" in out, out
    # A good pair passes, with or without a chain.
    for cert, key_path in ((other_cert, other_key), (good_chain, good_chain_key)):
        tenv.sections["ws-server"].update(tls_certificate=str(cert), tls_certificate_key=str(key_path))
        tenv.write_ini()
        rc, out = ws_check(tenv)
        assert rc == 0 and f"ws-server: configuration {tenv.ini_path} is valid" in out, out


def test_sighup_swaps_the_certificate_without_dropping_connections(tenv):
    tenv.start_ws()
    held = tls_sub(tenv, "public/hup")
    assert held.sock.getpeercert(binary_form=True) == tenv.der
    # certbot's way: new files in place, then the signal.
    new_cert, new_key, new_der = make_pair(tenv.dir, "renewed", cn="renewed")
    tenv.cert.write_bytes(new_cert.read_bytes())
    tenv.key.write_bytes(new_key.read_bytes())
    tenv.ws_proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "loaded for new connections" in tenv.log_text(), what="the reload")
    ack = tenv.publish("public/hup", "after the swap")
    assert json.loads(held.recv_frame()[1])["id"] == ack["id"]
    fresh = tls_sub(tenv, "public/hup")
    assert fresh.sock.getpeercert(binary_form=True) == new_der
    # A bad pair (a key of another certificate) keeps the one in force.
    _, stray_key, _ = make_pair(tenv.dir, "stray")
    tenv.key.write_bytes(stray_key.read_bytes())
    tenv.ws_proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, keeping the running config" in tenv.log_text(), what="the refusal")
    assert "does not match the certificate" in tenv.log_text()
    again = tls_sub(tenv, "public/hup")
    assert again.sock.getpeercert(binary_form=True) == new_der
    ack = tenv.publish("public/hup", "still here")
    for r in (held, fresh, again):
        assert json.loads(r.recv_frame()[1])["id"] == ack["id"]
        r.close()
    # A file without TLS keys reloads the rest; the listener (bound at
    # start) keeps the pair in force until a restart.
    for k in ("tls_listen", "tls_certificate", "tls_certificate_key"):
        del tenv.sections["ws-server"][k]
    tenv.sections["ws-server"]["max_connections"] = "5000"
    tenv.write_ini()
    tenv.ws_proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "no tls_certificate any more" in tenv.log_text(), what="the reload without TLS keys")
    last = tls_sub(tenv, "public/hup")
    assert last.sock.getpeercert(binary_form=True) == new_der
    last.close()


def deploy_hook(env, live):
    """The certbot deploy hook of docs/deployment.md, run against env: its
    /etc paths in env.dir, ws-server from BIN, the reload a SIGHUP."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    start = doc.index("cat > /etc/letsencrypt/renewal-hooks/deploy/wspush.sh <<'EOF'\n")
    script = doc[doc.index("\n", start) + 1:doc.index("\nEOF\n", start) + 1]
    for old, new in (("/etc/letsencrypt/live/push.site.example", str(live)),
                     ("/etc/wspush/wspush.ini", str(env.ini_path)),
                     ("/etc/wspush/tls", str(env.dir / "tls")),
                     ("/usr/local/bin/ws-server", str(BIN / "ws-server")),
                     ("-o root -g wspush ", ""),
                     ("systemctl reload ws-server", "kill -HUP %d" % env.ws_proc.pid)):
        assert old in script, old
        script = script.replace(old, new)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=20)


def served_der(env):
    """The certificate a new handshake gets (not verified)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", env.tls_port), timeout=5)) as s:
        return s.getpeercert(binary_form=True)


def test_deploy_hook_checks_the_new_pair_before_installing_it(tenv):
    tls, live = tenv.dir / "tls", tenv.dir / "live"
    tls.mkdir()
    live.mkdir()
    cert, key = tls / "fullchain.pem", tls / "privkey.pem"
    cert.write_bytes(tenv.cert.read_bytes())
    key.write_bytes(tenv.key.read_bytes())
    tenv.sections["ws-server"].update(tls_certificate=str(cert), tls_certificate_key=str(key))
    tenv.write_ini()
    tenv.start_ws()
    # A renewal whose key does not match: refused, the pair in force kept.
    new_cert, new_key, new_der = make_pair(tenv.dir, "renewed", cn="renewed")
    _, stray_key, _ = make_pair(tenv.dir, "stray")
    (live / "fullchain.pem").write_bytes(new_cert.read_bytes())
    (live / "privkey.pem").write_bytes(stray_key.read_bytes())
    p = deploy_hook(tenv, live)
    assert p.returncode != 0 and "does not match" in p.stderr, p.stdout + p.stderr
    assert cert.read_bytes() == tenv.cert.read_bytes() and key.read_bytes() == tenv.key.read_bytes()
    assert sorted(f.name for f in tls.iterdir()) == ["fullchain.pem", "privkey.pem"]
    assert not any(f.name.endswith(".new-pair") for f in tenv.dir.iterdir())
    assert served_der(tenv) == tenv.der
    # A good one: installed, then loaded by the reload.
    (live / "privkey.pem").write_bytes(new_key.read_bytes())
    p = deploy_hook(tenv, live)
    assert p.returncode == 0, p.stdout + p.stderr
    assert cert.read_bytes() == new_cert.read_bytes()
    wait_for(lambda: served_der(tenv) == new_der, what="the new certificate served")


# ---- memory

def test_idle_tls_connection_memory(tenv):
    """Idle TLS subscribers give their record buffers back
    (SSL_MODE_RELEASE_BUFFERS): the bytes per idle TLS connection are the
    RSS slope over WSPUSH_TLS_IDLE_CONNS of them (printed)."""
    n = int(os.environ.get("WSPUSH_TLS_IDLE_CONNS", "1000"))
    raise_fd_limit(n + 256)
    tenv.sections["ws-server"].update(max_connections=str(n + 100), ping_interval="600s")
    tenv.write_ini()
    tenv.start_ws()
    ctx = tenv.ctx()

    def subscribe(channel):
        r = RawWs(tenv.tls_port, "/ws?channels=" + channel,
                  wrap=lambda s: ctx.wrap_socket(s, server_hostname="127.0.0.1"))
        assert r.status == 101
        return r
    per_conn, _, conns = idle_connection_bytes(tenv.ws_proc.pid, n, subscribe, 50, 50)
    print("idle TLS: %d connections, %.0f bytes each" % (n, per_conn))
    if not os.environ.get("WSPUSH_SANITIZED"):    # ASan pads every allocation
        assert per_conn < 18 * 1024, "%.0f bytes per idle TLS connection" % per_conn
    ack = tenv.publish(["public/idle%d" % i for i in range(10)], "x")
    assert ack["subscribers"] == 10 * (n // 50)
    for r in conns:
        r.close()
