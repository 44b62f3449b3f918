"""What a cache in front of the origin holds for a photo, named so it can be purged: the cache
tags every image answer carries, and the paths of every URL that can answer with its bytes.

Pure: values in, values out. The hook that sends them (``purge_hook.py``) and the nginx front's
cache (``front.py``) use them; the web layer puts the tags on its answers.
"""

from __future__ import annotations

from typing import Iterable, Sequence
from urllib.parse import quote

from media_pipeline.crops import aspect_path
from media_pipeline.models import OUTPUT_EXTENSIONS, Rendition
from media_pipeline.signing import signed_path


def tags(photo_id: str, owner: str | None) -> tuple[str, ...]:
    """``photo-<id>`` and ``owner-<owner>``: Fastly's Surrogate-Key takes space-separated keys and
    Cloudflare's Cache-Tag comma-separated ones, so the owner (any printable text) is
    percent-encoded into a token."""
    found = (f"photo-{photo_id}",)
    return (*found, owner_tag(owner)) if owner else found


def owner_tag(owner: str) -> str:
    return f"owner-{quote(owner, safe='')}"


def surrogate_headers(photo_tags: Sequence[str]) -> dict[str, str]:
    return {"Surrogate-Key": " ".join(photo_tags), "Cache-Tag": ",".join(photo_tags)} if photo_tags else {}


def photo_paths(photo_id: str, renditions: Iterable[Rendition], signing_keys: Sequence[bytes] = ()) -> list[str]:
    """Every path that can answer with one of these renditions: its immutable URL, the stable URL
    of its width and format, the negotiated URL of its width, and those two signed with each
    configured key (an on-demand request's URL). A stable URL asked for at a width that snapped
    to this one is not among them: it stays in a cache until its (stable, short) max-age ends."""
    paths: list[str] = []
    for r in renditions:
        # A crop's stable and negotiated URLs carry its aspect as a segment: /i/<id>/4x5/640.
        base = f"/i/{photo_id}" if r.aspect == "original" else f"/i/{photo_id}/{aspect_path(r.aspect)}"
        stable = f"{base}/{r.width}.{OUTPUT_EXTENSIONS[r.format]}"
        negotiated = f"{base}/{r.width}"
        paths += [f"/i/{photo_id}/{r.spec}/{r.width}.{OUTPUT_EXTENSIONS[r.format]}", stable, negotiated]
        paths += [signed_path(p, key) for key in signing_keys for p in (stable, negotiated)]
    return list(dict.fromkeys(paths))
