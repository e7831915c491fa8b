"""Test harness: a throw-away runtime directory (ini, secret) and the real
ws-server binary, plus a Python client of the publish socket and an HS256
token minter written independently of the C code (so a bug in one does not
hide a bug in the other)."""
import atexit
import base64
import hashlib
import hmac
import json
import os
import pathlib
import signal
import socket
import struct
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("WSPUSH_BIN", ROOT / "build" / "bin"))
SECRET = b"integration-test-secret-0123456789"


# Every redis-server an Env started, stopped at exit whatever happened.
_redis_started = []


def _stop_redis_servers():
    for r in _redis_started:
        try:
            r.stop()
        except Exception:
            pass


atexit.register(_stop_redis_servers)


_ports_given = set()


def free_port():
    """A port nothing listens on now, and never one this process handed
    out before: the kernel may give a just-closed port again, and two
    servers of one test must not be told the same port."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise AssertionError("no free port not handed out before in 100 tries")


def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def stop_process(p, sig=signal.SIGTERM, timeout=10.0):
    """Signals p and returns its exit status; kills it and raises when it
    does not exit in time."""
    if p is None:
        return None
    if p.poll() is None:
        p.send_signal(sig)
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise


def run_as(uid, gid, script, timeout=10):
    """Runs the Python source `script` as uid:gid and returns the finished
    subprocess.run result (text output captured). The other user must not
    need to read the checkout (a clone under a 0700 home or `mktemp -d`
    is not readable by it): the script and this module, which it may
    import, are copied into a fresh 0755 directory that is its working
    directory and first import path, removed afterwards."""
    import shutil
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="wspush-as-user-"))
    try:
        os.chmod(d, 0o755)
        shutil.copyfile(__file__, d / "harness.py")
        (d / "script.py").write_text(script)
        for f in ("harness.py", "script.py"):
            os.chmod(d / f, 0o644)
        return subprocess.run(["/usr/bin/python3", "-B", str(d / "script.py")], cwd=d,
                              capture_output=True, text=True, timeout=timeout,
                              user=uid, group=gid, extra_groups=[],
                              env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    finally:
        shutil.rmtree(d, ignore_errors=True)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_token(sub="alice", channels=("user/alice/*",), exp_in=300, secret=SECRET,
               alg="HS256", claims=None):
    header = {"alg": alg, "typ": "JWT"}
    body = {"sub": sub, "channels": list(channels)}
    if exp_in is not None:
        body["exp"] = int(time.time()) + exp_in
    if claims:
        body.update(claims)
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(body).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}.get(alg)
    sig = b64url(hmac.new(secret, signing.encode(), digest).digest()) if digest else ""
    return signing + "." + sig


class IpcError(Exception):
    def __init__(self, code, text):
        super().__init__(f"ipc error {code}: {text}")
        self.code, self.text = code, text


class PublishClient:
    """Speaks the publish-socket protocol (see shared/ipc.h)."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.next_id = 1
        self.rbuf = b""

    def close(self):
        self.sock.close()

    @staticmethod
    def frame(type_, req_id, body):
        return struct.pack(">IBI", 5 + len(body), type_, req_id) + body

    def publish_frame(self, channels, data):
        if isinstance(channels, str):
            channels = [channels]
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        body = bytes([len(channels)])
        for c in channels:
            c = c.encode()
            body += bytes([len(c)]) + c
        body += struct.pack(">I", len(raw)) + raw
        rid = self.next_id
        self.next_id += 1
        return rid, self.frame(0x01, rid, body)

    def read_answer(self):
        while True:
            if len(self.rbuf) >= 4:
                (n,) = struct.unpack(">I", self.rbuf[:4])
                if len(self.rbuf) >= 4 + n:
                    f, self.rbuf = self.rbuf[4:4 + n], self.rbuf[4 + n:]
                    return f[0], struct.unpack(">I", f[1:5])[0], f[5:]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("publish socket closed")
            self.rbuf += chunk

    @staticmethod
    def decode(type_, body):
        if type_ == 0x81:
            (subs,) = struct.unpack(">I", body[:4])
            return {"subscribers": subs, "id": body[5:5 + body[4]].decode()}
        if type_ == 0x82:
            return {"disconnected": struct.unpack(">I", body[:4])[0]}
        if type_ == 0xFF:
            (code,) = struct.unpack(">H", body[:2])
            raise IpcError(code, body[3:3 + body[2]].decode())
        raise AssertionError(f"unexpected answer type {type_:#x}")

    def publish(self, channels, data):
        rid, f = self.publish_frame(channels, data)
        self.sock.sendall(f)
        t, got, body = self.read_answer()
        assert got == rid
        return self.decode(t, body)

    def disconnect(self, user):
        rid = self.next_id
        self.next_id += 1
        u = user.encode()
        self.sock.sendall(self.frame(0x02, rid, bytes([len(u)]) + u))
        t, got, body = self.read_answer()
        assert got == rid
        return self.decode(t, body)["disconnected"]


