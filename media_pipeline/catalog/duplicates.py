"""What photos are matched by and what they matched: each photo's fingerprint (decoded pixels'
digest, how far its perceptual hash can be trusted) and the duplicate pairs found. The hash index
and keypoint postings tables are read and written by media_pipeline/hashindex on this database."""

from __future__ import annotations

from typing import Iterable

from media_pipeline.catalog.database import Cursor, SqlDatabase
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
        with self._tx() as cur:
            cur.execute("DELETE FROM photo_duplicates WHERE found_by = ?", (photo_id,))
            rows = [
                (max(photo_id, m.id), min(photo_id, m.id), m.kind, m.distance, m.transform, m.inliers, photo_id, photo_id, m.id)
                for m in matches if m.id != photo_id
            ]
            # A match deleted meanwhile is skipped, not an error; one the other photo found first is kept.
            cur.executemany(
                "INSERT INTO photo_duplicates (photo_id, other_id, kind, distance, transform, inliers, found_by) SELECT ?, ?, ?, ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM photos WHERE id = ?) AND EXISTS (SELECT 1 FROM photos WHERE id = ?) "
                "ON CONFLICT (photo_id, other_id) DO NOTHING",
                rows,
            )

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
