"""A fault-injecting HTTP proxy on loopback, in front of the S3 server the tests start.

Each request is forwarded to the upstream unless a fault is drawn for it: ``slowdown`` answers
503 with S3's ``SlowDown`` error body, ``reset`` drops the connection with a TCP reset (after
reading the request, as a crashing load balancer would). ``stop()`` closes the listening socket,
so new connections are refused until ``start()`` opens the same port again.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class FaultyProxy:
    def __init__(self, upstream: str, seed: int = 7) -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.rate = 0.0
        self.kinds: tuple[str, ...] = ("slowdown", "reset")
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: dict[str, int] = {}
        self.forwarded = 0
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.open_connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def faults(self, rate: float, kinds: tuple[str, ...] = ("slowdown", "reset")) -> None:
        with self.lock:
            self.rate, self.kinds = rate, kinds

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy.lock:
                    proxy.open_connections.add(self.connection)

            def finish(self) -> None:
                with proxy.lock:
                    proxy.open_connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def _any(self) -> None:
                body = self._read_body()
                fault = proxy._draw()
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "slowdown":
                    self._answer(503, {"Content-Type": "application/xml"}, SLOWDOWN)
                    return
                self._forward(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or body:
                    headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                out = {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP}
                upstream.close()
                with proxy.lock:
                    proxy.forwarded += 1
                self._answer(answer.status, out, data, head=self.command == "HEAD")

            def _answer(self, status: int, headers: dict[str, str], data: bytes, head: bool = False) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", headers.get("Content-Length", headers.get("content-length", str(len(data))))
                                 if head else str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.allow_reuse_address = True
        self.port = server.server_address[1]
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """The endpoint goes away: new connections are refused and open ones are cut."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            connections, self.open_connections = self.open_connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _draw(self) -> str | None:
        with self.lock:
            if self.rate <= 0 or self.random.random() >= self.rate:
                return None
            kind = self.random.choice(self.kinds)
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return kind
