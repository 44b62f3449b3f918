"""The values an import passes around."""

from __future__ import annotations

from dataclasses import dataclass, field

from media_pipeline.models import Photo

# An item's outcome in the import ledger (catalog ``import_items``); processing outcomes go to the
# reprocess ledger as for any reprocess job.
IMPORTED = "imported"  # copied, catalogued and enqueued
ALREADY_IMPORTED = "already_imported"  # found by (owner, external_id) or (owner, SHA-256): not copied again
BAD = "bad"  # missing, not an image, over the limits: recorded with its reason, the job goes on
SKIPPED = "skipped"  # its owner opted out, and the manifest does not say "visible": true


@dataclass(frozen=True)
class SourceItem:
    """One object to import. ``item`` names it in the source (a relative path, an S3 key, a
    manifest's ``source``) and is its key in the ledger; ``line`` is its manifest line, if any."""

    item: str
    location: str = ""  # where the bytes are: an absolute path or s3://bucket/key
    size: int | None = None  # when the listing said
    owner: str | None = None
    external_id: str | None = None
    taken_at: str | None = None
    visible: bool | None = None
    sha256: str | None = None  # given by a manifest: lets a same-endpoint copy skip reading the bytes
    problem: tuple[str, str] | None = None  # (code, message) of a manifest line that is no item


@dataclass(frozen=True)
class ItemResult:
    item: str
    outcome: str
    photo_id: str | None = None
    code: str | None = None
    message: str | None = None
    owner: str | None = None
    external_id: str | None = None
    visible: bool | None = None
    bytes: int = 0
    enqueue: bool = False  # its photo waits for processing: put it on the reprocess queue
    photo: Photo | None = None  # copied, its row not yet written (the batch writes its rows together)


@dataclass(frozen=True)
class ImportReport:
    counts: dict[str, int]  # import outcome -> items
    bytes: int
    bad: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (item, code, message)

    @property
    def items(self) -> int:
        return sum(self.counts.values())
