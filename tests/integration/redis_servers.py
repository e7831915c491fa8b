"""Real redis-server processes for the tests of the Redis engine: one class
to start, stop, pause and restart a server on a temporary Unix socket (and,
when asked, a loopback TCP port, for replicas and Sentinel), plus a small
RESP client to look at what ws-server wrote. Every wait is bounded. The one
place that knows how to run Redis for the tests: harness.py (WSPUSH_ENGINE=
redis) and the cluster tests use it."""
import contextlib
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


class RespError(Exception):
    pass


class Resp:
    """A blocking RESP2 client: enough to inspect keys and drive a server
    from a test (no library: the tests must not need redis-py)."""

    def __init__(self, address, timeout=5.0):
        if isinstance(address, tuple):
            self.sock = socket.create_connection(address, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX)
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

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RespError("bad reply %r" % line)

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def command(self, *args):
        self.send(*args)
        return self.read()


class RedisServer:
    """redis-server on dir/<name>.sock (and 127.0.0.1:port when tcp=True),
    no persistence unless persist=True (then RDB in dir on SIGTERM and
    appendonly everysec), started at once; stop() / kill() / pause() /
    resume() / restart() for fault tests. `address` is what [redis]
    address takes."""

    def __init__(self, dir, name="redis", tcp=False, persist=False, replicaof=None,
                 extra=()):
        self.dir = pathlib.Path(dir)
        self.name = name
        self.socket = self.dir / f"{name}.sock"
        self.port = free_port() if tcp or replicaof else 0
        self.persist = persist
        self.replicaof = replicaof
        self.extra = list(extra)
        self.log = self.dir / f"{name}.log"
        self.proc = None
        self.paused = False
        self.start()

    @property
    def address(self):
        return str(self.socket)

    def args(self):
        a = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.dir), "--dbfilename", f"{self.name}.rdb",
             "--logfile", str(self.log), "--daemonize", "no",
             "--protected-mode", "no"]
        if self.persist:
            a += ["--save", "", "--appendonly", "yes", "--appendfsync", "always",
                  "--appendfilename", f"{self.name}.aof",
                  "--appenddirname", f"{self.name}-aof"]
        else:
            a += ["--save", "", "--appendonly", "no"]
        if self.replicaof:
            a += ["--replicaof", "127.0.0.1", str(self.replicaof.port)]
        return a + self.extra

    def start(self, timeout=10.0):
        try:
            self.socket.unlink()
        except FileNotFoundError:
            pass
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.paused = False

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: " + self.log_text()[-2000:])
            try:
                with Resp(self.socket, timeout=0.5) as r:
                    return r.command("PING") == "PONG"
            except (OSError, ConnectionError, RespError):
                return False
        wait_for(up, timeout=timeout, what="redis-server to answer")
        return self

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def client(self):
        return Resp(self.socket)

    def command(self, *args):
        with self.client() as r:
            return r.command(*args)

    def pause(self):
        """SIGSTOP: the server keeps its connections but answers nothing."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout=10.0):
        if self.proc is None:
            return None
        if self.paused:
            self.resume()
        p, self.proc = self.proc, None
        return stop_process(p, signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL: what was not persisted is lost."""
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        p.kill()
        p.wait(10)
        self.paused = False

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)

    def run_id(self):
        return self.info_field("server", "run_id")

    def info_field(self, section, name):
        info = self.command("INFO", section).decode()
        for line in info.splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
        return None

    def server_id(self):
        """What a node keys its epoch and revocation hashes with: the run_id
        and the replication id (new on a restart, a promotion, a resync)."""
        return self.run_id() + ":" + self.info_field("replication", "master_replid")


def redis_ini(server, prefix="wspush:", **extra):
    """The [redis] section for a node using server."""
    sec = {"address": server.address, "prefix": prefix,
           "connect_timeout": "500ms", "command_timeout": "500ms",
           "probe_interval": "200ms"}
    sec.update({k: str(v) for k, v in extra.items()})
    return sec


def engine_is_redis():
    """True when the suites run their second, Redis-engine pass."""
    return os.environ.get("WSPUSH_ENGINE", "memory") == "redis"


# ---- replication, Sentinel and ws-server nodes: the cluster and fault tests

REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
MASTER_NAME = "wspush"


def info(server, section):
    """INFO <section> of a RedisServer as a dict of str."""
    out = {}
    for line in server.command("INFO", section).decode().splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def wait_synced(replica, timeout=10.0):
    """Until a replica's link to its master is up and the first sync done."""
    def synced():
        i = info(replica, "replication")
        return i.get("master_link_status") == "up" and i.get("master_sync_in_progress") == "0"
    wait_for(synced, timeout, f"{replica.name} to sync with its master")


