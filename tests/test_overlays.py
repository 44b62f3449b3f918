"""Distinct photos under one shared overlay (a meme caption, an app's watermark, a sticker, a frame)
are not reposts of each other, and an overlaid photo still matches its own original.

The overlays are bench/edits.py's, drawn identically on every photo, as an app or a meme
template draws them. Keypoints fit a shared overlay perfectly; the match must rest on the
pictures' own content (``overlap.confirms``)."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import edits
from config.settings import Settings
from media_pipeline import keypoints, overlap, pipeline
from tests import images
from tests.test_duplicates import ready, textured


def features_of(rgb: np.ndarray) -> keypoints.LocalFeatures:
    preset = Settings.from_env({}).preset()
    job = pipeline.prepare(edits.jpeg_bytes(rgb), preset, 50_000_000, widths=pipeline.identity_widths(preset))
    return pipeline.identify(job).features


# --------------------------------------------------------------------------- pure: the check itself
def test_a_shared_overlay_fits_but_is_not_confirmed() -> None:
    first, second = (features_of(edits.caption_bar(textured(seed), random.Random(0))) for seed in (71, 72))
    fit = keypoints.fit(first, second)
    assert fit is not None and fit.count >= 20  # the overlay alone fits: what made the false pairs
    assert not overlap.confirms(first, second, fit)
    found = overlap.agreement(first.thumbnail, second.thumbnail, fit.transform, 0.25, 0.25)
    assert found.voting >= overlap.MIN_CELLS and found.share < 0.3


@pytest.mark.parametrize("overlay", sorted(edits.OVERLAYS))
def test_an_overlaid_photo_is_confirmed_against_its_original(overlay: str) -> None:
    original = textured(73)
    query, stored = features_of(edits.OVERLAYS[overlay](original, random.Random(0))), features_of(original)
    fit = keypoints.fit(query, stored)
    assert fit is not None and fit.count >= 20
    assert overlap.confirms(query, stored, fit)
    assert overlap.agreement(query.thumbnail, stored.thumbnail, fit.transform, 0.25, 0.25).share > 0.6


def test_agreement_ignores_brightness_and_needs_detail() -> None:
    grey = images.natural(128, 96, seed=3)[..., 1]
    same = np.eye(2, 3)
    brighter = np.clip(grey.astype(np.float32) * 1.2 + 15, 0, 255).astype(np.uint8)
    assert overlap.agreement(brighter, grey, same, 1.0, 1.0).share > 0.9
    other = images.natural(128, 96, seed=4)[..., 1]
    assert overlap.agreement(other, grey, same, 1.0, 1.0).share < 0.3
    flat = np.full((96, 128), 200, np.uint8)
    assert overlap.agreement(flat, flat, same, 1.0, 1.0).voting == 0  # nothing to compare: abstain


def test_texture_a_filter_faded_abstains_but_a_patch_over_it_disagrees() -> None:
    """A repost whose filter crushed faint texture keeps its trace there: those cells say nothing.
    A flat patch where the texture was (a bar, a sticker's plain fill) still disagrees."""
    grey = images.natural(128, 96, seed=5)[..., 1].astype(np.float32)
    left = (slice(None), slice(0, 64))

    def contrast(gain: float) -> np.ndarray:
        out = grey.copy()
        out[left] = grey[left].mean() + (grey[left] - grey[left].mean()) * gain
        return np.clip(out, 0, 255).round().astype(np.uint8)

    stored, faded, patched = contrast(0.7), contrast(0.7 * 0.25), contrast(0.7)
    patched[left] = int(stored[left].mean())
    same = np.eye(2, 3)
    kept, covered = overlap.agreement(faded, stored, same, 1.0, 1.0), overlap.agreement(patched, stored, same, 1.0, 1.0)
    assert kept.share > 0.9 and covered.share < 0.6
    assert kept.voting < covered.voting  # the faded half abstained, the patched half voted against


def test_a_query_smaller_than_its_match_is_compared_on_its_own_pixels() -> None:
    """A repost shrunk to a thumbnail is compared at the stored thumbnail's scale of it, not on a
    quarter of its own pixels; a query at the stored scale keeps its thumbnail."""
    import cv2

    preset = Settings.from_env({}).preset()

    def identity_of(rgb: np.ndarray) -> pipeline.Identity:
        return pipeline.identify(pipeline.prepare(edits.jpeg_bytes(rgb), preset, 50_000_000, widths=pipeline.identity_widths(preset)))

    original = textured(76)
    stored = features_of(original)
    small = identity_of(cv2.resize(original, (180, 120), interpolation=cv2.INTER_AREA))
    query = keypoints.search_features(small.keypoint_image, small.features)
    fit = keypoints.fit(query, stored)
    assert fit is not None and fit.count >= 10
    picture, scale = overlap.query_side(query.thumbnail, small.keypoint_image, fit)
    assert scale == pytest.approx(512 / 180 / 4, rel=0.05) and picture.shape[1] in range(124, 133)  # its thumbnail: 45 px
    coarse = overlap.agreement(query.thumbnail, stored.thumbnail, fit.warp, 0.25, 0.25)
    fine = overlap.agreement(picture, stored.thumbnail, fit.warp, scale, 0.25)
    assert fine.voting > 2 * coarse.voting and fine.share > 0.8
    same_scale = identity_of(edits.asymmetric_crop(original, random.Random(2)))
    crop = keypoints.search_features(same_scale.keypoint_image, same_scale.features)
    crop_fit = keypoints.fit(crop, stored)
    assert crop_fit is not None
    kept, quarter = overlap.query_side(crop.thumbnail, same_scale.keypoint_image, crop_fit)
    assert kept is crop.thumbnail and quarter == 0.25


def _keystone(rgb: np.ndarray, share: float) -> np.ndarray:
    """``rgb`` seen off-axis: its top edge narrowed by ``share`` of the width on each side, on grey."""
    import cv2

    h, w = rgb.shape[:2]
    source = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    target = np.float32([[w * share, 0], [w * (1 - share), 0], [w, h], [0, h]])
    return cv2.warpPerspective(rgb, cv2.getPerspectiveTransform(source, target), (w, h), borderValue=(110, 110, 110))


def test_a_photo_seen_off_axis_is_compared_through_a_homography() -> None:
    """A photo of a screen or a print shot at an angle: a similarity leaves the far corners
    misaligned, so the pixels disagree there; the fitted homography lines them up."""
    original = textured(74)
    query, stored = features_of(_keystone(original, 0.09)), features_of(original)
    fit = keypoints.fit(query, stored)
    assert fit is not None and fit.homography is not None
    through_similarity = overlap.agreement(query.thumbnail, stored.thumbnail, fit.transform, 0.25, 0.25)
    through_homography = overlap.agreement(query.thumbnail, stored.thumbnail, fit.warp, 0.25, 0.25)
    assert through_similarity.share < overlap.MIN_SHARE <= through_homography.share
    assert overlap.confirms(query, stored, fit)
    other = features_of(_keystone(textured(75), 0.09))  # the same angle, another photo
    other_fit = keypoints.fit(other, stored)
    assert other_fit is None or other_fit.count < 10 or not overlap.confirms(other, stored, other_fit)


def test_agreement_follows_the_transform() -> None:
    """A crop shifted and scaled onto its original agrees only where the transform says."""
    big = images.natural(256, 192, seed=8)[..., 0]
    crop = big[40:168, 64:224]  # 160 x 128 at (64, 40)
    shift = np.array([[1.0, 0.0, 64.0], [0.0, 1.0, 40.0]])
    assert overlap.agreement(crop, big, shift, 1.0, 1.0).share > 0.9
    wrong = shift + np.array([[0.0, 0.0, 30.0], [0.0, 0.0, 0.0]])
    assert overlap.agreement(crop, big, wrong, 1.0, 1.0).share < 0.4
    # The same crop at half size (a resized repost): compared on the coarser picture's pixels.
    half = crop[::2, ::2].copy()
    assert overlap.agreement(half, big, np.array([[2.0, 0.0, 64.0], [0.0, 2.0, 40.0]]), 1.0, 1.0).share > 0.8


def test_keypoint_files_keep_the_thumbnail_and_old_files_still_read() -> None:
    found = features_of(textured(74))
    assert found.thumbnail is not None and found.thumbnail.shape[1] * keypoints.THUMB_FACTOR in range(508, 517)
    again = keypoints.LocalFeatures.from_bytes(found.to_bytes())
    assert np.array_equal(again.points, found.points) and np.array_equal(again.descriptors, found.descriptors)
    assert np.array_equal(again.thumbnail, found.thumbnail)
    legacy = b"MPK1" + struct.pack("<I", len(found)) + found.points.astype("<f4").tobytes() + found.descriptors.tobytes()
    old = keypoints.LocalFeatures.from_bytes(legacy)
    assert old.thumbnail is None and np.array_equal(old.descriptors, found.descriptors)
    fit = keypoints.fit(found, old)
    assert fit is not None and not overlap.confirms(found, old, fit)  # unconfirmable: never reported
    with pytest.raises(ValueError):
        keypoints.LocalFeatures.from_bytes(found.to_bytes()[:-10])


# --------------------------------------------------------------------------- through the API
def _pairs(client: Any, ids: list[str]) -> set[tuple[str, str]]:
    found = set()
    for photo_id in ids:
        for dup in client.get(f"/v1/photos/{photo_id}").get_json()["duplicates"]:
            found.add((photo_id, dup["id"]))
    return found


# The overlays of issue #26, whose every overlaid photo must find its original here; the others in
# bench/edits.py were added later as negatives, with their recall measured by bench/dedupe_eval.py
# (0.983-1.000: a photo in a few dozen may miss, so not asserted photo by photo).
ISSUE_OVERLAYS = ("caption_bar", "caption_text", "watermark", "sticker", "frame")


def _overlaid_uploads(client: Any, services: Any, pictures: list[np.ndarray], overlays: list[str]) -> None:
    originals = [ready(services, edits.jpeg_bytes(rgb)) for rgb in pictures]
    for overlay in overlays:
        uploads = [ready(services, edits.jpeg_bytes(edits.OVERLAYS[overlay](rgb, random.Random(0)), 85)) for rgb in pictures]
        pairs = _pairs(client, uploads)
        wrong = {(a, b) for a, b in pairs if uploads.index(a) != (originals.index(b) if b in originals else uploads.index(b))}
        assert not wrong, f"{overlay}: distinct photos paired: {sorted(wrong)}"
        for upload, original in zip(uploads, originals):
            assert (upload, original) in pairs or overlay not in ISSUE_OVERLAYS, f"{overlay}: an overlaid photo lost its original"
        for upload in uploads:  # one overlay set at a time, as a feed gets them
            assert client.delete(f"/v1/photos/{upload}").status_code == 204


def test_distinct_photos_under_one_caption_or_watermark_are_not_duplicates(client: Any, services: Any) -> None:
    _overlaid_uploads(client, services, [textured(seed) for seed in range(60, 65)], ["caption_bar", "watermark"])


@pytest.mark.testdata
@pytest.mark.slow
def test_real_photos_under_shared_overlays_pair_only_with_their_originals(client: Any, services: Any, testdata: Path) -> None:
    files = sorted((testdata / "corpus-dev").glob("*.jpg"))
    require_files = files[::20][:8]
    assert len(require_files) >= 6
    pictures = [edits.decode_rgb(path.read_bytes()) for path in require_files]
    _overlaid_uploads(client, services, pictures, sorted(edits.OVERLAYS))
