"""Real redis-server processes for the tests of the Redis engine: one class
to start, stop, pause and restart a server on a temporary Unix socket (and,
when asked, a loopback TCP port, for replicas and Sentinel), plus a small
RESP client to look at what ws-server wrote. Every wait is bounded. The one
place that knows how to run Redis for the tests: harness.py (WSPUSH_ENGINE=
redis) and the cluster tests use it."""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

from harness import free_port, stop_process, wait_for

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
        info = self.command("INFO", "server").decode()
        for line in info.splitlines():
            if line.startswith("run_id:"):
                return line.split(":", 1)[1].strip()
        return None


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


def redis_node(dir, server, name="node", prefix="wspush:", ws=None, **redis_extra):
    """An Env (harness.py) for one ws-server node on server, ini written,
    not started: call .start_ws()."""
    from harness import Env
    d = pathlib.Path(dir) / name
    d.mkdir(parents=True, exist_ok=True)
    e = Env(d, ws={"engine": "redis", **(ws or {})}, own_redis=False)
    e.sections["redis"] = redis_ini(server, prefix=prefix, **redis_extra)
    e.write_ini()
    return e


def wait_redis_up(env, timeout=5.0):
    """Until the node's log says it reached Redis (command and PUB/SUB)."""
    wait_for(lambda: "PUB/SUB connection up" in env.log_text(), timeout=timeout,
             what="ws-server to reach Redis")


class FreezingProxy:
    """A Unix-socket proxy in front of a Redis server, forwarding both ways
    on a thread per direction; freeze(n) stops forwarding Redis's bytes to
    the n-th connection accepted (0-based) without closing anything: the
    silently dead connection a liveness probe has to find."""

    def __init__(self, dir, server, name="proxy"):
        import threading
        self.path = pathlib.Path(dir) / f"{name}.sock"
        self.server = server
        self.frozen = set()
        self.conns = 0
        self.lsock = socket.socket(socket.AF_UNIX)
        self.lsock.bind(str(self.path))
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
        for s in (src, dst):
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


class SentinelServer:
    """redis-sentinel on 127.0.0.1:<free port> (Sentinel speaks TCP only)
    watching master under `name`, quorum 1, quick to decide (down after
    down_ms), started at once and waited for."""

    def __init__(self, dir, master, name="wspush", down_ms=500, failover_ms=2000):
        self.dir = pathlib.Path(dir)
        self.name = name
        self.port = free_port()
        self.conf = self.dir / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {name} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {name} {down_ms}\n"
            f"sentinel failover-timeout {name} {failover_ms}\n")
        self.log = self.dir / f"sentinel-{self.port}.log"
        self.proc = subprocess.Popen([shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel",
                                      str(self.conf)], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)
        wait_for(self.master_addr, timeout=10, what="redis-sentinel to answer")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def master_addr(self):
        try:
            with Resp(("127.0.0.1", self.port), timeout=0.5) as r:
                a = r.command("SENTINEL", "get-master-addr-by-name", self.name)
                return (a[0].decode(), int(a[1])) if a else None
        except (OSError, ConnectionError, RespError):
            return None

    def stop(self):
        if self.proc is not None:
            p, self.proc = self.proc, None
            stop_process(p, signal.SIGTERM, 10)