DEFAULT_WS = {
    "handshake_timeout": "2000",
    "ping_interval": "30000",
    "pong_timeout": "5000",
    "close_timeout": "1000",
}


class Env:
    """A runtime directory with wspush.ini and a secret; starts ws-server."""

    def __init__(self, tmp_path, ws=None, publisher=None, channels=None, wspush=None,
                 own_redis=None):
        self.dir = pathlib.Path(tmp_path)
        self.secret_file = self.dir / "secret"
        self.secret_file.write_bytes(SECRET + b"\n")
        self.ws_port = free_port()
        self.publish_socket = self.dir / "publish.sock"
        self.ini_path = self.dir / "wspush.ini"
        self.sections = {
            "wspush": {"publish_socket": str(self.publish_socket),
                       "secret_file": str(self.secret_file), "log_level": "debug"},
            "ws-server": {"listen": f"127.0.0.1:{self.ws_port}", **DEFAULT_WS},
            "publisher": {},
            "channels": {"public": "public/* news"},
        }
        for name, extra in (("ws-server", ws), ("publisher", publisher),
                            ("channels", channels), ("wspush", wspush)):
            if extra:
                self.sections[name].update(extra)
        self.ws_proc = None
        self.ws_log = self.dir / "ws-server.log"
        self.ws_user = None      # (uid, gid) to run ws-server as, no other groups
        # The Redis pass (WSPUSH_ENGINE=redis): this node gets a redis-server
        # of its own, on a socket in its directory, stopped with it.
        self.redis = None
        if own_redis is None:
            own_redis = os.environ.get("WSPUSH_ENGINE", "memory") == "redis"
        if own_redis:
            from redis_servers import RedisServer, redis_ini
            self.redis = RedisServer(self.dir)
            _redis_started.append(self.redis)
            self.sections["ws-server"]["engine"] = "redis"
            # Loaded suites (big messages, many publishes) on 2 shared
            # cores: a longer command_timeout than the fault tests use.
            self.sections["redis"] = redis_ini(self.redis, command_timeout="3s")
        self.write_ini()

    def write_ini(self):
        if self.__dict__.get("redis") is not None:
            # The per-channel history of the Redis pass keeps what the
            # memory engine's global history would (default 1000).
            self.sections["redis"]["channel_history_size"] = \
                self.sections["ws-server"].get("history_size", "1000")
        lines = []
        for name, kv in self.sections.items():
            lines.append(f"[{name}]")
            for k, v in kv.items():
                for item in (v if isinstance(v, list) else [v]):
                    lines.append(f"{k} = {item}")
            lines.append("")
        self.ini_path.write_text("\n".join(lines))

    def ws_url(self, query=""):
        return f"ws://127.0.0.1:{self.ws_port}/ws" + (f"?{query}" if query else "")

    def start_ws(self, args=()):
        log = open(self.ws_log, "ab")
        as_user = {}
        if self.ws_user:
            as_user = {"user": self.ws_user[0], "group": self.ws_user[1], "extra_groups": []}
        self.ws_proc = subprocess.Popen([str(BIN / "ws-server"), "-c", str(self.ini_path), *args],
                                        stdout=log, stderr=log, **as_user)
        log.close()

        def up():
            if self.ws_proc.poll() is not None:
                raise RuntimeError("ws-server exited: " + self.log_text())
            try:
                with socket.create_connection(("127.0.0.1", self.ws_port), timeout=0.2):
                    pass
            except OSError:
                return False
            return self.publish_socket.exists()
        wait_for(up, what="ws-server to listen")
        if self.redis is not None:
            # Up means Redis reached too: a publish before that is a 503.
            def reached():
                if self.ws_proc.poll() is not None:
                    raise RuntimeError("ws-server exited: " + self.log_text())
                return self.log_text().count("PUB/SUB connection up") > self._redis_ups
            wait_for(reached, what="ws-server to reach Redis")
            self._redis_ups = self.log_text().count("PUB/SUB connection up")
        return self.ws_proc

    _redis_ups = 0

    def stop_ws(self, sig=signal.SIGTERM, timeout=5.0):
        p, self.ws_proc = self.ws_proc, None
        return stop_process(p, sig, timeout)

    def stop_redis(self):
        if self.redis is not None:
            self.redis.stop()

    def reload_ws(self, line="configuration reloaded"):
        """SIGHUP; returns once the log has one more `line` (a reload's
        outcome) than before."""
        seen = self.log_text().count(line)
        self.ws_proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.log_text().count(line) > seen, what=line)

    def log_text(self):
        try:
            return self.ws_log.read_text(errors="replace")
        except OSError:
            return ""

    def client(self):
        return PublishClient(self.publish_socket)

    def publish(self, channels, data):
        c = self.client()
        try:
            return c.publish(channels, data)
        finally:
            c.close()

    def disconnect(self, user):
        c = self.client()
        try:
            return c.disconnect(user)
        finally:
            c.close()


