"""What may stop a photo before it is indexed or rendered: the PDQ blocklists (``MP_BLOCKLISTS``)
and the outside validator (``MP_VALIDATION_URL``). Reading the lists (files, URLs) happens once,
at start; a list that cannot be read stops the start, since running without it would let
through what it should stop."""

from __future__ import annotations

import base64
import logging
import urllib.request
from pathlib import Path
from typing import Any

from config.settings import ConfigError
from media_pipeline import pipeline
from media_pipeline.blocklists import Blocklists, parse_list, parse_sources
from media_pipeline.models import Hashes, Photo
from media_pipeline.validation import Validator

log = logging.getLogger(__name__)

BLOCKED = "blocked_content"
REJECTED = "rejected"


def stop_reason(blocklists: Blocklists, validator: Validator | None, photo: Photo, hashes: Hashes,
                job: pipeline.Job) -> tuple[str, str] | None:
    """(error code, message) when the photo must not go on, else None. The validator's outage
    (``ValidatorUnavailable``) propagates: the task retries rather than let the photo through."""
    blocked = blocklists.match(hashes)
    if blocked:
        return BLOCKED, f"matches the blocklist {blocked[0].list} (distance {blocked[0].distance} of 256)"
    if validator is not None:
        verdict = validator.check(validation_payload(photo, hashes, pipeline.preview_jpeg(job)))
        if not verdict.accepted:
            return REJECTED, verdict.reason or "rejected by the validator"
    return None


def validation_payload(photo: Photo, hashes: Hashes, preview: bytes) -> dict[str, Any]:
    """What the outside validator is sent: the photo, its hashes and a 512 px JPEG preview."""
    return {
        "photo": {"id": photo.id, "owner": photo.owner, "sha256": photo.sha256, "format": photo.original_format,
                  "width": photo.original_width, "height": photo.original_height, "bytes": photo.original_bytes},
        "hashes": {"pdq": hashes.pdq, "pdq_quality": hashes.pdq_quality, "phash": hashes.phash, "dhash": hashes.dhash},
        "preview": {"content_type": "image/jpeg", "base64": base64.b64encode(preview).decode()},
    }


def load_blocklists(setting: str) -> Blocklists:
    """Read every list named in ``MP_BLOCKLISTS`` (files, or URLs fetched once)."""
    lists = []
    for source in parse_sources(setting):
        try:
            if source.location.startswith(("http://", "https://")):
                with urllib.request.urlopen(source.location, timeout=30) as answer:
                    text = answer.read().decode("utf-8")
            else:
                text = Path(source.location).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"MP_BLOCKLISTS: list {source.name} could not be read from {source.location}: {exc}"]) from exc
        try:
            lists.append(parse_list(source, text))
        except ValueError as exc:
            raise ConfigError([f"MP_BLOCKLISTS: {exc}"]) from exc
        log.info("blocklist loaded", extra={"list": source.name, "hashes": len(lists[-1]), "distance": source.distance})
    return Blocklists(tuple(lists))
