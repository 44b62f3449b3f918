"""Owners who opt out, and photos hidden on their own: every image URL of theirs answers 404
(``no-store``) at once, on every process, and comes back, unchanged, when shown again.

- The app: serving resolves every URL through ``catalog.lookup_renditions``, which reads the
  photo's ``hidden`` flag and its owner's choice in the same query, on every request; there is no
  per-process cache to go stale, so the next request of any API process after the change is a 404.
- The nginx front, local shape: nginx sends immutable renditions from the storage folder without
  asking the app, so a hidden photo has a marker object ``hidden/<photo id>`` in that folder,
  which the generated configuration checks before it serves a file (and hands the request to the
  app, which answers the 404). Markers are written before the catalog says so for an owner, and
  before a photo of a hidden owner becomes ready; removed when it is shown again.
- Caches in front: the nginx cache shape's entries for the photos' URLs are deleted, and the CDN's
  purge hook gets the photo or owner tag (purging.py).
- Nothing is re-rendered either way; the renditions stay where they are.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from media_pipeline import purge, purging
from media_pipeline.models import Photo
from media_pipeline.storage import validate_key

if TYPE_CHECKING:
    from media_pipeline.service import Services

HIDDEN = "hidden/"  # marker keys the local front checks
_PAGE = 1000


def marker_key(photo_id: str) -> str:
    return validate_key(f"{HIDDEN}{photo_id}")


def set_owner_visible(services: "Services", owner: str, visible: bool) -> None:
    if not visible:
        for page in _owner_pages(services, owner):  # the front's markers first: never a moment served
            _mark(services, [photo_id for photo_id, _ in page], hidden=True)
    services.catalog.set_owner_visible(owner, visible, time.time())
    if visible:
        for page in _owner_pages(services, owner):
            _mark(services, [photo_id for photo_id, hidden in page if not hidden], hidden=False)
        return
    paths = [p for page in _owner_pages(services, owner) for photo_id, _ in page for p in _paths(services, photo_id)] \
        if _paths_wanted(services) else []
    purging.purge_now(services, [purge.owner_tag(owner)], paths)


def set_photo_visible(services: "Services", photo: Photo, visible: bool) -> None:
    if not visible:
        _mark(services, [photo.id], hidden=True)
    services.catalog.set_photo_hidden(photo.id, not visible)
    if visible and not photo.owner_hidden:
        _mark(services, [photo.id], hidden=False)
    if not visible:
        purging.purge_now(services, list(purge.tags(photo.id, None)), _paths(services, photo.id))


def before_ready(services: "Services", photo: Photo) -> None:
    """A photo about to become ready while it or its owner is hidden gets its marker first."""
    if photo.hidden or (photo.owner is not None and not services.catalog.owner_visibility(photo.owner)[0]):
        _mark(services, [photo.id], hidden=True)


def _owner_pages(services: "Services", owner: str) -> Iterator[list[tuple[str, bool]]]:
    """The owner's (photo id, hidden on its own) pairs, a page at a time."""
    after = ""
    while page := services.catalog.owner_photos(owner, after, _PAGE):
        yield page
        after = page[-1][0]


def _mark(services: "Services", photo_ids: list[str], hidden: bool) -> None:
    """The local front's markers, as plain empty files in the storage folder nginx reads, and one
    fsync of the folder for all of them: through the storage port (a temp file, two fsyncs and a
    metadata sidecar each) an owner with a thousand photos took 1.8 s to hide, and it is the
    markers the hiding waits for."""
    if services.settings.storage_backend != "local":
        return  # only the local front reads storage itself; the cache shape asks the app
    folder = Path(services.settings.effective_storage_dir) / "objects" / HIDDEN.rstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    for photo_id in photo_ids:
        marker = folder / marker_key(photo_id).removeprefix(HIDDEN)
        if hidden:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # the names are what matters: the files are empty
    finally:
        os.close(descriptor)


def _paths_wanted(services: "Services") -> bool:
    """Whether anything in front caches URLs by path: a CDN with a purge hook, or the nginx front's
    cache shape (S3 storage). The local shape caches nothing; a CDN purges an owner by tag."""
    return bool(services.settings.purge_url) or services.settings.storage_backend != "local"


def _paths(services: "Services", photo_id: str) -> list[str]:
    return purge.photo_paths(photo_id, services.catalog.all_renditions(photo_id), services.settings.signing_key_list)
