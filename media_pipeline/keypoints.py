"""Local features for the reposts no global hash survives: asymmetric crops, small rotations, deep
zooms and collage cells.

ORB keypoints (OpenCV) of a 512 px luma. Candidates are found by votes: ``INDEXED`` descriptors of
a stored picture, spread over it by a grid, are each filed under ``TABLES`` keys (24 fixed bits of
the 256-bit descriptor each, locality-sensitive: a descriptor that moved a few bits keeps some of
its keys), and a query counts, per photo, the keys it shares. A query also looks for keypoints in
smaller copies of itself, so an enlarged part of a picture meets the original at its own scale.
The best-voted few are verified: one-to-one descriptor matches (ratio test) and a RANSAC
similarity fit; the inliers are the evidence. Pure: arrays in, values out.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import cv2
import numpy as np

LONG_SIDE = 512
FEATURES = 300
INDEXED = 100
TABLES = 4
# 24 bits, not the 16 of the first format: a 16-bit key is shared by chance with ~1,500 photos in
# a million (a vote read 1.8 million postings there), a 24-bit key with ~6, and the rarer chance
# votes let the true original into the verified few more often (docs/near-duplicates.md).
KEY_BITS = 24
# Each filing format has its own key range, so photos filed under an older one can be found (and
# filed again: duplicates.refile_keypoints) and no old key ever meets a new one: the 16-bit keys
# (table << 16 | bits), then 24-bit keys of the strongest INDEXED at 1 << 30, now 24-bit keys of
# the grid-spread INDEXED at 3 << 29 (a 32-bit signed INTEGER column holds them all).
KEY_BASE = 3 << 29
LEGACY_KEYS_BELOW = KEY_BASE
# The indexed descriptors are taken in turn from each cell of a GRID x GRID grid over the
# keypoints (strongest first within a cell), not the strongest overall: those crowd onto the most
# textured part, and a zoom or a collage cell showing another part kept too few of them to be voted.
GRID = 4
# A lookup also detects keypoints in its picture shrunk by these factors (SEARCH_FEATURES each): in
# a zoom or a collage cell the picture is enlarged 1.3-3x, and ORB's pyramid gives its coarse
# levels, where the original's keypoints would be met, a small share of the budget. (0.75, 0.55,
# 0.4) found fewer collage cells on the dev corpus (0.943 against 0.954) and cost 3 ms more.
SEARCH_SCALES = (0.6, 0.4, 0.3)
# ORB finds nothing within its patch border (31 px) of an edge: in a thin collage cell shrunk to
# 0.4 that is most of it. The shrunk copies are padded by their edge pixels so keypoints are found
# up to the edge (the pad itself is masked out).
_EDGE = 31
SEARCH_FEATURES = 100  # 200 found no more (dev corpus) and cost 1-2 ms more a lookup in descriptor matching
# A query's strongest keypoints crowd onto its most contrasted part: a caption's letters, a
# sticker's outline. The stored side files descriptors spread over a grid (``indexed``); a lookup
# also votes with SPREAD_EXTRA more of its own, spread the same way, from the SPREAD_POOL
# strongest beyond its FEATURES (a cropped, captioned and recompressed repost: 0.806 -> 0.943 of
# the dev corpus found, docs/performance.md "Near-duplicate recall").
SPREAD_POOL = 1000
SPREAD_EXTRA = 100
# A repost shrunk to a thumbnail (its long side under ENLARGE_BELOW of LONG_SIDE) holds the
# original's detail only at the coarse scales where the stored side has few keypoints, so few of
# its own meet a filed one. A lookup of such a picture also detects ENLARGED_FEATURES keypoints in
# copies of it enlarged to ENLARGED_SIDES, which meet the stored keypoints at their own scale. On
# the dev corpus's cropped, captioned, recompressed 130-300 px thumbnails, in a first test: 0.537
# found without, 0.766 / 0.823 / 0.869 with 300 / 500 / 800 a copy (0.834 with 1,000 at 512 alone
# or 500 at three sizes). Voting with them but fitting without found 0.789 of them against 0.806,
# for 9 ms less at the median: the smallest (100 px high) fit only with them. With every later
# change of the lookup in place (2026-12-06): 0.829 with 500, 0.903 with 800 (a small query's
# lookup 36 -> 49 ms median in the eval), 0.937 with 1,200 and twice the candidates (75 ms).
ENLARGE_BELOW = 0.8
ENLARGED_SIDES = (LONG_SIDE, round(LONG_SIDE * 0.7))
ENLARGED_FEATURES = 800
MIN_FEATURES = 8  # fewer keypoints than this cannot be verified: nothing is indexed or searched
MIN_VOTES = 2  # a candidate sharing a single key is noise
THUMB_FACTOR = 4
_MAGIC = b"MPK2"
_MAGIC_V1 = b"MPK1"


def _table_positions() -> np.ndarray:
    """Fixed, forever: which descriptor bits make each table's key (derived from SHA-256, not
    from a random generator whose stream could change between library versions)."""
    tables = []
    for t in range(TABLES):
        digest = b"".join(hashlib.sha256(f"media_pipeline keypoint lsh {t} {i}".encode()).digest() for i in range(8))
        order = sorted(range(256), key=lambda bit: digest[bit])
        tables.append(order[:KEY_BITS])
    return np.array(tables, dtype=np.int64)


_POSITIONS = _table_positions()


@dataclass(frozen=True)
class LocalFeatures:
    points: np.ndarray  # (k, 2) float32, pixels of the LONG_SIDE image
    descriptors: np.ndarray  # (k, 32) uint8, strongest first
    # The LONG_SIDE luma at 1/THUMB_FACTOR: what a keypoint match is confirmed against (see
    # overlap.py). None in files written before it existed (format MPK1).
    thumbnail: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.descriptors)

    def to_bytes(self) -> bytes:
        thumb = self.thumbnail if self.thumbnail is not None else np.zeros((0, 0), np.uint8)
        return (_MAGIC + struct.pack("<IHH", len(self), thumb.shape[0], thumb.shape[1]) + self.points.astype("<f4").tobytes()
                + self.descriptors.tobytes() + np.ascontiguousarray(thumb, dtype=np.uint8).tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> "LocalFeatures":
        if data[:4] == _MAGIC_V1:
            (count,) = struct.unpack("<I", data[4:8])
            height = width = 0
            offset = 8
        elif data[:4] == _MAGIC:
            count, height, width = struct.unpack("<IHH", data[4:12])
            offset = 12
        else:
            raise ValueError("not a keypoint file")
        if len(data) < offset + 40 * count + height * width:
            raise ValueError("truncated keypoint file")
        points = np.frombuffer(data, dtype="<f4", count=2 * count, offset=offset).reshape(count, 2).astype(np.float32)
        descriptors = np.frombuffer(data, dtype=np.uint8, count=32 * count, offset=offset + 8 * count).reshape(count, 32)
        thumbnail = None
        if height and width:
            thumbnail = np.frombuffer(data, dtype=np.uint8, count=height * width, offset=offset + 40 * count).reshape(height, width)
        return cls(points, descriptors, thumbnail)


@dataclass(frozen=True)
class Fit:
    """A similarity transform that maps query keypoints onto stored ones, and its evidence."""

    transform: np.ndarray  # 2x3, query pixels -> stored pixels (both LONG_SIDE images)
    inliers: np.ndarray  # indices of the query keypoints that agree with it
    # 3x3, the same mapping with perspective, when the matches show one (a photo of a screen, a
    # print shot at an angle) and it stays close to the similarity; what the pixels are compared
    # through (overlap.py). None when the similarity is as good.
    homography: np.ndarray | None = None

    @property
    def warp(self) -> np.ndarray:
        """The mapping to align pictures with: the homography if there is one, else the similarity."""
        return self.transform if self.homography is None else self.homography

    @property
    def count(self) -> int:
        return len(self.inliers)


_MIN_SIDE = 32
_NONE = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))


def keypoint_image(grey: np.ndarray) -> np.ndarray:
    """``grey``: uint8 luma, any size; scaled down so its long side is at most LONG_SIDE: the
    pixels every keypoint coordinate refers to."""
    scale = LONG_SIDE / max(grey.shape)
    if scale < 1:
        # Explicit sizes: a 1-pixel-high strip must stay 1 pixel high, not round to nothing.
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(grey, dtype=np.uint8)


def extract(image: np.ndarray, mask: np.ndarray | None = None) -> LocalFeatures:
    """``image``: uint8 luma, scaled here to a ``keypoint_image`` if larger; ``mask``: where, in
    that image, keypoints may be found (everywhere when None)."""
    grey = keypoint_image(image)
    points, descriptors = _detect(grey, FEATURES, mask)
    if len(points) == 0:
        return _NONE
    thumb_size = (max(1, round(grey.shape[1] / THUMB_FACTOR)), max(1, round(grey.shape[0] / THUMB_FACTOR)))
    return LocalFeatures(points, descriptors, cv2.resize(grey, thumb_size, interpolation=cv2.INTER_AREA))


def search_features(image: np.ndarray, features: LocalFeatures, mask: np.ndarray | None = None) -> LocalFeatures:
    """What a lookup votes and fits with: ``features`` (``extract`` of ``image`` and ``mask``),
    SPREAD_EXTRA more spread over the picture, those of a small ``image`` enlarged to each of
    ENLARGED_SIDES, and the keypoints of ``image`` shrunk by each of SEARCH_SCALES, in ``image``'s
    pixels. Never stored."""
    if len(features) == 0:
        return features
    grey = keypoint_image(image)
    points, descriptors = [features.points], [features.descriptors]
    if SPREAD_EXTRA:
        pool_points, pool_descriptors = _detect(grey, SPREAD_POOL, mask)
        spread = _grid_spread(LocalFeatures(pool_points[FEATURES:], pool_descriptors[FEATURES:]), SPREAD_EXTRA)
        points.append(spread.points)
        descriptors.append(spread.descriptors)
    enlarged = [side / max(grey.shape) for side in ENLARGED_SIDES] if max(grey.shape) < ENLARGE_BELOW * LONG_SIDE else []
    # A side hardly (or not) larger than the picture adds nothing to its own keypoints.
    copies = [(scale, ENLARGED_FEATURES) for scale in enlarged if scale >= 1.1] + [(scale, SEARCH_FEATURES) for scale in SEARCH_SCALES]
    for scale, count in copies:
        size = (round(grey.shape[1] * scale), round(grey.shape[0] * scale))
        if min(size) < _MIN_SIDE // 2:
            break  # shrunk too far, and the smaller scales further
        copy = cv2.resize(grey, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        copy_mask = None if mask is None else cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        # A shrunk copy is padded so its keypoints reach its edges (_EDGE); an enlarged one has room.
        found, described = _detect(copy, count, copy_mask, pad=scale < 1)
        points.append(found / np.float32(scale))
        descriptors.append(described)
    return LocalFeatures(np.concatenate(points), np.concatenate(descriptors), features.thumbnail)


def _detect(grey: np.ndarray, count: int, mask: np.ndarray | None, pad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` ORB keypoints of ``grey`` (points, descriptors), strongest first; with
    ``pad``, up to its edges (see _EDGE)."""
    if min(grey.shape) < (_MIN_SIDE // 2 if pad else _MIN_SIDE):
        return _NONE.points, _NONE.descriptors  # ORB's pyramid cannot shrink it, and a keypoint needs a 31 px patch anyway
    if pad:
        inner = np.full(grey.shape, 255, np.uint8) if mask is None else mask
        grey = cv2.copyMakeBorder(grey, _EDGE, _EDGE, _EDGE, _EDGE, cv2.BORDER_REPLICATE)
        mask = cv2.copyMakeBorder(inner, _EDGE, _EDGE, _EDGE, _EDGE, cv2.BORDER_CONSTANT, value=0)
    found, descriptors = cv2.ORB_create(nfeatures=count, fastThreshold=10).detectAndCompute(grey, mask)
    if descriptors is None or not found:
        return _NONE.points, _NONE.descriptors
    strongest = np.argsort([-k.response for k in found], kind="stable")
    points = np.array([found[i].pt for i in strongest], dtype=np.float32).reshape(-1, 2)
    return points - np.float32(_EDGE if pad else 0), descriptors[strongest]


def indexed(features: LocalFeatures) -> LocalFeatures:
    """The INDEXED descriptors a stored picture is filed under: taken in turn from each cell of a
    GRID x GRID grid over its keypoints' extent, strongest first within a cell, so every part of
    the picture keeps its share (a pure function of the keypoint file: refiling recomputes it)."""
    return _grid_spread(features, INDEXED)


def _grid_spread(features: LocalFeatures, count: int) -> LocalFeatures:
    """``count`` of ``features`` (strongest first), taken in turn from each cell of a GRID x GRID
    grid over their extent, strongest first within a cell."""
    if len(features) <= count:
        return features
    points = features.points
    low, high = points.min(axis=0), points.max(axis=0)
    cell = np.minimum(((points - low) / np.maximum(high - low, 1e-6) * GRID).astype(np.int64), GRID - 1)
    cells = cell[:, 1] * GRID + cell[:, 0]
    turn = np.zeros(len(cells), np.int64)  # this keypoint's place among its cell's, strongest first
    seen = np.zeros(GRID * GRID, np.int64)
    for i, c in enumerate(cells):
        turn[i], seen[c] = seen[c], seen[c] + 1
    chosen = np.sort(np.lexsort((np.arange(len(cells)), turn))[:count])
    return LocalFeatures(points[chosen], features.descriptors[chosen], features.thumbnail)


def index_keys(features: LocalFeatures) -> list[int]:
    """The vote keys a stored picture is filed under."""
    return keys(indexed(features))


def keys(features: LocalFeatures) -> list[int]:
    """The distinct vote keys of the descriptors; a key carries its table number above its
    KEY_BITS bits, and KEY_BASE."""
    descriptors = features.descriptors
    if len(descriptors) == 0:
        return []
    bits = np.unpackbits(descriptors, axis=1)
    found: set[int] = set()
    for table, positions in enumerate(_POSITIONS):
        packed = np.packbits(bits[:, positions], axis=1).astype(np.int64)  # KEY_BITS / 8 bytes, first bit highest
        values = np.zeros(len(packed), np.int64)
        for byte in packed.T:
            values = (values << 8) | byte
        found.update((values + (KEY_BASE | table << KEY_BITS)).tolist())
    return sorted(found)


def fit(query: LocalFeatures, stored: LocalFeatures, min_inliers: int = 0) -> Fit | None:
    """The similarity transform (shift, scale 1/4-4x, rotation) most descriptor matches agree
    with, or None when fewer than 8 matches exist or none fits. Each stored keypoint is matched
    once at most (by its closest query descriptor): a query's point found at several scales
    (``search_features``) is one piece of evidence, not several. A homography is looked for only
    when the similarity has ``min_inliers`` (a fit the caller will reject needs none)."""
    if len(query) < 8 or len(stored) < 8:
        return None
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(query.descriptors, stored.descriptors, k=2)
    closest: dict[int, cv2.DMatch] = {}
    for p in pairs:
        if len(p) == 2 and p[0].distance < 0.8 * p[1].distance and p[0].distance < 64:
            if p[0].trainIdx not in closest or p[0].distance < closest[p[0].trainIdx].distance:
                closest[p[0].trainIdx] = p[0]
    good = sorted(closest.values(), key=lambda m: m.queryIdx)
    if len(good) < 8:
        return None
    source = np.float32([query.points[m.queryIdx] for m in good])
    target = np.float32([stored.points[m.trainIdx] for m in good])
    cv2.setRNGSeed(0)  # the same pair always gets the same answer
    transform, mask = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=4.0)
    if transform is None or mask is None:
        return None
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if not 0.25 < scale < 4:
        return None
    inliers = np.array([m.queryIdx for m, keep in zip(good, mask.ravel()) if keep], dtype=np.int64)
    if len(inliers) < min_inliers:
        return Fit(transform, inliers)
    return Fit(transform, inliers, _perspective(source, target, transform, len(inliers)))


