"""PDQ, Meta's perceptual hash, exactly as the reference computes it (ThreatExchange
`pdq/cpp/hashing/pdqhashing.cpp` and `pdq/cpp/downscaling/downscaling.cpp`).

Industry hash-sharing programmes (ThreatExchange, StopNCII and others) exchange PDQ hashes, so a
list of known images can only be matched by the same bits. The project's own view hashes
(``dedupe.py``) are PDQ-like but not PDQ; this module is the real one, in NumPy:

    luma         0.299 R + 0.587 G + 0.114 B, as float
    blur         two passes of a box filter along rows then columns (Jarosz tent), window
                 ceil(side / 128) each way
    decimate     the 64 x 64 samples at the centres of a 64 x 64 grid
    quality      significant gradients of the 64 x 64 samples, 0..100
    DCT          rows and columns 1..16 of its 2-D DCT-II (the DC left out)
    bits         bit i*16+j set when coefficient (i, j) is above the median (the 128th smallest)

The hex form is the reference's: the 256-bit number whose bit k is bit k of the hash, 64 hex
digits, most significant first. ``tests/test_pdq.py`` pins it to the reference's outputs.

Pure: arrays in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SIDE = 64
_PASSES = 2
_MIN_SIDE = 5
# float32 like the reference's table: sqrt(2/64) cos(pi/128 (i+1)(2j+1)), i < 16, j < 64.
_DCT = (np.sqrt(2.0 / _SIDE) * np.cos(np.pi / 2.0 / _SIDE * np.outer(np.arange(1, 17), 2 * np.arange(_SIDE) + 1))).astype(np.float32)


@dataclass(frozen=True)
class PdqHash:
    value: int  # 256 bits; bit k is the reference's bit k
    quality: int  # 0..100; the reference suggests not trusting matches below 50

    @property
    def hex(self) -> str:
        return f"{self.value:064x}"


def pdq(rgb: np.ndarray) -> PdqHash:
    """``rgb``: HxWx3 uint8 (or HxW grey) upright sRGB picture."""
    if rgb.ndim == 2:
        luma = rgb.astype(np.float32)
    else:
        pixels = rgb[..., :3].astype(np.float32)
        luma = np.float32(0.299) * pixels[..., 0] + np.float32(0.587) * pixels[..., 1] + np.float32(0.114) * pixels[..., 2]
    rows, cols = luma.shape
    if rows < _MIN_SIDE or cols < _MIN_SIDE:
        return PdqHash(0, 0)
    if (rows, cols) == (_SIDE, _SIDE):
        small = luma
    else:
        along_rows, along_cols = _window(cols), _window(rows)
        for _ in range(_PASSES):
            luma = _box(luma, along_rows, axis=1)
            luma = _box(luma, along_cols, axis=0)
        small = luma[np.ix_(_centres(rows), _centres(cols))]
    coefficients = (_DCT @ small) @ _DCT.T
    median = np.sort(coefficients, axis=None)[127]  # Torben's median of 256 values: the lower one
    bits = (coefficients > median).ravel()
    value = int.from_bytes(np.packbits(bits[::-1]).tobytes(), "big")
    return PdqHash(value, _quality(small))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _window(side: int) -> int:
    return (side + 2 * _SIDE - 1) // (2 * _SIDE)


def _box(image: np.ndarray, window: int, axis: int) -> np.ndarray:
    """The reference's ``box1DFloat`` along ``axis``: out[o] is the mean of in[o - (window -
    half) .. o + half - 1], half = (window + 2) // 2, the window cut at both ends (a sum over
    zeros past the edges, divided by the pixels inside)."""
    half = (window + 2) // 2
    length = image.shape[axis]
    kernel, anchor = ((window, 1), (window - half, 0)) if axis == 1 else ((1, window), (0, window - half))
    sums = cv2.boxFilter(image, cv2.CV_32F, kernel, anchor=anchor, normalize=False,
                         borderType=cv2.BORDER_CONSTANT)
    index = np.arange(length)
    count = (np.minimum(length, index + half) - np.maximum(0, index - (window - half))).astype(np.float32)
    shape = [1, 1]
    shape[axis] = length
    return sums / count.reshape(shape)


def _centres(side: int) -> np.ndarray:
    return ((np.arange(_SIDE) + 0.5) * side / _SIDE).astype(np.int64)


def _quality(small: np.ndarray) -> int:
    """Significant gradients: each neighbour difference in percent of 255, truncated toward zero
    as the reference's int cast does, summed, over 90, at most 100."""
    down = np.trunc((small[:-1, :] - small[1:, :]) * np.float32(100) / np.float32(255))
    across = np.trunc((small[:, :-1] - small[:, 1:]) * np.float32(100) / np.float32(255))
    return min(100, int(np.abs(down).sum() + np.abs(across).sum()) // 90)
