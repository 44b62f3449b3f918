"""SSIMULACRA 2.1, the perceptual metric of cloudinary/ssimulacra2 (also libjxl's tools/ssimulacra2.cc),
ported to numpy and OpenCV.

    score(original, distorted) -> float    # 100: identical; 90: visually lossless; 70: high quality

Both arguments are HxWx3 (or HxWx4) uint8 sRGB arrays of the same size, at least 8x8. Pure: arrays
in, a number out. The port follows the reference step by step (names in brackets are its
functions), in float32 like it, with sums in float64:

- to linear sRGB, then XYB [ToXYB] rescaled to about 0..1 [MakePositiveXYB];
- at 6 scales, each downsampled 2x2 in linear RGB [Downsample, edge pixels repeated]: blur with
  libjxl's recursive Gaussian (sigma 1.5, zero outside the picture) [FastGaussian]; SSIM without
  the luma denominator [SSIMMap], and two edge maps, "ringing" (the distorted has an edge the
  original has not) and "blur" (the other way round) [EdgeDiffMap]; each map's 1-norm and 4-norm;
- a weighted sum of those 108 norms, mapped to the 100-point scale [Msssim::Score].

The recursive Gaussian is a linear filter whose input outside the picture is zero, so it equals a
convolution with its own impulse response and a zero border; that response is computed once from
the reference's recursion (``_recursive_gaussian_kernel``) and applied with ``cv2.sepFilter2D``,
which vectorises where the recursion cannot. Validated against the reference binary in
``tests/test_ssimulacra2.py``.

Two things make it cheaper without changing the score: half of the 108 weights are zero, so the
maps and norms only they would read are not computed (``_terms``: at the largest scale, X and B
need only the ringing map, so SSIM's two extra blurs run on one plane instead of three), and the
cube root of XYB is OpenCV's ``exp(log(x) / 3)`` (within a few float32 roundings of ``np.cbrt``,
which alone took a fifth of a compare). Where all three planes need SSIM (the middle scales) they
stay interleaved, so one OpenCV call treats the three (``_ScaleReference.joint``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

SIGMA = 1.5
SCALES = 6
_C2 = 0.0009

# Opsin absorbance matrix and bias of libjxl (lib/jxl/opsin_params.h); intensity target 255 (SDR).
_M02, _M00 = 0.078, 0.30
_M12, _M10 = 0.078, 0.23
_M20, _M21 = 0.24342268924547819, 0.20476744424496821
_OPSIN = np.array(
    [[_M00, 1.0 - _M02 - _M00, _M02],
     [_M10, 1.0 - _M12 - _M10, _M12],
     [_M20, _M21, 1.0 - _M20 - _M21]], dtype=np.float32)
_BIAS = np.float32(0.0037930732552754493)
_NEG_BIAS_CBRT = np.float32(-np.cbrt(np.float32(0.0037930732552754493)))
# The opsin mix with its bias as one 3x4 affine map of linear RGB.
_OPSIN_BIASED = np.hstack([_OPSIN, np.full((3, 1), _BIAS, dtype=np.float32)])
# MakePositiveXYB as one 3x4 affine map of the cube roots (m0, m1, m2), the cube root of the bias
# taken off each (ToXYB's last step) folded into its offsets.
_MAKE_POSITIVE = np.array([[7.0, -7.0, 0.0, 0.42], [0.5, 0.5, 0.0, 0.01], [-0.5, -0.5, 1.0, 0.55]], dtype=np.float64)
_POSITIVE_XYB = np.hstack([_MAKE_POSITIVE[:, :3], (_MAKE_POSITIVE[:, 3] + _MAKE_POSITIVE[:, :3].sum(axis=1) * float(_NEG_BIAS_CBRT))[:, None]]
                          ).astype(np.float32)
_SRGB_TO_LINEAR = np.array(
    [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (i / 255 for i in range(256))], dtype=np.float32)

# Msssim::Score: per channel (X, Y, B), per scale, per norm (1, 4): SSIM, ringing, blur.
_WEIGHTS = np.array([
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0, 0.0004371155730107379, 0.0,
    1.1041726426657346, 0.00066284834129271, 0.00015231632783718752, 0.0, 0.0016406437456599754, 0.0,
    1.8422455520539298, 11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653, 0.0,
    1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833, 0.0,
    0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053, 0.0004550992113792063, 0.0, 0.0,
    0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408, 0.0, 0.0,
    0.0, 34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0008680556573291698, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0004179171803251336, 0.0017290828234722833, 0.0, 0.0020827005846636437,
    0.0, 0.0, 8.826982764996862, 23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682,
    0.9834382792465353, 0.0012286405048278493, 171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0,
    0.0005130064588990679, 0.0, 0.00010854057858411537])


def score(original: np.ndarray, distorted: np.ndarray) -> float:
    """SSIMULACRA 2.1 of ``distorted`` against ``original`` (uint8 sRGB, HxWx3 or HxWx4).

    With alpha, like the reference tool: the lower score of the two pictures blended on dark
    (0.1) and on light (0.9) grey."""
    _check(original, distorted)
    if original.shape[2] == 3:
        return _score(original, distorted)
    return min(_score(_blend(original, bg), _blend(distorted, bg)) for bg in (0.1, 0.9))


def _check(original: np.ndarray, distorted: np.ndarray) -> None:
    if original.shape != distorted.shape:
        raise ValueError(f"size mismatch: {original.shape} vs {distorted.shape}")
    if original.ndim != 3 or original.shape[2] not in (3, 4) or min(original.shape[:2]) < 8:
        raise ValueError("needs HxWx3 or HxWx4 pictures of at least 8x8")


def _blend(rgba: np.ndarray, background: float) -> np.ndarray:
    # AlphaBlend: in the encoded (non-linear) values, before the transform to linear light.
    pixels = rgba.astype(np.float32) * np.float32(1 / 255)
    alpha = pixels[:, :, 3:]
    return pixels[:, :, :3] * alpha + (1 - alpha) * np.float32(background)


@dataclass(frozen=True)
class _PlaneReference:
    """What one plane (X, Y or B; HxW) of one scale of the original contributes to every
    comparison, or all three at once (HxWx3, see ``_ScaleReference``); a statistic is None where
    no weight of the score reads it (see ``_terms``)."""

    xyb: np.ndarray | None  # for the SSIM map
    mu: np.ndarray | None  # blurred, for the SSIM map
    variance: np.ndarray | None  # blur(xyb^2) - mu^2, for the SSIM map
    edge: np.ndarray | None  # 1 + |xyb - mu|, for the edge maps


@dataclass(frozen=True)
class _ScaleReference:
    terms: np.ndarray  # bool [channel, map, norm]: which of the scale's 18 norms carry weight
    planes: tuple[_PlaneReference | None, ...] = ()  # X, Y, B; None where no term of the plane has weight
    # Where all three planes need their SSIM map (the middle scales: 1 to 4 of a 481 x 321
    # picture) they stay interleaved, and each OpenCV call treats all three: a third of the calls,
    # which are most of the cost of the smaller scales, and no planes to take apart. The largest
    # scale, with three quarters of the pixels, needs SSIM in Y alone: its planes go one by one.
    joint: _PlaneReference | None = None


@dataclass(frozen=True)
class Reference:
    """An original prepared once for scoring many distorted versions of it (``compare``): the
    quality search scores one or two encodes of one picture per format, and this is about 40% of
    each score's work."""

    shape: tuple[int, ...]
    scales: tuple[_ScaleReference, ...]


