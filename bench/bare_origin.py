"""The ceiling for bench/origin.py: the least a WSGI app under gunicorn can do to serve a file.

It answers every request for the one object it was given from its file, with a strong ETag:
``304`` when ``If-None-Match`` matches, else ``200`` through ``wsgi.file_wrapper`` (sendfile). No
routing, no catalog, no header parsing beyond that one. Run by bench/origin.py under gunicorn with
the API's worker settings (``bench.bare_origin:make_app('<file>', '<content type>')``), so what
separates it from nginx is the server and Python, and what separates it from the API is our code.
Not part of the service.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable


def make_app(path: str, content_type: str) -> Callable:
    info = os.stat(path)
    etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
    headers = [("ETag", etag), ("Cache-Control", "public, max-age=31536000, immutable"),
               ("X-Content-Type-Options", "nosniff")]

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("HTTP_IF_NONE_MATCH") == etag:
            start_response("304 Not Modified", headers)
            return []
        start_response("200 OK", [*headers, ("Content-Type", content_type), ("Content-Length", str(info.st_size))])
        return environ["wsgi.file_wrapper"](open(path, "rb"), 1 << 16)

    return app
