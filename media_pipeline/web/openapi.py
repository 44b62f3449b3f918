"""The OpenAPI 3.1 document of the public API, served at ``/openapi.json``.

Tests check that every route is documented and validate real responses against these schemas,
so the document cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from media_pipeline.timestamps import RFC3339_PATTERN
from media_pipeline.web import openapi_events
from media_pipeline.web import openapi_console
from media_pipeline.web import openapi_uploads

bp = Blueprint("openapi", __name__)

_ERROR_CODES = [
    "empty_file", "missing_file", "bad_owner", "bad_idempotency_key", "idempotency_mismatch", "idempotency_in_progress", "bad_request", "not_found", "method_not_allowed", "too_large",
    "unsupported_format", "too_many_pixels", "corrupt_image", "range_not_satisfiable", "queue_unavailable",
    "storage_unavailable", "catalog_unavailable", "internal", "unauthorized", "forbidden", "rate_limited",
    # tus (/v1/tus/)
    "unsupported_tus_version", "bad_content_type", "offset_mismatch", "checksum_mismatch", "bad_upload_length", "bad_metadata",
    "bad_checksum_algorithm", "bad_checksum", "bad_upload_offset", "bad_upload",
    # direct uploads (/v1/uploads)
    "upload_missing", "upload_used", "upload_expired",
    "bad_focal_point", "not_ready", "bad_visibility",
    *openapi_events.ERROR_CODES,
    # the operator console (/v1/photos lists, retries); bad_query is also the events feed's
    "not_failed",
]
_FAILURE_CODES = ["corrupt_image", "too_many_pixels", "unsupported_format", "timeout", "original_missing", "transient_error",
                  "abandoned", "blocked_content", "rejected", "internal"]

_nullable_string = {"type": ["string", "null"]}
_unit = {"type": "number", "minimum": 0, "maximum": 1}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _image_body() -> dict[str, Any]:
    """An image as multipart field `file` (with an optional `owner` field) or as the raw body."""
    raw = {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                "owner": {"type": "string", "maxLength": 128}}}},
            "application/octet-stream": raw,
            "image/*": raw,
        },
    }


def _image_responses() -> dict[str, Any]:
    image = {"image/avif": {}, "image/webp": {}, "image/jpeg": {}}
    headers: dict[str, Any] = {name: {"schema": {"type": "string"}} for name in ("ETag", "Last-Modified", "Cache-Control", "Content-Length")}
    headers["Vary"] = {"schema": {"type": "string"}, "description": "Negotiated URLs (no extension): "
                       "`Accept, Sec-CH-Width, Sec-CH-DPR, Save-Data`"}
    headers["Accept-CH"] = {"schema": {"type": "string"}, "description": "Negotiated URLs: `Sec-CH-Width, Sec-CH-DPR`"}
    return {
        "200": {"description": "The rendition", "headers": headers, "content": image},
        "206": {"description": "One byte range of it (`Range: bytes=…`)", "content": image},
        "302": {"description": "Redirect to a presigned storage URL (MP_SERVE_MODE=redirect)"},
        "304": {"description": "Not modified (`If-None-Match` / `If-Modified-Since`)"},
        "404": _error("No such photo or rendition, or the photo is not ready"),
        "416": _error("Range not satisfiable"),
    }


def document() -> dict[str, Any]:
    doc = _paths_and_schemas()
    lookup = doc["paths"]["/v1/photos"].pop("get")
    doc["paths"].update(openapi_uploads.PATHS)
    doc["paths"].update(openapi_events.PATHS)
    doc["components"]["schemas"].update(openapi_events.SCHEMAS)
    for path, operations in openapi_console.paths(_error).items():
        doc["paths"].setdefault(path, {}).update(operations)
    doc["components"]["schemas"].update(openapi_console.schemas())
    _fold_lookup_into_listing(doc["paths"]["/v1/photos"]["get"], lookup)
    doc["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (MP_API_KEYS); needed when keys are configured. "
                                                                 "The operator console's operations need an operator key (MP_OPERATOR_KEYS)"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    for path, operations in doc["paths"].items():
        if not path.startswith("/v1/") and path != "/metrics":
            continue
        for method, operation in operations.items():
            if method == "parameters" or operation.get("security") == []:
                continue
            operation["security"] = [{"bearer": []}, {"apiKeyHeader": []}]
            operation["responses"]["401"] = _error("No API key, or an unknown one")
            operation["responses"]["403"] = _error("A revoked API key, or a client app's key on an operator console operation")
            if method == "post":
                operation["responses"]["429"] = {**_error("Over MP_RATE_LIMIT; retry after Retry-After seconds"),
                                                 "headers": {"Retry-After": {"schema": {"type": "string"}}}}
    return doc


def _fold_lookup_into_listing(listing: dict[str, Any], lookup: dict[str, Any]) -> None:
    """``GET /v1/photos`` is two things on one path: the console's list of every photo (an operator
    key), and, given ``external_id``, the photo an import made from the main app's photo (any key)."""
    names = {p["name"] for p in listing["parameters"]}
    listing["parameters"] += [{**p, "required": False} for p in lookup["parameters"] if p["name"] not in names]
    listing["description"] += (" With `external_id` (and `owner`; absent: photos with no owner), any API key: the photo an import "
                               "made from the main app's photo of that id, as a full photo document (zero or one); with any other filter: 400.")
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    found = lookup["responses"]["200"]["content"]["application/json"]["schema"]
    listing["responses"]["200"]["content"]["application/json"]["schema"] = {"anyOf": [page, found]}


