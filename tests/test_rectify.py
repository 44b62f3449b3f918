"""A photo of a screen or a print: the quadrilateral found, seen head-on again, and hashed near
the original (``media_pipeline/rectify.py``, the ``rectified`` query view of ``dedupe``)."""

from __future__ import annotations

import random

import cv2
import numpy as np

from bench import edits
from media_pipeline import dedupe, rectify
from tests.test_duplicates import NEAR, fingerprint_of, textured


def _on_a_desk(rgb: np.ndarray, corners: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` inside a dark bezel, warped so the bezel's outer corners land on ``corners`` of a
    grey desk of ``size`` (width, height)."""
    framed = cv2.copyMakeBorder(rgb, 24, 24, 24, 24, cv2.BORDER_CONSTANT, value=(15, 15, 18))
    h, w = framed.shape[:2]
    matrix = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), corners)
    return cv2.warpPerspective(framed, matrix, size, borderValue=(120, 116, 110))


def test_the_screens_outline_is_found_with_its_corners_in_order() -> None:
    corners = np.float32([[70, 40], [560, 62], [540, 430], [85, 410]])
    shot = _on_a_desk(textured(81), corners, (640, 480))
    found = rectify.quadrilaterals(cv2.cvtColor(shot, cv2.COLOR_RGB2GRAY))
    assert found, "no quadrilateral found"
    assert np.abs(found[0] - corners).max() < 6  # the largest is the bezel's outer edge, corners in order


def test_a_photo_of_a_screen_hashes_near_its_original() -> None:
    original = textured(82)
    shot = _on_a_desk(original, np.float32([[60, 50], [590, 30], [600, 450], [40, 420]]), (640, 480))
    distance, hint = dedupe.closest(fingerprint_of(shot), fingerprint_of(original).stored)
    assert distance <= NEAR and hint is not None and "perspective" in hint
    unrelated = fingerprint_of(textured(83)).stored
    assert dedupe.closest(fingerprint_of(shot), unrelated)[0] > 2 * NEAR


def test_the_bench_screen_photo_hashes_near_its_original() -> None:
    """The eval's own photo of a screen (moire, glare, defocus, noise, a camera JPEG)."""
    original = textured(84)
    shot = edits.screen_photo(original, random.Random(2))
    assert dedupe.closest(fingerprint_of(shot), fingerprint_of(original).stored)[0] <= NEAR


def test_degenerate_pictures_give_no_quadrilateral() -> None:
    assert rectify.quadrilaterals(np.zeros((20, 400), np.uint8)) == []
    assert rectify.quadrilaterals(np.full((300, 300), 128, np.uint8)) == []
    diamond = np.zeros((200, 200), np.uint8)
    cv2.fillConvexPoly(diamond, np.int32([[100, 5], [195, 100], [100, 195], [5, 100]]), 255)
    for corners in rectify.quadrilaterals(diamond):  # a diamond's corners tie; none may be used twice
        assert len(np.unique(corners, axis=0)) == 4
        view = rectify.rectified(diamond, corners)
        assert view is None or min(view.shape) >= 16
