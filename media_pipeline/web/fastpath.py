"""Immutable rendition GETs answered below Flask.

A CDN in front of the origin asks for ``/i/<id>/<spec>/<width>.<ext>`` on a miss and revalidates
it with ``If-None-Match``. Flask's request and response objects were about half of the Python
time of such a request (bench/origin.py), and none of what they offer is needed for it: the
answer is the same catalog lookup and storage stat as the Flask route (``images.versioned``),
the same headers (``images.object_headers``) and the same conditional rule
(``images.not_modified``), written straight to WSGI. Everything else falls through to Flask: other
URLs, a query string, ``Range``, the presigned-redirect mode, and every miss or error, so 404s and
JSON errors keep coming from the one error handler.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterable

from werkzeug.http import parse_date, parse_etags, remove_entity_headers

from media_pipeline import metrics, purge
from media_pipeline.errors import MediaPipelineError
from media_pipeline.models import EXTENSION_FORMATS
from media_pipeline.service import IMMUTABLE, Services
from media_pipeline.web.images import CHUNK, immutable_validator, not_modified, object_headers, stream_chunks

ROUTE = "/i/<photo_id>/<spec>/<name>"  # the Flask rule it stands in for, as metrics label it
_VERSIONED = re.compile(r"^/i/([0-9a-z]{26})/([0-9a-z]{1,64})/([0-9]{1,5})\.(" + "|".join(EXTENSION_FORMATS) + r")$")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ImmutableRenditions:
    def __init__(self, app: WSGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD")
        match = _VERSIONED.match(environ.get("PATH_INFO", ""))
        if (match is None or method not in ("GET", "HEAD") or environ.get("QUERY_STRING") or "HTTP_RANGE" in environ
                or self.services.settings.serve_mode == "redirect"):
            return self.app(environ, start_response)
        photo_id, spec, width, extension = match.groups()
        try:
            answer = self._answer(environ, method, photo_id, spec, int(width), EXTENSION_FORMATS[extension])
        except MediaPipelineError:
            answer = None
        if answer is None:
            return self.app(environ, start_response)  # Flask resolves it again and answers the error
        status, headers, body = answer
        start_response(status, headers)
        metrics.HTTP_REQUESTS.labels(ROUTE, method, status[:3]).inc()
        metrics.HTTP_SECONDS.labels(ROUTE).observe(time.perf_counter() - started)
        return body

    def _answer(self, environ: dict[str, Any], method: str, photo_id: str, spec: str, width: int,
                fmt: str) -> tuple[str, list[tuple[str, str]], Iterable[bytes]] | None:
        lookup = self.services.catalog.lookup_renditions(photo_id, width, spec)
        rendition = lookup.find(fmt) if lookup is not None else None
        if rendition is None:
            return None
        info = immutable_validator(self.services.storage.stat(rendition.key))
        headers = list(object_headers(info, IMMUTABLE, tags=purge.tags(photo_id, lookup.owner if lookup else None)).items())
        if not_modified(info, parse_etags(environ.get("HTTP_IF_NONE_MATCH")), parse_date(environ.get("HTTP_IF_MODIFIED_SINCE"))):
            remove_entity_headers(headers)  # as werkzeug does for Flask's 304s (RFC 9110 15.4.5)
            return "304 Not Modified", headers, []
        headers += [("Content-Type", info.content_type), ("Content-Length", str(info.size))]
        return "200 OK", headers, [] if method == "HEAD" else self._body(environ, rendition.key)

    def _body(self, environ: dict[str, Any], key: str) -> Iterable[bytes]:
        _, stream = self.services.storage.open(key)
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None and hasattr(stream, "fileno"):
            return wrapper(stream, CHUNK)  # sendfile under gunicorn
        return stream_chunks(stream)