# A homography is used only when it explains clearly more matches than the similarity (so a flat
# repost keeps its similarity) and moves no corner of the matched region more than this share of
# the region's diagonal away from where the similarity puts it (so a degenerate fit on a few
# clustered points cannot fold the picture).
_PERSPECTIVE_GAIN = 1.15
_PERSPECTIVE_SHIFT = 0.2


def _perspective(source: np.ndarray, target: np.ndarray, similarity: np.ndarray, similar: int) -> np.ndarray | None:
    """The homography of the matches (``source`` query points onto ``target`` stored ones), when it
    beats the similarity that ``similar`` matches agree with and stays near it."""
    if len(source) < 12:
        return None
    homography, mask = cv2.findHomography(source, target, cv2.RANSAC, 4.0, maxIters=500, confidence=0.995)
    if homography is None or mask is None or int(mask.sum()) < max(similar * _PERSPECTIVE_GAIN, similar + 4):
        return None
    low, high = source.min(axis=0), source.max(axis=0)
    corners = np.array([[low[0], low[1]], [high[0], low[1]], [low[0], high[1]], [high[0], high[1]]], np.float64)
    by_similarity = corners @ similarity[:, :2].T + similarity[:, 2]
    mapped = np.c_[corners, np.ones(4)] @ homography.T
    if np.any(mapped[:, 2] <= 1e-6):
        return None  # a corner behind the camera: not a view of a plane
    by_homography = mapped[:, :2] / mapped[:, 2:]
    diagonal = float(np.hypot(*(by_similarity.max(axis=0) - by_similarity.min(axis=0))))
    if np.abs(by_homography - by_similarity).max() > _PERSPECTIVE_SHIFT * diagonal:
        return None
    return homography


def outside(shape: tuple[int, ...], points: np.ndarray, radius: float) -> np.ndarray:
    """A detection mask for an image of ``shape``: 255 except within ``radius`` of ``points``."""
    mask = np.full(shape[:2], 255, np.uint8)
    for x, y in np.round(points).astype(int):
        cv2.circle(mask, (int(x), int(y)), int(round(radius)), 0, -1)
    return mask
