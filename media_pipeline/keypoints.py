"""Local features for the reposts no global hash survives: asymmetric crops and small rotations.

ORB keypoints (OpenCV) of a 512 px luma. Candidates are found by votes: every descriptor of
the strongest ``INDEXED`` of a stored picture is filed under ``TABLES`` keys (24 fixed bits of
the 256-bit descriptor each, locality-sensitive: a descriptor that moved a few bits keeps some of
its keys), and a query counts, per photo, the keys it shares. The best-voted few are verified:
descriptor matches (ratio test) and a RANSAC similarity fit; the inliers are the evidence.
Unrelated photos give fewer than 10 inliers; a crop or rotation of the same one gives 50-200.
Pure: arrays in, values out.
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
KEY_BASE = 1 << 30  # above every key of the 16-bit format (table << 16 | bits), so the two never meet
LEGACY_KEYS_BELOW = TABLES << 16
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
    if min(grey.shape) < _MIN_SIDE:
        return _NONE  # ORB's pyramid cannot shrink it, and a keypoint needs a 31 px patch anyway
    orb = cv2.ORB_create(nfeatures=FEATURES, fastThreshold=10)
    found, descriptors = orb.detectAndCompute(grey, mask)
    if descriptors is None or not found:
        return _NONE
    strongest = np.argsort([-k.response for k in found], kind="stable")
    points = np.array([found[i].pt for i in strongest], dtype=np.float32).reshape(-1, 2)
    thumb_size = (max(1, round(grey.shape[1] / THUMB_FACTOR)), max(1, round(grey.shape[0] / THUMB_FACTOR)))
    return LocalFeatures(points, descriptors[strongest], cv2.resize(grey, thumb_size, interpolation=cv2.INTER_AREA))


def keys(features: LocalFeatures, limit: int | None = None) -> list[int]:
    """The distinct vote keys of the first ``limit`` descriptors (all when None); a key carries
    its table number above its KEY_BITS bits, and KEY_BASE."""
    descriptors = features.descriptors[:limit]
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


def fit(query: LocalFeatures, stored: LocalFeatures) -> Fit | None:
    """The similarity transform (shift, scale 1/4-4x, rotation) most descriptor matches agree
    with, or None when fewer than 8 matches exist or none fits."""
    if len(query) < 8 or len(stored) < 8:
        return None
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(query.descriptors, stored.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance and p[0].distance < 64]
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
    return Fit(transform, np.array([m.queryIdx for m, keep in zip(good, mask.ravel()) if keep], dtype=np.int64))


def outside(shape: tuple[int, ...], points: np.ndarray, radius: float) -> np.ndarray:
    """A detection mask for an image of ``shape``: 255 except within ``radius`` of ``points``."""
    mask = np.full(shape[:2], 255, np.uint8)
    for x, y in np.round(points).astype(int):
        cv2.circle(mask, (int(x), int(y)), int(round(radius)), 0, -1)
    return mask
