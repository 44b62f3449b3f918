"""Colour differences the way people see them: CIE Lab through Little CMS (Pillow's ImageCms)
and CIEDE2000 (Sharma, Wu and Dalal's formulation, checked against their published test pairs)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms

_LAB = ImageCms.createProfile("LAB", colorTemp=5000)


def lab(rgb: np.ndarray, icc: bytes | None) -> np.ndarray:
    """HxWx3 uint8 numbers in the profile ``icc`` (None: sRGB) as float Lab (D50, relative)."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc)) if icc else ImageCms.createProfile("sRGB")
    transform = ImageCms.buildTransform(source, _LAB, "RGB", "LAB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    out = np.asarray(ImageCms.applyTransform(Image.fromarray(np.ascontiguousarray(rgb[..., :3])), transform))
    # Pillow's LAB mode: L 0..255 for 0..100, a and b as signed bytes.
    a, b = out[..., 1].view(np.int8), out[..., 2].view(np.int8)
    return np.stack([out[..., 0].astype(np.float64) * 100 / 255, a.astype(np.float64), b.astype(np.float64)], axis=-1)


def convert(rgb: np.ndarray, icc_in: bytes | None, icc_out: bytes | None) -> np.ndarray:
    """Little CMS's conversion of ``rgb`` from one profile to another (None: sRGB), relative intent."""
    def profile(icc: bytes | None) -> ImageCms.ImageCmsProfile:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc)) if icc else ImageCms.createProfile("sRGB")
    out = ImageCms.profileToProfile(Image.fromarray(np.ascontiguousarray(rgb[..., :3])), profile(icc_in), profile(icc_out),
                                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB")
    return np.asarray(out)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """ΔE2000 between Lab colours (last axis L, a, b)."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dL, dC = L2 - L1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0, dh)
    dH = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    L_mean, c_mean_p = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = np.where(np.abs(h1p - h2p) > 180, np.where(h_sum < 360, h_sum + 360, h_sum - 360) / 2, h_sum / 2)
    h_mean = np.where(c1p * c2p == 0, h_sum, h_mean)
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    sl = 1 + 0.015 * (L_mean - 50) ** 2 / np.sqrt(20 + (L_mean - 50) ** 2)
    sc, sh = 1 + 0.045 * c_mean_p, 1 + 0.015 * c_mean_p * t
    rt = -2 * np.sqrt(c_mean_p**7 / (c_mean_p**7 + 25.0**7)) * np.sin(np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2))))
    return np.sqrt((dL / sl) ** 2 + (dC / sc) ** 2 + (dH / sh) ** 2 + rt * (dC / sc) * (dH / sh))
