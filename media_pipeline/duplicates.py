"""Which photos a photo repeats: exact (same bytes or pixels), near by view hashes, and by
keypoints confirmed on the aligned pixels. Joins the core (``dedupe``, ``keypoints``,
``overlap``) to the catalog, the hash and keypoint indexes and storage, like ``service``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from media_pipeline import dedupe, keypoints, overlap, pipeline
from media_pipeline.blocklists import Hit
from media_pipeline.errors import ObjectNotFound
from media_pipeline.hashindex.features import SqlFeatureIndex
from media_pipeline.models import Duplicate, Photo
from media_pipeline.probe import probe
from media_pipeline.storage import PRIVATE, features_key

if TYPE_CHECKING:
    from media_pipeline.service import Services, SpooledUpload

_VOTE_ROUNDS = 3  # a first vote, and up to two more without the keypoints shared overlays put there
# A vote's best few (MP_KEYPOINT_CANDIDATES) are verified, not counting those that prove to be
# matches: other copies of the same picture (a repost chain, its crops) crowd the top of the vote
# and would take the slots of the original. Up to this many times the setting in all, so a photo
# reposted a thousand times costs a lookup a bounded number of fits.
_CONFIRMED_EXTRA = 2
COLLAGE_CELL = "collage cell"
_OVERLAY_RADIUS = 24.0  # pixels of the 512 px keypoint image around each keypoint of an overlay


def record_duplicates(services: Services, photo: Photo, identity: pipeline.Identity) -> list[Duplicate]:
    """Index the photo, then find every other photo it repeats, and record the matches.

    The order is the rule that keeps two simultaneous uploads of one picture from missing each
    other: each photo is indexed (committed) before it searches, so of two that run at once the
    one that searches last always finds the other. A match is stored from the later photo (by
    id, i.e. by acceptance) to the earlier one, whichever found it, so ``duplicates`` of the
    later photo lists the earlier and never the other way round.
    """
    settings = services.settings
    fingerprint = identity.fingerprint
    matched = fingerprint.quality >= settings.min_hash_quality
    services.catalog.record_fingerprint(photo.id, identity.pixel_sha256, fingerprint.quality, matched)
    if matched:
        services.hash_index.add(photo.id, photo.owner, [(h.view, h.value) for h in fingerprint.stored] + _cell_views(identity, settings.min_hash_quality))
    else:
        services.hash_index.remove(photo.id)
    features = identity.features
    if settings.keypoint_matching == "on" and len(features) >= keypoints.MIN_FEATURES:
        # The keypoints first, so no voter can find the photo before its keypoints can be read.
        services.storage.put(features_key(photo.id), features.to_bytes(), "application/octet-stream", PRIVATE)
        services.feature_index.add(photo.id, photo.owner, keypoints.index_keys(features))
    else:
        services.feature_index.remove(photo.id)
    found = find_duplicates(services, photo.sha256, identity, photo.owner, exclude=photo.id)
    services.catalog.replace_duplicates(photo.id, found)
    return found


def find_duplicates(services: Services, sha256: str, identity: pipeline.Identity, owner: str | None,
                    exclude: str | None = None) -> list[Duplicate]:
    """Exact matches (same bytes, same decoded pixels), near ones by view hashes, and by keypoints
    those the hashes missed (asymmetric crops, rotations); then, for a collage, the same for each
    of its cells. In ``Duplicate.order``."""
    # In owner scope, photos without an owner form one scope of their own ("").
    scope = (owner or "") if services.settings.dedupe_scope == "owner" else None
    exact = services.catalog.exact_matches(exclude or "", sha256, identity.pixel_sha256, scope)
    found = [Duplicate(id=other, kind="exact", distance=0, transform=f"same {how}") for other, how in exact]
    found += _near_matches(services, identity, {d.id for d in found}, scope, exclude)
    for cell in identity.cells:
        found += [replace(d, transform=COLLAGE_CELL) for d in _near_matches(services, cell, {d.id for d in found}, scope, exclude)]
    return sorted(found, key=lambda d: d.order)


def _near_matches(services: Services, identity: pipeline.Identity, known: set[str], scope: str | None,
                  exclude: str | None) -> list[Duplicate]:
    """Near matches of one picture by view hashes, then by keypoints, leaving out ``known``."""
    found = []
    fingerprint = identity.fingerprint
    if fingerprint.quality >= services.settings.min_hash_quality:
        queries = [q.value for q in fingerprint.queries]
        seen = set(known)
        for hit in services.hash_index.search(queries, services.settings.near_distance, owner=scope, exclude=exclude):
            if hit.photo_id not in seen:
                seen.add(hit.photo_id)
                hint = dedupe.transform_hint(fingerprint.queries[hit.query], hit.view)
                found.append(Duplicate(id=hit.photo_id, kind="near", distance=hit.distance, transform=hint))
    if services.settings.keypoint_matching == "on":
        found += _keypoint_matches(services, identity, known | {d.id for d in found}, scope, exclude)
    return found


def _keypoint_matches(services: Services, identity: pipeline.Identity, known: set[str],
                      scope: str | None, exclude: str | None) -> list[Duplicate]:
    """Verify the best-voted photos the other matchers did not already find.

    A fit is a match only when the aligned pictures agree beyond what the fit rests on
    (``overlap.confirms``): distinct photos under one shared caption, watermark, sticker or frame
    fit each other's overlay perfectly and nothing else. Such a fit also shows where the query's
    overlay is. Its keypoints crowd the vote (every photo under that overlay shares them) and
    take the detector's budget from the picture, so the query's keypoints are found again away
    from it and the vote is taken once more, for the photo the query really repeats.
    """
    if len(identity.features) < keypoints.MIN_FEATURES:
        return []
    features = keypoints.search_features(identity.keypoint_image, identity.features)
    settings = services.settings
    checked, matches, overlay = set(known), [], np.zeros((0, 2), np.float32)
    for _ in range(_VOTE_ROUNDS):
        voted = services.feature_index.votes(keypoints.keys(features), limit=_CONFIRMED_EXTRA * settings.keypoint_candidates + len(checked),
                                             min_votes=keypoints.MIN_VOTES, owner=scope, exclude=exclude)
        found_overlay = False
        unconfirmed = 0
        for photo_id, _ in [v for v in voted if v[0] not in checked][: _CONFIRMED_EXTRA * settings.keypoint_candidates]:
            if unconfirmed == settings.keypoint_candidates:
                break
            checked.add(photo_id)
            try:
                stored = keypoints.LocalFeatures.from_bytes(services.storage.get(features_key(photo_id)))
            except (ObjectNotFound, ValueError):
                stored = None  # deleted meanwhile, or written by a later format: not evidence either way
            fit = None if stored is None else keypoints.fit(features, stored, settings.min_inliers)
            if stored is not None and fit is not None and fit.count >= settings.min_inliers:
                if overlap.confirms(features, stored, fit, identity.keypoint_image):
                    matches.append(Duplicate(id=photo_id, kind="near", distance=None, transform="crop or rotation", inliers=fit.count))
                    continue
                overlay = np.concatenate([overlay, features.points[fit.inliers]])
                found_overlay = True
            unconfirmed += 1
        if not found_overlay:
            break
        mask = keypoints.outside(identity.keypoint_image.shape, overlay, _OVERLAY_RADIUS)
        features = keypoints.extract(identity.keypoint_image, mask)
        if len(features) < keypoints.MIN_FEATURES:
            break
        features = keypoints.search_features(identity.keypoint_image, features, mask)
    return matches


def refile_keypoints(services: Services, batch: int = 200, batches: int | None = None) -> int:
    """File every photo still under an older format's vote keys (the 16-bit keys, or the 24-bit
    keys of its strongest descriptors) under the current ones, computed from its keypoint file
    (what a photo's keys are is a pure function of it); the photos re-filed. Until then such a
    photo gets no vote: the formats' keys never meet. ``batches``: stop after that many (the
    reconciler's rounds take one each, so an upgraded library catches up on its own)."""
    done = rounds = 0
    while (batches is None or rounds < batches) and (photos := services.feature_index.filed_below(keypoints.LEGACY_KEYS_BELOW, batch)):
        rounds += 1
        for photo_id, owner in photos:
            try:
                features = keypoints.LocalFeatures.from_bytes(services.storage.get(features_key(photo_id)))
            except (ObjectNotFound, ValueError):
                services.feature_index.remove(photo_id)  # nothing a vote could verify
                continue
            services.feature_index.add(photo_id, owner or None, keypoints.index_keys(features))
            done += 1
    return done


def restore_postings(services: Services, batch: int = 200, batches: int | None = None) -> int:
    """With votes in SQL, write the postings of the photos filed while votes ran in memory (which
    files only a photo's packed keys), from those keys: no keypoint file is read. The photos
    done; ``batches`` as in ``refile_keypoints``. Nothing to do with votes in memory."""
    index = services.feature_index
    if not (isinstance(index, SqlFeatureIndex) and index.postings):
        return 0
    done = rounds = 0
    while (batches is None or rounds < batches) and (restored := index.restore_postings(batch)):
        rounds += 1
        done += restored
    return done


def search_duplicates(services: Services, upload: SpooledUpload, owner: str | None) -> tuple[list[Duplicate], list[Hit]]:
    """The duplicates an image would have, and the blocklists it would be stopped by, without
    storing anything."""
    data = upload.buffer()
    info = probe(data, services.settings.max_pixels)
    job = pipeline.prepare(data, services.preset, services.settings.max_pixels, info,
                           widths=pipeline.identity_widths(services.preset))
    blocked = services.blocklists.match(pipeline.shared_hash(job)) if services.blocklists.lists else []
    return find_duplicates(services, upload.sha256, pipeline.identify(job), owner), blocked


def _cell_views(identity: pipeline.Identity, min_quality: float) -> list[tuple[str, int]]:
    """A collage's cells, stored as views of it, so a photo uploaded after the collage that
    shows it finds it too: each cell's whole picture and centre (its crop views)."""
    return [(f"{dedupe.CELL}{i}-{h.view}", h.value) for i, cell in enumerate(identity.cells)
            if cell.fingerprint.quality >= min_quality
            for h in cell.fingerprint.stored if h.view in (dedupe.VIEW_FULL, f"{dedupe.VIEW_CENTRE}{int(dedupe.STORED_CENTRE * 100)}")]
