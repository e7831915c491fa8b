"""fcgi-publisher's metrics_listen, behind a real nginx with three worker
processes: the exposition is valid (promtool check metrics,
python3-prometheus-client's parser), one scrape sums every worker's
counters (whichever worker answers it), counters move by exactly what known
traffic adds, a worker killed with SIGKILL takes none of them along, and
/readyz follows the link to ws-server (docs/observability.md)."""
import json
import os
import re
import signal
import subprocess

import pytest

from harness import ROOT, free_port, wait_for
from test_metrics import Scrape, check_exposition, get
from webservers import Site

FAMILIES = {
    "wspush_publisher_requests": ("counter", {"endpoint", "code"}),
    "wspush_publisher_request_duration_seconds": ("histogram", {"endpoint"}),
    "wspush_publisher_ack_wait_seconds": ("histogram", set()),
    "wspush_publisher_link_up": ("gauge", set()),
    "wspush_publisher_link_reconnects": ("counter", set()),
    "wspush_publisher_tokens_issued": ("counter", set()),
    "process_resident_memory_bytes": ("gauge", set()),
    "process_cpu_seconds": ("counter", set()),
    "process_open_fds": ("gauge", set()),
    "process_start_time_seconds": ("gauge", set()),
}
WORKERS = 3


@pytest.fixture
def msite(env):
    s = Site(env, "nginx")
    s.metrics = f"127.0.0.1:{free_port()}"
    env.sections["publisher"].update(metrics_listen=s.metrics, workers=str(WORKERS))
    env.write_ini()
    try:
        s.start()
        wait_for(lambda: get(s.metrics, "/readyz")[0] == 200, what="a worker's link to ws-server")
    except BaseException:
        s.stop()
        raise
    yield s
    rc = s.stop()
    assert rc == 0, "fcgi-publisher exited %r:\n%s" % (rc, s.publisher.log_text()[-4000:])


def scrape(site):
    status, head, body = get(site.metrics, "/metrics")
    assert status == 200, head
    assert "Content-Type: text/plain; version=0.0.4" in head
    return Scrape(body.decode())


def workers(site):
    pid = site.publisher.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def monotonic_samples(s):
    """Every sample that must never go down: those of counters and
    histograms."""
    return {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
            for f in s.families.values() if f.type in ("counter", "histogram")
            for smp in f.samples}


def test_exposition_is_valid_and_complete(msite):
    s = scrape(msite)
    check_exposition(s, FAMILIES)
    endpoints = {smp.labels["endpoint"] for smp in s.families["wspush_publisher_requests"].samples}
    assert endpoints == {"publish", "token", "other"}
    # Summed over the supervisor and its three workers; the start time is
    # the supervisor's.
    assert s("wspush_publisher_link_up") == WORKERS
    assert s("process_open_fds") > 4 * 3
    assert s("process_resident_memory_bytes") > 4 << 20
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{msite.publisher.proc.pid}/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19]) / ticks
    with open("/proc/stat") as f:
        btime = next(int(l.split()[1]) for l in f if l.startswith("btime "))
    assert abs(s("process_start_time_seconds") - (btime + start)) < 0.02
    assert get(msite.metrics, "/healthz")[0] == 200
    assert get(msite.metrics, "/nothing")[0] == 404
    # The alert rules name only series fcgi-publisher exports.
    rules = (ROOT / "conf" / "prometheus" / "wspush-alerts.yml").read_text()
    used = set(re.findall(r"\b(wspush_publisher_[a-z_]+)", rules))
    assert used and used <= {name for name, _ in s.samples}, used


