import pytest

from harness import Env


@pytest.fixture
def env(tmp_path):
    """A fresh runtime directory; ws-server is not started yet so a test can
    adjust env.sections and call env.write_ini() first."""
    e = Env(tmp_path)
    yield e
    if e.ws_proc is not None and e.ws_proc.poll() is None:
        rc = e.stop_ws()
        # A sanitizer report makes the server exit non-zero: fail the test.
        assert rc == 0, "ws-server exited %r:\n%s" % (rc, e.log_text()[-4000:])


@pytest.fixture
def ws(env):
    """ws-server running with the default test config."""
    env.start_ws()
    return env
