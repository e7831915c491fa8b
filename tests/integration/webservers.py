"""Real web servers in front of fcgi-publisher and ws-server, for the
integration tests: fcgi-publisher on a loopback port, nginx or Apache
rendered from conf/nginx/wspush.conf or conf/apache/wspush.conf (the
shipped files, with their documented default values replaced by loopback
ports and temporary paths), an HTTP helper and a small synchronous
WebSocket client over python3-websockets' asyncio API.

Every server binds to 127.0.0.1 on a free port; every wait is bounded."""
import asyncio
import base64
import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import websockets

from harness import BIN, ROOT, free_port, stop_process, wait_for

NGINX = "/usr/sbin/nginx"
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def render(src, replacements):
    """The shipped config with each documented default replaced; a default
    that is no longer in the file fails loudly instead of being skipped."""
    text = pathlib.Path(src).read_text()
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{src}: expected '{old}' to render")
        text = text.replace(old, new)
    return text


class Publisher:
    """fcgi-publisher from WSPUSH_BIN on a loopback TCP port; it reads the
    [publisher] section of env's ini (the caller sets it up)."""

    def __init__(self, env, port):
        self.env, self.port = env, port
        self.log = env.dir / "fcgi-publisher.log"
        self.proc = None

    def start(self, on_fd0=False):
        """on_fd0: hand fcgi-publisher its listening socket as fd 0, the way
        spawn-fcgi and mod_fcgid do (the ini then has no listen key)."""
        log = open(self.log, "ab")
        lsock = None
        stdin = subprocess.DEVNULL
        if on_fd0:
            lsock = socket.socket()
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind(("127.0.0.1", self.port))
            lsock.listen(64)
            stdin = lsock.fileno()
        try:
            self.proc = subprocess.Popen([str(BIN / "fcgi-publisher"), "-c",
                                          str(self.env.ini_path)],
                                         stdin=stdin, stdout=log, stderr=log)
        finally:
            log.close()
            if lsock:
                lsock.close()
        if on_fd0:
            # The port is bound before the start: wait for the log line.
            wait_for(lambda: "listening on fd 0" in self.log_text() or self.proc.poll() is not None,
                     what="fcgi-publisher to start")
            if self.proc.poll() is not None:
                raise RuntimeError("fcgi-publisher exited: " + self.log_text())
            return

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("fcgi-publisher exited: " + self.log_text())
            return port_open(self.port)
        wait_for(up, what="fcgi-publisher to listen")

    def stop(self):
        p, self.proc = self.proc, None
        return stop_process(p)

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class WebServer:
    """Base: a world-readable scratch directory (the servers' workers may
    run as another user), the htpasswd file, the rendered site config."""
    name = "?"

    def __init__(self, ws_port, pub_port, web_auth=True, overrides=None):
        self.web_auth = web_auth
        # Test-only changes to the rendered site config: more documented
        # values replaced (e.g. a short FastCGI timeout).
        self.overrides = overrides or {}
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f"wspush-{self.name}-"))
        os.chmod(self.dir, 0o755)
        (self.dir / "www").mkdir()
        (self.dir / "www" / "index.html").write_text("site\n")
        self.port = free_port()
        self.ws_port, self.pub_port = ws_port, pub_port
        self.htpasswd = self.dir / "htpasswd"
        for i, (user, pw) in enumerate(USERS.items()):
            subprocess.run(["htpasswd", "-b", "-m"] + (["-c"] if i == 0 else [])
                           + [str(self.htpasswd), user, pw],
                           check=True, capture_output=True, timeout=10)
        os.chmod(self.htpasswd, 0o644)
        self.proc = None
        self.log = self.dir / "error.log"

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.port}"

    def wait_up(self):
        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: " + self.log_text())
            return port_open(self.port)
        wait_for(up, timeout=10, what=f"{self.name} to listen")

    def stop(self):
        p, self.proc = self.proc, None
        try:
            stop_process(p)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class Nginx(WebServer):
    name = "nginx"

    def start(self):
        d = self.dir
        no_auth = {} if self.web_auth else {
            # auth = jwt, as the file's comment says: drop the auth_basic lines.
            'auth_basic "site.example";': "",
            "auth_basic_user_file /etc/wspush/htpasswd;": "",
        }
        site = render(ROOT / "conf" / "nginx" / "wspush.conf", {
            **no_auth,
            "listen 80;": f"listen 127.0.0.1:{self.port};",
            "/var/www/site": str(d / "www"),
            "/etc/wspush/htpasswd": str(self.htpasswd),
            "unix:/run/wspush/fcgi.sock": f"127.0.0.1:{self.pub_port}",
            "http://127.0.0.1:8081": f"http://127.0.0.1:{self.ws_port}",
            **self.overrides,
        })
        (d / "wspush.conf").write_text(site)
        (d / "nginx.conf").write_text(f"""
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {self.log} info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/wspush.conf;
}}
""")
        self.proc = subprocess.Popen([NGINX, "-p", str(d), "-c", str(d / "nginx.conf"),
                                      "-e", str(self.log), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_up()
        return self


APACHE_MODS = ["mpm_event", "authn_core", "authn_file", "authz_core", "authz_user",
               "auth_basic", "proxy", "proxy_fcgi", "proxy_http", "proxy_wstunnel",
               "headers", "alias"]


class Apache(WebServer):
    name = "apache"

    def start(self):
        d = self.dir
        no_auth = {} if self.web_auth else {
            # auth = jwt, as the file's comment says: no Basic auth, and the
            # Authorization header (Bearer) passed on.
            "Require valid-user": "Require all granted\n        CGIPassAuth On",
        }
        site = render(ROOT / "conf" / "apache" / "wspush.conf", {
            **no_auth,
            "<VirtualHost *:80>": f"<VirtualHost 127.0.0.1:{self.port}>",
            "/var/www/site": str(d / "www"),
            "/etc/wspush/htpasswd": str(self.htpasswd),
            "unix:/run/wspush/fcgi.sock|fcgi://localhost/": f"fcgi://127.0.0.1:{self.pub_port}/",
            "ws://127.0.0.1:8081/ws": f"ws://127.0.0.1:{self.ws_port}/ws",
            "http://127.0.0.1:8081/sse": f"http://127.0.0.1:{self.ws_port}/sse",
            **self.overrides,
        })
        (d / "wspush.conf").write_text(site)
        loads = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in APACHE_MODS)
        (d / "httpd.conf").write_text(f"""
ServerRoot {d}
DefaultRuntimeDir {d}
PidFile {d}/httpd.pid
ErrorLog {self.log}
LogLevel warn proxy:info proxy_fcgi:info
Listen 127.0.0.1:{self.port}
ServerName 127.0.0.1
User www-data
Group www-data
{loads}
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MinSpareThreads 1
MaxSpareThreads 16
MaxRequestWorkers 16
Include {d}/wspush.conf
""")
        self.proc = subprocess.Popen([APACHE, "-f", str(d / "httpd.conf"), "-DFOREGROUND"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"),
                                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
        self.wait_up()
        return self


SERVERS = {"nginx": Nginx, "apache": Apache}


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Site:
    """One web server + fcgi-publisher + ws-server, all on loopback."""

    def __init__(self, env, server_name, web_auth=True):
        self.env = env
        self.pub_port = free_port()
        env.sections["publisher"].update({
            "listen": f"127.0.0.1:{self.pub_port}",
            "workers": "3",
            "max_body": "1k",
            "ack_timeout": "800ms",
            "token_ttl": "5m",
        })
        env.sections["channels"].update({
            "publish": "news public/* user/{user}/* team/*",
            "subscribe": "user/{user}/* private/{user}",
        })
        env.write_ini()
        self.publisher = Publisher(env, self.pub_port)
        self.web = SERVERS[server_name](env.ws_port, self.pub_port, web_auth)

    def start(self, on_fd0=False):
        if on_fd0:
            del self.env.sections["publisher"]["listen"]
            self.env.write_ini()
        self.env.start_ws()
        self.publisher.start(on_fd0)
        self.web.start()
        return self

    def stop(self):
        rc = None
        try:
            rc = self.publisher.stop()
        finally:
            self.web.stop()
        return rc

    @property
    def origin(self):
        return self.web.origin

    def request(self, method, path, body=None, headers=None, user="alice", timeout=10):
        h = {}
        if user:
            cred = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
            h["Authorization"] = "Basic " + cred
        if body is not None and not isinstance(body, bytes):
            body = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.web.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return Response(r.status, dict(r.getheaders()), r.read().decode(errors="replace"))
        finally:
            c.close()

    def publish(self, channel, data, user="alice", origin=True, headers=None):
        """A same-origin JSON publish, as the site's own page sends it."""
        h = {"Content-Type": "application/json"}
        if origin:
            h["Origin"] = self.origin
        h.update(headers or {})
        key = "channels" if isinstance(channel, list) else "channel"
        return self.request("POST", "/push/publish", {key: channel, "data": data},
                            headers=h, user=user)

    def ws_url(self, query):
        return f"ws://127.0.0.1:{self.web.port}/ws?{query}"


class WsClient:
    """A synchronous face on websockets' asyncio client: the event loop only
    runs inside a call, and incoming frames wait in the socket meanwhile."""

    def __init__(self, url, origin=None, timeout=5.0):
        self.loop = asyncio.new_event_loop()
        self.timeout = timeout
        async def open_():
            # Created inside the running loop: the legacy client binds to
            # the loop current at construction.
            return await asyncio.wait_for(websockets.connect(
                url, origin=origin, ping_interval=None, open_timeout=timeout,
                close_timeout=1), timeout)
        try:
            self.ws = self.loop.run_until_complete(open_())
        except BaseException:
            self.loop.close()
            raise

    def recv(self, timeout=None):
        return self.loop.run_until_complete(
            asyncio.wait_for(self.ws.recv(), timeout or self.timeout))

    def recv_json(self, timeout=None):
        return json.loads(self.recv(timeout))

    def wait_closed(self, timeout=None):
        """Reads until the server closes; returns the close code."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            try:
                self.recv(max(0.05, deadline - time.monotonic()))
            except websockets.ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None
            except asyncio.TimeoutError:
                break
        raise TimeoutError("connection not closed by the server")

    def close(self):
        try:
            self.loop.run_until_complete(asyncio.wait_for(self.ws.close(), 2))
        except Exception:
            pass
        finally:
            self.loop.close()
