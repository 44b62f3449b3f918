"""Whether two pictures that keypoints aligned show the same content where they overlap.

Keypoints find a transform between two pictures, but not what the agreeing keypoints sit on.
Distinct photos under one shared overlay (a meme caption, an app's watermark, a sticker, a frame
template) agree on every keypoint of the overlay, and RANSAC happily fits the overlay. What tells
them apart is the rest of the picture: once the transform is known, a repost's pixels agree with
its original almost everywhere the two overlap (everywhere but under its own overlay), while two
distinct photos agree only on what was pasted over both.

So the query's small luma is warped onto the stored one's, the overlap is cut into cells, and
each cell with detail in both pictures votes agree or disagree by normalised cross-correlation
(blind to brightness, contrast and greyscale edits). Cells flat in both say nothing (a frame's
plain border, a bar's white, a clear sky); a cell flat in one and detailed in the other disagrees
(a caption on one side only), unless the flat one still follows the other's pattern faintly.
The verdict is the share of voting cells that agree.

Pure: arrays in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from media_pipeline.keypoints import THUMB_FACTOR, Fit, LocalFeatures

CELL = 8  # pixels of the compared thumbnail (a 512 px keypoint image at 1/4: 128 px, 16 x 12 cells at 4:3)
_MIN_OVERLAP = 0.9  # share of a cell's pixels inside the warped query for the cell to count
_FLAT = 2.5  # local luma standard deviation (0..255) below which a pixel has no detail
_RICH = 0.6  # a cell with at least this share of detailed pixels has detail to compare
_PLAIN = 0.2  # and one with at most this share is plain
# A cell plain in one picture whose pixels still correlate this well with the detailed other's is
# texture a repost's filter crushed or its JPEG smoothed flat (shadows, haze), not a caption on
# one side (letters against a plain sky correlate with nothing): it abstains. On the dev corpus
# (bench/dedupe_eval.py's edits and overlays: 4,878 fitted reposts and 20,780 fitted pairs of
# distinct photos under one overlay) this confirmed 6 more heavy filters, 6 more photos of a
# screen and 4 more collage cells, and moved the highest share of distinct photos under one
# overlay from 0.43 to 0.44 (every pair of the two-line meme).
_FADED = 0.5
_SMOOTH = 1.0  # Gaussian sigma, in thumbnail pixels, before correlating
_AGREE = 0.85  # normalised cross-correlation above which a cell agrees
# The verdict. On photos 0-79 of the dev corpus (bench/dedupe_eval.py's edits and shared
# overlays, plus a two-line meme, a top caption, a centre watermark and a story frame), the pairs
# that fitted with 20 inliers or more: distinct photos under one overlay agreed in at most 0.49 of
# their voting cells (a two-line meme, whose large identical text is a quarter of the picture);
# reposts in 0.5-1.0 but for 4. A cell agrees only when nearly identical (0.85): a big shared
# caption is, chance content between two photos rarely is. On photos 80-174, held out: 2 of 14,109
# fitted distinct pairs confirmed (both two-line memes), 19 of 1,881 reposts not (most found by
# their hashes anyway).
MIN_SHARE = 0.5
MIN_CELLS = 4  # fewer voting cells than this (a plain picture, a sliver of overlap) and the pixels abstain;
# no pair of distinct photos under one overlay had fewer than 6
# Then the inliers decide: they must hold a share of a 4 x 4 grid over the overlap that one
# overlay cannot (distinct photos under one overlay: at most 0.31 on the dev corpus).
SPREAD_GRID = 4
MIN_SPREAD = 0.4


@dataclass(frozen=True)
class Agreement:
    share: float  # agreeing cells / voting cells, 0..1
    voting: int  # cells with detail in at least one picture, inside the overlap


NONE = Agreement(0.0, 0)


def confirms(query: LocalFeatures, stored: LocalFeatures, fit: Fit, picture: np.ndarray | None = None) -> bool:
    """Whether the fitted pair shows the same picture. The pixels decide where they can; where
    the overlap has too little detail to vote (a plain picture, a sliver of overlap), the
    keypoints themselves must cover the overlap widely, which an overlay in one place cannot.
    Never for a stored file without a thumbnail (written before this check: reprocess it).
    ``picture``: the query's keypoint image, when the lookup has it (see ``query_side``)."""
    if query.thumbnail is None or stored.thumbnail is None:
        return False
    thumbnail, scale = query_side(query.thumbnail, picture, fit)
    found = agreement(thumbnail, stored.thumbnail, fit.warp, scale, 1 / THUMB_FACTOR)
    if found.voting >= MIN_CELLS:
        return found.share >= MIN_SHARE
    return spread(query, stored, fit) >= MIN_SPREAD


