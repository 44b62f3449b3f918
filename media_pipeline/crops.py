"""Crop windows: which part of the upright picture an aspect crop shows, and at which sizes.

The window is the largest one of the aspect inside the picture. It contains the subject box when
the box fits, and is placed so the focal point is as near its centre as the picture's edges (and
the subject) allow; when the subject is larger than the window on an axis, the window stays inside
the subject there and keeps the focal point. A user-set focal point has no subject: the window is
centred on it as far as the edges allow.

Crops are cut from the cascade's levels (the smallest level whose window holds the width, so no
level is upscaled) and resized to exact sizes. Pure: numbers and in-memory pictures in, values out.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Iterator

import pyvips

from media_pipeline import hdr
from media_pipeline.encode import encode, rendition_traits
from media_pipeline.errors import CorruptImage
from media_pipeline.framing import Focus, parse_aspect
from media_pipeline.models import EncodedRendition, EncoderSettings

_ASPECT_PATH = re.compile(r"^([1-9][0-9]?)x([1-9][0-9]?)$")


@dataclass(frozen=True)
class Window:
    """A crop window in pixels of a picture ``left, top, width, height``."""

    left: int
    top: int
    width: int
    height: int


def aspect_from_path(segment: str) -> str | None:
    """The URL segment ``4x5`` -> ``"4:5"``; ``None`` when it is not one."""
    match = _ASPECT_PATH.match(segment)
    return f"{int(match[1])}:{int(match[2])}" if match else None


def aspect_path(aspect: str) -> str:
    """``"4:5"`` -> ``"4x5"``, the aspect as a URL path segment."""
    return aspect.replace(":", "x")


def crop_height(width: int, aspect: tuple[int, int]) -> int:
    """The exact height of a crop ``width`` wide: a 4:5 crop 1080 wide is 1350 high."""
    a, b = aspect
    return max(1, round(width * b / a))


def window_size(picture: tuple[int, int], aspect: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) of the largest window of ``aspect`` inside ``picture`` (width, height)."""
    width, height = picture
    a, b = aspect
    if width * b <= height * a:  # the picture is narrower than the aspect: full width
        return width, min(height, max(1, round(width * b / a)))
    return min(width, max(1, round(height * a / b))), height


def crop_window(picture: tuple[int, int], aspect: tuple[int, int], focus: Focus) -> Window:
    """The window of ``aspect`` in a picture of ``picture`` (width, height) pixels."""
    width, height = picture
    window_w, window_h = window_size(picture, aspect)
    keep_subject = focus.source != "user"
    s = focus.subject
    left = _place(width, window_w, focus.focal_point.x * width, s.x * width, (s.x + s.w) * width, keep_subject)
    top = _place(height, window_h, focus.focal_point.y * height, s.y * height, (s.y + s.h) * height, keep_subject)
    if keep_subject and focus.faces:
        # Faces that do not all fit: move the window (as little as possible) so none is cut in half.
        # The window spans the picture on one axis, so every face is inside it there and each
        # axis can be settled alone.
        left = _uncut(left, window_w, width, [(f.x * width, (f.x + f.w) * width) for f in focus.faces])
        top = _uncut(top, window_h, height, [(f.y * height, (f.y + f.h) * height) for f in focus.faces])
    return Window(left, top, window_w, window_h)


def _uncut(start: int, size: int, span: int, faces: list[tuple[float, float]]) -> int:
    """A start at which every face (an interval on this axis) is wholly in the window or wholly out
    of it: the one holding the most faces, then the nearest ``start``; ``start`` when there is none.
    A face larger than the window (a close-up in a 16:9 band) is cut whatever the start, and moving
    the window out of it would show what is beside the face instead: it does not count here, so
    ``_place`` keeps as much of it as fits."""
    faces = [(a, b) for a, b in faces if b - a <= size + 2]

    def cuts(at: int) -> bool:
        return any(at < b - 1 and at + size > a + 1 and not (at <= a + 1 and at + size >= b - 1) for a, b in faces)

    def holds(at: int) -> int:
        return sum(at <= a + 1 and at + size >= b - 1 for a, b in faces)

    candidates = {start}
    for a, b in faces:  # a window edge at either side of a face
        candidates |= {round(a) - 1, round(b) + 1, round(a) - size - 1, round(b) - size + 1}
    allowed = [c for c in candidates if 0 <= c <= span - size and not cuts(c)]
    return min(allowed, key=lambda c: (-holds(c), abs(c - start))) if allowed else start


def _place(span: int, size: int, focal: float, subject_start: float, subject_end: float, keep_subject: bool) -> int:
    """The window's start on one axis: centred on ``focal`` within the allowed range."""
    low, high = 0.0, float(span - size)  # the picture's edges
    if keep_subject:
        if subject_end - subject_start <= size:
            # The whole subject inside the window.
            low, high = max(low, subject_end - size), min(high, subject_start)
        else:
            # Only part of it fits: stay inside the subject and keep the focal point.
            low = max(low, subject_start, focal - size)
            high = min(high, subject_end - size, focal)
        if low > high:  # rounding at the picture's edge: the edges win
            low, high = 0.0, float(span - size)
    start = min(max(focal - size / 2, low), high)
    return int(min(max(round(start), 0), span - size))


