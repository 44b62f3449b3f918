"""SQL catalog on SQLite (``sqlite:///path``) or PostgreSQL (``postgresql://…``).

One implementation, two dialects: the statements are portable SQL written with ``?``
placeholders, which become ``%s`` for psycopg. Connections are per thread and per process (a
connection opened before a fork is never used after it).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlparse

from media_pipeline.errors import CatalogError, CatalogUnavailable
from media_pipeline.models import (
    Duplicate,
    HashQuality,
    Hashes,
    Photo,
    PhotoMetadata,
    PhotoStatus,
    Placeholder,
    JobReport,
    Rendition,
    RenditionLookup,
    ReprocessJob,
    Selection,
)

MIGRATIONS: tuple[tuple[int, tuple[str | dict[str, str | None], ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE photos (
                id TEXT PRIMARY KEY,
                owner TEXT,
                status TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                original_key TEXT NOT NULL,
                original_format TEXT NOT NULL,
                original_width INTEGER NOT NULL,
                original_height INTEGER NOT NULL,
                original_bytes BIGINT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                preset_version TEXT,
                metadata TEXT,
                placeholder TEXT,
                error_code TEXT,
                error_message TEXT,
                attempts INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX photos_status_updated ON photos (status, updated_at)",
            "CREATE INDEX photos_owner_created ON photos (owner, created_at)",
            "CREATE INDEX photos_sha256 ON photos (sha256)",
            # Every rendition object a photo has: `current` ones make up its present set; retired
            # ones (left by a preset change) stay servable until cleanup deletes them.
            """CREATE TABLE renditions (
                photo_id TEXT NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
                spec TEXT NOT NULL,
                width INTEGER NOT NULL,
                format TEXT NOT NULL,
                height INTEGER NOT NULL,
                bytes BIGINT NOT NULL,
                key TEXT NOT NULL,
                current INTEGER NOT NULL DEFAULT 1,
                retired_at DOUBLE PRECISION,
                PRIMARY KEY (photo_id, spec, width, format)
            )""",
            "CREATE INDEX renditions_retired ON renditions (retired_at)",
            """CREATE TABLE photo_hashes (
                photo_id TEXT NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
                kind TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (photo_id, kind)
            )""",
        ),
    ),
)

MIGRATIONS = MIGRATIONS + (
    (
        2,
        (
            "ALTER TABLE photos ADD COLUMN process_seconds DOUBLE PRECISION",
            """CREATE TABLE reprocess_jobs (
                id TEXT PRIMARY KEY,
                selection TEXT NOT NULL,
                target_version TEXT NOT NULL,
                status TEXT NOT NULL,
                cursor TEXT NOT NULL DEFAULT '',
                enqueued BIGINT NOT NULL DEFAULT 0,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION
            )""",
            # One row per photo of a job: 'pending' when enqueued, then its first outcome, once.
            """CREATE TABLE reprocess_items (
                job_id TEXT NOT NULL,
                photo_id TEXT NOT NULL,
                outcome TEXT NOT NULL,
                code TEXT,
                bytes_written BIGINT NOT NULL DEFAULT 0,
                bytes_deleted BIGINT NOT NULL DEFAULT 0,
                seconds DOUBLE PRECISION,
                enqueued_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION,
                PRIMARY KEY (job_id, photo_id)
            )""",
            "CREATE INDEX reprocess_items_outcome ON reprocess_items (job_id, outcome)",
        ),
    ),
)

MIGRATIONS = MIGRATIONS + (
    (
        3,
        (
            # Idempotency-Key of an upload, scoped by owner: the body's hash, and the photo once it exists.
            """CREATE TABLE idempotency_keys (
                scope TEXT PRIMARY KEY,
                request_sha256 TEXT NOT NULL,
                photo_id TEXT,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
        ),
    ),
)

