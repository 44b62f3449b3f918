"""Photos and their renditions: the photo's life (queued, processing, ready, failed), its current
and retired renditions, and the perceptual hashes recorded with it when it completes."""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Sequence

from media_pipeline import events
from media_pipeline.catalog.database import Cursor, SqlDatabase, dump_json
from media_pipeline.catalog.duplicates import load_duplicates, load_hash_quality
from media_pipeline.catalog.events import record_event
from media_pipeline.catalog.index_changes import record_index_change
from media_pipeline.models import (
    Animation,
    Focus,
    Hashes,
    Photo,
    PhotoMetadata,
    PhotoStatus,
    Placeholder,
    Point,
    Rendition,
    RenditionLookup,
)

_PHOTO_COLUMNS = (
    "id, owner, status, sha256, original_key, original_format, original_width, original_height, "
    "original_bytes, created_at, updated_at, preset_version, metadata, placeholder, error_code, "
    "error_message, attempts"
)
_FOCUS_COLUMNS = "focus, user_focal_point, external_id"
_VISIBILITY_COLUMNS = "hidden"
_ANIMATION_COLUMNS = "original_animated, original_frames, original_duration_ms, animation_dropped"
_KEPT_AS_SHOT_COLUMNS = "original_hdr"
_RENDITION_COLUMNS = "width, height, format, bytes, key, spec, quality, score, aspect, animated, gamut, hdr"


_INSERT_PHOTO = f"INSERT INTO photos ({_PHOTO_COLUMNS}, external_id, {_ANIMATION_COLUMNS}, hidden, {_KEPT_AS_SHOT_COLUMNS}) VALUES ({', '.join('?' * 24)})"


def _photo_row(photo: Photo) -> tuple[Any, ...]:
    return (
        photo.id, photo.owner, photo.status.value, photo.sha256, photo.original_key,
        photo.original_format, photo.original_width, photo.original_height, photo.original_bytes,
        photo.created_at, photo.updated_at, photo.preset_version,
        dump_json(photo.metadata.to_dict() if photo.metadata else None),
        dump_json(_placeholder_dict(photo.placeholder)), photo.error_code, photo.error_message, photo.attempts,
        photo.external_id,
        int(photo.animation.animated), photo.animation.frames, photo.animation.duration_ms, photo.animation.dropped,
        int(photo.hidden), int(photo.original_hdr),
    )