class Sentinel:
    """redis-sentinel in dir watching master (a RedisServer with a TCP
    port) under MASTER_NAME: quorum 1, down after 500 ms, failover timeout
    3 s, so a killed master is replaced within a few seconds. Sentinel
    speaks TCP only (127.0.0.1) and rewrites its config file, which lives
    in dir."""

    def __init__(self, dir, master, down_after_ms=500, failover_timeout_ms=3000):
        self.dir = pathlib.Path(dir)
        self.port = free_port()
        self.conf = self.dir / "sentinel.conf"
        self.log = self.dir / "sentinel.log"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\n"
            f"dir {self.dir}\nlogfile {self.log}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n")
        self.proc = subprocess.Popen([REDIS_SENTINEL, str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("redis-sentinel exited: " + self.log_text()[-2000:])
            try:
                return self.command("PING") == "PONG"
            except (OSError, ConnectionError, RespError):
                return False
        wait_for(up, 10.0, "redis-sentinel to answer")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def command(self, *args):
        with Resp(("127.0.0.1", self.port)) as r:
            return r.command(*args)

    def master_port(self):
        r = self.command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return int(r[1]) if r else None

    def wait_replicas(self, n, timeout=15.0):
        """Until the sentinel knows n replicas of the master, up and linked
        (it learns them from the master's INFO)."""
        def known():
            up = 0
            for r in self.command("SENTINEL", "replicas", MASTER_NAME):
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
        if self.proc is not None:
            p, self.proc = self.proc, None
            stop_process(p, signal.SIGTERM, 5.0)


def redis_node(dir, server, name="node", prefix="wspush:", ws=None, **redis_extra):
    """An Env (harness.py) for one ws-server node on server, ini written,
    not started: call .start_ws()."""
    return Node(dir, name, redis=server, ws=ws, redis_keys={"prefix": prefix, **redis_extra})


def wait_redis_up(env, timeout=5.0):
    """Until the node's log says it reached Redis (command and PUB/SUB)."""
    wait_for(lambda: "PUB/SUB connection up" in env.log_text(), timeout=timeout,
             what="ws-server to reach Redis")


class Node(Env):
    """One ws-server of a cluster: an Env in its own directory under
    tmp_path (same SECRET as every Env) with engine = redis on server, or
    on the master sentinel names."""

    def __init__(self, tmp_path, name, redis=None, sentinel=None, ws=None, redis_keys=None,
                 channels=None):
        d = pathlib.Path(tmp_path) / name
        d.mkdir(parents=True, exist_ok=True)
        super().__init__(d, ws={"engine": "redis", **(ws or {})}, channels=channels, own_redis=False)
        self.name = name
        keys = dict(redis_keys or {})
        if sentinel is not None:
            sec = redis_ini(redis or sentinel, **keys)
            del sec["address"]
            sec.update({"sentinels": sentinel.address, "master_name": MASTER_NAME})
        else:
            sec = redis_ini(redis, **keys)
        self.sections["redis"] = sec
        self.write_ini()


class Cluster:
    """n ws-server nodes on one Redis (or one Sentinel); stop() stops them
    and asserts each exited 0 (a sanitizer report makes it exit non-zero);
    a node the test killed with SIGKILL is let be."""

    def __init__(self, tmp_path, redis=None, sentinel=None, n=2, prefix="node", **node_kw):
        self.tmp_path = tmp_path
        self.prefix = prefix
        self.redis, self.sentinel = redis, sentinel
        self.node_kw = node_kw
        self.nodes = []
        for _ in range(n):
            self.add()

    def add(self, start=False):
        node = Node(self.tmp_path, self.prefix + "abcdefgh"[len(self.nodes)], self.redis,
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
            if n.ws_proc.poll() == -signal.SIGKILL:
                n.ws_proc = None
                continue
            try:
                rc = n.stop_ws()
            except subprocess.TimeoutExpired:
                rc = "no exit in time"
            if rc != 0:
                bad.append(f"{n.name} exited {rc!r}:\n{n.log_text()[-3000:]}")
        assert not bad, "\n".join(bad)


class FreezingProxy:
    """A Unix-socket proxy in front of a Redis server, forwarding both ways
    on a thread per direction; freeze(n) stops forwarding Redis's bytes to
    the n-th connection accepted (0-based) without closing anything: the
    silently dead connection a liveness probe has to find. tcp=True: on
    127.0.0.1:port to the server's TCP port instead (a replica's link to
    its master: RedisServer(replicaof=proxy))."""

    def __init__(self, dir, server, name="proxy", tcp=False):
        import threading
        self.path = pathlib.Path(dir) / f"{name}.sock"
        self.server = server
        self.frozen = set()
        self.conns = 0
        self.tcp = tcp
        self.port = free_port() if tcp else 0
        self.lsock = socket.socket(socket.AF_INET if tcp else socket.AF_UNIX)
        self.lsock.bind(("127.0.0.1", self.port) if tcp else str(self.path))
        self.lsock.listen(16)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return str(self.path)

    def _pump(self, src, dst, index, down):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if down and index in self.frozen:
                    continue          # swallowed: the client waits forever
                dst.sendall(data)
        except OSError:
            pass
        self._hang_up(src, dst)

    @staticmethod
    def _hang_up(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self):
        import threading
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.tcp:
                up = socket.create_connection(("127.0.0.1", self.server.port))
            else:
                up = socket.socket(socket.AF_UNIX)
                up.connect(str(self.server.socket))
            i = self.conns
            self.conns += 1
            threading.Thread(target=self._pump, args=(c, up, i, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, c, i, True), daemon=True).start()

    def freeze(self, index):
        self.frozen.add(index)

    def close(self):
        self.stopping = True
        self.lsock.close()



class SlowRepliesProxy(FreezingProxy):
    """A FreezingProxy whose Redis bytes to the first connection accepted
    (a node's command connection) leave `delay` seconds after they came,
    in order: commands answered late, PUB/SUB on time. A subclass picks
    other bytes to delay by overriding late()."""

    def __init__(self, dir, server, delay=0.3, name="proxy", tcp=False):
        self.delay = delay
        super().__init__(dir, server, name, tcp)

    def late(self, index, down, data):
        """Seconds these bytes of connection `index` wait (down: Redis to
        the node); 0 = at once."""
        return self.delay if down and index == 0 else 0

    def _pump(self, src, dst, index, down):
        import queue
        import threading
        late = queue.Queue()

        def send_late():
            while (item := late.get()) is not None:
                time.sleep(max(0.0, item[0] - time.monotonic()))
                try:
                    dst.sendall(item[1])
                except OSError:
                    return
        sender = threading.Thread(target=send_late, daemon=True)
        sender.start()
        try:
            while data := src.recv(65536):
                # Through the one queue even when on time: bytes keep their order.
                late.put((time.monotonic() + self.late(index, down, data), data))
        except OSError:
            pass
        late.put(None)
        sender.join(5)
        self._hang_up(src, dst)

@contextlib.contextmanager
def freezable_pair(tmp_path, a=None, b=None):
    """A Redis, node A on it directly and node B through a FreezingProxy:
    proxy.freeze(1) silences B's PUB/SUB connection, which stays open (a
    dead connection only the probe finds). a, b: functions of the Redis
    server making each node (default: redis_node named "a", "b"); both are
    started and linked. Yields (redis, proxy, a, b); at the end each node
    must have exited 0, and the proxy and Redis are closed."""
    redis = RedisServer(tmp_path)
    proxy = FreezingProxy(tmp_path, redis)
    na = (a or (lambda r: redis_node(tmp_path, r, "a")))(redis)
    nb = (b or (lambda r: redis_node(tmp_path, r, "b")))(redis)
    nb.sections["redis"]["address"] = proxy.address
    nb.write_ini()
    started = []
    try:
        for n in (na, nb):
            n.start_ws()
            started.append(n)
            wait_redis_up(n)
        yield redis, proxy, na, nb
    finally:
        rcs = [(n.name, n.stop_ws()) for n in started]
        proxy.close()
        redis.stop()
    assert all(rc == 0 for _, rc in rcs), rcs


# ---- pytest fixtures (a test module imports the ones it uses by name)

try:
    import pytest
except ImportError:          # imported by a script outside pytest
    pytest = None

if pytest is not None:
    @pytest.fixture
    def redis_factory():
        """.server(tcp=False, persist=False, replicaof=None) -> a started
        RedisServer; .sentinel(master) -> a started Sentinel; each in a
        short directory of its own (a Unix socket path must fit in 108
        bytes), all stopped and removed at the end whatever happened."""
        made, dirs = [], []

        def fresh_dir():
            d = tempfile.mkdtemp(prefix="wsr-")
            dirs.append(d)
            return d

        class Factory:
            @staticmethod
            def server(**kw):
                r = RedisServer(fresh_dir(), **kw)
                made.append(r)
                return r

            @staticmethod
            def sentinel(master, **kw):
                s = Sentinel(fresh_dir(), master, **kw)
                made.append(s)
                return s
        try:
            yield Factory
        finally:
            for r in reversed(made):
                try:
                    r.stop()
                except subprocess.TimeoutExpired:
                    pass
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)

    @pytest.fixture
    def cluster_factory(tmp_path, redis_factory):
        """make(redis=..., sentinel=..., n=2, ws=..., redis_keys=...,
        start=True) -> a Cluster; its nodes are stopped (and must exit 0)
        before Redis is."""
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
