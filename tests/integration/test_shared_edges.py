"""What both programs now share (shared/origin.c, shared/listener.c), seen
from outside: one Origin rule, default ports included, in ws-server's
handshake and fcgi-publisher's CSRF check; and an accept loop that, out of
file descriptors, pauses and logs once a second instead of spinning, then
serves the connections that waited in the backlog.

The real binaries from WSPUSH_BIN; FastCGI is spoken raw (test_fastcgi.py's
client), no web server."""
import os
import resource
import select
import socket
import subprocess
import time

import pytest

from harness import BIN, ws_handshake, wait_for, stop_process
from test_fastcgi import Conn, params, request
from webservers import Site, port_open


# ---- one Origin rule

def test_origin_default_port_is_the_same_origin(env):
    env.sections["ws-server"]["allowed_origins"] = "http://site.example"
    env.write_ini()
    env.start_ws()
    for origin, want in (("http://site.example:80", 101), ("http://site.example:8080", 403),
                         ("HTTP://Site.Example:80", 101), ("http://site.example", 101),
                         ("https://site.example:80", 403), ("https://site.example", 403)):
        s, status, head, _ = ws_handshake(env.ws_port, origin=origin)
        s.close()
        assert status == want, (origin, head)


def test_origin_listed_with_its_default_port_admits_it_without(env):
    env.sections["ws-server"]["allowed_origins"] = "https://app.example:443"
    env.write_ini()
    env.start_ws()
    for origin, want in (("https://app.example", 101), ("https://APP.example:443", 101),
                         ("https://app.example:8443", 403), ("http://app.example", 403)):
        s, status, head, _ = ws_handshake(env.ws_port, origin=origin)
        s.close()
        assert status == want, (origin, head)


# Both programs with the same list must agree on every Origin.
SHARED_LIST = "http://site.example https://app.example:443 http://b.example:8080"
SHARED_CASES = (
    ("http://site.example", True),
    ("http://site.example:80", True),
    ("HTTP://SITE.EXAMPLE:80", True),
    ("http://site.example:8080", False),
    ("https://site.example", False),
    ("https://app.example", True),
    ("https://app.example:443", True),
    ("http://b.example:8080", True),
    ("http://b.example", False),
    ("http://site.example/", False),     # an Origin has no path
    ("http://x@site.example", False),    # nor userinfo
    ("http://site.example.evil", False),
    ("null", False),
)


def test_origin_rule_is_one_for_ws_server_and_publisher(env):
    site = Site(env, "nginx")
    env.sections["ws-server"]["allowed_origins"] = SHARED_LIST
    env.sections["publisher"]["allowed_origins"] = SHARED_LIST
    env.sections["publisher"]["workers"] = "1"
    env.write_ini()
    env.start_ws()
    site.publisher.start()
    try:
        c = Conn(site.pub_port)
        for rid, (origin, allowed) in enumerate(SHARED_CASES, start=1):
            s, ws_status, head, _ = ws_handshake(env.ws_port, origin=origin)
            s.close()
            # A token request with ambient credentials (REMOTE_USER): the
            # origin check decides it.
            c.send(request(rid, params(HTTP_ORIGIN=origin)))
            pub_status = c.answer(rid)[0]
            assert (ws_status, pub_status) == ((101, 200) if allowed else (403, 403)), origin
        c.close()
    finally:
        assert site.publisher.stop() == 0, site.publisher.log_text()[-3000:]


# ---- accepting out of file descriptors

def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _cpu_ticks(pid):
    """utime + stime of pid, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def _answered(conns, pending, want, timeout, quiet=None):
    """Reads the answers of request 1 on the connections in pending (their
    indices) until want of them are served, or none came for quiet seconds,
    or timeout; returns the set of indices served."""
    served = set()
    deadline = time.monotonic() + timeout
    while len(served) < want:
        now = time.monotonic()
        if now >= deadline:
            break
        wait = deadline - now if quiet is None else min(quiet, deadline - now)
        socks = {conns[i].s.fileno(): i for i in pending - served}
        ready, _, _ = select.select(list(socks), [], [], wait)
        if not ready and quiet is not None:
            break
        for fd in ready:
            i = socks[fd]
            status, _, _, _ = conns[i].answer(1)
            assert status == 200
            served.add(i)
    return served


FD_LIMIT = 24     # fcgi-publisher's RLIMIT_NOFILE: a handful of connections
N_CONNS = 40


def test_publisher_out_of_fds_pauses_accepting_then_serves_the_backlog(env):
    site = Site(env, "nginx")
    env.sections["publisher"]["workers"] = "1"
    env.write_ini()
    env.start_ws()
    pub = site.publisher

    def low_fds():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))

    log = open(pub.log, "ab")
    proc = subprocess.Popen([str(BIN / "fcgi-publisher"), "-c", str(env.ini_path)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            preexec_fn=low_fds)
    log.close()
    conns = []
    try:
        wait_for(lambda: proc.poll() is not None or port_open(pub.port),
                 what="fcgi-publisher to listen")
        assert proc.poll() is None, pub.log_text()
        worker = wait_for(lambda: _children(proc.pid), what="the worker process")[0]

        # Every connection sends its whole request at once: the ones left in
        # the backlog have theirs waiting in the kernel.
        for _ in range(N_CONNS):
            c = Conn(pub.port)
            c.send(request(1, params()))
            conns.append(c)
        line = "front: accept: Too many open files (1 times since last report); pausing 100 ms"
        wait_for(lambda: line in pub.log_text(), what="the EMFILE log line")
        seen = time.monotonic()
        # The ones accepted before the fds ran out are served as usual.
        first = _answered(conns, set(range(N_CONNS)), N_CONNS, 2.0, quiet=0.3)
        assert 0 < len(first) < N_CONNS // 2, len(first)

        # Paused, not spinning: over 1.5 s the worker sleeps (a spin burns
        # all of it) and logs at most once a second, with the count.
        cpu0, t0 = _cpu_ticks(worker), time.monotonic()
        time.sleep(1.5)
        cpu = (_cpu_ticks(worker) - cpu0) / os.sysconf("SC_CLK_TCK")
        assert cpu < 0.3 * (time.monotonic() - t0), f"worker used {cpu:.2f} s of CPU"
        accept_lines = [l for l in pub.log_text().splitlines() if "front: accept:" in l]
        assert 2 <= len(accept_lines) <= 2 + (time.monotonic() - seen), accept_lines
        count = accept_lines[1].partition("Too many open files (")[2].split(" ")[0]
        assert int(count) >= 2, accept_lines

        # Freeing fds serves the next ones from the backlog, requests
        # included: no new connect, and the worker never stopped serving.
        for i in sorted(first):
            conns[i].close()
        rest = set(range(N_CONNS)) - first
        want = min(len(first), len(rest))
        nxt = _answered(conns, rest, want, 5.0)
        assert len(nxt) == want, (len(first), len(nxt))
        assert proc.poll() is None
    finally:
        for c in conns:
            c.close()
        assert stop_process(proc) == 0, pub.log_text()[-3000:]