# ---- a raw WebSocket client, for what a well-behaved library will not send

def nodelay(s):
    """TCP_NODELAY, as browsers and asyncio set it. Over TLS 1.3 the
    server sends nothing after the client's Finished (no session tickets),
    so without it the request written right after Finished waits for the
    server's delayed ACK (some 40 ms) under Nagle."""
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def ws_handshake(port, path="/ws?channels=public/a", origin=None, extra=b"", host="127.0.0.1",
                 wrap=None):
    """Opens a socket, sends an upgrade request, returns (sock, status, headers_bytes, rest).
    wrap(sock), when given, returns the socket to speak through (TLS)."""
    s = socket.create_connection((host, port), timeout=5)
    if wrap:
        s = wrap(nodelay(s))
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if origin:
        req += f"Origin: {origin}\r\n"
    s.sendall(req.encode() + extra + b"\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return s, status, head, rest


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if length is None else length
    if n < 126:
        hdr = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        hdr = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWs:
    """A socket after a successful upgrade; reads server frames."""

    def __init__(self, port, path="/ws?channels=public/a", origin=None, wrap=None, extra=b""):
        self.sock, self.status, self.head, self.buf = ws_handshake(port, path, origin, extra,
                                                                   wrap=wrap)
        self.last_b0 = None     # first byte of the last frame read (FIN, RSV, opcode)

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self, timeout=5.0):
        """Returns (opcode, payload) or None on EOF."""
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                off = 2
                if n == 126:
                    if len(self.buf) < 4:
                        n = None
                    else:
                        n, off = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127:
                    if len(self.buf) < 10:
                        n = None
                    else:
                        n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
                if n is not None and len(self.buf) >= off + n:
                    self.last_b0 = self.buf[0]
                    op, payload = self.buf[0] & 0x0F, self.buf[off:off + n]
                    self.buf = self.buf[off + n:]
                    return op, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def recv_close(self, timeout=5.0):
        """Skips data frames; returns the close code (or None on EOF first)."""
        while True:
            f = self.recv_frame(timeout)
            if f is None:
                return None
            if f[0] == 0x8:
                return struct.unpack(">H", f[1][:2])[0] if len(f[1]) >= 2 else 1005

    def close(self):
        self.sock.close()


