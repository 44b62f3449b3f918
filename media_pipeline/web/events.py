"""``GET /v1/events``: the events of the outbox as a feed, for clients that cannot receive webhooks.

``after`` is the ``cursor`` of the last event the client has (or nothing, for the oldest kept);
the answer's ``next`` is what to send as ``after`` next time, the same when nothing is new.
Events are listed in the order they were committed, so a client that follows ``next`` sees each once.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from media_pipeline.errors import BadQuery
from media_pipeline.web.photos import services

bp = Blueprint("events", __name__, url_prefix="/v1")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@bp.get("/events")
def list_events() -> Response:
    after = _number("after", request.args.get("after", "0"), 0, 2**62)
    limit = _number("limit", request.args.get("limit", str(DEFAULT_LIMIT)), 1, MAX_LIMIT)
    found = services().catalog.events_after(after, limit)
    response = jsonify({"events": [{**e.to_json(), "cursor": e.cursor} for e in found],
                        "next": found[-1].cursor if found else str(after)})
    response.headers["Cache-Control"] = "no-store"
    return response


def _number(name: str, text: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdecimal()) or not low <= int(text) <= high:
        raise BadQuery(f"`{name}` must be a whole number from {low} to {high}")
    return int(text)