def test_counters_sum_over_workers_and_survive_a_killed_worker(msite):
    before = scrape(msite)
    for i in range(5):
        r = msite.publish("news", f"m{i}")
        assert r.status == 200, r
    r = msite.publish("news", "csrf", origin=False, headers={"Origin": "http://evil.example"})
    assert r.status == 403, r
    r = msite.request("GET", "/push/token?channels=user/alice/inbox")
    assert r.status == 200, r
    after = scrape(msite)

    def delta(name, **labels):
        return after(name, **labels) - before(name, **labels)

    assert delta("wspush_publisher_requests_total", endpoint="publish", code="200") == 5
    assert delta("wspush_publisher_requests_total", endpoint="publish", code="403") == 1
    assert delta("wspush_publisher_requests_total", endpoint="token", code="200") == 1
    assert delta("wspush_publisher_request_duration_seconds_count", endpoint="publish") == 6
    assert delta("wspush_publisher_request_duration_seconds_count", endpoint="token") == 1
    assert delta("wspush_publisher_ack_wait_seconds_count") == 5
    assert delta("wspush_publisher_tokens_issued_total") == 1
    assert after("wspush_publisher_link_up") >= 1

    # SIGKILL one worker: the supervisor starts another in its slot, which
    # goes on counting from where the dead one stopped.
    old = workers(msite)
    assert len(old) == WORKERS
    os.kill(old[0], signal.SIGKILL)
    wait_for(lambda: len(workers(msite)) == WORKERS and old[0] not in workers(msite),
             what="a new worker in place of the killed one")
    wait_for(lambda: scrape(msite)("wspush_publisher_link_up") == WORKERS,
             what="the new worker's link")
    later = scrape(msite)
    base = monotonic_samples(after)
    assert base
    for key, v in base.items():
        assert later.samples[key] >= v, (key, v, later.samples[key])
    assert later("wspush_publisher_requests_total", endpoint="publish", code="200") == \
        after("wspush_publisher_requests_total", endpoint="publish", code="200")
    # The new worker's first connection is a reconnect of its slot.
    assert later("wspush_publisher_link_reconnects_total") >= 1


def test_readyz_follows_the_link_to_ws_server(msite):
    assert get(msite.metrics, "/readyz")[0] == 200
    rc = msite.env.stop_ws()
    assert rc == 0
    wait_for(lambda: get(msite.metrics, "/readyz")[0] == 503, what="/readyz 503 without ws-server")
    assert scrape(msite)("wspush_publisher_link_up") == 0


def test_grafana_dashboard_queries_parse_and_use_exported_names(msite, tmp_path):
    """Every panel query of conf/grafana/wspush-publisher.json, with the
    dashboard's variables filled in, passes promtool (as a recording rule)
    and names only series fcgi-publisher exports (or up); every
    wspush_publisher_* family is on a panel."""
    dash = json.loads((ROOT / "conf" / "grafana" / "wspush-publisher.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    filled = [e.replace("$__rate_interval", "5m").replace("$job", "wspush-publisher")
              .replace("$instance", ".*") for e in exprs]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text("groups:\n  - name: dashboard\n    rules:\n" + "".join(
        f"      - record: dashboard:q{i}\n        expr: {json.dumps(e)}\n" for i, e in enumerate(filled)))
    p = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    exported = {name for name, _ in scrape(msite).samples} | {"up"}
    used = {n for e in exprs for n in re.findall(r"\b((?:wspush|process)_[a-z_]+|up)\{", e)}
    assert used <= exported, used - exported
    families = {n.removesuffix("_total").removesuffix("_bucket") for n in used}
    ours = {f for f in FAMILIES if f.startswith("wspush_")}
    assert ours <= families, ours - families


def test_fd0_mode_shows_the_one_process(env):
    """Started on fd 0 (spawn-fcgi, mod_fcgid) there is no supervisor: the
    process counts and serves on its own, and a scrape shows it only."""
    s = Site(env, "nginx")
    s.metrics = f"127.0.0.1:{free_port()}"
    env.sections["publisher"]["metrics_listen"] = s.metrics
    env.write_ini()
    try:
        s.start(on_fd0=True)
        # Started on fd 0 it opens its metrics listener after the FastCGI
        # one it was given (late under valgrind): refused until then.
        def ready():
            try:
                return get(s.metrics, "/readyz")[0] == 200
            except ConnectionRefusedError:
                return False
        wait_for(ready, timeout=20, what="the metrics listener and the link to ws-server")
        before = scrape(s)
        r = s.publish("news", "one")
        assert r.status == 200, r
        after = scrape(s)
        assert after("wspush_publisher_requests_total", endpoint="publish", code="200") - \
            before("wspush_publisher_requests_total", endpoint="publish", code="200") == 1
        assert after("wspush_publisher_link_up") == 1
        assert workers(s) == []
        ticks = os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{s.publisher.proc.pid}/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19]) / ticks
        with open("/proc/stat") as f:
            btime = next(int(l.split()[1]) for l in f if l.startswith("btime "))
        assert abs(after("process_start_time_seconds") - (btime + start)) < 0.02
    finally:
        rc = s.stop()
    assert rc == 0, "fcgi-publisher exited %r:\n%s" % (rc, s.publisher.log_text()[-4000:])
