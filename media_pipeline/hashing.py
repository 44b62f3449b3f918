"""Perceptual hashes of the upright sRGB picture, for near-duplicate detection."""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from media_pipeline.models import Hashes


def perceptual_hashes(rgb: np.ndarray) -> Hashes:
    """``rgb``: HxWx3 uint8, a small (e.g. 320 px) upright sRGB image."""
    image = Image.fromarray(rgb[..., :3])
    return Hashes(phash=str(imagehash.phash(image)), dhash=str(imagehash.dhash(image)))


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