MIGRATIONS = MIGRATIONS + (
    (
        4,
        (
            # The near-duplicate index: one row per stored view hash, its 16 substrings indexed
            # (see media_pipeline/hashindex). No foreign key: the index is its own port.
            """CREATE TABLE hash_index (
                photo_id TEXT NOT NULL,
                view TEXT NOT NULL,
                owner TEXT,
                h0 BIGINT NOT NULL,
                h1 BIGINT NOT NULL,
                h2 BIGINT NOT NULL,
                h3 BIGINT NOT NULL,
                """ + ",\n                ".join(f"c{i} INTEGER NOT NULL" for i in range(16)) + """,
                PRIMARY KEY (photo_id, view)
            )""",
            # Covering: a lookup reads the value from the index and never visits the table.
            *(f"CREATE INDEX hash_index_c{i} ON hash_index (c{i}, h0, h1, h2, h3, owner, photo_id, view)" for i in range(16)),
            # What a photo is matched by besides the index: its decoded pixels' digest and how
            # much a perceptual hash of it can be trusted.
            """CREATE TABLE photo_fingerprints (
                photo_id TEXT PRIMARY KEY REFERENCES photos (id) ON DELETE CASCADE,
                pixel_sha256 TEXT NOT NULL,
                quality DOUBLE PRECISION NOT NULL,
                near_indexed INTEGER NOT NULL
            )""",
            "CREATE INDEX photo_fingerprints_pixels ON photo_fingerprints (pixel_sha256)",
            # A match, always stored from the later photo (by id, which orders by acceptance) to
            # the earlier one, whichever of the two found it.
            """CREATE TABLE photo_duplicates (
                photo_id TEXT NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
                other_id TEXT NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
                kind TEXT NOT NULL,
                distance INTEGER,
                transform TEXT,
                inliers INTEGER,
                found_by TEXT NOT NULL,
                PRIMARY KEY (photo_id, other_id)
            )""",
            "CREATE INDEX photo_duplicates_other ON photo_duplicates (other_id)",
            "CREATE INDEX photo_duplicates_found_by ON photo_duplicates (found_by)",
            # Keypoint vote keys (media_pipeline/keypoints.py): one row per key of a photo.
            """CREATE TABLE feature_postings (
                key INTEGER NOT NULL,
                photo_id TEXT NOT NULL,
                owner TEXT NOT NULL,
                PRIMARY KEY (key, photo_id)
            )""",
            "CREATE INDEX feature_postings_photo ON feature_postings (photo_id)",
        ),
    ),
)

