"""What photos are matched by and what they matched: each photo's fingerprint (decoded pixels'
digest, how far its perceptual hash can be trusted) and the duplicate pairs found. The hash index
and keypoint postings tables are read and written by media_pipeline/hashindex on this database."""

from __future__ import annotations

import time
from typing import Iterable

from media_pipeline import events
from media_pipeline.catalog.database import Cursor, SqlDatabase
from media_pipeline.catalog.events import record_event
from media_pipeline.models import Duplicate, HashQuality


class DuplicateStore(SqlDatabase):
    def record_fingerprint(self, photo_id: str, pixel_sha256: str, quality: float, near_indexed: bool) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM photo_fingerprints WHERE photo_id = ?", (photo_id,))
            cur.execute(
                "INSERT INTO photo_fingerprints (photo_id, pixel_sha256, quality, near_indexed) VALUES (?, ?, ?, ?)",
                (photo_id, pixel_sha256, quality, int(near_indexed)),
            )

    def exact_matches(self, photo_id: str, sha256: str, pixel_sha256: str, owner: str | None = None) -> list[tuple[str, str]]:
        """(other photo id, "bytes" | "pixels") of other photos with the same bytes or decoded pixels."""
        scope, params = ("AND COALESCE(p.owner, '') = ?", [owner]) if owner is not None else ("", [])
        with self._tx(write=False) as cur:
            rows = cur.fetchall(
                f"SELECT p.id, 'bytes' FROM photos p WHERE p.sha256 = ? AND p.id <> ? {scope} "
                f"UNION SELECT p.id, 'pixels' FROM photo_fingerprints f JOIN photos p ON p.id = f.photo_id "
                f"WHERE f.pixel_sha256 = ? AND p.id <> ? {scope}",
                (sha256, photo_id, *params, pixel_sha256, photo_id, *params),
            )
        best: dict[str, str] = {}
        for other, how in rows:
            if best.get(other) != "bytes":  # the same bytes says more than the same pixels
                best[other] = how
        return sorted(best.items())

    def replace_duplicates(self, photo_id: str, matches: Iterable[Duplicate]) -> None:
        """The matches ``photo_id``'s search found now replace those its earlier searches found;
        each is stored from the later photo (by id) to the earlier one. Matches other photos
        found stay: the earlier of two simultaneous uploads may finish its (empty) search after
        the later one recorded their match, and must not erase it."""
        matches = [m for m in matches if m.id != photo_id]
        with self._tx() as cur:
            known = _paired_with(cur, photo_id)
            cur.execute("DELETE FROM photo_duplicates WHERE found_by = ?", (photo_id,))
            rows = [
                (max(photo_id, m.id), min(photo_id, m.id), m.kind, m.distance, m.transform, m.inliers, photo_id, photo_id, m.id)
                for m in matches
            ]
            # A match deleted meanwhile is skipped, not an error; one the other photo found first is kept.
            cur.executemany(
                "INSERT INTO photo_duplicates (photo_id, other_id, kind, distance, transform, inliers, found_by) SELECT ?, ?, ?, ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM photos WHERE id = ?) AND EXISTS (SELECT 1 FROM photos WHERE id = ?) "
                "ON CONFLICT (photo_id, other_id) DO NOTHING",
                rows,
            )
            paired = _paired_with(cur, photo_id)
            new = [m for m in matches if m.id in paired and m.id not in known]
            if new:  # a redelivered task or a reprocess that finds the same matches tells no one again
                owner = cur.fetchall("SELECT owner FROM photos WHERE id = ?", (photo_id,))
                record_event(cur, events.PHOTO_DUPLICATE_FOUND, photo_id,
                             events.duplicates_data(photo_id, owner[0][0] if owner else None, new), time.time())

    def duplicates_of(self, photo_id: str) -> list[Duplicate]:
        """The earlier photos this one repeats, in ``Duplicate.order``."""
        with self._tx(write=False) as cur:
            return load_duplicates(cur, photo_id)


def load_duplicates(cur: Cursor, photo_id: str) -> list[Duplicate]:
    """The earlier photos ``photo_id`` repeats, in ``Duplicate.order``, read in the caller's transaction."""
    rows = cur.fetchall(
        "SELECT other_id, kind, distance, transform, inliers FROM photo_duplicates WHERE photo_id = ?", (photo_id,)
    )
    found = [Duplicate(id=r[0], kind=r[1], distance=r[2], transform=r[3], inliers=r[4]) for r in rows]
    return sorted(found, key=lambda d: d.order)


def load_hash_quality(cur: Cursor, photo_id: str) -> HashQuality | None:
    """How far the photo's perceptual hash can be trusted; ``None`` before it was processed."""
    quality = cur.fetchall("SELECT quality, near_indexed FROM photo_fingerprints WHERE photo_id = ?", (photo_id,))
    return HashQuality(score=float(quality[0][0]), matched=bool(quality[0][1])) if quality else None


def _paired_with(cur: Cursor, photo_id: str) -> set[str]:
    """The photos ``photo_id`` is recorded as a duplicate of, or that are recorded as duplicates of it."""
    rows = cur.fetchall("SELECT other_id FROM photo_duplicates WHERE photo_id = ? UNION SELECT photo_id FROM photo_duplicates "
                        "WHERE other_id = ?", (photo_id, photo_id))
    return {r[0] for r in rows}
