"""Unix sockets are never stolen or removed from under their owner: a
second instance with the same config refuses to start, and a process
removes at exit only the socket file it made itself."""
import os
import socket
import subprocess

from harness import BIN, free_port
from webservers import Publisher


def second_instance(env, publish_socket=None):
    """Starts ws-server on env's config with another TCP port (and maybe
    another publish socket); returns (exit code, output)."""
    sections = {k: dict(v) for k, v in env.sections.items()}
    sections["ws-server"]["listen"] = f"127.0.0.1:{free_port()}"
    if publish_socket:
        sections["wspush"]["publish_socket"] = publish_socket
    ini = env.dir / "second.ini"
    ini.write_text("\n".join(f"[{s}]\n" + "\n".join(f"{k} = {x}" for k, v in kv.items()
                                                     for x in (v if isinstance(v, list) else [v]))
                             for s, kv in sections.items()) + "\n")
    p = subprocess.run([str(BIN / "ws-server"), "-c", str(ini)], capture_output=True, text=True,
                       timeout=10)
    return p.returncode, p.stdout + p.stderr


def test_second_ws_server_does_not_steal_the_publish_socket(ws):
    ino = os.stat(ws.publish_socket).st_ino
    rc, out = second_instance(ws)
    assert rc != 0 and "another process is listening" in out, out
    # The first instance's socket is untouched and still answers.
    assert os.stat(ws.publish_socket).st_ino == ino
    assert ws.publish("public/a", 1)["id"]


def test_second_ws_server_does_not_steal_unix_listen(env):
    path = env.dir / "ws.sock"
    env.sections["ws-server"]["unix_listen"] = str(path)
    env.write_ini()
    env.start_ws()
    rc, out = second_instance(env, publish_socket=str(env.dir / "other.sock"))
    assert rc != 0 and "another process is listening" in out, out
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    s.close()


def test_exit_removes_only_its_own_socket_file(ws):
    # Someone replaces the publish socket file (an operator, another run).
    other = socket.socket(socket.AF_UNIX)
    tmp = str(ws.publish_socket) + ".other"
    other.bind(tmp)
    other.listen(1)
    os.rename(tmp, ws.publish_socket)
    assert ws.stop_ws() == 0
    assert os.path.exists(ws.publish_socket), "ws-server removed a socket it did not own"
    other.close()


def test_stale_socket_is_replaced(env):
    env.start_ws()
    env.stop_ws(__import__("signal").SIGKILL)
    assert os.path.exists(env.publish_socket)      # left behind by the crash
    env.start_ws()
    assert env.publish("public/a", 1)["id"]


def test_second_fcgi_publisher_does_not_steal_its_socket(env):
    path = env.dir / "fcgi.sock"
    env.sections["publisher"]["listen"] = str(path)
    env.sections["publisher"]["workers"] = "1"
    env.write_ini()
    env.start_ws()
    p = subprocess.Popen([str(BIN / "fcgi-publisher"), "-c", str(env.ini_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from harness import wait_for
        wait_for(lambda: path.exists(), what="fcgi-publisher to listen")
        ino = os.stat(path).st_ino
        second = subprocess.run([str(BIN / "fcgi-publisher"), "-c", str(env.ini_path)],
                                capture_output=True, text=True, timeout=10)
        assert second.returncode != 0, second.stderr
        assert "another process is listening" in second.stderr
        assert os.stat(path).st_ino == ino
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(path))
        s.close()
    finally:
        p.terminate()
        p.wait(timeout=10)
    assert not path.exists()     # its own socket is removed at exit
