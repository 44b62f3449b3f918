"""HDR pictures with no SDR picture inside (a 10-bit HEIC in PQ or HLG, as some Android phones and
video stills make): tone-mapped to the SDR picture every rendition shows.

Such a file has no base an SDR screen could show as shot: its numbers are light levels up to
10,000 nits (PQ) or a scene-relative signal (HLG). Read as if they were sRGB numbers they come out
flat and grey. Here they become light (ITU-R BT.2100), HDR reference white (203 nits, BT.2408)
becomes SDR white, anything brighter is rolled off smoothly into the top of the range (a knee at
80% of white), and the source's primaries (BT.2020, from its nclx box) become Display P3, whose
profile the result carries: the colour step then keeps P3 or makes sRGB as for any photo.
Lazy libvips arithmetic, so it runs tile by tile, never on a whole float copy of the picture.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyvips

PQ, HLG = "pq", "hlg"
_TRANSFERS = {16: PQ, 18: HLG}  # H.273 transfer_characteristics
REFERENCE_WHITE_NITS = 203.0
HLG_PEAK_NITS = 1000.0
KNEE = 0.8  # below 80% of SDR white nothing changes; above, highlights roll off to 1.0
GAIN_OFFSET = 1 / 64  # Ultra HDR's usual offset: keeps the gain finite where the SDR picture is black
# SMPTE ST 2084 constants.
_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
_BT2020 = ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))
_D65 = (0.3127, 0.3290)


def transfer(nclx: dict[str, Any] | None, bit_depth: int | None) -> str | None:
    """``PQ`` or ``HLG`` for an HDR picture with no SDR base, from its nclx box; else None."""
    if not nclx or not bit_depth or bit_depth <= 8:
        return None
    return _TRANSFERS.get(int(nclx.get("transfer_characteristics", 0)))


def primaries(nclx: dict[str, Any]) -> tuple[tuple[float, float], ...]:
    """The red, green, blue chromaticities an nclx box gives (BT.2020 when it gives none)."""
    try:
        return tuple((float(nclx[f"color_primary_{c}_x"]), float(nclx[f"color_primary_{c}_y"])) for c in ("red", "green", "blue"))
    except (KeyError, TypeError, ValueError):
        return _BT2020


def to_sdr(signal: pyvips.Image, kind: str, source_primaries: tuple[tuple[float, float], ...], p3_profile: bytes,
           full_scale: float = 65535.0) -> pyvips.Image:
    """HDR ``signal`` (RGB, full range, ``full_scale`` the top code) -> 8-bit Display P3 SDR, the
    P3 profile attached."""
    light = _light(signal, kind, source_primaries, full_scale)
    luma = _luma(light)
    gain = (luma > 1e-6).ifthenelse(_roll_off(luma) / luma, 1.0)
    sdr = light * gain.bandjoin([gain, gain])
    sdr = (sdr < 0).ifthenelse(0.0, (sdr > 1).ifthenelse(1.0, sdr))
    encoded = (sdr <= 0.0031308).ifthenelse(sdr * 12.92, sdr ** (1 / 2.4) * 1.055 - 0.055)
    out = (encoded * 255.0 + 0.5).cast("uchar").copy(interpretation="srgb")
    out.set_type(pyvips.GValue.blob_type, "icc-profile-data", p3_profile)
    return out


def gain_map(signal: pyvips.Image, kind: str, source_primaries: tuple[tuple[float, float], ...], full_scale: float = 65535.0,
             ratio: int = 4) -> tuple[pyvips.Image, float] | None:
    """The gain map that takes ``to_sdr``'s picture back to the HDR one (``ratio`` times smaller,
    8-bit log recovery, with GAIN_OFFSET on both sides), and its largest boost; ``None`` when
    nothing is brighter than SDR white."""
    # Averaged as signal, then made light: a sixteenth of the arithmetic of the other order, and
    # a box of 4 x 4 pixels hardly differs either way in a map this smooth.
    small = signal.shrink(ratio, ratio) if min(signal.width, signal.height) >= 2 * ratio else signal
    luma = _luma(_light(small, kind, source_primaries, full_scale)).copy_memory()
    luma = (luma < 0).ifthenelse(0.0, luma)
    boost = (luma + GAIN_OFFSET) / (_roll_off(luma) + GAIN_OFFSET)
    top = float(boost.max())
    if top < 1.01:
        return None
    recovery = boost.log() / math.log(top)
    return (recovery * 255.0 + 0.5).cast("uchar").copy(interpretation="b-w"), top


def _light(signal: pyvips.Image, kind: str, source_primaries: tuple[tuple[float, float], ...], full_scale: float) -> pyvips.Image:
    """Display light in Display P3 primaries, 1.0 = HDR reference white."""
    x = signal[:3].cast("float") / full_scale
    if kind == PQ:
        e = x ** (1 / _M2)
        excess = e - _C1
        nits = ((excess > 0).ifthenelse(excess, 0.0) / (e * -_C3 + _C2)) ** (1 / _M1) * 10000.0
    else:
        # HLG inverse OETF to scene light 0..1, then the BT.2100 OOTF for a 1000-nit display (gamma 1.2).
        a, b, c = 0.17883277, 0.28466892, 0.55991073
        scene = (x <= 0.5).ifthenelse(x * x / 3.0, (((x - c) / a).exp() + b) / 12.0)
        luma = scene.recomb([[0.2627, 0.6780, 0.0593]])
        nits = scene * (luma ** 0.2).bandjoin([luma ** 0.2, luma ** 0.2]) * HLG_PEAK_NITS
    return (nits / REFERENCE_WHITE_NITS).recomb(_matrix(source_primaries, _P3).tolist())


def _luma(light: pyvips.Image) -> pyvips.Image:
    return light.recomb([[0.2290, 0.6917, 0.0793]])  # Display P3 luminance


def _roll_off(luma: pyvips.Image) -> pyvips.Image:
    """Identity below KNEE, then a smooth roll-off towards 1.0 (slope 1 at the knee)."""
    over = luma - KNEE
    return (over > 0).ifthenelse(((over / -(1 - KNEE)).exp() * -1 + 1) * (1 - KNEE) + KNEE, luma)


def _matrix(source: tuple[tuple[float, float], ...], target: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Linear RGB in ``source`` primaries -> linear RGB in ``target`` primaries (both D65)."""
    return np.linalg.inv(_rgb_to_xyz(target)) @ _rgb_to_xyz(source)


def _rgb_to_xyz(prims: tuple[tuple[float, float], ...]) -> np.ndarray:
    columns = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in prims]).T
    wx, wy = _D65
    white = np.array([wx / wy, 1.0, (1 - wx - wy) / wy])
    return columns * np.linalg.solve(columns, white)
