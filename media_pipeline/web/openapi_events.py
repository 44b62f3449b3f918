"""The events part of the OpenAPI document (``GET /v1/events`` and the ``Event`` schema, which is
also a webhook's body), kept apart from openapi.py, which is long already."""

from __future__ import annotations

from typing import Any

from media_pipeline.events import TYPES
from media_pipeline.timestamps import RFC3339_PATTERN

ERROR_CODES = ["bad_query"]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _number(name: str, description: str, minimum: int, maximum: int) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "integer", "minimum": minimum, "maximum": maximum}}


PATHS: dict[str, Any] = {
    "/v1/events": {
        "get": {
            "operationId": "listEvents",
            "summary": "Events in the order they happened, after a cursor: what webhooks deliver, for clients that poll",
            "parameters": [
                _number("after", "The `cursor` of the last event you have (`next` of the previous page); none for the oldest kept", 0, 2**62),
                _number("limit", "Events per page, 1 to 1000 (default 100)", 1, 1000),
            ],
            "responses": {
                "200": {"description": "A page of events; `next` is the `after` of the next call (the same when nothing is new)",
                        "content": {"application/json": {"schema": {
                            "type": "object", "required": ["events", "next"], "additionalProperties": False,
                            "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                                           "next": {"type": "string", "pattern": "^[0-9]+$"}}}}}},
                "400": _error("`after` or `limit` is not a whole number in range"),
            },
        }
    },
}

_photo_ref = {"type": "object", "required": ["id", "owner"], "properties": {
    "id": {"type": "string"}, "owner": {"type": ["string", "null"]},
    "status": {"enum": ["ready", "failed", "deleted", "queued", "processing"]},
    "sha256": {"type": "string"}, "preset_version": {"type": ["string", "null"]},
    "original": {"type": "object"}, "links": {"type": "object"},
    "error": {"type": "object", "required": ["code", "message"]}}}

SCHEMAS: dict[str, Any] = {
    "Event": {
        "type": "object", "required": ["id", "type", "timestamp", "data"],
        "description": "Also the body of a webhook (without `cursor`), signed the Standard Webhooks way",
        "properties": {
            "id": {"type": "string", "pattern": "^evt_[0-9a-f]{32}$", "description": "Unique; the `webhook-id` of its deliveries"},
            "type": {"enum": list(TYPES)},
            "timestamp": {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN,
                          "description": "When the change it tells of was committed"},
            "cursor": {"type": "string", "pattern": "^[0-9]+$", "description": "Its place in the feed (`after`)"},
            "data": {"type": "object", "properties": {
                "photo": _photo_ref,
                "duplicates": {"type": "array", "items": {"$ref": "#/components/schemas/Duplicate"}},
                "job": {"type": "object", "required": ["id", "status", "target_version", "counts"], "properties": {
                    "id": {"type": "string"}, "status": {"const": "done"}, "target_version": {"type": "string"},
                    "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}}}}},
        },
    },
}
