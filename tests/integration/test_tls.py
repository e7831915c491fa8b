"""ws-server's TLS listeners (tls_listen) with real clients: Python's ssl
and websockets. Protocol versions and ALPN, delivery (bursts, a reader
that stops, a slow consumer cut with 1013), the TLS slowloris, the
connection limits, `-t` on bad certificate pairs, the certificate swap on
SIGHUP with a connection held across it, and the memory of an idle TLS
connection. Certificates are made here with python3-cryptography."""
import asyncio
import datetime
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import BIN, PublishClient, RawWs, free_port, wait_for

DAY = datetime.timedelta(days=1)


def make_pair(dirpath, name, cn="localhost", not_before=-DAY, not_after=30 * DAY, key=None):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost:
    returns (cert path, key path, DER of the certificate)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    import ipaddress
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
        frames = [c.publish_frame(channel, p) for p in payloads]
        c.sock.sendall(b"".join(f for _, f in frames))
        ids = []
        for rid, _ in frames:
            t, got, body = c.read_answer()
            assert got == rid
            ids.append(c.decode(t, body)["id"])
        return ids
    finally:
        c.close()


def ws_check(env, *extra):
    p = subprocess.run([str(BIN / "ws-server"), "-t", "-c", str(env.ini_path), *extra],
                       capture_output=True, text=True, timeout=10)
    return p.returncode, p.stdout + p.stderr


# ---- handshakes

@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_handshake_each_version_alpn_http11_and_delivery(tenv, version):
    tenv.start_ws()
    r = tls_sub(tenv, "public/v", version=version)
    assert r.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    assert r.sock.selected_alpn_protocol() == "http/1.1"
    assert r.sock.getpeercert(binary_form=True) == tenv.der
    ack = tenv.publish("public/v", {"over": "tls"})
    op, payload = r.recv_frame()
    assert json.loads(payload)["id"] == ack["id"] and json.loads(payload)["data"] == {"over": "tls"}
    r.close()


def test_old_versions_weak_ciphers_and_foreign_alpn_are_refused(tenv):
    tenv.start_ws()
    cases = []
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    import warnings
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
    # A good pair passes.
    tenv.sections["ws-server"].update(tls_certificate=str(other_cert), tls_certificate_key=str(other_key))
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


# ---- memory

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_idle_tls_connection_memory(tenv):
    """Idle TLS subscribers give their record buffers back
    (SSL_MODE_RELEASE_BUFFERS): the bytes per idle TLS connection are the
    RSS slope over WSPUSH_TLS_IDLE_CONNS of them (printed)."""
    import resource
    n = int(os.environ.get("WSPUSH_TLS_IDLE_CONNS", "1000"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n + 256, hard), hard))
    tenv.sections["ws-server"].update(max_connections=str(n + 100), ping_interval="600s")
    tenv.write_ini()
    tenv.start_ws()
    pid = tenv.ws_proc.pid
    ctx = tenv.ctx()
    warm = [tls_sub(tenv, "public/warm") for _ in range(50)]
    for r in warm:
        r.close()
    time.sleep(0.3)
    base = rss_kib(pid)
    conns = []
    for i in range(n):
        r = RawWs(tenv.tls_port, "/ws?channels=public/idle%d" % (i % 50),
                  wrap=lambda s: ctx.wrap_socket(s, server_hostname="127.0.0.1"))
        assert r.status == 101
        conns.append(r)
    time.sleep(0.5)
    per_conn = (rss_kib(pid) - base) * 1024 / n
    print("idle TLS: %d connections, %.0f bytes each" % (n, per_conn))
    if not os.environ.get("WSPUSH_SANITIZED"):    # ASan pads every allocation
        assert per_conn < 18 * 1024, "%.0f bytes per idle TLS connection" % per_conn
    ack = tenv.publish(["public/idle%d" % i for i in range(10)], "x")
    assert ack["subscribers"] == 10 * (n // 50)
    for r in conns:
        r.close()
