"""The narrow catalog port. Expected outcomes are values (``None``, ``False``); failures raise
``CatalogUnavailable`` (retryable) or ``CatalogError``."""

from __future__ import annotations

from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from media_pipeline.console import DuplicateCluster, PhotoFilter, PhotoSummary
from media_pipeline.events import Event, Settled
from media_pipeline.framing import Focus, Point
from media_pipeline.jobs import ReprocessJob
from media_pipeline.models import Hashes, Photo, PhotoMetadata, Placeholder, Rendition, RenditionLookup


@runtime_checkable
class Catalog(Protocol):
    def migrate(self) -> None:
        """Create or upgrade the schema; safe to call from many processes at once."""

    def check(self) -> None:
        """Raise ``CatalogUnavailable`` unless the database answers."""

    def add_photo(self, photo: Photo) -> None: ...

    def get_photo(self, photo_id: str) -> Photo | None: ...

    def start_processing(self, photo_id: str) -> Photo | None:
        """Mark a queued/processing photo ``processing`` and count the attempt; ``None`` if it is gone."""

    def release(self, photo_id: str) -> None:
        """Hand a ``processing`` photo back to ``queued`` after a transient error: that attempt
        ended and does not count towards MP_MAX_ATTEMPTS, which counts attempts cut short."""

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
        """Record a finished photo in one transaction: ``renditions`` become its current set and every
        other rendition it had is retired; ``focus`` (when given) is its computed focus, and
        ``original_hdr`` (when given) whether the original carries a gain map. ``False`` if the photo is gone."""

    def set_user_focal_point(self, photo_id: str, point: Point | None) -> bool:
        """Set (or clear, with ``None``) the focal point a user chose; ``False`` unless the photo is ready."""
        ...

    def lookup_renditions(self, photo_id: str, width: int, spec: str | None = None, aspect: str = "original") -> RenditionLookup | None:
        """For serving: ``None`` unless the photo is ready; else its renditions at ``width``: those
        of ``spec`` (current or retired, as long as they exist), or the current ones."""

    def add_rendition(self, photo_id: str, rendition: Rendition) -> bool:
        """Record one more current rendition (on demand) of a ready photo; idempotent; ``False`` if the photo is gone."""

    def all_renditions(self, photo_id: str) -> list[Rendition]:
        """Current and retired renditions: what exists in storage for the photo."""

    def retired_renditions(self, retired_before: float, photo_id: str | None = None, limit: int = 1000) -> list[tuple[str, Rendition]]:
        """(photo id, rendition) pairs retired before ``retired_before``, for cleanup."""

    def forget_rendition(self, photo_id: str, rendition: Rendition) -> None: ...

    def fail(self, photo_id: str, code: str, message: str) -> bool: ...

    def stuck_photos(self, updated_before: float, limit: int = 1000) -> list[tuple[str, int]]:
        """(id, attempts) of photos queued or processing with no update since ``updated_before``."""

    def in_flight(self) -> dict[str, int]:
        """How many photos are ``queued`` and ``processing`` (read through the status index)."""

    def touch(self, photo_id: str) -> None: ...

    def claim_idempotency_key(self, scope: str, request_sha256: str, expires_before: float) -> tuple[str, str | None]:
        """("new" | "replay" | "mismatch" | "in_progress", photo id for a replay)."""

    def settle_idempotency_key(self, scope: str, photo_id: str | None) -> None: ...

    def delete_photo(self, photo_id: str) -> bool: ...

    def add_purge(self, body: str, now: float) -> str:
        """Queue a purge for the CDN's hook (the JSON body to send); its id."""

    def claim_purges(self, now: float, lease: float, limit: int = 100) -> list[tuple[str, str, int]]:
        """(id, body, attempts so far) of the purges due, each held from other senders for ``lease`` seconds."""

    def purge_delivered(self, purge_id: str) -> None: ...

    def purge_failed(self, purge_id: str, attempts: int, next_at: float, error: str) -> None: ...

    def pending_purges(self) -> list[tuple[str, int, float, str | None]]: ...

    def set_owner_visible(self, owner: str, visible: bool, now: float) -> None: ...

    def owner_visibility(self, owner: str) -> tuple[bool, float | None]:
        """(visible, when it was last set); an owner never set is visible."""

    def hidden_owners(self, owners: list[str]) -> set[str]: ...

    def set_photo_hidden(self, photo_id: str, hidden: bool) -> bool: ...

    def owner_photos(self, owner: str, after: str = "", limit: int = 1000) -> list[tuple[str, bool]]:
        """A page of the owner's (photo id, hidden on its own), in id order after ``after``."""

    def events_after(self, after: int, limit: int = 100) -> list[Event]:
        """The feed: events past the cursor ``after``, oldest first (written with the change they tell of)."""

    def record_client(self, photo_id: str, client: str) -> None:
        """The API key name a photo was uploaded with (its events also go to that key's receiver)."""

    def fan_out(self, receiver: str, start_before: float, limit: int = 1000, client: str | None = None) -> int:
        """Owe the webhook receiver ``receiver`` (its URL, or ``key:NAME URL``) the events past its
        cursor (of ``client``'s photos only, when given); how many."""

    def claim_deliveries(self, receiver: str, now: float, lease: float, limit: int = 100) -> list[tuple[Event, int]]:
        """(event, attempts so far) due for ``receiver``, one per photo at most, held for ``lease`` seconds."""

    def settle_deliveries(self, receiver: str, settled: Sequence[Settled]) -> None:
        """Record a round's answers: delivered rows go, others are retried from ``next_at`` or stay ``failed``."""

    def prune_events(self, before: float) -> int:
        """Drop events older than ``before`` that no receiver is owed (never the newest); how many."""

    def prune_index_changes(self, before: float, batches: int = 10) -> int:
        """Drop near-duplicate index change rows written before ``before``, at most ``batches``
        transactions of them; how many went (catalog/index_changes.py)."""

    def oldest_undelivered(self, receivers: Sequence[str]) -> float | None: ...

    def failed_deliveries(self, limit: int = 100) -> list[tuple[str, str, str, int, str | None]]: ...

    def count_deliveries(self) -> dict[str, int]: ...
    # The operator console (catalog/console.py): keyset pages on indexes, newest first.
    def list_photos(self, query: PhotoFilter) -> tuple[list[PhotoSummary], str | None]:
        """A page of photos newest first, and the cursor of the next page (``None`` after the last)."""

    def photo_summaries(self, photo_ids: Sequence[str]) -> dict[str, PhotoSummary]: ...

    def status_counts(self) -> dict[str, int]: ...

    def failure_counts(self) -> list[tuple[str, int]]:
        """(error code, photos) of the failed photos, most first."""

    def activity(self, since: float) -> tuple[dict[float, int], dict[float, int]]:
        """Photos accepted, and photos that ended ready or failed, per minute (its start) since ``since``."""

    def stuck_count(self, updated_before: float) -> int: ...

    def duplicate_clusters(self, cursor: str | None, limit: int) -> tuple[list[DuplicateCluster], str | None]:
        """Earlier photos that later ones repeat, newest first, and the next page's cursor."""

    def list_jobs(self, limit: int) -> list[ReprocessJob]:
        """Reprocess jobs, newest first."""

    def record_check(self, finished_at: float, ok: bool, summary: dict[str, Any]) -> None:
        """Keep what a run of ``check`` found (its summary: photos by status, problems by kind)."""

    def last_check(self) -> tuple[float, bool, dict[str, Any]] | None:
        """(finished at, ok, summary) of the newest run of ``check``, or None before the first."""
