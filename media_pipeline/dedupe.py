"""Near-duplicate fingerprints: several 256-bit DCT hashes per picture, and how two compare.

A repost is rarely the same pixels. The edits that matter, and what answers each:

    resize, recompress, brightness/contrast, greyscale
                    a DCT hash of the luma (signs of the low frequencies against their median are
                    invariant to affine changes of brightness and to colour)
    mirror          the query also hashes its mirror image
    border, letterbox, screenshot framing
                    a "content" view: uniform bands are cut off and the largest block of
                    non-uniform rows/columns kept, so a picture framed by a status bar and a
                    caption is hashed without them
    centred crop    a centre view of each picture (90% of each side) is stored too
    caption         the low frequencies move little under a line of text
    asymmetric crop, small rotation
                    no global hash survives these; candidates in a looser zone are verified
                    with ORB keypoints and a RANSAC similarity fit (``verify``)

The hash is PDQ-like (Facebook's PDQ: 64x64 luma, 16x16 DCT block, median threshold) but made
with OpenCV, so no compiled extension is needed. Everything here is pure: arrays in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from media_pipeline import rectify

HASH_BITS = 256
_SIDE = 64
_BLOCK = 16
# Views stored for every photo; queries use the same views and their mirror images.
VIEW_FULL = "full"
VIEW_CONTENT = "content"
VIEW_CENTRE = "centre"
# The centre view keeps 85% of each side; queries also try 95%, 90% and 85% of theirs, so a
# crop of 5-15% meets its original in one of them whichever of the two was uploaded first.
STORED_CENTRE = 0.85
QUERY_CENTRES = (0.95, 0.9, 0.85)
CELL = "cell"  # prefix of the views of a collage's cells: cell<i>-<view>
FRAMED = "framed-"  # prefix of views cut from the content box rather than the whole picture
VIEW_RECTIFIED = "rectified"  # query only: a screen or print in the picture, seen head-on
VIEW_TOP = "top"
VIEW_BOTTOM = "bottom"
BAND_KEEP = 0.7
# A frame pixel is within this much luma (0..255) of the frame colour, and a row or column is
# frame when fewer than _FRAME_SHARE of its pixels are not.
_FRAME_TOLERANCE = 10.0
_FRAME_SHARE = 0.03
_MIN_CONTENT = 0.15  # a content box smaller than this share of a side is noise, not the picture


@dataclass(frozen=True)
class ViewHash:
    view: str
    value: int  # HASH_BITS bits
    mirrored: bool = False
    turned: bool = False  # a query view turned a quarter either way

    @property
    def hex(self) -> str:
        return f"{self.value:0{HASH_BITS // 4}x}"


@dataclass(frozen=True)
class Fingerprint:
    """What a picture is indexed by (``stored``) and what it is looked up with (``queries``)."""

    stored: tuple[ViewHash, ...]
    queries: tuple[ViewHash, ...]
    quality: float  # 0..100; low for flat or near-blank pictures


def luma(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)


def dct_hash(grey: np.ndarray) -> int:
    """256-bit hash: signs of the 16x16 lowest DCT frequencies (DC row and column left out)
    of a 64x64 area-resampled luma, against their median."""
    small = cv2.resize(grey, (_SIDE, _SIDE), interpolation=cv2.INTER_AREA)
    coeffs = cv2.dct(small)[1 : _BLOCK + 1, 1 : _BLOCK + 1].ravel()
    bits = coeffs > np.median(coeffs)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hash_quality(grey: np.ndarray) -> float:
    """Mean absolute gradient of a 64x64 luma, scaled to 0..100 (PDQ's idea): a flat colour,
    a near-white page or a faint gradient score near 0 and must not be matched to each other."""
    small = cv2.resize(grey, (_SIDE, _SIDE), interpolation=cv2.INTER_AREA)
    gx = np.abs(np.diff(small, axis=1)).mean()
    gy = np.abs(np.diff(small, axis=0)).mean()
    return float(min(100.0, (gx + gy) * 5.0))


def content_box(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, right, left) of the picture inside a frame: the frame's colour is the
    median of the outermost pixels, rows and columns that are almost all that colour are frame,
    and the largest block of other rows (then columns) is the picture. Status bars, captions and
    buttons of a screenshot are blocks too, only smaller. None when nothing is cut off."""
    ring = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    frame = float(np.median(ring))
    off = np.abs(grey - frame) > _FRAME_TOLERANCE
    top, bottom = _largest_run(off.mean(axis=1) > _FRAME_SHARE)
    if bottom - top < _MIN_CONTENT * grey.shape[0]:
        return None
    left, right = _largest_run(off[top:bottom].mean(axis=0) > _FRAME_SHARE)
    if right - left < _MIN_CONTENT * grey.shape[1]:
        return None
    if (top, bottom, left, right) == (0, grey.shape[0], 0, grey.shape[1]):
        return None
    return top, bottom, left, right


def _largest_run(mask: np.ndarray) -> tuple[int, int]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(starts) == 0:
        return 0, 0
    best = int(np.argmax(ends - starts))
    return int(starts[best]), int(ends[best])


def centre(grey: np.ndarray, keep: float) -> np.ndarray:
    h, w = grey.shape
    dy, dx = int(round(h * (1 - keep) / 2)), int(round(w * (1 - keep) / 2))
    return grey[dy : h - dy, dx : w - dx]


def views(grey: np.ndarray, centres: tuple[float, ...]) -> list[tuple[str, np.ndarray]]:
    """The full picture; the picture inside its frame, if it has one; centre crops of that; and
    its top and bottom bands, which a caption laid over the other end leaves untouched."""
    out = [(VIEW_FULL, grey)]
    box = content_box(grey)
    base, prefix = grey, ""
    if box is not None:
        top, bottom, left, right = box
        base, prefix = grey[top:bottom, left:right], FRAMED
        out.append((VIEW_CONTENT, base))
    out.extend((f"{prefix}{VIEW_CENTRE}{int(keep * 100)}", centre(base, keep)) for keep in centres)
    band = int(round(base.shape[0] * BAND_KEEP))
    out.append((prefix + VIEW_TOP, base[:band]))
    out.append((prefix + VIEW_BOTTOM, base[base.shape[0] - band :]))
    return out


def fingerprint(rgb: np.ndarray) -> Fingerprint:
    """``rgb``: a small (about 320 px) upright sRGB picture, HxWx3 (or HxW grey) uint8."""
    grey = luma(rgb)
    stored = tuple(ViewHash(name, dct_hash(v)) for name, v in views(grey, (STORED_CENTRE,)))
    queries = []
    for name, view in views(grey, QUERY_CENTRES):
        queries.append(ViewHash(name, dct_hash(view)))
        queries.append(ViewHash(name, dct_hash(np.ascontiguousarray(view[:, ::-1])), mirrored=True))
        if name in (VIEW_FULL, VIEW_CONTENT):  # a photo posted on its side: the whole picture turned back
            queries.extend(ViewHash(name, dct_hash(np.ascontiguousarray(np.rot90(view, k))), turned=True) for k in (1, 3))
    queries.extend(ViewHash(VIEW_RECTIFIED, dct_hash(view)) for view in rectified_views(grey))
    return Fingerprint(stored=stored, queries=tuple(queries), quality=hash_quality(grey))


def rectified_views(grey: np.ndarray) -> list[np.ndarray]:
    """Query views of a photo of a screen or a print: each large quadrilateral seen head-on
    (``rectify``), without the bezel or border left around it."""
    out = []
    for corners in rectify.quadrilaterals(np.clip(grey + 0.5, 0, 255).astype(np.uint8)):
        view = rectify.rectified(grey, corners)
        if view is None:
            continue
        box = content_box(view)
        if box is not None:
            top, bottom, left, right = box
            view = view[top:bottom, left:right]
        out.append(np.ascontiguousarray(view))
    return out


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def transform_hint(query: ViewHash, stored_view: str) -> str | None:
    """A hint of the edit, from which views met (mirror, reframed, crop); None when they say
    nothing. Band views are not a hint: they also meet when nothing was laid over the picture."""
    hints = []
    if query.mirrored:
        hints.append("mirror")
    if query.turned:
        hints.append("turn")
    if query.view == VIEW_RECTIFIED:
        hints.append("perspective")
    if stored_view.startswith(CELL):
        return "+".join(hints + ["collage cell"])
    framed = [v == VIEW_CONTENT or v.startswith(FRAMED) for v in (query.view, stored_view)]
    if framed[0] != framed[1]:
        hints.append("reframed")
    kinds = {v.removeprefix(FRAMED) for v in (query.view, stored_view)}
    if len(kinds - {VIEW_CONTENT}) > 1 and any(v.startswith(VIEW_CENTRE) for v in kinds):
        hints.append("crop")
    return "+".join(hints) or None


def closest(query: Fingerprint, stored: tuple[ViewHash, ...]) -> tuple[int, str | None]:
    """The smallest distance between any query hash and any stored one, and the edit it hints at."""
    distance, q, s = min(((hamming(q.value, s.value), q, s) for q in query.queries for s in stored), key=lambda t: t[0])
    return distance, transform_hint(q, s.view)