def slow_reader(port, request):
    """A socket that sends request and then reads nothing, its receive
    buffer small: a slow consumer for the send budget tests."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(request)
    return s


# ---- a raw Server-Sent Events client

class SseClient:
    """GET /sse as EventSource sends it, over a raw socket: the status and
    headers, then the body, de-chunked when a proxy chunks it. raw holds
    every body byte read (for byte-exact checks); event() parses them by
    the WHATWG event-stream rules (CR, LF, CRLF line ends; data lines
    joined with LF; id; event; comments kept apart). wrap(sock), when
    given, returns the socket to speak through (TLS)."""

    def __init__(self, port, path="/sse?channels=public/a", headers=None, host="127.0.0.1",
                 timeout=5.0, wrap=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if wrap:
            self.sock = wrap(nodelay(self.sock))
        h = {"Host": f"{host}:{port}", "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        h.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        self.sock.sendall(req.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if head else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.wire = rest          # body bytes as received (maybe chunked)
        self.buf = b""            # decoded, not yet parsed
        self.raw = b""            # decoded, every byte so far
        self.eof = False
        self.comments = []
        self._decode()

    def _decode(self):
        if not self.chunked:
            self.buf += self.wire
            self.raw += self.wire
            self.wire = b""
            return
        while True:
            line, sep, rest = self.wire.partition(b"\r\n")
            if not sep:
                return
            n = int(line.split(b";")[0], 16)
            if n == 0:
                self.eof = True
                self.wire = b""
                return
            if len(rest) < n + 2:
                return
            self.buf += rest[:n]
            self.raw += rest[:n]
            self.wire = rest[n + 2:]

    def _fill(self, timeout):
        if self.eof:
            return False
        self.sock.settimeout(timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            return False
        self.wire += chunk
        self._decode()
        return True

    def body(self, timeout=5.0):
        """The whole body of a refusal: Content-Length bytes (a proxy may
        keep the connection open after it), else up to the end."""
        deadline = time.monotonic() + timeout
        n = int(self.headers.get("content-length", -1))
        while (n < 0 or len(self.buf) < n) and self._fill(max(0.05, deadline - time.monotonic())):
            pass
        return self.buf

    def _line(self, deadline):
        while True:
            for i, c in enumerate(self.buf):
                if c == 0x0A or (c == 0x0D and i + 1 < len(self.buf)):
                    end = i + 1 if c == 0x0A or self.buf[i + 1] != 0x0A else i + 2
                    line, self.buf = self.buf[:i], self.buf[end:]
                    return line.decode()
            if not self._fill(max(0.05, deadline - time.monotonic())):
                return None

    def event(self, timeout=5.0):
        """The next dispatched event as {event, data, id} (id None when the
        event set none), or None at the end of the stream."""
        deadline = time.monotonic() + timeout
        ev = {"event": "message", "data": [], "id": None}
        while True:
            line = self._line(deadline)
            if line is None:
                return None
            if line == "":
                if ev["data"]:
                    ev["data"] = "\n".join(ev["data"])
                    return ev
                ev = {"event": "message", "data": [], "id": None}
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                ev["data"].append(value)
            elif name == "event":
                ev["event"] = value
            elif name == "id":
                ev["id"] = value

    def json_event(self, timeout=5.0):
        ev = self.event(timeout)
        assert ev is not None, "stream ended"
        return ev["event"], json.loads(ev["data"]), ev["id"]

    def close(self):
        self.sock.close()