def query_side(thumbnail: np.ndarray, picture: np.ndarray | None, fit: Fit) -> tuple[np.ndarray, float]:
    """The query's picture to compare, and its pixels per keypoint pixel: its thumbnail, unless
    the query shows the stored picture smaller than the stored thumbnail does (a repost shrunk to
    a thumbnail, a collage cell), whose own quarter would be coarser than the stored pixels it
    lands on (a 172 px thumbnail of a crop: 5 x 3 cells). Then its ``picture`` is shrunk only as
    far as the stored thumbnail's scale of it. On the dev corpus (bench/dedupe_eval.py): the
    thumbnail-sized repost 0.806 -> 0.829 found, the collage cell 0.954 -> 0.960, the asymmetric
    crop 0.983 -> 0.989, no false pair; a query at the stored scale or enlarged (every shared
    overlay, the zoom) is compared exactly as before. (Comparing every query under 512 px at
    128 px instead lost combined edits of 395 px and two-line memes.)"""
    zoom = float(np.sqrt(abs(np.linalg.det(fit.transform[:, :2]))))  # stored keypoint pixels per query one
    scale = min(1.0, zoom / THUMB_FACTOR)
    if picture is None or scale <= 1 / THUMB_FACTOR:
        return thumbnail, 1 / THUMB_FACTOR
    size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA), scale


def spread(query: LocalFeatures, stored: LocalFeatures, fit: Fit) -> float:
    """The share of a SPREAD_GRID x SPREAD_GRID grid over the query's part of the overlap whose
    cells hold at least two inliers."""
    assert query.thumbnail is not None and stored.thumbnail is not None
    height, width = (side * THUMB_FACTOR for side in stored.thumbnail.shape)
    back = cv2.invertAffineTransform(fit.transform)
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float64) @ back[:, :2].T + back[:, 2]
    query_height, query_width = (side * THUMB_FACTOR for side in query.thumbnail.shape)
    x0, y0 = max(0.0, corners[:, 0].min()), max(0.0, corners[:, 1].min())
    x1, y1 = min(float(query_width), corners[:, 0].max()), min(float(query_height), corners[:, 1].max())
    if x1 - x0 < 1 or y1 - y0 < 1:
        return 0.0
    points = query.points[fit.inliers]
    column = np.clip(((points[:, 0] - x0) / (x1 - x0) * SPREAD_GRID).astype(int), 0, SPREAD_GRID - 1)
    row = np.clip(((points[:, 1] - y0) / (y1 - y0) * SPREAD_GRID).astype(int), 0, SPREAD_GRID - 1)
    return float((np.bincount(row * SPREAD_GRID + column, minlength=SPREAD_GRID ** 2) >= 2).mean())