def reference(original: np.ndarray) -> Reference:
    """``original`` (uint8 sRGB HxWx3, at least 8x8) prepared for ``compare``."""
    _check(original, original)
    if original.shape[2] != 3:
        raise ValueError("a Reference is for HxWx3 pictures; score() handles alpha")
    terms = _terms(original.shape)
    return Reference(shape=original.shape, scales=tuple(
        _reference_scale(_xyb(linear), used) for linear, used in zip(_pyramid(_to_linear(original)), terms)))


def compare(original: Reference, distorted: np.ndarray) -> float:
    """SSIMULACRA 2.1 of ``distorted`` (uint8 sRGB HxWx3) against a prepared original."""
    if distorted.shape != original.shape:
        raise ValueError(f"size mismatch: {original.shape} vs {distorted.shape}")
    levels = _pyramid(_to_linear(distorted))
    return _combine([_scale_norms(ref, _xyb(linear)) for ref, linear in zip(original.scales, levels)])


def _score(original: np.ndarray, distorted: np.ndarray) -> float:
    # One scale at a time, so only one scale of the original's statistics is alive at once.
    pyramids = zip(_pyramid(_to_linear(original)), _pyramid(_to_linear(distorted)), _terms(original.shape))
    return _combine([_scale_norms(_reference_scale(_xyb(linear1), used), _xyb(linear2)) for linear1, linear2, used in pyramids])


