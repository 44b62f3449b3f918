"""The upload paths of the OpenAPI document: direct uploads (``/v1/uploads``) and resumable
uploads (tus 1.0, ``/v1/tus/``), kept apart from openapi.py by concern."""

from __future__ import annotations

from typing import Any


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _tus_version() -> dict[str, Any]:
    return {"name": "Tus-Resumable", "in": "header", "required": True, "schema": {"const": "1.0.0"}}


PATHS: dict[str, Any] = {
    "/v1/uploads": {
        "post": {
            "operationId": "createUploadTarget",
            "summary": "A target to send a file to directly: a presigned S3 POST, or a one-time PUT URL on the API",
            "parameters": [{"name": "X-Owner", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 128}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"owner": {"type": "string", "maxLength": 128}}}}}},
            "responses": {
                "201": {"description": "The target", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["id", "method", "url", "fields", "expires_at", "max_bytes", "complete"],
                    "properties": {
                        "id": {"type": "string"}, "method": {"enum": ["POST", "PUT"]}, "url": {"type": "string"},
                        "fields": {"type": "object", "additionalProperties": {"type": "string"},
                                   "description": "With POST: the form fields to send before the file"},
                        "expires_at": {"type": "string", "format": "date-time"}, "max_bytes": {"type": "integer"},
                        "complete": {"type": "string", "description": "POST here once the file is sent"}}}}}},
                "400": _error("A bad owner"),
            },
        }
    },
    "/v1/uploads/{upload_id}/body": {
        "parameters": [{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "put": {
            "operationId": "sendUploadBody", "summary": "The local target: the file as the body, once, with the target's token",
            "security": [],
            "parameters": [{"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
            "responses": {"204": {"description": "Stored; now complete it"}, "400": _error("Empty"),
                          "404": _error("No such target, or a wrong token"), "409": _error("The target was used already"),
                          "410": _error("The target has expired"), "413": _error("Larger than MP_MAX_UPLOAD_BYTES")},
        }
    },
    "/v1/uploads/{upload_id}/complete": {
        "parameters": [{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "post": {
            "operationId": "completeUpload", "summary": "Make the photo of a file sent to its target, as POST /v1/photos does (idempotent)",
            "responses": {
                "202": {"description": "Accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PhotoAccepted"}}}},
                "404": _error("No such target"), "409": _error("Nothing was sent to the target yet"),
                "410": _error("The target has expired"), "413": _error("Larger than MP_MAX_UPLOAD_BYTES"),
                "415": _error("Not a supported image (by magic bytes, from a ranged read)"),
                "422": _error("Over MP_MAX_PIXELS or unreadable"), "503": _error("Storage or the catalog is down"),
            },
        }
    },
    "/v1/tus/": {
        "options": {
            "operationId": "tusDiscover", "summary": "tus 1.0 discovery: Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm",
            "security": [],
            "responses": {"204": {"description": "What the server supports"}},
        },
        "post": {
            "operationId": "tusCreate",
            "summary": "Create a resumable upload (tus creation; with a body, creation-with-upload)",
            "parameters": [_tus_version(),
                           {"name": "Upload-Length", "in": "header", "required": True, "schema": {"type": "integer", "minimum": 1}},
                           {"name": "Upload-Metadata", "in": "header", "required": False, "schema": {"type": "string"},
                            "description": "tus metadata; `owner` (base64) is the photo's owner"}],
            "responses": {
                "201": {"description": "Created: Location is the upload's URL, Upload-Expires when it goes"},
                "400": _error("No or a malformed Tus-Resumable header, a bad Upload-Length, Upload-Metadata or owner"),
                "412": _error("Another Tus-Resumable version"),
                "413": _error("Upload-Length over MP_MAX_UPLOAD_BYTES; nothing is stored"),
            },
        },
    },
    "/v1/tus/{upload_id}": {
        "parameters": [{"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "head": {
            "operationId": "tusOffset", "summary": "Upload-Offset and Upload-Length; Photo-Id and Photo-Location once it is a photo",
            "parameters": [_tus_version()],
            "responses": {"200": {"description": "Where the upload is"}, "400": {"description": "No or a malformed Tus-Resumable header"},
                          "404": {"description": "No such upload, or it expired"},
                          "412": {"description": "Another Tus-Resumable version"}},
        },
        "patch": {
            "operationId": "tusAppend",
            "summary": "Append bytes at Upload-Offset; the last byte makes the photo, as POST /v1/photos does",
            "parameters": [_tus_version(),
                           {"name": "Upload-Offset", "in": "header", "required": True, "schema": {"type": "integer", "minimum": 0}},
                           {"name": "Upload-Checksum", "in": "header", "required": False, "schema": {"type": "string"},
                            "description": "`sha256 <base64 digest>` of this chunk"}],
            "requestBody": {"required": True, "content": {"application/offset+octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
            "responses": {
                "204": {"description": "Appended: the new Upload-Offset; Photo-Id and Photo-Location after the last byte"},
                "400": _error("No or a malformed Tus-Resumable header, a bad Upload-Offset or Upload-Checksum"),
                "404": _error("No such upload, or it expired"),
                "408": _error("No byte of the body for MP_TUS_BODY_TIMEOUT_SECONDS: what arrived is kept (HEAD for the offset)"),
                "409": _error("Upload-Offset is not where the upload is"),
                "412": _error("Another Tus-Resumable version"),
                "413": _error("More bytes than Upload-Length"),
                "415": _error("Not application/offset+octet-stream, or the finished upload is not a supported image"),
                "422": _error("The finished upload is over MP_MAX_PIXELS or unreadable"),
                "460": _error("The chunk does not match its Upload-Checksum; nothing of it was kept"),
                "503": _error("Storage or the catalog is down"),
            },
        },
        "delete": {
            "operationId": "tusTerminate", "summary": "Terminate an upload (tus termination)", "parameters": [_tus_version()],
            "responses": {"204": {"description": "Gone"}, "400": _error("No or a malformed Tus-Resumable header"),
                          "404": _error("No such upload"), "412": _error("Another Tus-Resumable version")},
        },
    },
}
