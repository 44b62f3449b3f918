"""The ceiling for bench/ingest.py: a WSGI app that only streams a request body to a file.

Run by bench/ingest.py under gunicorn with the same settings as the API
(``bench.bare_upload:make_app('<folder>')``); not part of the service.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Iterable

CHUNK = 1 << 20


def make_app(folder: str) -> Callable:
    os.makedirs(folder, exist_ok=True)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "POST":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        stream = environ["wsgi.input"]
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
        body = b'{"status": "stored"}'
        start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app