class PhotoStore(SqlDatabase):
    def add_photo(self, photo: Photo) -> None:
        with self._tx() as cur:
            cur.execute(_INSERT_PHOTO, _photo_row(photo))

    def add_photos(self, photos: Sequence[Photo]) -> set[str]:
        """Insert many photos in one transaction; one whose (owner, external_id) is taken is left
        out. Returns the ids inserted."""
        if not photos:
            return set()
        with self._tx() as cur:
            cur.executemany(_INSERT_PHOTO + " ON CONFLICT DO NOTHING", [_photo_row(p) for p in photos])
            rows = cur.fetchall(f"SELECT id FROM photos WHERE id IN ({', '.join('?' * len(photos))})", [p.id for p in photos])
        return {r[0] for r in rows}

    def get_photo(self, photo_id: str) -> Photo | None:
        with self._tx(write=False) as cur:
            return self._load(cur, photo_id)

    def _load(self, cur: Cursor, photo_id: str) -> Photo | None:
        rows = cur.fetchall(f"SELECT {_PHOTO_COLUMNS}, {_FOCUS_COLUMNS}, {_VISIBILITY_COLUMNS}, {_ANIMATION_COLUMNS}, {_KEPT_AS_SHOT_COLUMNS} "
                            "FROM photos WHERE id = ?", (photo_id,))
        if not rows:
            return None
        row = rows[0]
        version = row[11]
        renditions = tuple(
            _rendition(r)
            for r in cur.fetchall(
                f"SELECT {_RENDITION_COLUMNS} FROM renditions WHERE photo_id = ? AND current = 1 "
                "ORDER BY CASE WHEN aspect = 'original' THEN 0 ELSE 1 END, aspect, width DESC, format",
                (photo_id,),
            )
        )
        hash_rows = dict(cur.fetchall("SELECT kind, value FROM photo_hashes WHERE photo_id = ?", (photo_id,)))
        hashes = _hashes(hash_rows)
        metadata = json.loads(row[12]) if row[12] else None
        placeholder = json.loads(row[13]) if row[13] else None
        return Photo(
            id=row[0], owner=row[1], status=PhotoStatus(row[2]), sha256=row[3], original_key=row[4],
            original_format=row[5], original_width=row[6], original_height=row[7], original_bytes=row[8],
            created_at=row[9], updated_at=row[10], preset_version=version,
            metadata=PhotoMetadata.from_dict(metadata) if metadata else None,
            placeholder=Placeholder(**placeholder) if placeholder else None,
            error_code=row[14], error_message=row[15], attempts=row[16],
            renditions=renditions, hashes=hashes,
            hash_quality=load_hash_quality(cur, photo_id),
            duplicates=tuple(load_duplicates(cur, photo_id)),
            computed_focus=Focus.from_dict(json.loads(row[17])) if row[17] else None,
            user_focal_point=Point(**json.loads(row[18])) if row[18] else None,
            external_id=row[19],
            hidden=bool(row[20]),
            owner_hidden=row[1] is not None and _owner_hidden(cur, row[1]),
            animation=Animation(frames=int(row[22]), duration_ms=int(row[23]), dropped=row[24]) if row[21] else Animation(),
            original_hdr=bool(row[25]),
        )

    def start_processing(self, photo_id: str) -> Photo | None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE photos SET status = ?, attempts = attempts + 1, updated_at = ? WHERE id = ? AND status IN (?, ?)",
                (PhotoStatus.PROCESSING.value, time.time(), photo_id, PhotoStatus.QUEUED.value, PhotoStatus.PROCESSING.value),
            )
            return self._load(cur, photo_id)

    def release(self, photo_id: str) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE photos SET status = ?, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = ? "
                "WHERE id = ? AND status = ?",
                (PhotoStatus.QUEUED.value, time.time(), photo_id, PhotoStatus.PROCESSING.value),
            )

    def complete(
        self,
        photo_id: str,
        preset_version: str,
        metadata: PhotoMetadata,
        placeholder: Placeholder,
        renditions: Iterable[Rendition],
        hashes: Hashes,
        seconds: float | None = None,
        focus: Focus | None = None,
        original_hdr: bool | None = None,
    ) -> bool:
        now = time.time()
        with self._tx() as cur:
            before = _status(cur, photo_id)
            updated = cur.execute(
                "UPDATE photos SET status = ?, preset_version = ?, metadata = ?, placeholder = ?, error_code = NULL, "
                "error_message = NULL, updated_at = ?, process_seconds = COALESCE(?, process_seconds), "
                "focus = COALESCE(?, focus), original_hdr = COALESCE(?, original_hdr) WHERE id = ?",
                (PhotoStatus.READY.value, preset_version, dump_json(metadata.to_dict()), dump_json(_placeholder_dict(placeholder)), now,
                 seconds, dump_json(focus.to_dict()) if focus else None, None if original_hdr is None else int(original_hdr), photo_id),
            )
            if not updated:
                return False
            # The new set replaces the old one in this transaction; what falls out of it is retired.
            cur.execute(
                "UPDATE renditions SET current = 0, retired_at = ? WHERE photo_id = ? AND current = 1", (now, photo_id)
            )
            cur.executemany(
                "INSERT INTO renditions (photo_id, spec, width, format, height, bytes, key, quality, score, current, retired_at, aspect, "
                "animated, gamut, hdr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, ?, ?, ?, ?) ON CONFLICT (photo_id, spec, width, format) DO UPDATE SET "
                "height = excluded.height, bytes = excluded.bytes, key = excluded.key, quality = excluded.quality, "
                "score = excluded.score, gamut = excluded.gamut, hdr = excluded.hdr, current = 1, retired_at = NULL",
                [(photo_id, r.spec, r.width, r.format, r.height, r.bytes, r.key, r.quality, r.score, r.aspect, int(r.animated), r.gamut, int(r.hdr))
                 for r in renditions],
            )
            cur.execute("DELETE FROM photo_hashes WHERE photo_id = ?", (photo_id,))
            cur.executemany(
                "INSERT INTO photo_hashes (photo_id, kind, value) VALUES (?, ?, ?)",
                [(photo_id, kind, value) for kind, value in _hash_rows(hashes)],
            )
            if before != PhotoStatus.READY.value:  # a reprocessed photo was ready already: no news for clients
                record_event(cur, events.PHOTO_READY, photo_id, events.photo_data(self._load(cur, photo_id)), now)  # type: ignore[arg-type]
            return True

    def set_user_focal_point(self, photo_id: str, point: Point | None) -> bool:
        with self._tx() as cur:
            return bool(cur.execute(
                "UPDATE photos SET user_focal_point = ?, updated_at = ? WHERE id = ? AND status = ?",
                (dump_json(point.to_dict()) if point else None, time.time(), photo_id, PhotoStatus.READY.value),
            ))

    def all_renditions(self, photo_id: str) -> list[Rendition]:
        with self._tx(write=False) as cur:
            return [_rendition(r) for r in cur.fetchall(f"SELECT {_RENDITION_COLUMNS} FROM renditions WHERE photo_id = ?", (photo_id,))]

    def retired_renditions(self, retired_before: float, photo_id: str | None = None, limit: int = 1000) -> list[tuple[str, Rendition]]:
        where, params = "current = 0 AND retired_at <= ?", [retired_before]
        if photo_id is not None:
            where, params = where + " AND photo_id = ?", [*params, photo_id]
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT photo_id, {_RENDITION_COLUMNS} FROM renditions WHERE {where} LIMIT {int(limit)}", params)
        return [(r[0], _rendition(r[1:])) for r in rows]

    def forget_rendition(self, photo_id: str, rendition: Rendition) -> None:
        """Drop a retired rendition's row (after its object was deleted); a current one is never dropped."""
        with self._tx() as cur:
            cur.execute(
                "DELETE FROM renditions WHERE photo_id = ? AND spec = ? AND width = ? AND format = ? AND current = 0",
                (photo_id, rendition.spec, rendition.width, rendition.format),
            )

    def lookup_renditions(self, photo_id: str, width: int, spec: str | None = None, aspect: str = "original") -> RenditionLookup | None:
        """The renditions of ``width`` behind a URL: by ``spec`` (immutable), else the current ones of ``aspect``."""
        with self._tx(write=False) as cur:
            # A hidden photo, or one of an owner who opted out, is not served: one indexed join.
            rows = cur.fetchall("SELECT p.status, p.original_width, p.owner, p.hidden, v.visible FROM photos p "
                                "LEFT JOIN owner_visibility v ON v.owner = p.owner WHERE p.id = ?", (photo_id,))
            if not rows or rows[0][0] != PhotoStatus.READY.value or rows[0][3] or rows[0][4] == 0:
                return None
            if spec is None:
                found = cur.fetchall(
                    f"SELECT {_RENDITION_COLUMNS} FROM renditions WHERE photo_id = ? AND width = ? AND current = 1 AND aspect = ?",
                    (photo_id, width, aspect),
                )
            else:
                found = cur.fetchall(
                    f"SELECT {_RENDITION_COLUMNS} FROM renditions WHERE photo_id = ? AND spec = ? AND width = ?", (photo_id, spec, width)
                )
        return RenditionLookup(original_width=rows[0][1], renditions=tuple(_rendition(r) for r in found), owner=rows[0][2])

    def add_rendition(self, photo_id: str, rendition: Rendition) -> bool:
        with self._tx() as cur:
            return bool(
                cur.execute(
                    "INSERT INTO renditions (photo_id, spec, width, format, height, bytes, key, quality, score, current, retired_at, aspect, "
                    "animated, gamut, hdr) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM photos WHERE id = ? AND status = ?) "
                    "ON CONFLICT (photo_id, spec, width, format) DO UPDATE SET height = excluded.height, "
                    "bytes = excluded.bytes, key = excluded.key, quality = excluded.quality, score = excluded.score, "
                    "gamut = excluded.gamut, hdr = excluded.hdr, current = 1, retired_at = NULL",
                    (photo_id, rendition.spec, rendition.width, rendition.format, rendition.height, rendition.bytes, rendition.key,
                     rendition.quality, rendition.score, rendition.aspect, int(rendition.animated), rendition.gamut, int(rendition.hdr), photo_id,
                     PhotoStatus.READY.value),
                )
            )

    def fail(self, photo_id: str, code: str, message: str) -> bool:
        now = time.time()
        with self._tx() as cur:
            before = _status(cur, photo_id)
            if not cur.execute(
                "UPDATE photos SET status = ?, error_code = ?, error_message = ?, updated_at = ? WHERE id = ?",
                (PhotoStatus.FAILED.value, code, message[:1000], now, photo_id),
            ):
                return False
            if before != PhotoStatus.FAILED.value:
                record_event(cur, events.PHOTO_FAILED, photo_id, events.photo_data(self._load(cur, photo_id)), now)  # type: ignore[arg-type]
            return True

    def stuck_photos(self, updated_before: float, limit: int = 1000) -> list[tuple[str, int]]:
        """(id, attempts) of photos queued or processing with no update since ``updated_before``."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall(
                f"SELECT id, attempts FROM photos WHERE status IN (?, ?) AND updated_at < ? ORDER BY updated_at LIMIT {int(limit)}",
                (PhotoStatus.QUEUED.value, PhotoStatus.PROCESSING.value, updated_before),
            )
        return [(r[0], int(r[1])) for r in rows]

    def in_flight(self) -> dict[str, int]:
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT status, COUNT(*) FROM photos WHERE status IN (?, ?) GROUP BY status",
                                (PhotoStatus.QUEUED.value, PhotoStatus.PROCESSING.value))
        counts = {PhotoStatus.QUEUED.value: 0, PhotoStatus.PROCESSING.value: 0}
        counts.update({status: int(n) for status, n in rows})
        return counts

    def touch(self, photo_id: str) -> None:
        with self._tx() as cur:
            cur.execute("UPDATE photos SET updated_at = ? WHERE id = ?", (time.time(), photo_id))

    def requeue(self, photo_id: str) -> bool:
        """Give a failed photo another go: back to ``queued`` with its error cleared."""
        with self._tx() as cur:
            return bool(cur.execute(
                "UPDATE photos SET status = ?, error_code = NULL, error_message = NULL, attempts = 0, updated_at = ? "
                "WHERE id = ? AND status = ?",
                (PhotoStatus.QUEUED.value, time.time(), photo_id, PhotoStatus.FAILED.value),
            ))

    def delete_photo(self, photo_id: str) -> bool:
        # Every row about the photo goes in one transaction, the index tables' too: they have no
        # foreign key to cascade from (they are ports of their own, see media_pipeline/hashindex).
        with self._tx() as cur:
            owner = cur.fetchall("SELECT owner FROM photos WHERE id = ?", (photo_id,))
            cur.execute("DELETE FROM renditions WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM photo_hashes WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM hash_index WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM feature_postings WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM feature_keys WHERE photo_id = ?", (photo_id,))
            record_index_change(cur, photo_id)
            cur.execute("DELETE FROM photo_fingerprints WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM photo_duplicates WHERE photo_id = ? OR other_id = ?", (photo_id, photo_id))
            if not cur.execute("DELETE FROM photos WHERE id = ?", (photo_id,)):
                return False
            record_event(cur, events.PHOTO_DELETED, photo_id, events.deleted_data(photo_id, owner[0][0]), time.time())
            return True


def _status(cur: Cursor, photo_id: str) -> str | None:
    rows = cur.fetchall("SELECT status FROM photos WHERE id = ?", (photo_id,))
    return rows[0][0] if rows else None


def _rendition(row: Sequence[Any]) -> Rendition:
    return Rendition(width=row[0], height=row[1], format=row[2], bytes=row[3], key=row[4], spec=row[5], quality=row[6],
                     score=None if row[7] is None else float(row[7]), aspect=row[8], animated=bool(row[9]), gamut=row[10], hdr=bool(row[11]))


def _placeholder_dict(placeholder: Placeholder | None) -> dict[str, str] | None:
    if placeholder is None:
        return None
    return {"blurhash": placeholder.blurhash, "dominant_color": placeholder.dominant_color}


def _hash_rows(hashes: Hashes) -> list[tuple[str, str]]:
    rows = [("phash", hashes.phash), ("dhash", hashes.dhash)]
    if hashes.pdq is not None:
        rows += [("pdq", hashes.pdq), ("pdq_quality", str(hashes.pdq_quality))]
    return rows


def _hashes(rows: dict[str, str]) -> Hashes | None:
    if not {"phash", "dhash"} <= rows.keys():
        return None
    quality = rows.get("pdq_quality")
    return Hashes(phash=rows["phash"], dhash=rows["dhash"], pdq=rows.get("pdq"), pdq_quality=int(quality) if quality is not None else None)


def _owner_hidden(cur: Cursor, owner: str) -> bool:
    rows = cur.fetchall("SELECT visible FROM owner_visibility WHERE owner = ?", (owner,))
    return bool(rows) and not rows[0][0]
