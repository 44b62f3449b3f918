"""BlurHash and dominant colour, computed from a small sRGB image already in memory.

BlurHash is a few lines of DCT and base-83 (https://blurha.sh); writing it with NumPy avoids a
compiled dependency and keeps it vectorised.
"""

from __future__ import annotations

import numpy as np

from media_pipeline.models import Placeholder

_B83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


def make_placeholder(rgb: np.ndarray, components_x: int = 4, components_y: int = 3) -> Placeholder:
    """``rgb``: HxWx3 uint8 sRGB, ideally 32 px or so on the long side."""
    return Placeholder(blurhash=blurhash_encode(rgb, components_x, components_y), dominant_color=dominant_color(rgb))


def _srgb_to_linear(values: np.ndarray) -> np.ndarray:
    v = values / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(values: np.ndarray) -> np.ndarray:
    v = np.clip(values, 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92 * 255 + 0.5, (1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5).astype(int)


def _b83(value: int, length: int) -> str:
    return "".join(_B83[(value // 83 ** (length - i - 1)) % 83] for i in range(length))


def _sign_pow(value: np.ndarray, exp: float) -> np.ndarray:
    return np.sign(value) * np.abs(value) ** exp


def blurhash_encode(rgb: np.ndarray, components_x: int, components_y: int) -> str:
    if not (1 <= components_x <= 9 and 1 <= components_y <= 9):
        raise ValueError("BlurHash components must be 1..9")
    height, width = rgb.shape[:2]
    linear = _srgb_to_linear(rgb[..., :3].astype(np.float64))
    xs = np.arange(width)
    ys = np.arange(height)
    factors = []
    for j in range(components_y):
        for i in range(components_x):
            basis = np.outer(np.cos(np.pi * j * ys / height), np.cos(np.pi * i * xs / width))
            norm = 1.0 if i == 0 and j == 0 else 2.0
            factors.append(norm * (basis[..., None] * linear).sum(axis=(0, 1)) / (width * height))
    dc, ac = factors[0], np.array(factors[1:])
    out = _b83((components_x - 1) + (components_y - 1) * 9, 1)
    if len(ac):
        max_ac = float(np.abs(ac).max())
        quant_max = int(max(0, min(82, np.floor(max_ac * 166 - 0.5))))
        max_value = (quant_max + 1) / 166
    else:
        quant_max, max_value = 0, 1.0
    out += _b83(quant_max, 1)
    r, g, b = _linear_to_srgb(dc)
    out += _b83((int(r) << 16) + (int(g) << 8) + int(b), 4)
    for component in ac:
        q = np.clip(np.floor(_sign_pow(component / max_value, 0.5) * 9 + 9.5), 0, 18).astype(int)
        out += _b83(int(q[0] * 19 * 19 + q[1] * 19 + q[2]), 2)
    return out


def blurhash_decode(blurhash: str, width: int, height: int) -> np.ndarray:
    """Render a BlurHash to HxWx3 uint8; used by tests and the operator UI."""
    size = _B83.index(blurhash[0])
    nx, ny = size % 9 + 1, size // 9 + 1
    max_value = (_B83.index(blurhash[1]) + 1) / 166

    def dec(s: str) -> int:
        value = 0
        for ch in s:
            value = value * 83 + _B83.index(ch)
        return value

    dc = dec(blurhash[2:6])
    colours = [_srgb_to_linear(np.array([dc >> 16, (dc >> 8) & 255, dc & 255], dtype=np.float64))]
    for k in range(1, nx * ny):
        v = dec(blurhash[4 + 2 * k : 6 + 2 * k])
        q = np.array([v // 361, (v // 19) % 19, v % 19], dtype=np.float64)
        colours.append(_sign_pow((q - 9) / 9, 2.0) * max_value)
    ys, xs = np.arange(height), np.arange(width)
    pixels = np.zeros((height, width, 3))
    for j in range(ny):
        for i in range(nx):
            basis = np.outer(np.cos(np.pi * j * ys / height), np.cos(np.pi * i * xs / width))
            pixels += basis[..., None] * colours[i + j * nx]
    return _linear_to_srgb(pixels).clip(0, 255).astype(np.uint8)


def dominant_color(rgb: np.ndarray) -> str:
    """The mean colour of the most populous cell of a 4-bits-per-channel histogram."""
    pixels = rgb[..., :3].reshape(-1, 3).astype(np.int64)
    cells = (pixels[:, 0] >> 4) << 8 | (pixels[:, 1] >> 4) << 4 | (pixels[:, 2] >> 4)
    top = np.bincount(cells, minlength=4096).argmax()
    r, g, b = pixels[cells == top].mean(axis=0).round().astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"