def crop_widths(widths: tuple[int, ...], window_width: int) -> tuple[int, ...]:
    """The preset's crop widths the window holds without upscaling, widest first."""
    return tuple(sorted((w for w in widths if w <= window_width), reverse=True))


def level_width_holding(picture: tuple[int, int], aspect: tuple[int, int], width: int) -> int:
    """The narrowest level of a picture of ``picture`` (width, height) pixels whose window of
    ``aspect`` is at least ``width`` wide: what an on-demand crop needs decoded (the picture's own
    width when none narrower is enough)."""
    picture_width, picture_height = picture
    a, b = aspect
    start = width if picture_width * b <= picture_height * a else math.ceil(width * b * picture_width / (a * picture_height))
    # The estimate can be a few pixels off either way (the level's height and the window are
    # rounded): scan up from just below it.
    for level_width in range(max(1, min(start - 16, picture_width)), picture_width):
        level_height = max(1, round(picture_height * level_width / picture_width))
        if window_size((level_width, level_height), aspect)[0] >= width:
            return level_width
    return picture_width


@dataclass(frozen=True)
class CropVariant:
    """One crop rendition to make: an aspect at a width, and its exact height."""

    aspect: str  # "A:B"
    width: int
    height: int


def plan(aspects: tuple[str, ...], widths: tuple[int, ...], level: tuple[int, int], focus: Focus) -> tuple[CropVariant, ...]:
    """Every (aspect, width) the largest level's window holds; ``level`` is its (width, height)."""
    variants = []
    for aspect in aspects:
        ratio = parse_aspect(aspect)
        if ratio is None:
            continue
        window = crop_window(level, ratio, focus)
        variants.extend(CropVariant(aspect, w, crop_height(w, ratio)) for w in crop_widths(widths, window.width))
    return tuple(variants)


def crop_spec(encoder_spec: str, aspect: str, focus: Focus) -> str:
    """The spec part of a crop's immutable key: its format's settings, the aspect and the focus it
    was cut around, so a new focal point (or a changed detector) writes new keys."""
    inputs = {"encoder": encoder_spec, "aspect": aspect, **focus.to_dict()}
    if focus.source == "user":
        inputs.pop("subject")  # a user's focal point is cut around alone
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:10]


def cut(levels: list[pyvips.Image], variant: CropVariant, focus: Focus) -> pyvips.Image:
    """The crop's pixels, exactly ``variant.width`` x ``variant.height``, from the smallest of
    ``levels`` (any order) whose window is at least that wide (else the largest)."""
    ratio = parse_aspect(variant.aspect)
    assert ratio is not None
    by_width = sorted(levels, key=lambda level: level.width)
    for level in by_width:
        window = crop_window((level.width, level.height), ratio, focus)
        if window.width >= variant.width or level is by_width[-1]:
            region = level.extract_area(window.left, window.top, window.width, window.height)
            # An HDR level's gain map is cut from the same window (hdr.py).
            return hdr.follow_crop(_resize_exact(region, variant.width, variant.height), level,
                                   window.left, window.top, window.width, window.height)
    raise ValueError("no level to cut from")


def iter_crops(levels: list[pyvips.Image], variants: tuple[CropVariant, ...], encoders: tuple[EncoderSettings, ...],
               focus: Focus, only: set[tuple[str, int, str]] | None = None) -> Iterator[EncodedRendition]:
    """Encode every crop variant in every given format (or the (aspect, width, format) in ``only``)."""
    for variant in variants:
        wanted = [enc for enc in encoders if only is None or (variant.aspect, variant.width, enc.format) in only]
        if not wanted:
            continue
        try:
            pixels = cut(levels, variant, focus).copy_memory()
            for enc in wanted:
                data = encode(pixels, enc)
                yield EncodedRendition(width=variant.width, height=variant.height, format=enc.format, data=data,
                                       aspect=variant.aspect, **rendition_traits(pixels, enc))
        except pyvips.Error as exc:
            raise CorruptImage(f"cannot make the {variant.aspect} crop at {variant.width}: {exc}") from exc


def _resize_exact(image: pyvips.Image, width: int, height: int) -> pyvips.Image:
    hscale, vscale = width / image.width, height / image.height
    if image.hasalpha():
        # Premultiplied, so the colour of transparent pixels does not bleed into the edges.
        band_format = image.format
        resized = image.premultiply().resize(hscale, vscale=vscale, kernel="lanczos3").unpremultiply().cast(band_format)
    else:
        resized = image.resize(hscale, vscale=vscale, kernel="lanczos3")
    if (resized.width, resized.height) != (width, height):  # float rounding: at most a pixel
        resized = resized.embed(0, 0, width, height, extend="copy")
    return resized