def agreement(query: np.ndarray, stored: np.ndarray, transform: np.ndarray, scale_query: float,
              scale_stored: float) -> Agreement:
    """``query``/``stored``: uint8 luma thumbnails; ``transform``: 2x3 similarity (or 3x3
    homography) from query to stored keypoint pixels; ``scale_*``: thumbnail pixels per keypoint
    pixel of each side."""
    # thumb_s = S_s . T . S_q^-1, S = diag(s, s, 1).
    matrix = np.diag([scale_stored, scale_stored, 1.0]) @ _homogeneous(transform) @ np.diag([1 / scale_query, 1 / scale_query, 1.0])
    source, target = query.astype(np.float32), stored.astype(np.float32)
    zoom = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2] / matrix[2, 2]))))
    if zoom > 1:
        # Compare on the coarser picture's pixels: enlarged, the coarser one would look plain
        # where the finer one has detail.
        matrix, source, target, zoom = np.linalg.inv(matrix), target, source, 1 / zoom
    if zoom < 0.8:
        source = cv2.GaussianBlur(source, (0, 0), 0.5 / zoom)  # against aliasing as it shrinks
    height, width = target.shape
    warped, inside = _warp(source, matrix, (width, height))
    rows, cols = height // CELL, width // CELL
    if rows == 0 or cols == 0:
        return NONE
    area = (slice(0, rows * CELL), slice(0, cols * CELL))

    def cells(image: np.ndarray) -> np.ndarray:
        return image[area].reshape(rows, CELL, cols, CELL).transpose(0, 2, 1, 3).reshape(rows * cols, CELL * CELL)

    # Per pixel: detail, away from any plain area (so the strong edge where a frame, a bar or a
    # sticker meets the picture, which any two pictures sharing it have in common, is left out);
    # per cell: the share of such pixels, and the correlation over the pixels detailed in both.
    detail_a, detail_b = cells(_detailed(target)), cells(_detailed(warped))
    covered = cells(inside).mean(axis=1) >= _MIN_OVERLAP
    # Correlated a little blurred: fine texture (grass, foliage) shifted by a fraction of a pixel
    # by the fit would decorrelate although it is the same picture.
    smooth_a, smooth_b = cv2.GaussianBlur(target, (0, 0), _SMOOTH), cv2.GaussianBlur(warped, (0, 0), _SMOOTH)
    a, b, detail_a, detail_b = cells(smooth_a)[covered], cells(smooth_b)[covered], detail_a[covered], detail_b[covered]
    if len(a) == 0:
        return NONE
    share_a, share_b = detail_a.mean(axis=1), detail_b.mean(axis=1)
    rich_a, rich_b = share_a >= _RICH, share_b >= _RICH
    plain_a, plain_b = share_a <= _PLAIN, share_b <= _PLAIN
    both = rich_a & rich_b
    one_sided = (rich_a & plain_b) | (plain_a & rich_b)
    one_sided[one_sided] = _correlation(a[one_sided], b[one_sided], np.ones_like(a[one_sided])) < _FADED
    count = int((both | one_sided).sum())
    ncc = _correlation(a[both], b[both], detail_a[both] * detail_b[both])
    return Agreement(float((ncc >= _AGREE).sum()) / count if count else 0.0, count)


def _correlation(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per row, the normalised cross-correlation of ``a`` and ``b`` over their pixels weighted by
    ``weight``."""
    total = np.maximum(weight.sum(axis=1, keepdims=True), 1.0)
    a = a - (a * weight).sum(axis=1, keepdims=True) / total
    b = b - (b * weight).sum(axis=1, keepdims=True) / total
    return (a * b * weight).sum(axis=1) / np.maximum(np.sqrt((a * a * weight).sum(axis=1) * (b * b * weight).sum(axis=1)), 1e-6)


def _homogeneous(transform: np.ndarray) -> np.ndarray:
    """A 2x3 affine map or a 3x3 homography as a 3x3 matrix."""
    if transform.shape == (3, 3):
        return transform.astype(np.float64)
    return np.vstack([transform.astype(np.float64), [0.0, 0.0, 1.0]])


def _warp(source: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``source`` mapped by ``matrix`` (3x3) into a picture of ``size``, and where it landed (1.0)."""
    ones = np.ones(source.shape, np.float32)
    if np.allclose(matrix[2], [0.0, 0.0, 1.0]):  # affine: warpAffine, as before homographies were fitted
        affine = matrix[:2]
        return (cv2.warpAffine(source, affine, size, flags=cv2.INTER_LINEAR, borderValue=0),
                cv2.warpAffine(ones, affine, size, flags=cv2.INTER_NEAREST, borderValue=0))
    return (cv2.warpPerspective(source, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0),
            cv2.warpPerspective(ones, matrix, size, flags=cv2.INTER_NEAREST, borderValue=0))


_NEAR_PLAIN = np.ones((7, 7), np.uint8)


def _detailed(image: np.ndarray) -> np.ndarray:
    """1.0 where the 5x5 neighbourhood varies by more than _FLAT grey levels (standard deviation)
    and no plain pixel is within 3 pixels, else 0.0."""
    mean = cv2.boxFilter(image, -1, (5, 5))
    variance = cv2.boxFilter(image * image, -1, (5, 5)) - mean * mean
    plain = (variance <= _FLAT * _FLAT).astype(np.uint8)
    return 1.0 - cv2.dilate(plain, _NEAR_PLAIN).astype(np.float32)
