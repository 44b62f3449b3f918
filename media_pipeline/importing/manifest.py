"""A JSON Lines manifest: one object per line, ``{"source", "owner", "external_id", "taken_at",
"visible", "sha256"}``. Pure: a line in, a ``SourceItem`` out; a bad line is an item with its
problem, so the job records it and goes on."""

from __future__ import annotations

import json
import re
from typing import Any

from media_pipeline.importing.models import SourceItem

_MAX_TEXT = 256
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SOURCE_KEYS = ("source", "key", "path")  # the "`source` key or path": any one of them


def parse_line(line: str, line_no: int) -> SourceItem | None:
    """The item of one manifest line (``None`` for a blank line)."""
    text = line.strip()
    if not text:
        return None
    label = f"line {line_no}"
    try:
        record = json.loads(text)
    except ValueError as exc:
        return _bad(label, f"not JSON: {exc}")
    if not isinstance(record, dict):
        return _bad(label, "not a JSON object")
    source = next((record[k] for k in _SOURCE_KEYS if k in record), None)
    if not isinstance(source, str) or not source.strip():
        return _bad(label, 'no "source" (an S3 URL, a path, or a key)')
    item = f"{line_no}: {source}"
    try:
        return SourceItem(
            item=item,
            owner=_text(record, "owner"),
            external_id=_text(record, "external_id", allow_int=True),
            taken_at=_text(record, "taken_at"),
            visible=_flag(record, "visible"),
            sha256=_sha256(record),
        )
    except ValueError as exc:
        return SourceItem(item=item, problem=("bad_manifest_line", str(exc)))


def source_of(item: SourceItem) -> str:
    """The manifest's ``source`` of an item named ``"<line>: <source>"``."""
    return item.item.split(": ", 1)[1]


def _bad(label: str, message: str) -> SourceItem:
    return SourceItem(item=label, problem=("bad_manifest_line", message))


def _text(record: dict[str, Any], name: str, allow_int: bool = False) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT or not value.isprintable():
        raise ValueError(f'"{name}" must be a printable string of 1 to {_MAX_TEXT} characters')
    return value


def _flag(record: dict[str, Any], name: str) -> bool | None:
    value = record.get(name)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f'"{name}" must be true or false')
    return value


def _sha256(record: dict[str, Any]) -> str | None:
    value = record.get("sha256")
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.match(value.lower()):
        raise ValueError('"sha256" must be 64 hex digits')
    return value.lower()
