"""A flaky link on loopback for bench/uploads.py: a TCP proxy that drops every connection each time
another ``cut_every`` bytes have gone from the clients to the server, as a phone's network does.

It counts the bytes clients send (``sent``) so a bench can say how many were sent in all and how
many again. Bytes beyond a cut are not forwarded; every connection is reset on the client's side
and closed (the forwarded bytes, then EOF) on the server's.
"""

from __future__ import annotations

import socket
import struct
import threading


class CutLink:
    def __init__(self, upstream: tuple[str, int], cut_every: int | None) -> None:
        self.upstream = upstream
        self.cut_every = cut_every
        self.sent = 0
        self.cuts = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: set[socket.socket] = set()
        self.upstreams: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset_counts(self) -> None:
        with self.lock:
            self.sent = self.cuts = 0

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open |= {client, server}
                self.upstreams.add(server)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                if upstream:
                    with self.lock:
                        allowed = len(data)
                        if self.cut_every:
                            allowed = min(allowed, self.cut_every - self.sent % self.cut_every)
                        self.sent += allowed
                        cut = allowed < len(data) or (self.cut_every is not None and self.sent % self.cut_every == 0)
                    target.sendall(data[:allowed])
                    if cut:
                        self._cut()
                        return
                else:
                    target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                self._close(sock)

    def _cut(self) -> None:
        """The link goes down: every connection through it is reset."""
        with self.lock:
            self.cuts += 1
            victims, self.open = self.open, set()
        for sock in victims:
            # The phone's side is reset; the server's side is closed as a load balancer closes it
            # when its client vanishes, so the server gets the bytes forwarded so far, then EOF
            # (a reset there would also drop what the server had not read yet).
            self._close(sock, reset=sock not in self.upstreams)

    def _close(self, sock: socket.socket, reset: bool = False) -> None:
        try:
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv (close alone would not)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
        with self.lock:
            self.open.discard(sock)
            self.upstreams.discard(sock)
