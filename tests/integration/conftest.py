import os

import pytest

from harness import Env


@pytest.fixture
def env(tmp_path):
    """A fresh runtime directory; ws-server is not started yet so a test can
    adjust env.sections and call env.write_ini() first."""
    e = Env(tmp_path)
    yield e
    try:
        if e.ws_proc is not None and e.ws_proc.poll() is None:
            rc = e.stop_ws()
            # A sanitizer report makes the server exit non-zero: fail the test.
            assert rc == 0, "ws-server exited %r:\n%s" % (rc, e.log_text()[-4000:])
    finally:
        e.stop_redis()


@pytest.fixture
def ws(env):
    """ws-server running with the default test config."""
    env.start_ws()
    return env


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "memory_only(reason): behaviour of the memory engine only; skipped in the "
        "Redis pass (WSPUSH_ENGINE=redis), the reason says why")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("WSPUSH_ENGINE", "memory") != "redis":
        return
    for item in items:
        m = item.get_closest_marker("memory_only")
        if m:
            why = m.kwargs.get("reason") or (m.args[0] if m.args else "memory engine only")
            item.add_marker(pytest.mark.skip(reason="engine = redis: " + why))
