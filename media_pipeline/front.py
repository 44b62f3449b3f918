"""The nginx front of the CDN origin, rendered as configuration text from plain values.

Python's ceiling as an origin is a small fraction of nginx's on the same machine (bench/origin.py),
so cache hits and revalidations are nginx's and the app sees only misses. Two shapes:

- ``local``: immutable rendition URLs ``/i/<id>/<spec>/<width>.<ext>`` are mapped onto the storage
  folder's keys ``renditions/<id>/<spec>/<width>.<ext>`` and sent by nginx itself, with the
  headers the app sends. Anything the mapping cannot answer goes to the app (its 404 goes to ``@app``),
  and a deleted photo's files are gone from disk, so nginx serves them at most for the second its
  descriptor cache (``open_file_cache_valid``) keeps them open.
- ``cache``: for S3 storage (URLs need the catalog). Immutable rendition URLs are mirrored on disk:
  the first request goes to the app and nginx keeps its 200 as a file under the URL's path
  (``proxy_store``), later ones are sent from that file as in the local shape. Their bytes never
  change, so the copy never goes stale; a purge deletes it. A ``proxy_cache`` holds every other image
  URL, with the negotiated URLs' ``Accept`` normalised to avif|webp|jpeg in the cache key; a
  negotiated request with client hints bypasses the cache (the app picks its width). Why a mirror and
  not the cache for immutable URLs: a cache hit opens the entry, reads and parses its stored
  header, where a file from the mirror is one descriptor kept open (0.65-0.69x of plain nginx's
  rate against 0.86-0.93x, docs/performance.md#through-the-nginx-front).

Validators: nginx's own strong ETag (``"<mtime>-<size>"`` in hex) and Last-Modified. The app
sends the same for immutable URLs (``web/images.immutable_validator``): in the local shape nginx
sends the storage object itself, and the mirror's copies take the app's Last-Modified as their
mtime (``proxy_store`` does that), so a client revalidates with whichever it got. The file behind
an immutable key is only ever replaced whole (a rename), which gives it a new mtime.

Pure: no I/O; ``cli.py`` reads the settings and prints or writes the text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

from media_pipeline.models import EXTENSION_FORMATS, OUTPUT_CONTENT_TYPES

IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_ZONE = "media_pipeline"
# The app's URL grammar (web/fastpath.py): a 26-character id, a spec, a width of up to 5 digits.
_ID = "[0-9a-z]{26}"
_EXT = "|".join(EXTENSION_FORMATS)
IMMUTABLE_PATH = rf"^/i/(?<photo>{_ID})/(?<spec>[0-9a-z]{{1,64}})/(?<name>[0-9]{{1,5}}\.(?:{_EXT}))$"
_IMMUTABLE = re.compile(IMMUTABLE_PATH.replace("(?<", "(?P<"))  # the same pattern in Python's syntax
# Negotiated: the whole picture's, a crop's (/i/<id>/4x5/640) and an animated photo's poster's.
NEGOTIATED_PATH = rf"^/i/{_ID}/(?:poster/|[1-9][0-9]?x[1-9][0-9]?/)?[0-9]{{1,5}}$"
# The Accept header sent upstream for each class of the cache key, so that the app's choice
# matches the key: a client accepting AVIF is taken to accept WebP too (every browser that does).
PROXY_HEADERS = [
    '    proxy_set_header Connection "";  # keep-alive to the upstream',
    "    proxy_set_header Host $http_host;",
    "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "    proxy_set_header X-Forwarded-Proto $scheme;",
]
ACCEPT_CLASSES = {"avif": "image/avif,image/webp", "webp": "image/webp", "jpeg": "image/jpeg"}


@dataclass(frozen=True)
class Front:
    listen: str  # host:port nginx listens on
    upstream: str  # the app, e.g. http://127.0.0.1:8080
    shape: str  # "local" or "cache"
    runtime_dir: Path  # nginx's pid file, temp folders and error log
    storage_objects: Path | None = None  # local shape: the folder of storage keys
    cache_dir: Path | None = None  # cache shape: proxy_cache_path
    mirror_dir: Path | None = None  # cache shape: the immutable URLs' copies (none: they go through the cache)
    cache_max_size: str = "10g"
    server_name: str = "_"
    user: str | None = None  # only matters when nginx starts as root
    access_log: bool = False


def shape_for(storage_backend: str) -> str:
    return "local" if storage_backend == "local" else "cache"


def server_name_for(public_base_url: str) -> str:
    return urlparse(public_base_url).hostname or "_"


def cache_key(uri: str, args: str = "", accept_class: str = "") -> str:
    """The proxy_cache_key nginx computes in the cache shape (``$uri$is_args$args|$mp_accept_class``),
    for purging an entry by its hash."""
    return f"{uri}{'?' if args else ''}{args}|{accept_class}"


def cache_keys(paths: Iterable[str]) -> list[str]:
    """Every cache key nginx can hold for these paths: a negotiated path once per Accept class."""
    keys = []
    for path in paths:
        uri, _, args = path.partition("?")
        classes = ACCEPT_CLASSES if re.match(NEGOTIATED_PATH, uri) else ("",)
        keys += [cache_key(uri, args, c) for c in classes]
    return keys


def cache_file(cache_dir: Path, key: str) -> Path:
    """Where nginx keeps the entry for ``key`` with ``levels=1:2``: the MD5's last character,
    then the two before it."""
    digest = hashlib.md5(key.encode()).hexdigest()
    return cache_dir / digest[-1] / digest[-3:-1] / digest


def mirror_files(mirror_dir: Path, paths: Iterable[str]) -> list[Path]:
    """Where the cache shape's mirror keeps these paths' copies (only immutable URLs have one)."""
    return [mirror_dir / path.lstrip("/") for path in paths if _IMMUTABLE.match(path)]


def render(front: Front) -> str:
    if front.shape not in ("local", "cache"):
        raise ValueError(f"unknown front shape {front.shape!r}")
    if front.shape == "local" and front.storage_objects is None:
        raise ValueError("the local shape needs the storage folder")
    if front.shape == "cache" and front.cache_dir is None:
        raise ValueError("the cache shape needs a cache folder")
    run = front.runtime_dir
    head = [
        f"# Generated by `media-pipeline nginx-config` ({front.shape} shape); see docs/serving.md.",
        f"user {front.user};" if front.user else "# user www-data;  # when started as root: a user that can read the storage folder",
        "worker_processes auto;",
        "pcre_jit on;",
        f"pid {run / 'nginx.pid'};",
        f"error_log {run / 'error.log'} warn;",
        "events { worker_connections 1024; }",
        "",
        "http {",
    ]
    http = [
        f"client_body_temp_path {run / 'client_body'};",
        f"proxy_temp_path {run / 'proxy'};",
        f"fastcgi_temp_path {run / 'fastcgi'};",
        f"uwsgi_temp_path {run / 'uwsgi'};",
        f"scgi_temp_path {run / 'scgi'};",
        f"access_log {run / 'access.log'};" if front.access_log else "access_log off;",
        "server_tokens off;",
        "sendfile on;",
        *_nopush(front.shape),
        "keepalive_timeout 65;",
        "keepalive_requests 10000;",
        # Uploads stream to the app, which enforces MP_MAX_UPLOAD_BYTES and answers its own JSON 413.
        "client_max_body_size 0;",
        "proxy_request_buffering off;",
        "",
        "upstream media_pipeline_app {",
        f"    server {_host_port(front.upstream)};",
        "    keepalive 32;",
        "}",
    ]
    if front.shape == "cache":
        http += _cache_http(front)
    server = [
        "",
        "server {",
        f"    listen {front.listen};",
        f"    server_name {front.server_name};",
        "    proxy_http_version 1.1;",
        *PROXY_HEADERS,
        "",
        *_indent(_local_locations(front) if front.shape == "local" else _mirror_locations(front) + _cache_locations()),
        "",
        "    location / {",
        "        proxy_pass http://media_pipeline_app;",
        "    }",
        "}",
    ]
    return "\n".join([*head, *_indent(http + server), "}", ""])


def _nopush(shape: str) -> list[str]:
    """TCP_CORK for files sent from the storage folder; off in the cache shape. With it on, nginx on
    Linux never sets TCP_NODELAY on a keep-alive connection, and a cache hit's last partial segment
    then waited for the client's delayed ACK (up to 40 ms; ss showed it unsent behind one unacked
    segment): 0.12x of plain nginx's rate. Off, nginx sets TCP_NODELAY and the stall is gone
    (docs/performance.md#through-the-nginx-front)."""
    if shape == "local":
        return ["tcp_nopush on;"]
    return ["# No TCP_CORK: with it nginx leaves Nagle on, and a cache hit's last segment waited for the",
            "# client's delayed ACK (up to 40 ms). Without it nginx sets TCP_NODELAY on keep-alive connections.",
            "tcp_nopush off;"]


# How long the local shape and the mirror may go on sending a deleted photo's file (open_file_cache_valid).
DELETED_SERVED_AT_MOST_SECONDS = 1
# The mirror's copies not read for this long are deleted by `cleanup` (the proxy_cache's `inactive`).
MIRROR_UNREAD_DAYS = 7


def _local_locations(front: Front) -> list[str]:
    return [
        "# Immutable renditions, straight from the storage folder. A key not on disk (unknown id,",
        "# not rendered yet, deleted photo) is nginx's 404, which goes to the app: it answers it or its own 404.",
        f'location ~ "{IMMUTABLE_PATH}" {{',
        # alias and a 404 to the app rather than root and try_files: one file lookup a request, not two.
        f"    alias {front.storage_objects}/renditions/$photo/$spec/$name;",
        "    error_page 404 = @app;",
        *_from_disk(),
        "    # A hidden photo (its owner opted out, or it was hidden: media_pipeline/visibility.py) has a",
        "    # marker in the storage folder: the app answers its 404.",
        f"    if (-f {front.storage_objects}/hidden/$photo) {{ return 418; }}",
        "}",
        "",
        *_app_location(),
    ]


def _mirror_locations(front: Front) -> list[str]:
    if front.mirror_dir is None:
        return []
    return [
        "# Immutable renditions from the mirror: a copy of the app's first 200 for each URL, kept under",
        "# its path. Not there yet (or purged: a deleted or hidden photo's copies are deleted) is a 404,",
        "# which goes to the app; its 200 is stored, its errors are not. `media-pipeline cleanup`",
        f"# deletes copies not read for {MIRROR_UNREAD_DAYS} days.",
        f'location ~ "{IMMUTABLE_PATH}" {{',
        f"    root {front.mirror_dir};",
        "    error_page 404 = @mirror_fill;",
        *_from_disk(),
        "    add_header X-Cache-Status HIT;",
        "}",
        "",
        "location @mirror_fill {",
        "    proxy_pass http://media_pipeline_app;",
        f"    proxy_store {front.mirror_dir}$uri;",
        "    proxy_store_access user:rw group:r all:r;",
        "    add_header X-Cache-Status MISS always;",
        "}",
        "",
        *_app_location(),
        "",
    ]


def _from_disk() -> list[str]:
    """What a location that sends rendition files from disk adds to its file: the app's headers,
    validators, HEAD and 304 by nginx, Range requests and 404s by the app."""
    types = " ".join(f"{OUTPUT_CONTENT_TYPES[fmt]} {ext};" for ext, fmt in EXTENSION_FORMATS.items())
    return [
        "    log_not_found off;",
        # Open descriptors kept for a second: a revalidation is then a recvfrom and a writev, and
        # a deleted photo's file is served through its old descriptor for at most that second
        # (errors are not cached, so a hidden-photo marker counts at once).
        "    # A deleted photo's file can be sent for at most a second (its descriptor is kept that long).",
        "    open_file_cache max=10000 inactive=60s;",
        f"    open_file_cache_valid {DELETED_SERVED_AT_MOST_SECONDS}s;",
        f"    types {{ {types} }}",
        "    default_type application/octet-stream;",
        "    etag on;",
        "    if_modified_since before;  # as the app: not modified since any date at or after the file's",
        # Range requests go to the app: nginx adds this location's headers before its range filter
        # decides on a 416, so its 416 would carry a year of Cache-Control instead of the app's
        # no-store JSON. Browsers do not ask for parts of images; HEAD and 304s stay here.
        "    # Range requests go to the app, whose 416 is no-store JSON (nginx's would carry this location's headers).",
        "    error_page 418 = @app;",
        '    if ($http_range) { return 418; }',
        f'    add_header Cache-Control "{IMMUTABLE}";',
        "    add_header X-Content-Type-Options nosniff;",
        # The owner is not in the URL: nginx tags the photo; the app's answers tag the owner too.
        '    add_header Surrogate-Key "photo-$photo";',
        '    add_header Cache-Tag "photo-$photo";',
    ]


def _app_location() -> list[str]:
    return ["location @app {", "    proxy_pass http://media_pipeline_app;", "}"]


def _cache_http(front: Front) -> list[str]:
    avif, webp = _accepts("avif"), _accepts("webp")
    return [
        "",
        f"proxy_cache_path {front.cache_dir} levels=1:2 keys_zone={CACHE_ZONE}:16m max_size={front.cache_max_size}",
        f"                 inactive={MIRROR_UNREAD_DAYS}d use_temp_path=off;",
        "# Negotiated URLs (/i/<id>/<width>, and a crop's or a poster's): the cache key and the Accept sent upstream are one of",
        "# three classes, so the cache holds three variants, not one per browser's Accept string.",
        "map $uri $mp_negotiated {",
        f'    "~{NEGOTIATED_PATH}" 1;',
        "    default 0;",
        "}",
        'map "$mp_negotiated:$http_accept" $mp_accept_class {',
        f'    "~*^1:{avif}" avif;',
        f'    "~*^1:{webp}" webp;',
        '    "~^1:" jpeg;',
        '    default "";',
        "}",
        "map $mp_accept_class $mp_accept {",
        *[f'    {name} "{value}";' for name, value in ACCEPT_CLASSES.items()],
        "    default $http_accept;",
        "}",
        "# A negotiated request with client hints (web/client_hints.py) goes to the app, uncached: the",
        "# width it gets depends on them, and a key per hinted width could not be listed to purge.",
        'map "$mp_negotiated:$http_sec_ch_width$http_sec_ch_dpr$http_save_data" $mp_hinted {',
        '    "~^1:." 1;',
        '    default "";',
        "}",
    ]


def _accepts(fmt: str) -> str:
    """A regex for an Accept value naming image/<fmt> without q=0."""
    return rf"(?!.*image/{fmt}\s*;\s*q=0(?:\.0*)?\s*(?:[,;]|$)).*image/{fmt}"


def _cache_locations() -> list[str]:
    return [
        "# Every other image URL through the cache: validity from the app's Cache-Control (a year for",
        "# immutable URLs without the mirror, MP_STABLE_MAX_AGE for stable ones; its 404s are no-store).",
        "location /i/ {",
        "    proxy_pass http://media_pipeline_app;",
        f"    proxy_cache {CACHE_ZONE};",
        '    proxy_cache_key "$uri$is_args$args|$mp_accept_class";  # media_pipeline/front.py cache_key() computes it to purge',
        # proxy_set_header in a location drops every one inherited from the server: all again.
        *PROXY_HEADERS,
        "    proxy_set_header Accept $mp_accept;",
        "    proxy_ignore_headers Vary;  # the key already holds the negotiation",
        "    proxy_cache_lock on;  # concurrent first requests: one goes to the app, the rest wait",
        "    proxy_cache_lock_timeout 60s;",
        "    proxy_cache_lock_age 60s;",
        "    proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;",
        "    proxy_cache_background_update on;",
        "    proxy_cache_revalidate on;",
        "    proxy_cache_valid 404 410 500 502 503 504 2s;  # errors without their own Cache-Control",
        "    if_modified_since before;  # as the app: not modified since any date at or after the object's",
        # Range requests go to the app, uncached, as in the local shape: nginx's 416 would carry the
        # cached answer's year of Cache-Control. With a cache, nginx drops Range upstream: put it back.
        "    # Range requests go to the app, uncached, whose 416 is no-store JSON.",
        "    proxy_cache_bypass $http_range $mp_hinted;",
        "    proxy_no_cache $http_range $mp_hinted;",
        "    proxy_set_header Range $http_range;",
        "    proxy_set_header If-Range $http_if_range;",
        "    add_header X-Cache-Status $upstream_cache_status always;",
        "}",
    ]


def _host_port(url: str) -> str:
    parsed = urlparse(url if "//" in url else f"http://{url}")
    if not parsed.hostname or not parsed.port:
        raise ValueError(f"the upstream must be host:port or http://host:port, not {url!r}")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return f"{host}:{parsed.port}"


def _indent(lines: Iterable[str]) -> list[str]:
    return [f"    {line}" if line else "" for line in lines]