def _paths_and_schemas() -> dict[str, Any]:
    photo_id = {"name": "photo_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-z]{26}$"}}
    name = {"name": "name", "in": "path", "required": True, "description": "`<width>.<avif|webp|jpg>`, or `<width>` to negotiate",
            "schema": {"type": "string", "pattern": r"^[0-9]{1,5}(\.(avif|webp|jpg))?$"}}
    # Read on negotiated URLs only (web/client_hints.py); a URL with an extension ignores them.
    hints = [{"name": "Sec-CH-Width", "in": "header", "required": False, "schema": {"type": "string"},
              "description": "Negotiated URLs: the layout width in device pixels; the smallest preset width covering it is served"},
             {"name": "Sec-CH-DPR", "in": "header", "required": False, "schema": {"type": "string"},
              "description": "Negotiated URLs, without Sec-CH-Width: the device pixel ratio; the URL's width times it is covered"},
             {"name": "Save-Data", "in": "header", "required": False, "schema": {"type": "string"},
              "description": "`on`: negotiated URLs serve the next smaller preset width"}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "media_pipeline",
            "version": "1",
            "description": "Photo upload, processing status and renditions. Errors are always "
                           "`{\"error\": {\"code\", \"message\"}}`.",
        },
        "paths": {
            "/v1/photos": {
                "get": {
                    "operationId": "findPhotosByExternalId",
                    "summary": "The photo an import made from the main app's photo `external_id` of `owner` (zero or one)",
                    "parameters": [
                        {"name": "external_id", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 256}},
                        {"name": "owner", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 128},
                         "description": "Absent: photos with no owner"},
                    ],
                    "responses": {
                        "200": {"description": "Zero or one photo", "content": {"application/json": {"schema": {
                            "type": "object", "required": ["photos", "next_cursor"], "properties": {
                                "photos": {"type": "array", "maxItems": 1, "items": {"$ref": "#/components/schemas/Photo"}},
                                "next_cursor": {"type": "null"}}}}}},
                        "400": _error("No `external_id`, or a parameter too long"),
                    },
                },
                "post": {
                    "operationId": "uploadPhoto",
                    "summary": "Upload a photo; it is stored durably and queued for processing",
                    "parameters": [
                        {"name": "X-Owner", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 128}},
                        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 128},
                         "description": "Retry-safe uploads: the same key and body answer the first 202 again "
                                        "(header Idempotent-Replayed: true); kept 24 h, scoped by owner"},
                    ],
                    "requestBody": _image_body(),
                    "responses": {
                        "202": {"description": "Accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PhotoAccepted"}}}},
                        "400": _error("Empty upload, no `file` field, a bad owner or Idempotency-Key"),
                        "409": _error("A request with this Idempotency-Key is still in progress"),
                        "413": _error("Larger than MP_MAX_UPLOAD_BYTES"),
                        "415": _error("Not JPEG, PNG, WebP, GIF, HEIC/HEIF, AVIF or TIFF (by magic bytes)"),
                        "422": _error("Over MP_MAX_PIXELS, an unreadable header, or an Idempotency-Key used with another body"),
                        "503": _error("Storage or the catalog is down; nothing was kept (with only the broker down the upload is accepted and queued later)"),
                    },
                }
            },
            "/v1/duplicates/search": {
                "post": {
                    "operationId": "searchDuplicates",
                    "summary": "The photos an image repeats (exact or near), closest first; nothing is stored",
                    "parameters": [{"name": "X-Owner", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 128},
                                    "description": "With MP_DEDUPE_SCOPE=owner, search only this owner's photos"}],
                    "requestBody": _image_body(),
                    "responses": {
                        "200": {"description": "Matches", "content": {"application/json": {"schema": {
                            "type": "object", "required": ["duplicates", "blocklists"],
                            "properties": {"duplicates": {"type": "array", "items": {"$ref": "#/components/schemas/Duplicate"}},
                                           "blocklists": {"type": "array", "description": "MP_BLOCKLISTS lists whose PDQ hashes the image is within distance of; an upload of it would end failed (blocked_content)",
                                                          "items": {"type": "object", "required": ["list", "distance"], "properties": {
                                                              "list": {"type": "string"}, "distance": {"type": "integer", "minimum": 0, "maximum": 256}}}}}}}}},
                        "400": _error("Empty upload, no `file` field or a bad owner"),
                        "413": _error("Larger than MP_MAX_UPLOAD_BYTES"),
                        "415": _error("Not a supported image (by magic bytes)"),
                        "422": _error("Over MP_MAX_PIXELS or not decodable"),
                        "503": _error("A backend is down"),
                    },
                }
            },
            "/v1/photos/{photo_id}": {
                "parameters": [photo_id],
                "get": {
                    "operationId": "getPhoto",
                    "summary": "Status, and when ready: renditions, metadata, placeholder",
                    "responses": {
                        "200": {"description": "The photo", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Photo"}}}},
                        "404": _error("No such photo"),
                    },
                },
                "patch": {
                    "operationId": "patchPhoto",
                    "summary": "Set the focal point crops are cut around (`source: user`; `null` goes back to the computed one), "
                               "and/or hide the photo (`visible: false`: every image URL answers 404 until `true`)",
                    "description": "A new focal point: the crops are re-rendered by a worker under new immutable keys; the old ones "
                                   "are retired (servable for MP_RENDITION_KEEP_SECONDS). Whole-picture renditions are not touched. "
                                   "Visibility changes nothing stored; the caches in front are purged when hidden.",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "minProperties": 1, "additionalProperties": False,
                        "properties": {"focal_point": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/FocalPoint"}]},
                                       "visible": {"type": "boolean"}}}}}},
                    "responses": {
                        "200": {"description": "Visibility recorded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Photo"}}}},
                        "202": {"description": "Recorded; the crops follow", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Photo"}}}},
                        "400": _error("Not a JSON object of `focal_point` and/or `visible`, x/y outside 0..1, or `visible` not a boolean"),
                        "404": _error("No such photo"),
                        "409": _error("The photo is not ready (for a focal point)"),
                    },
                },
                "delete": {
                    "operationId": "deletePhoto",
                    "summary": "Delete the original, every rendition and the records",
                    "responses": {"204": {"description": "Deleted"}, "404": _error("No such photo")},
                },
            },
            "/v1/owners/{owner}/visibility": {
                "parameters": [{"name": "owner", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\x00-\\x1f\\x7f]+$"}}],
                "get": {"operationId": "getOwnerVisibility", "summary": "Whether an owner's photos are shown",
                        "responses": {"200": {"description": "The owner's choice", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OwnerVisibility"}}}},
                                      "400": _error("Not a valid owner"), "404": _error("Not a route: a control character in the path")}},
                "put": {"operationId": "setOwnerVisibility",
                        "summary": "An owner opts out (`false`: every image URL of their photos answers 404 with no-store at once) or back in",
                        "requestBody": {"required": True, "content": {"application/json": {"schema": {
                            "type": "object", "required": ["visible"], "additionalProperties": False,
                            "properties": {"visible": {"type": "boolean"}}}}}},
                        "responses": {"200": {"description": "Recorded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OwnerVisibility"}}}},
                                      "400": _error("Not `{\"visible\": true|false}`, or not a valid owner"),
                                      "404": _error("Not a route: a control character in the path")}},
            },
            "/i/{photo_id}/{spec}/{name}": {
                "parameters": [photo_id, {"name": "spec", "in": "path", "required": True, "schema": {"type": "string"},
                                          "description": "The spec hash of an immutable rendition (`url` in the API), or an aspect "
                                                         "`AxB` (`4x5`): the photo's current crop of aspect A:B around its subject, "
                                                         "stable and negotiated like `/i/{photo_id}/{name}`, or `poster`: the still "
                                                         "(first frame) of an animated photo, stable and negotiated the same way"},
                               name, {"name": "sig", "in": "query", "required": False, "schema": {"type": "string"},
                                      "description": "For an aspect: HMAC-SHA256 of the path; needed to render an aspect "
                                                     "(MP_ONDEMAND_ASPECTS), width or format on demand"}, *hints],
                "get": {"operationId": "getRendition", "summary": "An immutable rendition URL, or a stable crop URL", "responses": _image_responses()},
                "head": {"operationId": "headRendition", "summary": "Headers only", "responses": _image_responses()},
            },
            "/i/{photo_id}/{name}": {
                "parameters": [photo_id, name, {"name": "sig", "in": "query", "required": False, "schema": {"type": "string"},
                                                "description": "HMAC-SHA256 of the path; needed to render a width or format on demand"},
                               *hints],
                "get": {"operationId": "getStableRendition", "summary": "The current rendition; negotiated from Accept without an extension "
                        "(an animated photo: animated AVIF, then animated WebP, then the still JPEG), its width then from client hints when sent",
                        "responses": _image_responses()},
                "head": {"operationId": "headStableRendition", "summary": "Headers only", "responses": _image_responses()},
            },
            "/healthz": {"get": {"operationId": "health", "summary": "The process is up",
                                 "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
                                     "type": "object", "properties": {"status": {"const": "ok"}}}}}}}}},
            "/readyz": {"get": {"operationId": "ready", "summary": "Storage, catalog and broker are reachable",
                                "responses": {"200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}},
                                              "503": {"description": "Not ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics of this host's API and worker processes",
                                 "responses": {"200": {"description": "The Prometheus text format", "content": {"text/plain": {}}}}}},
            "/ui": {"get": {"operationId": "operatorPage", "summary": "The operator console (HTML): recent photos, failures, duplicates, jobs, health",
                            "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}},
        },
        "components": {"schemas": {
            "Error": {
                "type": "object", "required": ["error"], "additionalProperties": False,
                "properties": {"error": {"type": "object", "required": ["code", "message"], "additionalProperties": False,
                                         "properties": {"code": {"enum": _ERROR_CODES}, "message": {"type": "string", "minLength": 1}}}},
            },
            "PhotoAccepted": {
                "type": "object", "required": ["id", "status", "sha256", "links"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9a-z]{26}$"},
                    "status": {"const": "queued"},
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "links": {"type": "object", "required": ["self"], "properties": {"self": {"type": "string"}}},
                },
            },
            "Rendition": {
                "type": "object", "required": ["aspect", "width", "height", "format", "bytes", "quality", "score", "animated", "gamut", "hdr", "url",
                                               "stable_url"],
                "additionalProperties": False,
                "properties": {
                    "aspect": {"type": "string", "pattern": "^(original|[1-9][0-9]?:[1-9][0-9]?)$",
                               "description": "`original` for the whole picture, `A:B` for a crop around the subject"},
                    "width": {"type": "integer", "minimum": 1}, "height": {"type": "integer", "minimum": 1},
                    "format": {"enum": ["avif", "webp", "jpeg"]}, "bytes": {"type": "integer", "minimum": 1},
                    "quality": {"type": ["integer", "null"], "minimum": 1, "maximum": 100,
                                "description": "Encoder quality; null for renditions made before it was recorded"},
                    "score": {"type": ["number", "null"],
                              "description": "SSIMULACRA2 (100 = identical, 90 visually lossless, 70 high quality) the "
                                             "auto-quality search reached for this photo and format; null for a fixed quality, "
                                             "or when no quality the search tried reached the target and the maximum it then uses was not tried"},
                    "animated": {"type": "boolean", "description": "Every frame of an animated original; false for a still, "
                                                                   "including an animated photo's poster (its first frame)"},
                    "gamut": {"enum": ["srgb", "p3"],
                              "description": "`p3`: Display P3 with the ICC profile embedded (a wide-gamut original); `srgb`: untagged sRGB"},
                    "hdr": {"type": "boolean",
                            "description": "The rendition carries the original's gain map (an Ultra HDR JPEG): an HDR screen shows it "
                                           "in HDR, any other screen its SDR picture"},
                    "url": {"type": "string"}, "stable_url": {"type": "string"},
                },
            },
            "OwnerVisibility": {
                "type": "object", "required": ["owner", "visible", "updated_at"],
                "properties": {"owner": {"type": "string"}, "visible": {"type": "boolean"},
                               "updated_at": {"type": ["string", "null"], "format": "date-time",
                                              "description": "When it was last set; null for an owner never set (shown)"}},
            },
            "Photo": {
                "type": "object",
                "required": ["id", "status", "owner", "sha256", "created_at", "visible", "hidden_by", "links", "original"],
                "properties": {
                    "visible": {"type": "boolean", "description": "False while the photo or its owner is hidden: its image URLs answer 404"},
                    "hidden_by": {"enum": ["photo", "owner", None], "description": "Why it is hidden, or null"},
                    "id": {"type": "string"},
                    "status": {"enum": ["queued", "processing", "ready", "failed"]},
                    "owner": _nullable_string,
                    "external_id": {"type": ["string", "null"], "description": "The main app's id of an imported photo, unique per owner"},
                    "sha256": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN,
                                   "description": "When the upload was accepted: RFC 3339, UTC, milliseconds (`2026-12-03T09:21:35.123Z`)"},
                    "links": {"type": "object", "required": ["self"], "properties": {
                        "self": {"type": "string"}, "negotiated": {"type": "string", "description": "`{width}` is a placeholder"}}},
                    "original": {"type": "object", "required": ["format", "width", "height", "bytes", "animated", "frames", "duration_ms", "hdr"],
                                 "properties": {
                        "format": {"enum": ["jpeg", "png", "webp", "gif", "tiff", "heic", "avif"]},
                        "width": {"type": "integer"}, "height": {"type": "integer"}, "bytes": {"type": "integer"},
                        "animated": {"type": "boolean", "description": "An animated GIF, WebP, APNG or AVIF image sequence (more than one frame)"},
                        "hdr": {"type": "boolean", "description": "The original is an HDR photo: with a gain map (Ultra HDR JPEG, "
                                                                  "iPhone HEIC with Apple's HDR gain map), kept in the JPEG renditions, "
                                                                  "or a PQ/HLG HEIC with no SDR picture inside, tone-mapped to SDR"},
                        "frames": {"type": "integer", "minimum": 1}, "duration_ms": {"type": "integer", "minimum": 0,
                                                                                     "description": "One play, as browsers play it; 0 for a still"},
                        "animation": {"type": "object", "required": ["kept", "reason"], "additionalProperties": False,
                                      "description": "Present for an animated original: whether its renditions move",
                                      "properties": {"kept": {"type": "boolean"},
                                                     "reason": {"oneOf": [{"type": "null"}, {"enum": ["too_many_frames", "too_many_animation_pixels"]}],
                                                                "description": "Why the renditions are stills: MP_MAX_FRAMES or MP_MAX_ANIMATION_PIXELS"}}}}},
                    "preset_version": {"type": "string"},
                    "metadata": {"type": "object", "required": ["taken_at", "camera", "orientation", "color_profile"], "properties": {
                        "taken_at": {"type": ["string", "null"],
                                     "description": "The camera's clock at capture (EXIF), `YYYY-MM-DDThh:mm:ss`, with its UTC offset "
                                                    "when the file records one: a local time, not necessarily an instant"},
                        "camera": {"type": "object", "properties": {"make": _nullable_string, "model": _nullable_string}},
                        "orientation": {"type": "integer", "minimum": 1, "maximum": 8},
                        "color_profile": _nullable_string}},
                    "renditions": {"type": "array", "items": {"$ref": "#/components/schemas/Rendition"}},
                    "srcset": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "Per format, the whole picture's immutable URLs with their widths (an "
                                              "animated photo's animations where the format has one)"},
                    "crops": {"type": "object", "description": "Per aspect (`4:5`): `srcset` per format and the negotiated URL",
                              "additionalProperties": {"type": "object", "required": ["srcset", "negotiated"], "properties": {
                                  "srcset": {"type": "object", "additionalProperties": {"type": "string"}},
                                  "negotiated": {"type": "string", "description": "`{width}` is a placeholder"}}}},
                    "focus": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Focus"}]},
                    "placeholder": {"type": ["object", "null"], "required": ["blurhash", "dominant_color"], "properties": {
                        "blurhash": {"type": "string"}, "dominant_color": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}}},
                    "hashes": {"type": ["object", "null"], "properties": {
                        "phash": {"type": "string"}, "dhash": {"type": "string"},
                        "pdq": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$",
                                "description": "Meta's PDQ (256 bits, hex as the reference writes it), for hash-sharing lists; null for photos processed before it existed"},
                        "pdq_quality": {"type": ["integer", "null"], "minimum": 0, "maximum": 100}}},
                    "hash_quality": {"type": ["object", "null"], "required": ["score", "near_matching"], "properties": {
                        "score": {"type": "number", "minimum": 0, "maximum": 100},
                        "near_matching": {"type": "boolean", "description": "false for flat or near-blank pictures, which are only matched exactly"}}},
                    "duplicates": {"type": "array", "description": "Earlier photos this one repeats: exact first, then near by distance, then keypoint matches by inliers",
                                   "items": {"$ref": "#/components/schemas/Duplicate"}},
                    "error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"enum": _FAILURE_CODES}, "message": {"type": "string"}}},
                },
                "allOf": [
                    {"if": {"properties": {"status": {"const": "ready"}}},
                     "then": {"required": ["metadata", "renditions", "placeholder", "srcset", "preset_version", "duplicates", "hash_quality"]}},
                    {"if": {"properties": {"status": {"const": "failed"}}}, "then": {"required": ["error"]}},
                ],
            },
            "Focus": {
                "type": "object", "required": ["focal_point", "subject", "source"], "additionalProperties": False,
                "description": "Where the subject is, in 0..1 of the upright picture; crops keep the subject box when it fits "
                               "and centre on the focal point",
                "properties": {
                    "focal_point": {"$ref": "#/components/schemas/FocalPoint"},
                    "subject": {"type": "object", "required": ["x", "y", "w", "h"], "additionalProperties": False, "properties": {
                        "x": _unit, "y": _unit, "w": _unit, "h": _unit}},
                    "source": {"enum": ["faces", "saliency", "centre", "user"]},
                    "faces": {"type": "array", "description": "Each face found (the subject holds them and the salient region); a crop never cuts one in half",
                              "items": {"type": "object", "required": ["x", "y", "w", "h"], "additionalProperties": False, "properties": {
                                  "x": _unit, "y": _unit, "w": _unit, "h": _unit}}},
                },
            },
            "FocalPoint": {"type": "object", "required": ["x", "y"], "additionalProperties": False,
                           "properties": {"x": _unit, "y": _unit}},
            "Duplicate": {
                "type": "object", "required": ["id", "kind", "distance", "inliers", "transform"], "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "kind": {"enum": ["exact", "near"]},
                    "distance": {"type": ["integer", "null"], "minimum": 0, "maximum": 256,
                                 "description": "Hamming distance of the closest view hashes (0 when exact); null for a match by keypoints"},
                    "inliers": {"type": ["integer", "null"], "minimum": 0,
                                "description": "For a match by keypoints: how many agreed with one similarity transform"},
                    "transform": {"type": ["string", "null"],
                                  "description": "A hint: same bytes, same pixels, mirror, reframed, crop (joined with +), or crop or rotation (keypoints)"},
                },
            },
            "Readiness": {"type": "object", "required": ["status", "checks"], "properties": {
                "status": {"enum": ["ready", "unavailable"]},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}}}},
        }},
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())
