"""The narrow catalog port. Expected outcomes are values (``None``, ``False``); failures raise
``CatalogUnavailable`` (retryable) or ``CatalogError``."""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

from media_pipeline.models import Focus, Hashes, Photo, PhotoMetadata, Placeholder, Point, Rendition, RenditionLookup


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
