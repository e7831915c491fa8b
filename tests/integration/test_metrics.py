"""ws-server's metrics_listen: the Prometheus exposition is valid (promtool
check metrics, python3-prometheus-client's parser), counters move by
exactly what known traffic should add, and /healthz, /readyz and the
responder's refusals answer as documented (docs/observability.md)."""
import json
import re
import signal
import socket
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import BIN, ROOT, RawWs, SseClient, free_port, make_token, wait_for

# Every family of ws-server (issue 14's, then permessage-deflate's and TLS's), with its type and label keys.
FAMILIES = {
    "wspush_connections": ("gauge", {"transport"}),
    "wspush_connections_accepted": ("counter", {"transport"}),
    "wspush_handshakes_refused": ("counter", {"reason"}),
    "wspush_connections_closed": ("counter", {"code"}),
    "wspush_deflate_connections": ("counter", set()),
    "wspush_deflate_messages": ("counter", {"result"}),
    "wspush_deflate_input_bytes": ("counter", set()),
    "wspush_deflate_output_bytes": ("counter", set()),
    "wspush_channels": ("gauge", set()),
    "wspush_subscriptions": ("gauge", set()),
    "wspush_messages_published": ("counter", set()),
    "wspush_deliveries": ("counter", set()),
    "wspush_delivery_bytes": ("counter", set()),
    "wspush_replayed_messages": ("counter", set()),
    "wspush_resumes": ("counter", {"outcome"}),
    "wspush_history_messages": ("gauge", set()),
    "wspush_history_bytes": ("gauge", set()),
    "wspush_publish_socket_requests": ("counter", {"result"}),
    "wspush_fanout_seconds": ("histogram", set()),
    "wspush_tls_handshakes": ("counter", {"result"}),
    "process_resident_memory_bytes": ("gauge", set()),
    "process_cpu_seconds": ("counter", set()),
    "process_open_fds": ("gauge", set()),
    "process_start_time_seconds": ("gauge", set()),
}
REASONS = {"origin", "token", "channels", "not_covered", "limit", "per_ip", "version", "bad_request"}


def http(spec, request):
    """Sends raw request bytes to the metrics listener; returns (status,
    head, body) of the answer."""
    if spec.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(spec)
    else:
        host, port = spec.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    s.settimeout(5)
    with s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, head.decode(), body


def get(spec, path, method="GET"):
    return http(spec, f"{method} {path} HTTP/1.1\r\nHost: metrics\r\n\r\n".encode())


class Scrape:
    def __init__(self, text):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def __call__(self, name, **labels):
        return self.samples[(name, tuple(sorted(labels.items())))]


def scrape(env):
    status, head, body = get(env.metrics, "/metrics")
    assert status == 200, head
    assert "Content-Type: text/plain; version=0.0.4" in head
    return Scrape(body.decode())


@pytest.fixture
def menv(env):
    env.metrics = f"127.0.0.1:{free_port()}"
    # 1 KiB send budget: a 2 KB message makes a subscriber a slow
    # consumer at once (1013); the small ones below fit.
    env.sections["ws-server"].update(metrics_listen=env.metrics, send_buffer_bytes="1024",
                                     allowed_origins="http://good.example")
    env.write_ini()
    env.start_ws()
    wait_for(lambda: metrics_up(env.metrics), what="metrics listener")
    return env


def metrics_up(spec):
    """The metrics listener opens after the ports start_ws() waits for
    (under valgrind, noticeably after): refused until then."""
    try:
        return get(spec, "/healthz")[0] == 200
    except OSError:
        return False


def subscriber(env, query, origin=None):
    r = RawWs(env.ws_port, "/ws?" + query, origin)
    assert r.status == 101, r.head
    op, hello = r.recv_frame()
    assert json.loads(hello)["type"] == "subscribed"
    return r


