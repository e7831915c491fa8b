"""Real Redis for the tests: redis-server on a temporary Unix socket (and a
127.0.0.1 port when a replica or Sentinel needs TCP), with or without
persistence, a replica, redis-sentinel, SIGSTOP/SIGCONT, SIGKILL and a
restart on the same socket and directory; a small RESP client of our own
(no python3-redis needed); and ws-server nodes on one Redis
(engine = redis, one secret, each its own port and publish socket).

Everything is bounded in time and stopped by the fixtures even when a test
fails. The directories are short (mkdtemp under /tmp): a Unix socket path
must fit in 108 bytes, and pytest's tmp_path may not."""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import Env, free_port, stop_process, wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
MASTER_NAME = "wspush"


class RespError(Exception):
    """An error reply (-ERR ...) from Redis."""


class Resp:
    """A blocking RESP2 client of one connection: commands in, replies out."""

    def __init__(self, address, timeout=2.0):
        if isinstance(address, tuple):
            self.sock = socket.create_connection(address, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(address))
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._bytes(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError(f"bad RESP line {line!r}")

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        r = self.reply()
        if isinstance(r, RespError):
            raise r
        return r


def info(conn, section):
    """INFO <section> as a dict of str."""
    text = conn.call("INFO", section).decode()
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            out[k] = v
    return out


class RedisServer:
    """One redis-server in its own directory. socket is its Unix socket;
    port (when tcp=True or replicaof is given) a 127.0.0.1 port.
    persistent=True: appendonly yes, appendfsync always (every acked write
    survives a SIGKILL); else no RDB, no AOF (a restart comes back empty)."""

    def __init__(self, persistent=False, tcp=False, replicaof=None, name="redis"):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="wsr-"))
        os.chmod(self.dir, 0o700)
        self.name = name
        self.socket = self.dir / "redis.sock"
        self.port = free_port() if (tcp or replicaof) else 0
        self.persistent = persistent
        self.replicaof = replicaof
        self.log = self.dir / "redis.log"
        self.proc = None

    def argv(self):
        a = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.dir), "--logfile", str(self.log), "--daemonize", "no",
             "--save", ""]
        a += (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
              else ["--appendonly", "no"])
        if self.replicaof:
            a += ["--replicaof", "127.0.0.1", str(self.replicaof.port)]
        return a

    def start(self, timeout=5.0):
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_text()[-2000:]}")
            try:
                with self.client(0.5) as c:
                    # A replica answers PING while loading, LOADING errors
                    # come from other commands; a fresh master has loaded.
                    return c.call("PING") == "PONG" and info(c, "persistence").get("loading") == "0"
            except (OSError, ConnectionError, RespError):
                return False
        wait_for(up, timeout, f"{self.name} to answer")
        return self

    @property
    def address(self):
        """The ini value of [redis] address for this server."""
        return str(self.socket)

    @property
    def tcp_address(self):
        return f"127.0.0.1:{self.port}"

    def client(self, timeout=2.0):
        return Resp(self.socket, timeout)

    def call(self, *args):
        with self.client() as c:
            return c.call(*args)

    def info(self, section):
        with self.client() as c:
            return info(c, section)

    def pause(self):
        """SIGSTOP: Redis holds every connection and answers nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        """SIGKILL, as a crash or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)   # a stopped process dies too, but be sure
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, timeout=10.0):
        """A new process on the same socket, port and directory (a persistent
        server reads its AOF back before it answers)."""
        self.kill()
        try:
            self.socket.unlink()
        except FileNotFoundError:
            pass
        return self.start(timeout)

    def wait_synced(self, timeout=10.0):
        """A replica: until its link to the master is up and caught up."""
        def synced():
            i = self.info("replication")
            return i.get("master_link_status") == "up" and i.get("master_sync_in_progress") == "0"
        wait_for(synced, timeout, f"{self.name} to sync with its master")

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            try:
                stop_process(self.proc, signal.SIGTERM, 5.0)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Sentinel:
    """One redis-sentinel watching master (a RedisServer with a TCP port)
    under MASTER_NAME: quorum 1, down after 500 ms, failover timeout 3 s,
    so a killed master is replaced within a few seconds."""

    def __init__(self, master, down_after_ms=500, failover_timeout_ms=3000):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="wss-"))
        self.port = free_port()
        self.conf = self.dir / "sentinel.conf"
        self.log = self.dir / "sentinel.log"
        # Sentinel rewrites its config file: it lives in the temp dir.
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\n"
            f"dir {self.dir}\nlogfile {self.log}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n")
        self.proc = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def client(self, timeout=2.0):
        return Resp(("127.0.0.1", self.port), timeout)

    def call(self, *args):
        with self.client() as c:
            return c.call(*args)

    def start(self, timeout=5.0):
        self.proc = subprocess.Popen([REDIS_SENTINEL, str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("redis-sentinel exited: " + self.log_text()[-2000:])
            try:
                return self.call("PING") == "PONG"
            except (OSError, ConnectionError, RespError):
                return False
        wait_for(up, timeout, "redis-sentinel to answer")
        return self

    def master_port(self):
        r = self.call("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return int(r[1]) if r else None

    def wait_replicas(self, n, timeout=15.0):
        """Until the sentinel knows n replicas of the master that are up
        (it learns them from the master's INFO, every few seconds)."""
        def known():
            rs = self.call("SENTINEL", "replicas", MASTER_NAME)
            up = 0
            for r in rs:
                d = dict(zip(r[0::2], r[1::2]))
                if b"s_down" not in d.get(b"flags", b"") and d.get(b"master-link-status") == b"ok":
                    up += 1
            return up >= n
        wait_for(known, timeout, f"sentinel to see {n} replica(s)")

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                stop_process(self.proc, signal.SIGTERM, 5.0)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- ws-server nodes on Redis

REDIS_TEST_KEYS = {
    # Short, so the fault tests see Redis's silence within a second; the
    # defaults (1 s) would do but slow every fault test down.
    "connect_timeout": "500",
    "command_timeout": "500",
    "probe_interval": "300",
}


def redis_section(redis=None, sentinel=None, **extra):
    """The [redis] section of a node on this server (or, with sentinel,
    on whatever master the sentinel names)."""
    s = dict(REDIS_TEST_KEYS)
    if sentinel is not None:
        s["sentinels"] = sentinel.address
        s["master_name"] = MASTER_NAME
    else:
        s["address"] = redis.address
    s.update({k: str(v) for k, v in extra.items()})
    return s


class Node(Env):
    """One ws-server of a cluster: an Env in its own directory (same
    SECRET as every other Env) with engine = redis."""

    def __init__(self, tmp_path, name, redis=None, sentinel=None, ws=None, redis_keys=None,
                 channels=None):
        d = pathlib.Path(tmp_path) / name
        d.mkdir(parents=True, exist_ok=True)
        super().__init__(d, ws={"engine": "redis", **(ws or {})}, channels=channels)
        self.name = name
        self.sections["redis"] = redis_section(redis, sentinel, **(redis_keys or {}))
        self.write_ini()


class Cluster:
    """n ws-server nodes on one Redis (or one Sentinel); stop() stops them
    and asserts each exited 0 (a sanitizer report makes it exit non-zero)."""

    def __init__(self, tmp_path, redis=None, sentinel=None, n=2, **node_kw):
        self.tmp_path = tmp_path
        self.redis, self.sentinel = redis, sentinel
        self.node_kw = node_kw
        self.nodes = []
        for i in range(n):
            self.add()

    def add(self, start=False):
        node = Node(self.tmp_path, "node" + "abcdefgh"[len(self.nodes)], self.redis,
                    self.sentinel, **self.node_kw)
        self.nodes.append(node)
        if start:
            node.start_ws()
        return node

    def start(self):
        for n in self.nodes:
            n.start_ws()
        return self

    def __getitem__(self, i):
        return self.nodes[i]

    def stop(self):
        bad = []
        for n in self.nodes:
            if n.ws_proc is None:
                continue
            if n.ws_proc.poll() is not None and n.ws_proc.returncode == -signal.SIGKILL:
                n.ws_proc = None   # killed by the test
                continue
            try:
                rc = n.stop_ws()
            except subprocess.TimeoutExpired:
                rc = "timeout"
            if rc != 0:
                bad.append(f"{n.name} exited {rc!r}:\n{n.log_text()[-3000:]}")
        assert not bad, "\n".join(bad)


# ---- pytest fixtures (import them into a test module by name)

try:
    import pytest
except ImportError:        # imported by a script outside pytest
    pytest = None

if pytest is not None:
    @pytest.fixture
    def redis_factory():
        """make(persistent=False, tcp=False, replicaof=None) -> a started
        RedisServer; sentinel(master) -> a started Sentinel. All are
        stopped at the end of the test, whatever happened."""
        made = []

        class Factory:
            @staticmethod
            def server(**kw):
                r = RedisServer(**kw)
                made.append(r)
                return r.start()

            @staticmethod
            def sentinel(master, **kw):
                s = Sentinel(master, **kw)
                made.append(s)
                return s.start()
        try:
            yield Factory
        finally:
            for r in reversed(made):
                r.stop()

    @pytest.fixture
    def cluster_factory(tmp_path, redis_factory):
        """make(redis=..., sentinel=..., n=2, ws=..., redis_keys=...) -> a
        started Cluster; its nodes are stopped (and must exit 0) at the end."""
        made = []

        def make(start=True, **kw):
            c = Cluster(tmp_path, **kw)
            made.append(c)
            return c.start() if start else c
        try:
            yield make
        finally:
            errors = []
            for c in made:
                try:
                    c.stop()
                except AssertionError as e:
                    errors.append(str(e))
            assert not errors, "\n".join(errors)

    @pytest.fixture
    def redis_server(redis_factory):
        return redis_factory.server()

    @pytest.fixture
    def cluster(redis_server, cluster_factory):
        """Two nodes on one non-persistent Redis."""
        return cluster_factory(redis=redis_server)
