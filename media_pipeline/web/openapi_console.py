"""The operator console's part of the OpenAPI document (web/console.py): its paths and schemas,
merged into ``/openapi.json`` by web/openapi.py."""

from __future__ import annotations

from typing import Any

from media_pipeline.console import KINDS, MAX_PAGE
from media_pipeline.timestamps import RFC3339_PATTERN

_OPERATOR = ("Operator console: once any key is configured, only an operator key (MP_OPERATOR_KEYS) opens it; "
             "a client app's key gets 403.")
_time = {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN}
_count = {"type": "integer", "minimum": 0}
_cursor = {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string", "pattern": "^[0-9a-z]{26}$"},
           "description": "`next_cursor` of the previous page"}


def _limit(default: int) -> dict[str, Any]:
    return {"name": "limit", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": default}}


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string", "minLength": 1, "maxLength": 128}}


def paths(error: Any) -> dict[str, Any]:
    """The console's operations, keyed by path and method; ``error`` makes an error response."""
    bad_query = error("A parameter out of range (`bad_query`)")
    return {
        "/v1/photos": {"get": {
            "operationId": "listPhotos",
            "summary": "Photos of every owner, newest first, a page at a time",
            "description": _OPERATOR + " Every filter is answered from an index; pages follow `next_cursor`.",
            "parameters": [
                _query("status", "Only photos in this state", {"enum": ["queued", "processing", "ready", "failed"]}),
                _query("owner", "Only this owner's photos"),
                _query("kind", "Only photos of this kind (`duplicate`: either side of a duplicate pair)", {"enum": sorted(KINDS)}),
                _query("error_code", "Only failed photos with this error code"),
                _query("since", "Accepted at or after (RFC 3339 with an offset)", {"type": "string", "minLength": 1, "maxLength": 64}),
                _query("until", "Accepted before (RFC 3339 with an offset)", {"type": "string", "minLength": 1, "maxLength": 64}),
                _query("q", "A photo id, an imported photo's external_id, or the SHA-256 of an original"),
                _cursor, _limit(50),
            ],
            "responses": {**_ok("PhotoPage", "A page"), "400": bad_query},
        }},
        "/v1/photos/{photo_id}/retry": {
            "parameters": [{"name": "photo_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-z]{26}$"}}],
            "post": {
                "operationId": "retryPhoto",
                "summary": "Queue a failed photo again, with its error and attempts cleared",
                "description": _OPERATOR,
                "responses": {
                    "202": {"description": "Queued again", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Retried"}}}},
                    "404": error("No such photo"),
                    "409": error("The photo is not failed (`not_failed`)"),
                },
            },
        },
        "/v1/stats": {"get": {
            "operationId": "stats",
            "summary": "Photos by status, failures by error code, the last hour minute by minute, the broker's queues",
            "description": _OPERATOR,
            "responses": _ok("Stats", "The figures"),
        }},
        "/v1/duplicates": {"get": {
            "operationId": "listDuplicateClusters",
            "summary": "Earlier photos that later ones repeat, newest first, each with its copies",
            "description": _OPERATOR,
            "parameters": [_cursor, _limit(20)],
            "responses": {**_ok("DuplicateClusterPage", "A page"), "400": bad_query},
        }},
        "/v1/jobs": {"get": {
            "operationId": "listJobs",
            "summary": "Reprocess jobs, newest first, with progress, rate, ETA and report",
            "description": _OPERATOR,
            "parameters": [_limit(20)],
            "responses": {**_ok("Jobs", "The jobs"), "400": bad_query},
        }},
    }


def schemas() -> dict[str, Any]:
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    return {
        "PhotoSummary": {
            "type": "object", "additionalProperties": False,
            "required": ["id", "status", "owner", "created_at", "original", "placeholder", "thumbnail", "kinds", "links"],
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9a-z]{26}$"},
                "status": {"enum": ["queued", "processing", "ready", "failed"]},
                "owner": {"type": ["string", "null"]},
                "created_at": _time,
                "original": {"type": "object", "required": ["format", "width", "height"], "properties": {
                    "format": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"}}},
                "placeholder": {"type": ["object", "null"], "required": ["blurhash", "dominant_color"], "properties": {
                    "blurhash": {"type": "string"}, "dominant_color": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}}},
                "thumbnail": {"type": ["string", "null"],
                              "description": "The negotiated URL of the smallest whole-picture rendition, once ready"},
                "kinds": {"type": "array", "items": {"enum": sorted(KINDS)}},
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": ["string", "null"]}, "message": {"type": ["string", "null"]}}},
                "links": {"type": "object", "required": ["self"], "properties": {"self": {"type": "string"}}},
            },
        },
        "PhotoPage": {"type": "object", "required": ["photos", "next_cursor"], "additionalProperties": False, "properties": {
            "photos": {"type": "array", "items": ref("PhotoSummary")},
            "next_cursor": {"type": ["string", "null"], "description": "null after the last page"}}},
        "Retried": {"type": "object", "required": ["id", "status", "links"], "properties": {
            "id": {"type": "string"}, "status": {"const": "queued"},
            "links": {"type": "object", "required": ["self"], "properties": {"self": {"type": "string"}}}}},
        "Stats": {
            "type": "object", "additionalProperties": False,
            "required": ["generated_at", "photos", "failures", "stuck", "queues", "last_check", "last_hour"],
            "properties": {
                "generated_at": _time,
                "photos": {"type": "object", "additionalProperties": _count, "description": "Photos by status"},
                "failures": {"type": "array", "description": "Failed photos by error code, most first", "items": {
                    "type": "object", "required": ["code", "count"], "properties": {"code": {"type": "string"}, "count": _count}}},
                "stuck": {**_count, "description": "Queued or processing with no progress for MP_STUCK_AFTER_SECONDS (the reconciler's next work)"},
                "queues": {"type": ["object", "null"], "additionalProperties": _count,
                           "description": "Messages waiting in the broker, by queue; null when the broker does not answer"},
                "last_check": {"oneOf": [{"type": "null"}, {
                    "type": "object", "required": ["finished_at", "ok", "photos", "problems"], "additionalProperties": False,
                    "properties": {"finished_at": _time, "ok": {"type": "boolean"},
                                   "photos": {"type": "object", "additionalProperties": _count, "description": "Photos by status then"},
                                   "problems": {"type": "object", "additionalProperties": _count,
                                                "description": "Where the catalog and storage disagreed, by kind (empty when ok)"}}}],
                    "description": "What the last `media-pipeline check` found (run it daily); null before the first run"},
                "last_hour": {"type": "array", "minItems": 60, "maxItems": 60, "description": "Oldest minute first", "items": {
                    "type": "object", "required": ["minute", "arrived", "finished", "queue_depth"], "properties": {
                        "minute": _time, "arrived": _count, "finished": {**_count, "description": "Ended ready or failed"},
                        "queue_depth": {**_count, "description": "Queued or processing at the minute's end, walked back from now"}}}},
            },
        },
        "DuplicateCopy": {"type": "object", "required": ["photo", "kind", "distance", "inliers", "transform"], "properties": {
            "photo": ref("PhotoSummary"), "kind": {"enum": ["exact", "near"]},
            "distance": {"type": ["integer", "null"]}, "inliers": {"type": ["integer", "null"]},
            "transform": {"type": ["string", "null"], "description": "The edit recognised: mirror, crop, reframed, same bytes, …"}}},
        "DuplicateClusterPage": {"type": "object", "required": ["clusters", "next_cursor"], "properties": {
            "clusters": {"type": "array", "items": {"type": "object", "required": ["photo", "copies"], "properties": {
                "photo": ref("PhotoSummary"), "copies": {"type": "array", "items": ref("DuplicateCopy")}}}},
            "next_cursor": {"type": ["string", "null"]}}},
        "Jobs": {"type": "object", "required": ["jobs"], "properties": {"jobs": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "kind", "status", "selection", "target_version", "created_at", "finished_at", "total", "finished",
                         "progress", "per_second", "eta_seconds", "report"],
            "properties": {
                "id": {"type": "string"}, "kind": {"enum": ["reprocess"]},
                "status": {"enum": ["enqueuing", "waiting", "done", "interrupted", "failed"]},
                "selection": {"type": "object"}, "target_version": {"type": "string"},
                "created_at": _time, "finished_at": {"oneOf": [{"type": "null"}, _time]},
                "total": _count, "finished": _count, "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "per_second": {"type": ["number", "null"], "description": "Photos finished per second since the first one"},
                "eta_seconds": {"type": ["number", "null"]},
                "report": {"type": "object", "required": ["outcomes", "bytes_written", "bytes_deleted", "failures"], "properties": {
                    "outcomes": {"type": "object", "additionalProperties": _count},
                    "bytes_written": _count, "bytes_deleted": _count,
                    "failures": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "code": {"type": ["string", "null"]}}}}}},
            }}}}},
    }