def check_exposition(s, families):
    """promtool finds nothing to say, and every family of families
    (name -> (type, label keys)) is there with its type, help and keys."""
    p = subprocess.run(["promtool", "check", "metrics"], input=s.text, capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr
    for name, (type_, keys) in families.items():
        assert name in s.families, name
        f = s.families[name]
        assert f.type == type_, (name, f.type)
        assert f.documentation, name
        for smp in f.samples:
            assert set(smp.labels) - {"le"} == keys, (name, smp.labels)


def test_exposition_is_valid_and_complete(menv):
    s = scrape(menv)
    check_exposition(s, FAMILIES)
    assert {l["reason"] for l in (smp.labels for smp in s.families["wspush_handshakes_refused"].samples)} == REASONS
    assert s("process_open_fds") > 3
    assert s("process_resident_memory_bytes") > 1 << 20
    assert s("process_start_time_seconds") > 1.6e9


@pytest.mark.memory_only(reason="history gauges are 0 with Redis: the history is in Redis")
def test_one_publish_to_three_subscribers_counts_three_deliveries(menv):
    subs = [subscriber(menv, "channels=public/m") for _ in range(3)]
    before = scrape(menv)
    assert before("wspush_connections", transport="ws") == 3
    assert before("wspush_subscriptions") == 3
    assert before("wspush_channels") == 1
    ack = menv.publish(["public/m"], {"n": 1})
    assert ack["subscribers"] == 3
    frames = [r.recv_frame()[1] for r in subs]
    after = scrape(menv)
    assert after("wspush_deliveries_total") - before("wspush_deliveries_total") == 3
    assert (after("wspush_delivery_bytes_total") - before("wspush_delivery_bytes_total")
            == sum(len(f) for f in frames))
    assert after("wspush_messages_published_total") - before("wspush_messages_published_total") == 1
    ok = dict(result="ok")
    assert (after("wspush_publish_socket_requests_total", **ok)
            - before("wspush_publish_socket_requests_total", **ok)) == 1
    assert after("wspush_fanout_seconds_count") - before("wspush_fanout_seconds_count") == 1
    assert after("wspush_fanout_seconds_bucket", le="+Inf") == after("wspush_fanout_seconds_count")
    assert after("wspush_history_messages") == before("wspush_history_messages") + 1
    assert after("wspush_replayed_messages_total") == before("wspush_replayed_messages_total")
    for r in subs:
        r.close()
    wait_for(lambda: scrape(menv)("wspush_connections", transport="ws") == 0, what="gauge back to 0")
    end = scrape(menv)
    assert end("wspush_subscriptions") == 0 and end("wspush_channels") == 0
    # Gone without a close frame.
    assert end("wspush_connections_closed_total", code="1006") - before("wspush_connections_closed_total",
                                                                         code="1006") == 3


def test_sse_streams_counted_by_transport(menv):
    a = SseClient(menv.ws_port, "/sse?channels=public/a")
    assert a.json_event()[0] == "subscribed"
    b = SseClient(menv.ws_port, "/sse?channels=user/x/y")
    assert b.status == 401
    b.close()
    s = scrape(menv)
    assert s("wspush_connections", transport="sse") == 1
    assert s("wspush_connections_accepted_total", transport="sse") == 1
    assert s("wspush_connections", transport="ws") == 0
    assert s("wspush_handshakes_refused_total", reason="token") == 1
    a.close()
    wait_for(lambda: scrape(menv)("wspush_connections", transport="sse") == 0, what="the gauge to drop")


def test_sse_refusals_count_by_reason_like_websocket(menv):
    """Each refusal of /sse is one count under the reason its WebSocket
    twin has, and nothing else moves (no close code, no acceptance)."""
    before = scrape(menv)
    for query, origin, status, reason in (
            ("channels=user/alice/x", None, 401, "token"),
            ("channels=user/bob/x&token=" + make_token(), None, 403, "not_covered"),
            ("channels=bad%20name", None, 400, "channels"),
            ("channels=public/a", "http://evil.example", 403, "origin")):
        c = SseClient(menv.ws_port, "/sse?" + query, headers={"Origin": origin} if origin else None)
        assert c.status == status, (query, c.status)
        c.close()
        after = scrape(menv)
        for r in REASONS:
            delta = (after("wspush_handshakes_refused_total", reason=r)
                     - before("wspush_handshakes_refused_total", reason=r))
            assert delta == (1 if r == reason else 0), (query, r, delta)
        for name, labels in (("wspush_connections_accepted_total", {"transport": "sse"}),
                             ("wspush_connections_closed_total", {"code": "1006"}),
                             ("wspush_connections_closed_total", {"code": "4401"})):
            assert after(name, **labels) == before(name, **labels), (query, name, labels)
        before = after


def test_bad_origin_counts_one_origin_refusal(menv):
    before = scrape(menv)
    r = RawWs(menv.ws_port, "/ws?channels=public/a", origin="http://evil.example")
    assert r.status == 403
    r.close()
    after = scrape(menv)
    for reason in REASONS:
        delta = (after("wspush_handshakes_refused_total", reason=reason)
                 - before("wspush_handshakes_refused_total", reason=reason))
        assert delta == (1 if reason == "origin" else 0), reason
    assert after("wspush_connections_accepted_total", transport="ws") == \
        before("wspush_connections_accepted_total", transport="ws")


@pytest.mark.memory_only(reason="with Redis the ack counts this node's subscribers when Redis took the message, not deliveries queued")
def test_slow_consumer_counts_one_1013_close(menv):
    r = subscriber(menv, "channels=public/big")
    before = scrape(menv)
    ack = menv.publish(["public/big"], "x" * 2000)
    assert ack["subscribers"] == 0
    assert r.recv_close() == 1013
    after = scrape(menv)
    code = dict(code="1013")
    assert (after("wspush_connections_closed_total", **code)
            - before("wspush_connections_closed_total", **code)) == 1
    assert after("wspush_deliveries_total") == before("wspush_deliveries_total")
    r.close()


def test_refusals_at_subscribe_count_by_reason(menv):
    before = scrape(menv)
    for query, code in (("channels=user/alice/x", 4401),
                        ("channels=user/bob/x&token=" + make_token(), 4403),
                        ("channels=bad%20name", 4400)):
        r = RawWs(menv.ws_port, "/ws?" + query)
        assert r.status == 101
        assert r.recv_close() == code
        r.close()
    r = RawWs(menv.ws_port, "/ws?channels=public/a")
    r.close()
    after = scrape(menv)

    def delta(name, **labels):
        return after(name, **labels) - before(name, **labels)
    assert delta("wspush_handshakes_refused_total", reason="token") == 1
    assert delta("wspush_handshakes_refused_total", reason="not_covered") == 1
    assert delta("wspush_handshakes_refused_total", reason="channels") == 1
    for code in ("4400", "4401", "4403"):
        assert delta("wspush_connections_closed_total", code=code) == 1
    assert delta("wspush_connections_accepted_total", transport="ws") == 4
    status, _, _ = get(f"127.0.0.1:{menv.ws_port}", "/ws?channels=public/a")   # not an upgrade
    assert status == 426
    assert scrape(menv)("wspush_handshakes_refused_total", reason="version") - \
        before("wspush_handshakes_refused_total", reason="version") == 1


def test_resumes_count_replayed_messages_and_outcome(menv):
    first = menv.publish(["public/r"], 1)
    menv.publish(["public/r"], 2)
    menv.publish(["public/r"], 3)
    before = scrape(menv)
    r = subscriber(menv, "channels=public/r&last_id=" + first["id"])
    assert [json.loads(r.recv_frame()[1])["data"] for _ in range(2)] == [2, 3]
    wait_for(lambda: scrape(menv)("wspush_resumes_total", outcome="exact")
             - before("wspush_resumes_total", outcome="exact") == 1, what="exact resume counted")
    r2 = subscriber(menv, "channels=public/r&last_id=0-1")
    assert json.loads(r2.recv_frame()[1])["type"] == "reset"
    wait_for(lambda: scrape(menv)("wspush_resumes_total", outcome="reset")
             - before("wspush_resumes_total", outcome="reset") == 1, what="reset resume counted")
    after = scrape(menv)
    assert after("wspush_replayed_messages_total") - before("wspush_replayed_messages_total") == 2
    assert after("wspush_deliveries_total") == before("wspush_deliveries_total")
    r.close()
    r2.close()


def test_health_ready_and_refusals_of_the_responder(menv):
    assert get(menv.metrics, "/healthz")[0] == 200
    assert get(menv.metrics, "/readyz")[0] == 200
    assert get(menv.metrics, "/metrics?x=1")[0] == 200
    assert get(menv.metrics, "/nope")[0] == 404
    assert get(menv.metrics, "/metrics", method="POST")[0] == 405
    status, head, body = get(menv.metrics, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and "Content-Length: " in head
    assert http(menv.metrics, b"GET /metrics HTTP/1.1\nHost: x\n\n")[0] == 400     # bare LF
    assert http(menv.metrics, b"GET metrics HTTP/1.1\r\n\r\n")[0] == 400
    assert http(menv.metrics, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n")[0] == 431
    # The public listener never serves /metrics: it is a WebSocket path there.
    assert get(f"127.0.0.1:{menv.ws_port}", "/metrics")[0] == 426


def test_readyz_503_once_the_publish_socket_stops(menv):
    r = subscriber(menv, "channels=public/a")
    menv.ws_proc.send_signal(signal.SIGTERM)
    # Shutting down: the publish socket is gone while the 1001 close
    # handshake is still waiting for the page.
    wait_for(lambda: not menv.publish_socket.exists(), what="publish socket removed")
    try:
        assert get(menv.metrics, "/readyz")[0] == 503
    except OSError:
        pytest.skip("ws-server already exited")
    assert r.recv_close() == 1001
    r.close()
    assert menv.ws_proc.wait(5) == 0, menv.log_text()[-4000:]


def test_metrics_on_a_unix_socket(env, tmp_path):
    env.metrics = str(tmp_path / "metrics.sock")
    env.sections["ws-server"]["metrics_listen"] = env.metrics
    env.write_ini()
    env.start_ws()
    wait_for(lambda: (tmp_path / "metrics.sock").exists(), what="metrics socket")
    assert scrape(env)("wspush_connections", transport="ws") == 0
    env.stop_ws()
    assert not (tmp_path / "metrics.sock").exists()


def test_alert_rules_check_and_use_only_exported_names(menv):
    rules = ROOT / "conf" / "prometheus" / "wspush-alerts.yml"
    for args in (["check", "rules", str(rules)],
                 ["test", "rules", str(rules.with_name("wspush-alerts.test.yml"))]):
        p = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
    exported = {name for name, _ in scrape(menv).samples}
    # fcgi-publisher's names are checked against its own scrape
    # (test_publisher_metrics.py).
    used = set(re.findall(r"\b(wspush_[a-z_]+)", rules.read_text())) - \
        set(re.findall(r"\b(wspush_publisher_[a-z_]+)", rules.read_text()))
    assert used and used <= exported, used - exported


def raw_http(spec, request):
    """The whole answer of the metrics listener to request, as bytes."""
    host, port = spec.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_wspush_stats_summary_over_the_interval(menv):
    """`wspush stats` scrapes twice; what happens between the scrapes shows
    as the interval's counts. It scrapes through a proxy here, which lets
    the traffic start once the first scrape is answered and holds the
    second until the traffic is done, whatever the timing (valgrind)."""
    import threading
    subs = [subscriber(menv, "channels=public/s") for _ in range(2)]
    first_done, traffic_done = threading.Event(), threading.Event()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(20)
    proxy_addr = "127.0.0.1:%d" % lsock.getsockname()[1]

    def proxy():
        for n in range(2):
            c, _ = lsock.accept()
            with c:
                req = b""
                while b"\r\n\r\n" not in req:
                    req += c.recv(4096)
                if n == 1:
                    traffic_done.wait(20)
                c.sendall(raw_http(menv.metrics, req))
            if n == 0:
                first_done.set()

    def traffic():
        first_done.wait(20)
        for i in range(5):
            menv.publish(["public/s"], i)
        r = RawWs(menv.ws_port, "/ws?channels=public/s", origin="http://evil.example")
        r.close()
        traffic_done.set()
    threads = [threading.Thread(target=proxy), threading.Thread(target=traffic)]
    for t in threads:
        t.start()
    p = subprocess.run([str(BIN / "wspush"), "-m", proxy_addr, "-i", "0.2", "-T", "20000", "stats",
                        "--json"], capture_output=True, text=True, timeout=30)
    for t in threads:
        t.join()
    lsock.close()
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["addr"] == proxy_addr
    assert out["connections"] == {"ws": 2, "sse": 0}
    assert out["channels"] == 1 and out["subscriptions"] == 2
    assert out["messages"]["interval"] == 5 and out["messages"]["total"] == 5
    assert out["deliveries"]["interval"] == 10 and out["deliveries"]["total"] == 10
    assert abs(out["deliveries"]["per_s"] - 10 / out["interval_s"]) < 0.01
    assert out["refused"]["origin"] == {"total": 1, "interval": 1}
    assert set(out["refused"]) == REASONS
    assert out["closed"]["1013"] == {"total": 0, "interval": 0}

    # The human summary, with the address from the config.
    p = subprocess.run([str(BIN / "wspush"), "-c", str(menv.ini_path), "-i", "0.1", "stats"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"ws-server metrics at {menv.metrics}, over ")
    assert "  connections   ws 2, sse 0" in lines
    assert "  refused       origin 1 (+0)" in lines
    assert any(l.startswith("  deliveries/s  0.0  (0 in the interval, 10 since start)") for l in lines)
    for r in subs:
        r.close()


def test_wspush_stats_errors(menv):
    wspush = str(BIN / "wspush")
    p = subprocess.run([wspush, "-m", f"127.0.0.1:{free_port()}", "stats"], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 3 and "wspush: stats: " in p.stderr
    # The WebSocket listener answers, but not with an exposition.
    p = subprocess.run([wspush, "-m", f"127.0.0.1:{menv.ws_port}", "stats"], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 3 and "not a 200 answer" in p.stderr
    p = subprocess.run([wspush, "-i", "0", "-m", menv.metrics, "stats"], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 2
    p = subprocess.run([wspush, "-m", menv.metrics, "stats", "--yaml"], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 2
    del menv.sections["ws-server"]["metrics_listen"]
    menv.write_ini()
    p = subprocess.run([wspush, "-c", str(menv.ini_path), "stats"], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 2 and "metrics_listen" in p.stderr


def test_grafana_dashboard_queries_parse_and_use_exported_names(menv, tmp_path):
    """Every panel query of conf/grafana/wspush-ws-server.json, with the
    dashboard's variables filled in, passes promtool (as a recording rule)
    and names only series ws-server exports (or up)."""
    dash = json.loads((ROOT / "conf" / "grafana" / "wspush-ws-server.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    filled = [e.replace("$__rate_interval", "5m").replace("$job", "wspush").replace("$instance", ".*")
              for e in exprs]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text("groups:\n  - name: dashboard\n    rules:\n" + "".join(
        f"      - record: dashboard:q{i}\n        expr: {json.dumps(e)}\n" for i, e in enumerate(filled)))
    p = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    exported = {name for name, _ in scrape(menv).samples} | {"up"}
    used = {n for e in exprs for n in re.findall(r"\b((?:wspush|process)_[a-z_]+|up)\{", e)}
    assert used <= exported, used - exported
    assert {n for n in exported if n.startswith("wspush_")} - {
        n for n in used} <= {f"wspush_fanout_seconds_{s}" for s in ("sum", "count")}


def test_idle_connections_do_not_lock_out_scrapes(menv):
    """Sockets that connect to the metrics listener and send nothing: once
    every slot is taken, the oldest waiting one gives way, so a scrape and
    /readyz still get their answer."""
    host, port = menv.metrics.rsplit(":", 1)
    idle = [socket.create_connection((host, int(port))) for _ in range(20)]
    try:
        status, head, _ = get(menv.metrics, "/readyz")
        assert status == 200, head
        assert scrape(menv)("wspush_messages_published_total") >= 0
    finally:
        for s in idle:
            s.close()


def test_a_page_close_code_is_not_counted_as_ours(menv):
    """A page that closes with 4401 gets its code echoed, but the counter
    of closes ws-server decided (4401: revoked) must not move: the page's
    own codes count as "other"."""
    import struct as st
    from harness import encode_frame
    r = subscriber(menv, "channels=public/a")
    before = scrape(menv)
    r.send(encode_frame(0x8, st.pack(">H", 4401)))
    assert r.recv_close() == 4401
    r.close()
    wait_for(lambda: scrape(menv)("wspush_connections", transport="ws") == 0, what="close")
    after = scrape(menv)
    delta = lambda code: (after("wspush_connections_closed_total", code=code)
                          - before("wspush_connections_closed_total", code=code))
    assert delta("4401") == 0
    assert delta("other") == 1
