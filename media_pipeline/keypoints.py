"""Local features for the reposts no global hash survives: asymmetric crops and small rotations.

ORB keypoints (OpenCV) of a 512 px luma. Candidates are found by votes: every descriptor of
the strongest ``INDEXED`` of a stored picture is filed under ``TABLES`` keys (16 fixed bits of
the 256-bit descriptor each, locality-sensitive: a descriptor that moved a few bits keeps most of
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
KEY_BITS = 16
MIN_FEATURES = 8  # fewer keypoints than this cannot be verified: nothing is indexed or searched
MIN_VOTES = 2  # a candidate sharing a single key is noise
_MAGIC = b"MPK1"


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

    def __len__(self) -> int:
        return len(self.descriptors)

    def to_bytes(self) -> bytes:
        return _MAGIC + struct.pack("<I", len(self)) + self.points.astype("<f4").tobytes() + self.descriptors.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LocalFeatures":
        if data[:4] != _MAGIC:
            raise ValueError("not a keypoint file")
        (count,) = struct.unpack("<I", data[4:8])
        points = np.frombuffer(data, dtype="<f4", count=2 * count, offset=8).reshape(count, 2).astype(np.float32)
        descriptors = np.frombuffer(data, dtype=np.uint8, count=32 * count, offset=8 + 8 * count).reshape(count, 32)
        return cls(points, descriptors)


_MIN_SIDE = 32
_NONE = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))


def extract(grey: np.ndarray) -> LocalFeatures:
    """``grey``: uint8 luma, any size; scaled so its long side is LONG_SIDE."""
    scale = LONG_SIDE / max(grey.shape)
    if scale < 1:
        # Explicit sizes: a 1-pixel-high strip must stay 1 pixel high, not round to nothing.
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    if min(grey.shape) < _MIN_SIDE:
        return _NONE  # ORB's pyramid cannot shrink it, and a keypoint needs a 31 px patch anyway
    orb = cv2.ORB_create(nfeatures=FEATURES, fastThreshold=10)
    found, descriptors = orb.detectAndCompute(np.ascontiguousarray(grey, dtype=np.uint8), None)
    if descriptors is None or not found:
        return _NONE
    strongest = np.argsort([-k.response for k in found], kind="stable")
    points = np.array([found[i].pt for i in strongest], dtype=np.float32).reshape(-1, 2)
    return LocalFeatures(points, descriptors[strongest])


def keys(features: LocalFeatures, limit: int | None = None) -> list[int]:
    """The distinct vote keys of the first ``limit`` descriptors (all when None); a key carries
    its table number above its 16 bits."""
    descriptors = features.descriptors[:limit]
    if len(descriptors) == 0:
        return []
    bits = np.unpackbits(descriptors, axis=1)
    found: set[int] = set()
    for table, positions in enumerate(_POSITIONS):
        packed = np.packbits(bits[:, positions], axis=1)
        values = (packed[:, 0].astype(np.int64) << 8) | packed[:, 1]
        found.update((values + (table << KEY_BITS)).tolist())
    return sorted(found)


def inliers(query: LocalFeatures, stored: LocalFeatures) -> int:
    """Matches consistent with one similarity transform (shift, scale 1/4-4x, rotation)."""
    if len(query) < 8 or len(stored) < 8:
        return 0
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(query.descriptors, stored.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance and p[0].distance < 64]
    if len(good) < 8:
        return 0
    source = np.float32([query.points[m.queryIdx] for m in good])
    target = np.float32([stored.points[m.trainIdx] for m in good])
    cv2.setRNGSeed(0)  # the same pair always gets the same answer
    transform, mask = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=4.0)
    if transform is None or mask is None:
        return 0
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if not 0.25 < scale < 4:
        return 0
    return int(mask.sum())