MIGRATIONS = MIGRATIONS + (
    (
        5,
        (
            # Starts of a photo in a reprocess job that ended in neither an outcome nor a hand-back
            # after a transient error: each one is a worker that died or was killed on it.
            "ALTER TABLE reprocess_items ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        ),
    ),
)


def hash_substring_indexes(dialect: str) -> tuple[str, ...]:
    """The 16 substring indexes of ``hash_index``: each carries the value and a row number and
    nothing else, so a lookup is index-only and its pages are about half the size they were with
    the photo id, view and owner in them (migration 6); those are read for matches only. SQLite
    puts the rowid in every index by itself."""
    if dialect == "postgresql":
        return tuple(f"CREATE INDEX hash_index_c{i} ON hash_index (c{i}) INCLUDE (h0, h1, h2, h3, rid)" for i in range(16))
    return tuple(f"CREATE INDEX hash_index_c{i} ON hash_index (c{i}, h0, h1, h2, h3)" for i in range(16))


MIGRATIONS = MIGRATIONS + (
    (
        6,
        (
            {"postgresql": "ALTER TABLE hash_index ADD COLUMN rid BIGINT GENERATED ALWAYS AS IDENTITY", "sqlite": None},
            {"postgresql": "CREATE UNIQUE INDEX hash_index_rid ON hash_index (rid)", "sqlite": None},
            *(f"DROP INDEX hash_index_c{i}" for i in range(16)),
            *({"postgresql": pg, "sqlite": lite} for pg, lite in zip(hash_substring_indexes("postgresql"), hash_substring_indexes("sqlite"))),
        ),
    ),
)

_PHOTO_COLUMNS = (
    "id, owner, status, sha256, original_key, original_format, original_width, original_height, "
    "original_bytes, created_at, updated_at, preset_version, metadata, placeholder, error_code, "
    "error_message, attempts"
)


class SqlCatalog:
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.url = url
        self.dialect = "sqlite" if parsed.scheme == "sqlite" else "postgresql"
        if self.dialect == "sqlite":
            path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else parsed.path
            self.sqlite_path = path or ":memory:"
            if self.sqlite_path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(self.sqlite_path)), exist_ok=True)
        self._local = threading.local()

    # ------------------------------------------------------------------ connections
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            conn = sqlite3.connect(self.sqlite_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            return conn
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    def close(self) -> None:
        self._drop_connection()

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator["_Cursor"]:
        """One transaction. Vendor errors become ``CatalogUnavailable`` (connection, lock) or ``CatalogError``.

        On SQLite a writing transaction takes the write lock up front (no deadlock between two
        readers that both want to upgrade); a read-only one does not, so polling never blocks workers.
        """
        try:
            conn = self._connection()
            if self.dialect == "sqlite":
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield _Cursor(conn, self.dialect)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            else:
                with conn.transaction():
                    yield _Cursor(conn, self.dialect)
        except (CatalogError, KeyboardInterrupt):
            raise
        except Exception as exc:
            transient = self._is_transient(exc)
            if transient:
                self._drop_connection()
                raise CatalogUnavailable(f"catalog unavailable: {exc}") from exc
            if isinstance(exc, (sqlite3.Error,)) or type(exc).__module__.startswith("psycopg"):
                raise CatalogError(f"catalog error: {exc}") from exc
            raise

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, sqlite3.OperationalError):
            return "locked" in str(exc) or "busy" in str(exc) or "unable to open" in str(exc)
        if type(exc).__module__.startswith("psycopg"):
            import psycopg

            return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) or getattr(exc, "sqlstate", "") in ("40001", "40P01")
        return False

    # ------------------------------------------------------------------ schema
    def migrate(self) -> None:
        with self._tx() as cur:
            if self.dialect == "postgresql":
                # Serialise concurrent start-ups (API and workers start together).
                cur.execute("SELECT pg_advisory_xact_lock(7231001)")
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
            done = {row[0] for row in cur.fetchall("SELECT version FROM schema_migrations")}
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    # A statement is portable SQL, or one per dialect (None: nothing to do there).
                    sql = statement[self.dialect] if isinstance(statement, dict) else statement
                    if sql is not None:
                        cur.execute(sql)
                cur.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, time.time()))

    def check(self) -> None:
        with self._tx(write=False) as cur:
            cur.fetchall("SELECT 1")

    # ------------------------------------------------------------------ photos
    def add_photo(self, photo: Photo) -> None:
        with self._tx() as cur:
            cur.execute(
                f"INSERT INTO photos ({_PHOTO_COLUMNS}) VALUES ({', '.join('?' * 17)})",
                (
                    photo.id, photo.owner, photo.status.value, photo.sha256, photo.original_key,
                    photo.original_format, photo.original_width, photo.original_height, photo.original_bytes,
                    photo.created_at, photo.updated_at, photo.preset_version,
                    _dump(photo.metadata.to_dict() if photo.metadata else None),
                    _dump(_placeholder_dict(photo.placeholder)), photo.error_code, photo.error_message, photo.attempts,
                ),
            )

    def get_photo(self, photo_id: str) -> Photo | None:
        with self._tx(write=False) as cur:
            return self._load(cur, photo_id)

    def _load(self, cur: "_Cursor", photo_id: str) -> Photo | None:
        rows = cur.fetchall(f"SELECT {_PHOTO_COLUMNS} FROM photos WHERE id = ?", (photo_id,))
        if not rows:
            return None
        row = rows[0]
        version = row[11]
        renditions = tuple(
            _rendition(r)
            for r in cur.fetchall(
                f"SELECT {_RENDITION_COLUMNS} FROM renditions WHERE photo_id = ? AND current = 1 ORDER BY width DESC, format",
                (photo_id,),
            )
        )
        hash_rows = dict(cur.fetchall("SELECT kind, value FROM photo_hashes WHERE photo_id = ?", (photo_id,)))
        hashes = Hashes(phash=hash_rows["phash"], dhash=hash_rows["dhash"]) if {"phash", "dhash"} <= hash_rows.keys() else None
        metadata = json.loads(row[12]) if row[12] else None
        placeholder = json.loads(row[13]) if row[13] else None
        quality = cur.fetchall("SELECT quality, near_indexed FROM photo_fingerprints WHERE photo_id = ?", (photo_id,))
        return Photo(
            id=row[0], owner=row[1], status=PhotoStatus(row[2]), sha256=row[3], original_key=row[4],
            original_format=row[5], original_width=row[6], original_height=row[7], original_bytes=row[8],
            created_at=row[9], updated_at=row[10], preset_version=version,
            metadata=PhotoMetadata.from_dict(metadata) if metadata else None,
            placeholder=Placeholder(**placeholder) if placeholder else None,
            error_code=row[14], error_message=row[15], attempts=row[16],
            renditions=renditions, hashes=hashes,
            hash_quality=HashQuality(score=float(quality[0][0]), matched=bool(quality[0][1])) if quality else None,
            duplicates=tuple(self._duplicates(cur, photo_id)),
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
    ) -> bool:
        now = time.time()
        with self._tx() as cur:
            updated = cur.execute(
                "UPDATE photos SET status = ?, preset_version = ?, metadata = ?, placeholder = ?, error_code = NULL, "
                "error_message = NULL, updated_at = ?, process_seconds = COALESCE(?, process_seconds) WHERE id = ?",
                (PhotoStatus.READY.value, preset_version, _dump(metadata.to_dict()), _dump(_placeholder_dict(placeholder)), now,
                 seconds, photo_id),
            )
            if not updated:
                return False
            # The new set replaces the old one in this transaction; what falls out of it is retired.
            cur.execute(
                "UPDATE renditions SET current = 0, retired_at = ? WHERE photo_id = ? AND current = 1", (now, photo_id)
            )
            cur.executemany(
                "INSERT INTO renditions (photo_id, spec, width, format, height, bytes, key, current, retired_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 1, NULL) ON CONFLICT (photo_id, spec, width, format) DO UPDATE SET "
                "height = excluded.height, bytes = excluded.bytes, key = excluded.key, current = 1, retired_at = NULL",
                [(photo_id, r.spec, r.width, r.format, r.height, r.bytes, r.key) for r in renditions],
            )
            cur.execute("DELETE FROM photo_hashes WHERE photo_id = ?", (photo_id,))
            cur.executemany(
                "INSERT INTO photo_hashes (photo_id, kind, value) VALUES (?, ?, ?)",
                [(photo_id, "phash", hashes.phash), (photo_id, "dhash", hashes.dhash)],
            )
            return True

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

    def lookup_renditions(self, photo_id: str, width: int, spec: str | None = None) -> RenditionLookup | None:
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT status, original_width FROM photos WHERE id = ?", (photo_id,))
            if not rows or rows[0][0] != PhotoStatus.READY.value:
                return None
            if spec is None:
                found = cur.fetchall(
                    f"SELECT {_RENDITION_COLUMNS} FROM renditions WHERE photo_id = ? AND width = ? AND current = 1", (photo_id, width)
                )
            else:
                found = cur.fetchall(
                    f"SELECT {_RENDITION_COLUMNS} FROM renditions WHERE photo_id = ? AND spec = ? AND width = ?", (photo_id, spec, width)
                )
        return RenditionLookup(original_width=rows[0][1], renditions=tuple(_rendition(r) for r in found))

    def add_rendition(self, photo_id: str, rendition: Rendition) -> bool:
        with self._tx() as cur:
            return bool(
                cur.execute(
                    "INSERT INTO renditions (photo_id, spec, width, format, height, bytes, key, current, retired_at) "
                    "SELECT ?, ?, ?, ?, ?, ?, ?, 1, NULL WHERE EXISTS (SELECT 1 FROM photos WHERE id = ? AND status = ?) "
                    "ON CONFLICT (photo_id, spec, width, format) DO UPDATE SET height = excluded.height, "
                    "bytes = excluded.bytes, key = excluded.key, current = 1, retired_at = NULL",
                    (photo_id, rendition.spec, rendition.width, rendition.format, rendition.height, rendition.bytes, rendition.key,
                     photo_id, PhotoStatus.READY.value),
                )
            )

    def fail(self, photo_id: str, code: str, message: str) -> bool:
        with self._tx() as cur:
            return bool(
                cur.execute(
                    "UPDATE photos SET status = ?, error_code = ?, error_message = ?, updated_at = ? WHERE id = ?",
                    (PhotoStatus.FAILED.value, code, message[:1000], time.time(), photo_id),
                )
            )

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

    def claim_idempotency_key(self, scope: str, request_sha256: str, expires_before: float) -> tuple[str, str | None]:
        """("new", None) when this request may go ahead; ("replay", photo id) when the same body was
        accepted before; ("mismatch", None) for another body; ("in_progress", None) while the first
        request with this key is still running. Keys older than ``expires_before`` are forgotten."""
        now = time.time()
        with self._tx() as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE scope = ? AND created_at < ?", (scope, expires_before))
            inserted = cur.execute(
                "INSERT INTO idempotency_keys (scope, request_sha256, photo_id, created_at) VALUES (?, ?, NULL, ?) "
                "ON CONFLICT (scope) DO NOTHING",
                (scope, request_sha256, now),
            )
            if inserted:
                return "new", None
            sha, photo_id = cur.fetchall("SELECT request_sha256, photo_id FROM idempotency_keys WHERE scope = ?", (scope,))[0]
        if sha != request_sha256:
            return "mismatch", None
        return ("replay", photo_id) if photo_id else ("in_progress", None)

    def settle_idempotency_key(self, scope: str, photo_id: str | None) -> None:
        """Record the photo the key produced, or (``None``: the request failed) release the key."""
        with self._tx() as cur:
            if photo_id is None:
                cur.execute("DELETE FROM idempotency_keys WHERE scope = ? AND photo_id IS NULL", (scope,))
            else:
                cur.execute("UPDATE idempotency_keys SET photo_id = ? WHERE scope = ?", (photo_id, scope))

    def requeue(self, photo_id: str) -> bool:
        """Give a failed photo another go: back to ``queued`` with its error cleared."""
        with self._tx() as cur:
            return bool(cur.execute(
                "UPDATE photos SET status = ?, error_code = NULL, error_message = NULL, attempts = 0, updated_at = ? "
                "WHERE id = ? AND status = ?",
                (PhotoStatus.QUEUED.value, time.time(), photo_id, PhotoStatus.FAILED.value),
            ))

    # ------------------------------------------------------------------ reprocessing
    def select_photo_ids(self, selection: Selection, target_version: str, after: str = "", limit: int = 1000) -> list[str]:
        where, params = _selection_sql(selection, target_version)
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT id FROM photos WHERE id > ? AND {where} ORDER BY id LIMIT {int(limit)}", [after, *params])
        return [r[0] for r in rows]

    def count_photos(self, selection: Selection, target_version: str) -> tuple[int, int]:
        """(selected, of which not at ``target_version``)."""
        where, params = _selection_sql(selection, target_version)
        with self._tx(write=False) as cur:
            row = cur.fetchall(
                f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN preset_version = ? AND status = 'ready' THEN 0 ELSE 1 END), 0) "
                f"FROM photos WHERE {where}",
                [target_version, *params],
            )[0]
        return int(row[0]), int(row[1])

    def processing_stats(self) -> tuple[float | None, dict[tuple[str, int], float]]:
        """(mean seconds to process a photo, mean bytes of a rendition per (format, width)), from what was recorded."""
        with self._tx(write=False) as cur:
            seconds = cur.fetchall("SELECT AVG(process_seconds) FROM photos WHERE process_seconds IS NOT NULL")[0][0]
            sizes = cur.fetchall("SELECT format, width, AVG(bytes) FROM renditions WHERE current = 1 GROUP BY format, width")
        return (float(seconds) if seconds is not None else None, {(r[0], int(r[1])): float(r[2]) for r in sizes})

    def create_job(self, job: ReprocessJob) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO reprocess_jobs (id, selection, target_version, status, cursor, enqueued, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, json.dumps(job.selection.to_dict()), job.target_version, job.status, job.cursor, job.enqueued,
                 job.created_at, job.updated_at),
            )

    def get_job(self, job_id: str | None = None) -> ReprocessJob | None:
        """The job ``job_id``, or the newest one."""
        with self._tx(write=False) as cur:
            sql = "SELECT id, selection, target_version, status, cursor, enqueued, created_at, updated_at, finished_at FROM reprocess_jobs "
            rows = cur.fetchall(sql + "WHERE id = ?", (job_id,)) if job_id else cur.fetchall(sql + "ORDER BY created_at DESC LIMIT 1")
        if not rows:
            return None
        r = rows[0]
        return ReprocessJob(id=r[0], selection=Selection.from_dict(json.loads(r[1])), target_version=r[2], status=r[3],
                            cursor=r[4], enqueued=r[5], created_at=r[6], updated_at=r[7], finished_at=r[8])

    def checkpoint(self, job_id: str, cursor: str, photo_ids: list[str]) -> int:
        """Record a batch as enqueued and move the cursor past it, in one transaction. Returns how
        many of the ids are new to the job (a resumed batch is not counted twice)."""
        now = time.time()
        with self._tx() as cur:
            added = cur.executemany(
                "INSERT INTO reprocess_items (job_id, photo_id, outcome, enqueued_at) VALUES (?, ?, 'pending', ?) "
                "ON CONFLICT (job_id, photo_id) DO NOTHING",
                [(job_id, pid, now) for pid in photo_ids],
            )
            cur.execute(
                "UPDATE reprocess_jobs SET cursor = ?, enqueued = enqueued + ?, updated_at = ? WHERE id = ?",
                (cursor, added, now, job_id),
            )
        return added

    def set_job_status(self, job_id: str, status: str) -> None:
        finished = time.time() if status in ("done", "interrupted", "failed") else None
        with self._tx() as cur:
            cur.execute("UPDATE reprocess_jobs SET status = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                        (status, time.time(), finished, job_id))

    def record_item(self, job_id: str, photo_id: str, outcome: str, code: str | None, bytes_written: int,
                    bytes_deleted: int, seconds: float) -> bool:
        """The first outcome of a photo in a job wins; a redelivered message does not count it twice."""
        with self._tx() as cur:
            return bool(cur.execute(
                "UPDATE reprocess_items SET outcome = ?, code = ?, bytes_written = ?, bytes_deleted = ?, seconds = ?, "
                "finished_at = ? WHERE job_id = ? AND photo_id = ? AND outcome = 'pending'",
                (outcome, code, bytes_written, bytes_deleted, seconds, time.time(), job_id, photo_id),
            ))

    def start_item(self, job_id: str, photo_id: str) -> int | None:
        """Count a start of a photo in a job: the starts so far, or ``None`` once it has an outcome."""
        with self._tx() as cur:
            cur.execute("UPDATE reprocess_items SET attempts = attempts + 1 WHERE job_id = ? AND photo_id = ? AND outcome = 'pending'",
                        (job_id, photo_id))
            rows = cur.fetchall("SELECT attempts FROM reprocess_items WHERE job_id = ? AND photo_id = ? AND outcome = 'pending'",
                                (job_id, photo_id))
        return int(rows[0][0]) if rows else None

    def release_item(self, job_id: str, photo_id: str) -> None:
        """A start that ended in a transient error and went back on the queue does not count."""
        with self._tx() as cur:
            cur.execute("UPDATE reprocess_items SET attempts = attempts - 1 WHERE job_id = ? AND photo_id = ? AND attempts > 0 "
                        "AND outcome = 'pending'", (job_id, photo_id))

    def job_report(self, job_id: str) -> JobReport:
        with self._tx(write=False) as cur:
            rows = cur.fetchall(
                "SELECT outcome, COUNT(*), COALESCE(SUM(bytes_written), 0), COALESCE(SUM(bytes_deleted), 0), MAX(finished_at), "
                "MIN(finished_at) FROM reprocess_items WHERE job_id = ? GROUP BY outcome",
                (job_id,),
            )
            failures = cur.fetchall(
                "SELECT photo_id, code FROM reprocess_items WHERE job_id = ? AND outcome = 'failed' ORDER BY photo_id LIMIT 50",
                (job_id,),
            )
        counts = {r[0]: int(r[1]) for r in rows}
        finished = [r[4] for r in rows if r[4] is not None]
        started = [r[5] for r in rows if r[5] is not None]
        return JobReport(
            counts=counts,
            bytes_written=sum(int(r[2]) for r in rows),
            bytes_deleted=sum(int(r[3]) for r in rows),
            failures=[(r[0], r[1]) for r in failures],
            first_finished_at=min(started) if started else None,
            last_finished_at=max(finished) if finished else None,
        )

    def pending_items(self, job_id: str, enqueued_before: float, limit: int = 1000) -> list[str]:
        with self._tx(write=False) as cur:
            rows = cur.fetchall(
                f"SELECT photo_id FROM reprocess_items WHERE job_id = ? AND outcome = 'pending' AND enqueued_at < ? "
                f"ORDER BY photo_id LIMIT {int(limit)}",
                (job_id, enqueued_before),
            )
        return [r[0] for r in rows]

    def touch_items(self, job_id: str, photo_ids: list[str]) -> None:
        with self._tx() as cur:
            cur.executemany("UPDATE reprocess_items SET enqueued_at = ? WHERE job_id = ? AND photo_id = ?",
                            [(time.time(), job_id, pid) for pid in photo_ids])

    # ------------------------------------------------------------------ duplicates
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
            return self._duplicates(cur, photo_id)

    def _duplicates(self, cur: "_Cursor", photo_id: str) -> list[Duplicate]:
        rows = cur.fetchall(
            "SELECT other_id, kind, distance, transform, inliers FROM photo_duplicates WHERE photo_id = ?", (photo_id,)
        )
        found = [Duplicate(id=r[0], kind=r[1], distance=r[2], transform=r[3], inliers=r[4]) for r in rows]
        return sorted(found, key=lambda d: d.order)

    def delete_photo(self, photo_id: str) -> bool:
        with self._tx() as cur:
            cur.execute("DELETE FROM renditions WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM photo_hashes WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM hash_index WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM feature_postings WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM photo_fingerprints WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM photo_duplicates WHERE photo_id = ? OR other_id = ?", (photo_id, photo_id))
            return bool(cur.execute("DELETE FROM photos WHERE id = ?", (photo_id,)))


_RENDITION_COLUMNS = "width, height, format, bytes, key, spec"


def _selection_sql(selection: Selection, target_version: str) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    if selection.mode == "stale":
        clauses.append("status IN ('ready', 'queued', 'processing') AND (preset_version IS NULL OR preset_version <> ?)")
        params.append(target_version)
    elif selection.mode == "failed":
        clauses.append("status = 'failed'")
    if selection.owner is not None:
        clauses.append("owner = ?")
        params.append(selection.owner)
    if selection.created_after is not None:
        clauses.append("created_at >= ?")
        params.append(selection.created_after)
    if selection.created_before is not None:
        clauses.append("created_at < ?")
        params.append(selection.created_before)
    return " AND ".join(clauses), params


def _rendition(row: Sequence[Any]) -> Rendition:
    return Rendition(width=row[0], height=row[1], format=row[2], bytes=row[3], key=row[4], spec=row[5])


class _Cursor:
    """Runs ``?``-style SQL on either driver; ``execute`` answers the affected row count."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self.conn.execute(self._sql(sql), params)
        return cur.rowcount

    def executemany(self, sql: str, rows: list[Sequence[Any]]) -> int:
        """Runs ``sql`` once per row; answers the rows affected in all (conflicts skipped are not counted)."""
        if not rows:
            return 0
        if self.dialect == "postgresql":
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
                return max(cur.rowcount, 0)
        return max(self.conn.executemany(sql, rows).rowcount, 0)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(self._sql(sql), params).fetchall())


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _placeholder_dict(placeholder: Placeholder | None) -> dict[str, str] | None:
    if placeholder is None:
        return None
    return {"blurhash": placeholder.blurhash, "dominant_color": placeholder.dominant_color}
