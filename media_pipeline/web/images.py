"""The CDN origin: rendition URLs, conditional and range requests, on-demand renditions.

    /i/<id>/<spec>/<width>.<ext>      immutable: the bytes behind it never change
    /i/<id>/<width>.<ext>             stable: the photo's current rendition of that width and format
    /i/<id>/<width>                   stable, format negotiated from Accept (AVIF, WebP, JPEG), width
                                      from client hints when sent (web/client_hints.py); Vary names both
    /i/<id>/<A>x<B>/<width>[.<ext>]   stable crop of aspect A:B around the subject, the same two ways
    /i/<id>/poster/<width>[.<ext>]    stable still of an animated photo (its first frame), the same two ways

An animated photo's stable and negotiated URLs answer with its animation where the format has one
(negotiated: animated AVIF, then animated WebP, then the still JPEG); ``poster`` asks for the still.

A stable URL for a width or format that was not made at ingest is rendered on first request, but
only when the URL carries a valid signature (``?sig=``, HMAC-SHA256 of the path); its width snaps
up to the configured on-demand set and never exceeds the original (for a crop: what its window
holds), and a crop's aspect must be one of ``MP_ONDEMAND_ASPECTS``. Originals are unreachable: every
URL resolves through the catalog to a key under ``renditions/``.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
from datetime import datetime
from typing import Iterator, Sequence

from flask import Blueprint, Response, current_app, redirect, request
from werkzeug.datastructures import ETags
from werkzeug.http import http_date, parse_accept_header
from werkzeug.wsgi import wrap_file

from media_pipeline import crop_renditions, crops, purge, service, signing
from media_pipeline.errors import NotFound
from media_pipeline.models import EXTENSION_FORMATS, OUTPUT_CONTENT_TYPES, POSTER_SEGMENT, Rendition
from media_pipeline.service import Services
from media_pipeline.storage.base import ObjectInfo
from media_pipeline.web import client_hints
from media_pipeline.web.errors import error_response

bp = Blueprint("images", __name__)
CHUNK = 1 << 16
NEGOTIATION_ORDER = ("avif", "webp", "jpeg")
_render_locks: dict[str, threading.Lock] = {}
_render_locks_guard = threading.Lock()


def services() -> Services:
    return current_app.extensions["media_pipeline"]


@bp.route("/i/<photo_id>/<spec>/<name>", methods=["GET", "HEAD"])
def versioned(photo_id: str, spec: str, name: str) -> Response:
    if spec == POSTER_SEGMENT:
        return stable(photo_id, name, animated=False)
    aspect = crops.aspect_from_path(spec)
    if aspect is not None:  # /i/<id>/4x5/1080.avif: a spec is a hex hash, never A x B
        return stable(photo_id, name, aspect)
    width, fmt = _parse_name(name)
    if fmt is None:
        raise NotFound("no such rendition")
    rendition, owner = _resolve(photo_id, width, (fmt,), spec=spec, signed=False)
    return _serve(rendition, service.IMMUTABLE, vary=None, tags=purge.tags(photo_id, owner), immutable=True)


@bp.route("/i/<photo_id>/<name>", methods=["GET", "HEAD"])
def stable(photo_id: str, name: str, aspect: str = "original", animated: bool | None = None) -> Response:
    width, fmt = _parse_name(name)
    candidates = (fmt,) if fmt else _acceptable_formats()
    found = None if fmt else _by_hints(photo_id, width, candidates, aspect, animated)
    if found is None:
        found = _resolve(photo_id, width, candidates, spec=None, signed=_signature_ok(), aspect=aspect, animated=animated)
    rendition, owner = found
    max_age = services().settings.stable_max_age
    cache = f"public, max-age={max_age}, stale-while-revalidate={max_age}"
    response = _serve(rendition, cache, vary=None if fmt else client_hints.VARY, tags=purge.tags(photo_id, owner))
    if not fmt:
        response.headers["Accept-CH"] = client_hints.ACCEPT_CH
    return response


def _by_hints(photo_id: str, width: int, formats: tuple[str, ...], aspect: str,
              animated: bool | None) -> tuple[Rendition, str | None] | None:
    """The rendition at the preset width the request's client hints pick (web/client_hints.py),
    or the widest smaller one that exists (a photo narrower than it has none there; the whole
    picture's own width stands in for the wider ones); ``None`` without hints. Only widths made
    already: hints never render on demand."""
    svc = services()
    widths = svc.preset.widths if aspect == "original" else svc.preset.crop_widths
    chosen = client_hints.hinted_width(request.headers, width, widths)
    if chosen is None:
        return None
    tried: set[int] = set()
    for candidate in client_hints.fallbacks(chosen, widths):
        lookup = svc.catalog.lookup_renditions(photo_id, candidate, None, aspect) if service.is_photo_id(photo_id) else None
        if lookup is None:
            return None  # no such photo: the usual path answers the error
        if aspect == "original" and candidate > lookup.original_width:
            candidate = lookup.original_width  # rendered at ingest when under the widest preset (pipeline.rendition_widths)
        if candidate in tried:
            continue
        tried.add(candidate)
        try:
            return _resolve(photo_id, candidate, formats, spec=None, signed=False, aspect=aspect, animated=animated)
        except NotFound:
            continue
    return None


# --------------------------------------------------------------------------- resolution
def _parse_name(name: str) -> tuple[int, str | None]:
    stem, dot, extension = name.partition(".")
    # isdecimal() alone takes "²" and Arabic-Indic digits, which int() refuses or reads: ASCII only.
    if not (stem.isascii() and stem.isdecimal()) or len(stem) > 5 or (dot and extension not in EXTENSION_FORMATS):
        raise NotFound("no such rendition")
    return int(stem), EXTENSION_FORMATS[extension] if dot else None


def _acceptable_formats() -> tuple[str, ...]:
    accept = parse_accept_header(request.headers.get("Accept", ""))
    chosen = tuple(f for f in ("avif", "webp") if accept.quality(OUTPUT_CONTENT_TYPES[f]) > 0 and f"image/{f}" in accept.values())
    return (*chosen, "jpeg")  # every client renders JPEG


def _signature_ok() -> bool:
    signature = request.args.get(signing.SIGNATURE_PARAM)
    keys = services().settings.signing_key_list
    return bool(signature and keys and signing.verify(request.path, signature, keys))


def _resolve(photo_id: str, width: int, formats: tuple[str, ...], spec: str | None, signed: bool,
             aspect: str = "original", animated: bool | None = None) -> tuple[Rendition, str | None]:
    """The rendition to answer with, and the photo's owner (for its cache tags). ``animated``
    None: the animation where the format has one, else the still; False: the still only."""
    svc = services()
    if not service.is_photo_id(photo_id):
        raise NotFound("no such rendition")
    cropped = aspect != "original"
    if cropped and aspect not in svc.preset.aspects and aspect not in svc.settings.ondemand_aspect_list:
        raise NotFound("no such rendition")
    if signed:
        width = _snap(width, svc)
    lookup = svc.catalog.lookup_renditions(photo_id, width, spec, aspect)
    if lookup is None:
        raise NotFound("no such photo, or it is not ready")
    if signed and not cropped and width > lookup.original_width:
        width = lookup.original_width
        lookup = svc.catalog.lookup_renditions(photo_id, width, spec) or lookup
    if animated is None:  # an animation in any format the client takes beats a still in its first choice
        moving = next((found for fmt in formats if (found := lookup.find(fmt, True)) is not None), None)
        if moving is not None:
            return moving, lookup.owner
    for fmt in formats:  # the client's preference among what exists
        found = lookup.find(fmt, animated)
        if found is not None and (not signed or fmt == formats[0]):
            return found, lookup.owner
    if signed and spec is None:
        rendered = _render_once(photo_id, width, formats[0], aspect)
        if rendered is not None:
            return rendered, lookup.owner
    for fmt in formats:
        found = lookup.find(fmt, animated)
        if found is not None:
            return found, lookup.owner
    raise NotFound("no such rendition")


def _snap(width: int, svc: Services) -> int:
    allowed = sorted(set(svc.settings.ondemand_width_list) | set(svc.preset.widths) | set(svc.preset.crop_widths))
    index = bisect.bisect_left(allowed, width)
    return allowed[min(index, len(allowed) - 1)]


def _render_once(photo_id: str, width: int, fmt: str, aspect: str = "original") -> Rendition | None:
    """In one process, concurrent first requests for the same rendition render it once."""
    key = f"{photo_id}/{aspect}/{width}/{fmt}"
    with _render_locks_guard:
        lock = _render_locks.setdefault(key, threading.Lock())
    with lock:
        svc = services()
        lookup = svc.catalog.lookup_renditions(photo_id, width, aspect=aspect)
        result = lookup.find(fmt) if lookup else None
        if result is None and aspect == "original":
            result = service.render_on_demand(svc, photo_id, width, fmt)
        elif result is None:
            result = crop_renditions.render_crop_on_demand(svc, photo_id, aspect, width, fmt)
    with _render_locks_guard:
        _render_locks.pop(key, None)
    return result


# --------------------------------------------------------------------------- HTTP
def object_headers(info: ObjectInfo, cache_control: str, vary: str | None = None, tags: Sequence[str] = ()) -> dict[str, str]:
    """The headers every answer for a stored rendition carries (the 304 too), with the cache tags
    a CDN purges by (Surrogate-Key for Fastly and Akamai, Cache-Tag for Cloudflare)."""
    headers = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": http_date(info.last_modified),
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        "Accept-Ranges": "bytes",
    }
    if vary:
        headers["Vary"] = vary
    headers.update(purge.surrogate_headers(tags))
    return headers


def immutable_validator(info: ObjectInfo) -> ObjectInfo:
    """An immutable URL's object with nginx's validator, ``"<mtime>-<size>"`` in hex (whole seconds
    of its Last-Modified): the nginx front sends these files itself (the local shape from the
    storage folder, the cache shape from its mirror, whose copies take the app's Last-Modified as
    their mtime), so a client or CDN that got the file from either revalidates with a validator
    both know. Strong: the bytes behind an immutable key never change, and a file rewritten whole
    gets a new mtime."""
    return dataclasses.replace(info, etag=f"{int(info.last_modified):x}-{info.size:x}")


def not_modified(info: ObjectInfo, if_none_match: ETags, if_modified_since: datetime | None) -> bool:
    """RFC 9110: If-None-Match decides when present (weak comparison); else If-Modified-Since."""
    if if_none_match:
        return bool(if_none_match.star_tag or if_none_match.contains_weak(info.etag))
    return if_modified_since is not None and int(info.last_modified) <= if_modified_since.timestamp()


def _serve(rendition: Rendition, cache_control: str, vary: str | None, tags: Sequence[str], immutable: bool = False) -> Response:
    svc = services()
    info = svc.storage.stat(rendition.key)
    if immutable:
        info = immutable_validator(info)
    headers = object_headers(info, cache_control, vary, tags)
    if not_modified(info, request.if_none_match, request.if_modified_since):
        return Response(status=304, headers=headers)
    if svc.settings.serve_mode == "redirect" and hasattr(svc.storage, "presigned_url"):
        response = redirect(svc.storage.presigned_url(rendition.key, svc.settings.presign_seconds), code=302)
        # A CDN must not keep the redirect longer than the signature lives.
        response.headers["Cache-Control"] = f"public, max-age={svc.settings.presign_seconds // 2}"
        if vary:
            response.headers["Vary"] = vary
        response.headers.update(purge.surrogate_headers(tags))
        return response
    byte_range = _byte_range(info)
    if byte_range == "unsatisfiable":
        response = error_response(416, "range_not_satisfiable", f"the object has {info.size} bytes")
        response.headers["Content-Range"] = f"bytes */{info.size}"
        return response
    status, length = 200, info.size
    if isinstance(byte_range, tuple):
        status, length = 206, byte_range[1] - byte_range[0] + 1
        headers["Content-Range"] = f"bytes {byte_range[0]}-{byte_range[1]}/{info.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        response = Response(status=status, headers=headers, content_type=info.content_type)
        response.headers["Content-Length"] = str(length)
        return response
    _, stream = svc.storage.open(rendition.key, byte_range if isinstance(byte_range, tuple) else None)
    body = wrap_file(request.environ, stream) if hasattr(stream, "fileno") and status == 200 else stream_chunks(stream)
    response = Response(body, status=status, headers=headers, content_type=info.content_type, direct_passthrough=True)
    return response


def _byte_range(info: ObjectInfo) -> tuple[int, int] | str | None:
    ranges = request.range
    if ranges is None or len(ranges.ranges) != 1 or ranges.units != "bytes":
        return None  # no range, or several: the whole object is a valid answer
    if_range = request.if_range
    if if_range.etag is not None and if_range.etag != info.etag:
        return None
    if if_range.date is not None and int(info.last_modified) > if_range.date.timestamp():
        return None
    span = ranges.range_for_length(info.size)
    if span is None:
        return "unsatisfiable"
    return span[0], span[1] - 1


def stream_chunks(stream: object) -> Iterator[bytes]:
    with stream:  # type: ignore[attr-defined]
        while chunk := stream.read(CHUNK):  # type: ignore[attr-defined]
            yield chunk
