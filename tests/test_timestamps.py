"""Times leave the service in one form: RFC 3339, UTC, milliseconds."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import jsonschema

from media_pipeline.timestamps import RFC3339_PATTERN, rfc3339


def test_seconds_since_the_epoch_become_rfc3339_utc_with_milliseconds() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(datetime(2026, 12, 3, 9, 21, 35, 123000, tzinfo=timezone.utc).timestamp()) == "2026-12-03T09:21:35.123Z"
    assert rfc3339(1796282495) == "2026-12-03T07:21:35.000Z"


def test_milliseconds_are_cut_not_rounded_and_float_noise_is_not_a_millisecond_less() -> None:
    assert rfc3339(1796282495.9999) == "2026-12-03T07:21:35.999Z"  # not 07:21:36.000, a moment later than it was
    assert rfc3339(1796282495.123) == "2026-12-03T07:21:35.123Z"  # stored as 1796282495.12299990654…


def test_the_form_reads_back_as_the_same_moment_and_matches_the_documented_pattern() -> None:
    text = rfc3339(1796282495.123)
    assert abs(datetime.fromisoformat(text).timestamp() - 1796282495.123) < 0.001
    assert re.fullmatch(RFC3339_PATTERN, text)
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    assert checker.conforms(text, "date-time")
    assert not checker.conforms("2026-12-03 07:21:35", "date-time")  # the checker itself is live