def _terms(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Per scale, which norms carry a non-zero weight: bool [channel, map (SSIM, ringing, blur),
    norm (1, 4)]. Half of the 108 weights are zero (at the largest scale, the costliest, X and B
    need only the ringing map and Y no ringing), so their maps are never computed; the score is
    the same, as a zero weight adds nothing. The layout of the weights depends on how many scales
    the picture has (see ``_combine``)."""
    height, width = shape[0], shape[1]
    scales = 1 if min(height, width) >= 8 else 0
    while 0 < scales < SCALES and min(height, width) >= 8:  # as ``_pyramid``: halved while at least 8
        scales += 1
        height, width = (height + 1) // 2, (width + 1) // 2
    weights = _WEIGHTS[: 3 * scales * 6].reshape(3, scales, 2, 3)  # channel, scale, norm, map
    return list((weights != 0).transpose(1, 0, 3, 2))


def _pyramid(linear: np.ndarray) -> Iterator[np.ndarray]:
    """The linear picture at up to 6 scales, halving each time while the previous scale was at
    least 8 on both sides (the reference checks before halving, so the last may be smaller)."""
    for scale in range(SCALES):
        if min(linear.shape[:2]) < 8:
            return
        if scale:
            linear = _downsample(linear)
        yield linear


def _reference_scale(xyb: np.ndarray, terms: np.ndarray) -> _ScaleReference:
    if _joint(terms):
        return _ScaleReference(terms=terms, joint=_plane_reference(xyb, terms))
    return _ScaleReference(terms=terms, planes=tuple(
        _plane_reference(img1, used[None]) if used.any() else None for img1, used in zip(cv2.split(xyb), terms)))


def _joint(terms: np.ndarray) -> bool:
    """Whether a scale's three planes are treated together: when each needs its SSIM map."""
    return bool(terms[:, 0].any(axis=1).all())


def _plane_reference(img1: np.ndarray, used: np.ndarray) -> _PlaneReference:
    """``img1`` (a plane, or the three) prepared; ``used`` is [channel, map, norm]."""
    mu1 = _blur(img1)
    ssim, edges = used[:, 0].any(), used[:, 1:].any()
    variance = cv2.subtract(_blur(cv2.multiply(img1, img1)), cv2.multiply(mu1, mu1)) if ssim else None
    edge = None
    if edges:
        edge = cv2.absdiff(img1, mu1)
        edge += 1
    return _PlaneReference(xyb=img1 if ssim else None, mu=mu1 if ssim else None, variance=variance, edge=edge)


def _to_linear(encoded: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, as libjxl's CMS applies it; a 256-entry table for 8-bit input."""
    if encoded.dtype == np.uint8:
        return cv2.LUT(np.ascontiguousarray(encoded), _SRGB_TO_LINEAR)
    low = encoded * np.float32(1 / 12.92)
    high = np.power((encoded + np.float32(0.055)) * np.float32(1 / 1.055), np.float32(2.4), dtype=np.float32)
    return np.where(encoded <= np.float32(0.04045), low, high).astype(np.float32)


def _downsample(linear: np.ndarray) -> np.ndarray:
    """2x2 box average; an odd last row or column averages with itself (the reference clamps)."""
    height, width = linear.shape[:2]
    if height % 2 or width % 2:
        linear = cv2.copyMakeBorder(linear, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
    # Bilinear at exactly half samples between each 2x2 block's pixels: their mean (to a float32
    # rounding), in half the time of INTER_AREA.
    return cv2.resize(linear, (linear.shape[1] // 2, linear.shape[0] // 2), interpolation=cv2.INTER_LINEAR)


def _xyb(linear: np.ndarray) -> np.ndarray:
    """ToXYB then MakePositiveXYB: planes X, Y, B-Y, each in about 0..1 (HxWx3, interleaved)."""
    # No clamp at 0 is needed (the reference has one): linear light is never negative, every
    # coefficient of the mix is positive and the bias is, so each value is at least the bias.
    mixed = cv2.transform(linear, _OPSIN_BIASED)
    # The cube root as exp(log(x) / 3), OpenCV's vectorised pair: within 4e-7 of np.cbrt
    # (relative), in a twentieth of its time.
    cv2.log(mixed, dst=mixed)  # in place, here and below: a fresh array of a probe's size costs page faults
    mixed *= np.float32(1 / 3)
    cv2.exp(mixed, dst=mixed)
    # (m0, m1, m2) - cbrt(bias) -> (14 * (m0 - m1) / 2 + 0.42, (m0 + m1) / 2 + 0.01, m2 - (m0 + m1) / 2 + 0.55),
    # in place and interleaved: the middle scales treat the three planes together, the others split them.
    return cv2.transform(mixed, _POSITIVE_XYB, dst=mixed)


def _scale_norms(ref: _ScaleReference, xyb: np.ndarray) -> np.ndarray:
    """[channel, map * 2 + norm]: the 18 norms of one scale, zero where no weight reads them."""
    if ref.joint is not None:
        # Maps made for their neighbours' sake (a norm with no weight in one plane) count nothing.
        return _plane_norms(ref.joint, xyb, ref.terms) * ref.terms.reshape(3, 6)
    out = np.zeros((3, 6), dtype=np.float64)
    for channel, (plane, img2) in enumerate(zip(ref.planes, cv2.split(xyb))):
        if plane is not None:
            out[channel] = _plane_norms(plane, img2, ref.terms[channel][None])[0]
    return out


def _plane_norms(plane: _PlaneReference, img2: np.ndarray, used: np.ndarray) -> np.ndarray:
    """[channel, map * 2 + norm] of one plane (HxW) or of the three (HxWx3) against ``plane``;
    ``used`` is [channel, map, norm]."""
    out = np.zeros((used.shape[0], 6), dtype=np.float64)
    mu2 = _blur(img2)
    if plane.variance is not None:
        out[:, 0:2] = _norms(_ssim_map(plane, img2, mu2), used[:, 0])
    if plane.edge is not None:
        # EdgeDiffMap: > 0 where the distorted has detail the original has not (ringing,
        # blocking), < 0 where the original's detail is gone (blur, smearing).
        ratio = cv2.absdiff(img2, mu2, dst=mu2)  # mu2's last use was the SSIM map
        ratio += 1
        cv2.divide(ratio, plane.edge, dst=ratio)
        ratio -= 1
        if used[:, 1].any():
            out[:, 2:4] = _norms(cv2.threshold(ratio, 0, 0, cv2.THRESH_TOZERO)[1], used[:, 1])
        if used[:, 2].any():  # the negative part: its norms are those of max(-ratio, 0)
            out[:, 4:6] = _norms(cv2.threshold(ratio, 0, 0, cv2.THRESH_TOZERO_INV, dst=ratio)[1], used[:, 2])
    return out


def _ssim_map(plane: _PlaneReference, img2: np.ndarray, mu2: np.ndarray) -> np.ndarray:
    """SSIMMap: 1 - SSIM without the luma term's denominator (the planes are already perceptual),
    1 - num_m * num_s / denom_s, with num_m = 1 - (mu1 - mu2)^2, num_s = 2 (s12 - mu1 mu2) + C2,
    denom_s = (s11 - mu1^2) + (s22 - mu2^2) + C2; clamped at 0."""
    blur, mul = _blur, cv2.multiply
    # In place where OpenCV allows it: each fresh array of a probe's size costs page faults.
    num_s = blur(mul(plane.xyb, img2))
    cv2.subtract(num_s, mul(plane.mu, mu2), dst=num_s)
    num_s *= 2
    num_s += _C2
    # Each variance is taken before they are added, as in the reference: (a - b) + (c - d), not
    # ((a - b) + c) - d, which in float32 leaves a picture compared with itself short of 100.
    denom_s = blur(mul(img2, img2))
    cv2.subtract(denom_s, mul(mu2, mu2), dst=denom_s)
    denom_s += plane.variance
    denom_s += _C2
    d = cv2.subtract(plane.mu, mu2)
    mul(d, d, dst=d)
    np.subtract(1, d, out=d)
    mul(d, num_s, dst=d)
    cv2.divide(d, denom_s, dst=d)
    np.subtract(1, d, out=d)
    np.maximum(d, 0, out=d)
    return d


def _norms(error: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Per channel of ``error`` (HxW or HxWx3), the mean of ``|error|`` and the 4th root of the
    mean 4th power, as [channel, norm] (sums in float64, like the reference), each only where
    ``used`` ([channel, norm]) says a channel's weight is not zero."""
    channels, pixels = used.shape[0], error.shape[0] * error.shape[1]
    out = np.zeros((channels, 2), dtype=np.float64)
    if used[:, 0].any():
        out[:, 0] = cv2.norm(error, cv2.NORM_L1) / pixels if channels == 1 else np.abs(cv2.mean(error)[:channels])
    if used[:, 1].any():
        square = cv2.multiply(error, error)
        if channels == 1:
            fourth = np.array([cv2.norm(square, cv2.NORM_L2SQR) / pixels])
        else:
            cv2.multiply(square, square, dst=square)
            fourth = np.array(cv2.mean(square)[:channels])
        out[:, 1] = np.sqrt(np.sqrt(fourth))
    return out


def _combine(norms: list[np.ndarray]) -> float:
    # The weights are read in order of channel, scale, norm, map; with fewer than 6 scales (a
    # small picture) the reference's index runs on over the missing ones, and so does this.
    values = [abs(norms[s][c, m * 2 + n]) for c in range(3) for s in range(len(norms)) for n in range(2) for m in range(3)]
    total = float(np.dot(_WEIGHTS[: len(values)], values)) * 0.9562382616834844
    total = 2.326765642916932 * total - 0.020884521182843837 * total ** 2 + 6.248496625763138e-05 * total ** 3
    return 100.0 - 10.0 * math.pow(total, 0.6276336467831387) if total > 0 else 100.0


def _blur(planes: np.ndarray) -> np.ndarray:
    kernel = _recursive_gaussian_kernel(SIGMA)
    return cv2.sepFilter2D(planes, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_CONSTANT)


@functools.cache
def _recursive_gaussian_kernel(sigma: float) -> np.ndarray:
    """The impulse response of libjxl's recursive Gaussian (CreateRecursiveGaussian and
    FastGaussian1D, Charalampidis 2016: three cosine terms over a window of radius N), found by
    running its recursion over a single 1. Its terms cancel outside the window, so the response
    is finite: 2N + 1 taps."""
    radius = round(3.2795 * sigma + 0.2546)
    omega = [k * math.pi / (2 * radius) for k in (1, 3, 5)]
    p = [1 / math.tan(0.5 * omega[0]), -1 / math.tan(0.5 * omega[1]), 1 / math.tan(0.5 * omega[2])]
    r = [p[0] ** 2 / math.sin(omega[0]), -p[1] ** 2 / math.sin(omega[1]), p[2] ** 2 / math.sin(omega[2])]
    rho = [math.exp(-0.5 * sigma * sigma * w * w) / radius for w in omega]
    d13 = p[0] * r[1] - r[0] * p[1]
    d35 = p[1] * r[2] - r[1] * p[2]
    d51 = p[2] * r[0] - r[2] * p[0]
    zeta15, zeta35 = d35 / d13, d51 / d13
    a = np.array([p, r, [zeta15, zeta35, 1.0]])
    gamma = np.array([1.0, radius * radius - sigma * sigma, zeta15 * rho[0] + zeta35 * rho[1] + rho[2]])
    beta = np.linalg.solve(a, gamma)
    n2 = [np.float32(-beta[i] * math.cos(omega[i] * (radius + 1))) for i in range(3)]
    d1 = [np.float32(-2 * math.cos(w)) for w in omega]

    size = 4 * radius + 3
    impulse = np.zeros(size, dtype=np.float64)
    impulse[size // 2] = 1.0
    response = np.zeros(size, dtype=np.float64)
    prev1, prev2 = [0.0] * 3, [0.0] * 3
    for n in range(-radius + 1, size):
        left, right = n - radius - 1, n + radius - 1
        total = (impulse[left] if 0 <= left < size else 0.0) + (impulse[right] if 0 <= right < size else 0.0)
        outs = [float(n2[i]) * total - float(d1[i]) * prev1[i] - prev2[i] for i in range(3)]
        prev2, prev1 = prev1, outs
        if 0 <= n < size:
            response[n] = sum(outs)
    centre = size // 2
    kernel = response[centre - radius: centre + radius + 1]
    return kernel.astype(np.float32).reshape(-1, 1)
