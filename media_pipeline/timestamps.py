"""The one text form of a moment outside the service: RFC 3339 in UTC with milliseconds,
``2026-12-03T09:21:35.123Z``. The catalog keeps seconds since the epoch (they sort, subtract and
index as numbers); the API's JSON and the JSON logs write them with ``rfc3339``."""

from __future__ import annotations

from datetime import datetime, timezone

# The form as a JSON-schema pattern, for the OpenAPI document: clients may rely on exactly it.
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def rfc3339(seconds: float) -> str:
    """``seconds`` since the epoch as RFC 3339 UTC, cut (not rounded) to the millisecond, so a
    moment is never written as later than it was."""
    # fromtimestamp rounds to the microsecond first, which absorbs float noise (…122999999 is …123).
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
