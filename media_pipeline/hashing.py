"""Perceptual hashes of the upright sRGB picture, for near-duplicate detection."""

from __future__ import annotations

import cv2
import imagehash
import numpy as np
from PIL import Image

from media_pipeline.models import Hashes
from media_pipeline.pdq import pdq

PDQ_SIDE = 512

PHASH_SIZE, PHASH_SAMPLE = 8, 32
# cv2.dct is orthonormal; scipy.fftpack.dct (what imagehash.phash uses) is not: its coefficient k
# is 2 * sqrt(N) (k = 0) or 2 * sqrt(N / 2) (k > 0) times larger. The hash compares coefficients
# with their median, so the scale matters only where it differs between coefficients.
_SCIPY_SCALE = np.array([2 * np.sqrt(PHASH_SAMPLE)] + [2 * np.sqrt(PHASH_SAMPLE / 2)] * (PHASH_SAMPLE - 1))


def perceptual_hashes(rgb: np.ndarray, detailed: np.ndarray) -> Hashes:
    """``rgb``: HxWx3 uint8, a small (e.g. 320 px) upright sRGB image; ``detailed``: the same at
    about PDQ_SIDE, for PDQ, which hash-sharing lists compute on the picture near full size."""
    image = Image.fromarray(rgb[..., :3])
    shared = pdq(detailed)
    return Hashes(phash=str(phash(image)), dhash=str(imagehash.dhash(image)), pdq=shared.hex, pdq_quality=shared.quality)


def phash(image: Image.Image) -> imagehash.ImageHash:
    """``imagehash.phash``, bit for bit, with OpenCV's DCT: imagehash's imports scipy, which would
    keep 16-21 MiB more resident in every worker process for one 32 x 32 transform."""
    small = image.convert("L").resize((PHASH_SAMPLE, PHASH_SAMPLE), Image.Resampling.LANCZOS)
    coefficients = cv2.dct(np.asarray(small, dtype=np.float64)) * np.outer(_SCIPY_SCALE, _SCIPY_SCALE)
    low = coefficients[:PHASH_SIZE, :PHASH_SIZE]
    return imagehash.ImageHash(low > np.median(low))


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
