"""SQL catalog on SQLite (``sqlite:///path``) or PostgreSQL (``postgresql://…``).

One implementation, two dialects: the statements are portable SQL written with ``?``
placeholders, which become ``%s`` for psycopg. Connections are per thread and per process (a
connection opened before a fork is never used after it).

``SqlCatalog`` is the ``Catalog`` port composed of one store per aggregate, each in its own module:

- database.py: the URL and dialect, connections, transactions, the cursor
- schema.py: the migrations
- photos.py: photos, their renditions and perceptual hashes
- duplicates.py: fingerprints and duplicate matches (the hash index and keypoint postings
  tables are media_pipeline/hashindex's)
- reprocess_jobs.py: reprocess jobs and their per-photo ledger
- import_items.py: photos by the main app's id, and the import ledger
- idempotency.py: upload idempotency keys
- purge_outbox.py: CDN purges owed until acknowledged
- console.py: the operator console's pages and counts
- events.py: the events outbox (the feed) and the webhook deliveries owed to each receiver
- visibility.py: owners who opted out and photos hidden on their own
- check_runs.py: what the last runs of `check` found
- index_changes.py: the near-duplicate indexes' change log, and its pruning
"""

from __future__ import annotations

from media_pipeline.catalog.check_runs import CheckRunStore
from media_pipeline.catalog.console import ConsoleStore
from media_pipeline.catalog.database import SqlDatabase
from media_pipeline.catalog.duplicates import DuplicateStore
from media_pipeline.catalog.events import EventStore
from media_pipeline.catalog.idempotency import IdempotencyKeyStore
from media_pipeline.catalog.import_items import ImportItemStore
from media_pipeline.catalog.index_changes import IndexChangeStore
from media_pipeline.catalog.photos import PhotoStore
from media_pipeline.catalog.purge_outbox import PurgeOutboxStore
from media_pipeline.catalog.reprocess_jobs import ReprocessJobStore
from media_pipeline.catalog.visibility import VisibilityStore
from media_pipeline.catalog.schema import MIGRATIONS, apply_migrations, hash_substring_indexes

__all__ = ["MIGRATIONS", "SqlCatalog", "hash_substring_indexes"]


class SqlCatalog(PhotoStore, DuplicateStore, ReprocessJobStore, ImportItemStore, IdempotencyKeyStore, PurgeOutboxStore, ConsoleStore,
                 EventStore, VisibilityStore, CheckRunStore, IndexChangeStore, SqlDatabase):
    def migrate(self) -> None:
        # MIGRATIONS is looked up here at call time, so a test can stand in an older schema.
        with self._tx() as cur:
            apply_migrations(cur, self.dialect, MIGRATIONS)
