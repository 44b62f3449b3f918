"""The catalog schema: numbered migrations, applied once each and in order.

A migration is a list of statements, each portable SQL or one per dialect (``None``: nothing to
do there; a function of the cursor where SQL cannot say it on that dialect, as migration 19's back-fill). New tables and columns come as a new migration at the end; an applied one is never
edited, because catalogs out there already ran it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Union

from media_pipeline.catalog.packed_keys import BACKFILL_POSTGRES, backfill_packed_keys_sqlite

if TYPE_CHECKING:
    from media_pipeline.catalog.database import Cursor

# A statement: portable SQL, one per dialect (None: nothing to do there), or a function of the
# cursor for what SQL cannot say on every dialect.
Statement = Union[str, dict[str, Union[str, None, Callable[["Cursor"], None]]]]
Migration = tuple[int, tuple[Statement, ...]]

MIGRATIONS: tuple[Migration, ...] = (
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

# 7: the purge outbox (catalog/purge_outbox.py): CDN purges owed after a DELETE, until acknowledged.
MIGRATIONS = MIGRATIONS + (
    (
        7,
        (
            """CREATE TABLE purge_outbox (
                id TEXT PRIMARY KEY,
                body TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                next_at DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                last_error TEXT
            )""",
            "CREATE INDEX purge_outbox_next_at ON purge_outbox (next_at)",
        ),
    ),
)

MIGRATIONS = MIGRATIONS + (
    (
        8,
        (
            # The encoder quality of each rendition, and for an auto-quality format the
            # SSIMULACRA2 its quality search reached (#19); NULL for rows made before.
            "ALTER TABLE renditions ADD COLUMN quality INTEGER",
            "ALTER TABLE renditions ADD COLUMN score DOUBLE PRECISION",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    (
        9,
        (
            # Where the subject is (focus.py), found at ingest: {focal_point, subject, source}.
            "ALTER TABLE photos ADD COLUMN focus TEXT",
            # A focal point set through the API ({x, y}); crops are cut around it while it is set.
            "ALTER TABLE photos ADD COLUMN user_focal_point TEXT",
            # "original" for the whole picture, "A:B" for a crop around the subject.
            "ALTER TABLE renditions ADD COLUMN aspect TEXT NOT NULL DEFAULT 'original'",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    (
        10,
        (
            # What the original's header says about its animation (#20): 1 frame and 0 ms for a
            # still, and why its renditions are stills (a limit it passes), NULL when they move.
            "ALTER TABLE photos ADD COLUMN original_animated INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE photos ADD COLUMN original_frames INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE photos ADD COLUMN original_duration_ms INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE photos ADD COLUMN animation_dropped TEXT",
            # 1 for a rendition with every frame; its still poster, like any still, has 0.
            "ALTER TABLE renditions ADD COLUMN animated INTEGER NOT NULL DEFAULT 0",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    (
        11,
        (
            # The operator console's lists (catalog/console.py), newest first by id (ids sort by
            # time): by status, by owner, failures by error code; jobs newest first.
            "CREATE INDEX photos_status_id ON photos (status, id)",
            "CREATE INDEX photos_owner_id ON photos (owner, id)",
            "CREATE INDEX photos_status_error_id ON photos (status, error_code, id)",
            "CREATE INDEX reprocess_jobs_created ON reprocess_jobs (created_at)",
        ),
    ),
)


# 12: events (catalog/events.py): the outbox of what happened, written in the transaction of the
# change itself; the feed reads it by `seq`, and the deliverer fans it out to each webhook receiver.
MIGRATIONS = MIGRATIONS + (
    (
        12,
        (
            # `seq` is given by the writer (the last one + 1, under a lock), not by a sequence: so
            # it follows commit order, and a feed reader past `seq` N never misses a later commit below it.
            """CREATE TABLE events (
                seq BIGINT PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                photo_id TEXT,
                client TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                data TEXT NOT NULL
            )""",
            "CREATE INDEX events_created ON events (created_at)",
            # The API key that uploaded a photo: its events also go to that key's receiver
            # (MP_WEBHOOK_KEY_URLS). No foreign key: a deleted photo's `photo.deleted` still needs it.
            """CREATE TABLE photo_clients (
                photo_id TEXT PRIMARY KEY,
                client TEXT NOT NULL
            )""",
            # Each receiver's place in the events (a receiver: its URL, or `key:NAME URL` for an API key's): everything after `cursor` is still to be fanned out.
            """CREATE TABLE webhook_receivers (
                receiver TEXT PRIMARY KEY,
                cursor BIGINT NOT NULL
            )""",
            # One row per event owed to a receiver: `pending` until a 2xx (then the row goes), or
            # `failed` once its retry window passed. `photo` ('' for none) keeps each photo's order.
            """CREATE TABLE webhook_deliveries (
                receiver TEXT NOT NULL,
                event_seq BIGINT NOT NULL,
                photo TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                next_at DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                last_error TEXT,
                PRIMARY KEY (receiver, event_seq)
            )""",
            "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (receiver, state, next_at)",
            "CREATE INDEX webhook_deliveries_photo ON webhook_deliveries (receiver, photo, state, event_seq)",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    (
        13,
        (
            # Kept as shot (#20): whether the original carries an HDR gain map, and what each
            # rendition is: its gamut (srgb, or p3 with the profile embedded) and whether it
            # carries the gain map (an Ultra HDR JPEG).
            "ALTER TABLE photos ADD COLUMN original_hdr INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE renditions ADD COLUMN gamut TEXT NOT NULL DEFAULT 'srgb'",
            "ALTER TABLE renditions ADD COLUMN hdr INTEGER NOT NULL DEFAULT 0",
        ),
    ),
)


# 14: imports of an existing library (#23, importer.py). The main app's id of a photo, unique per
# owner (COALESCE: NULL owners would otherwise never collide), and one ledger row per source item
# of an import job (the job itself is a reprocess_jobs row whose selection names the source).
MIGRATIONS = MIGRATIONS + (
    (
        14,
        (
            "ALTER TABLE photos ADD COLUMN external_id TEXT",
            "CREATE UNIQUE INDEX photos_owner_external_id ON photos (COALESCE(owner, ''), external_id)",
            # The console finds a photo by the main app's id alone.
            "CREATE INDEX photos_external_id ON photos (external_id)",
            """CREATE TABLE import_items (
                job_id TEXT NOT NULL,
                item TEXT NOT NULL,
                outcome TEXT NOT NULL,
                code TEXT,
                message TEXT,
                photo_id TEXT,
                owner TEXT,
                external_id TEXT,
                visible INTEGER,
                bytes BIGINT NOT NULL DEFAULT 0,
                taken_at TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (job_id, item)
            )""",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    (
        15,
        (
            # An owner's choice not to be shown (#23): every image URL of their photos answers 404.
            "CREATE TABLE owner_visibility (owner TEXT PRIMARY KEY, visible INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
            # One photo hidden on its own (PATCH /v1/photos/<id> {"visible": false}).
            "ALTER TABLE photos ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0",
            # (An owner's photos are paged by photos_owner_id, migration 11.)
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    (
        16,
        (
            # What each `media-pipeline check` found (check.py), so the console's Health view can
            # show the last one without walking storage on a page load.
            "CREATE TABLE check_runs (finished_at DOUBLE PRECISION PRIMARY KEY, ok INTEGER NOT NULL, summary TEXT NOT NULL)",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    (
        17,
        (
            # The indexes' change log (catalog/index_changes.py): a process holding them in memory
            # (MP_DUPLICATE_INDEX=memory) catches up on what other processes filed by number.
            {"postgresql": "CREATE TABLE index_changes (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, photo_id TEXT NOT NULL)",
             "sqlite": "CREATE TABLE index_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, photo_id TEXT NOT NULL)"},
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    (
        18,
        (
            # Pruning the change log (IndexChangeStore.prune_index_changes): when each row was
            # written, and the highest number pruning has passed, so a process that had not yet
            # applied a number at or below it knows rows it needed may be gone and reloads.
            "ALTER TABLE index_changes ADD COLUMN created_at DOUBLE PRECISION NOT NULL DEFAULT 0",
            # The rows from before this migration age from the upgrade, not from 1970: the first
            # prune leaves a keep period's worth for the processes still catching up on them.
            {"postgresql": "UPDATE index_changes SET created_at = EXTRACT(EPOCH FROM clock_timestamp())",
             "sqlite": "UPDATE index_changes SET created_at = (julianday('now') - 2440587.5) * 86400.0"},
            "CREATE INDEX index_changes_created ON index_changes (created_at)",
            "CREATE TABLE index_changes_pruned (through_seq BIGINT NOT NULL)",
            "INSERT INTO index_changes_pruned (through_seq) VALUES (0)",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    (
        19,
        (
            # The keypoint keys' store of record (hashindex/features.py): one row a photo, its sorted
            # distinct keys as little-endian uint32, its lowest key (photos under an older key format
            # are those whose lowest key is below the current format's range) and whether
            # feature_postings holds its keys too (0: filed with MP_DUPLICATE_INDEX=memory, which
            # writes no postings; they are rebuilt from this row when votes go back to SQL).
            {"postgresql": "CREATE TABLE feature_keys (photo_id TEXT PRIMARY KEY, owner TEXT NOT NULL, first_key BIGINT NOT NULL, "
                           "posted SMALLINT NOT NULL, keys BYTEA NOT NULL)",
             "sqlite": "CREATE TABLE feature_keys (photo_id TEXT PRIMARY KEY, owner TEXT NOT NULL, first_key BIGINT NOT NULL, "
                       "posted SMALLINT NOT NULL, keys BLOB NOT NULL)"},
            "CREATE INDEX feature_keys_first_key ON feature_keys (first_key)",
            # The photos whose postings are owed: empty while votes run in SQL, and while they run in
            # memory (every row) a few bytes a photo, as the key is the same in every entry.
            "CREATE INDEX feature_keys_unposted ON feature_keys (posted) WHERE posted = 0",
            {"postgresql": BACKFILL_POSTGRES, "sqlite": backfill_packed_keys_sqlite},
        ),
    ),
)


def apply_migrations(cur: "Cursor", dialect: str, migrations: tuple[Migration, ...]) -> None:
    """Run the ``migrations`` not yet recorded in ``schema_migrations``, inside the caller's transaction."""
    if dialect == "postgresql":
        # Serialise concurrent start-ups (API and workers start together).
        cur.execute("SELECT pg_advisory_xact_lock(7231001)")
    cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
    done = {row[0] for row in cur.fetchall("SELECT version FROM schema_migrations")}
    for version, statements in migrations:
        if version in done:
            continue
        for statement in statements:
            # A statement is portable SQL, or one per dialect (None: nothing to do there).
            sql = statement[dialect] if isinstance(statement, dict) else statement
            if callable(sql):
                sql(cur)
            elif sql is not None:
                cur.execute(sql)
        cur.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, time.time()))
