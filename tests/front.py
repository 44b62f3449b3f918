"""The generated nginx front, run for real in tests: the app on a loopback port (in a thread of the
test process, so the test still holds its services) and nginx in front of it with the text
``media-pipeline nginx-config`` prints. A client with the Flask test client's interface lets the
serving tests run unchanged against either."""

from __future__ import annotations

import json
import http.client
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from werkzeug.datastructures import Headers
from werkzeug.serving import make_server

from media_pipeline import nginx
from tests.conftest import free_port, port_open, require


class HttpResponse:
    def __init__(self, status: int, headers: Headers, data: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.data = data

    def get_json(self) -> Any:
        return json.loads(self.data)


class HttpClient:
    """get/head/post/delete/open as the Flask test client has them, over real HTTP/1.1."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def open(self, path: str, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None) -> HttpResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            # As the Flask client does: non-ASCII characters of a path go as UTF-8, escapes as they are.
            conn.request(method, quote(path, safe="/%?=&:+,;@-._~"), body=data, headers=headers or {})
            response = conn.getresponse()
            return HttpResponse(response.status, Headers(response.getheaders()), response.read())
        finally:
            conn.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> HttpResponse:
        return self.open(path, "GET", headers)

    def head(self, path: str, headers: dict[str, str] | None = None) -> HttpResponse:
        return self.open(path, "HEAD", headers)

    def delete(self, path: str, headers: dict[str, str] | None = None) -> HttpResponse:
        return self.open(path, "DELETE", headers)

    def post(self, path: str, data: bytes = b"", headers: dict[str, str] | None = None) -> HttpResponse:
        return self.open(path, "POST", headers, data)


class AppServer:
    """The WSGI app on 127.0.0.1, served by werkzeug's threaded server in this process."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NginxFront:
    """nginx with the generated configuration, in the foreground as a child of the test."""

    def __init__(self, settings: Any, upstream_port: int, runtime_dir: Path | None = None) -> None:
        try:
            binary = nginx.find_nginx()
        except nginx.NginxMissing:
            require(False, "nginx (apt-get install nginx-light)")
            raise
        self.port = free_port()
        self.config = nginx.front_for(settings, listen=f"127.0.0.1:{self.port}", upstream=f"http://127.0.0.1:{upstream_port}",
                                      runtime_dir=runtime_dir, run_as_me=True)
        self.conf = nginx.prepare(self.config)
        self.proc = subprocess.Popen(nginx.command(binary, self.conf), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {self.proc.stderr.read().decode(errors='replace') if self.proc.stderr else ''}")
            time.sleep(0.05)
        self.client = HttpClient("127.0.0.1", self.port)

    def error_log(self) -> str:
        path = self.config.runtime_dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # nginx's fast shutdown, workers included
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class PurgeHook:
    """A CDN's purge endpoint on 127.0.0.1: records each POST, and answers 503 to the first ``fail`` of them."""

    def __init__(self, fail: int = 0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[tuple[Headers, bytes]] = []
        self.fail = fail
        self.arrived = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                failing = hook.fail > 0
                hook.fail -= 1
                if not failing:
                    hook.received.append((Headers(list(self.headers.items())), body))
                    hook.arrived.set()
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/purge"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
