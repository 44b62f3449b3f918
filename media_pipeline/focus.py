"""Where a photo's subject is: a focal point and a subject box, both in 0..1 of the upright picture.

Found once per photo from a small level the pipeline already holds (no extra decode):

    faces      OpenCV's frontal-face Haar cascade, whose model file ships inside the
               opencv-python-headless wheel (``cv2.data.haarcascades``): nothing is downloaded
    saliency   libvips' ``smartcrop`` attention centre for the focal point, and the box holding
               most of the picture's fine detail (edges of a subject against a plainer background)
    centre     when the picture is flat

Pure: arrays in, values out; no files, settings or clock.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pyvips

from media_pipeline.models import Box, Focus, Point

# The long side faces and saliency are looked for at: a face of 5% of it is 25 px, above the
# cascade's 24 px window; larger only costs time (the cascade scans every scale).
LONG_SIDE = 512
CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Faces smaller than this share of the short side are mostly false positives (textures, leaves).
MIN_FACE_SHARE = 0.05
# A face needs this many overlapping detections: the cascade's default of 3 accepts bark and fabric.
MIN_NEIGHBOURS = 6
# The detail box keeps the middle 90% of the detail mass on each axis: a few busy pixels at an edge
# do not stretch it to the whole picture.
DETAIL_QUANTILES = (0.05, 0.95)
# Below this mean gradient the picture is flat (a sky, a wall): no saliency worth following.
FLAT_DETAIL = 2.0

CENTRE = Focus(focal_point=Point(0.5, 0.5), subject=Box(0.0, 0.0, 1.0, 1.0), source="centre")


@lru_cache(maxsize=1)
def face_cascade() -> "cv2.CascadeClassifier | None":
    """The wheel's frontal-face cascade, or ``None`` where the installed OpenCV has none: OpenCV 4
    wheels ship the class and its model files; OpenCV 5's main wheel dropped both (the class went
    to the contrib modules), and then the focus comes from saliency."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = Path(folder) / CASCADE_FILE
    if not hasattr(cv2, "CascadeClassifier") or not path.is_file():
        return None
    cascade = cv2.CascadeClassifier(str(path))
    return None if cascade.empty() else cascade


def find_focus(rgb: np.ndarray) -> Focus:
    """Faces first, then saliency, then the centre, from an HxWx3 uint8 upright picture."""
    rgb = _shrunk(rgb)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    faces = find_faces(grey)
    if faces:
        union = _union(faces)
        return Focus(focal_point=union.centre, subject=union, source="faces")
    return find_salient(rgb, grey) or CENTRE


def find_faces(grey: np.ndarray) -> list[Box]:
    """Frontal faces as boxes in 0..1; empty when there are none (or no detector is installed)."""
    cascade = face_cascade()
    if cascade is None:
        return []
    height, width = grey.shape[:2]
    smallest = max(24, round(min(height, width) * MIN_FACE_SHARE))
    found = cascade.detectMultiScale(
        cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=MIN_NEIGHBOURS, minSize=(smallest, smallest)
    )
    return [Box(x / width, y / height, w / width, h / height) for x, y, w, h in (tuple(map(int, f)) for f in found)]


def find_salient(rgb: np.ndarray, grey: np.ndarray) -> Focus | None:
    """libvips' attention centre as the focal point, the detail box as the subject; ``None`` if flat."""
    height, width = grey.shape[:2]
    detail = _detail(grey)
    if float(detail.mean()) < FLAT_DETAIL:
        return None
    box = _mass_box(detail)
    image = pyvips.Image.new_from_array(np.ascontiguousarray(rgb), interpretation="srgb")
    # The window size only decides how far libvips looks; the attention centre is what we keep.
    side = max(1, min(width, height) // 2)
    _, found = image.smartcrop(side, side, interesting="attention", attention_x=True, attention_y=True)
    point = Point(_clamp(found["attention_x"] / width), _clamp(found["attention_y"] / height))
    return Focus(focal_point=_inside(point, box), subject=box, source="saliency")


# --------------------------------------------------------------------------- helpers
def _shrunk(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    if max(height, width) <= LONG_SIDE:
        return np.ascontiguousarray(rgb[:, :, :3])
    scale = LONG_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(np.ascontiguousarray(rgb[:, :, :3]), size, interpolation=cv2.INTER_AREA)


def _detail(grey: np.ndarray) -> np.ndarray:
    """Gradient magnitude, smoothed: large where there are edges and texture, not on soft gradients."""
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0).astype(np.float32)
    magnitude = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    return cv2.GaussianBlur(magnitude, (0, 0), 2.0)


def _mass_box(detail: np.ndarray) -> Box:
    """The box between the low and high quantiles of the detail mass along each axis."""
    height, width = detail.shape
    # Squaring favours strong edges (a subject's outline) over the weak texture of a background.
    weight = detail.astype(np.float64) ** 2
    low, high = DETAIL_QUANTILES
    x0, x1 = _quantiles(weight.sum(axis=0), low, high)
    y0, y1 = _quantiles(weight.sum(axis=1), low, high)
    return Box(x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)


def _quantiles(profile: np.ndarray, low: float, high: float) -> tuple[int, int]:
    cumulative = np.cumsum(profile)
    total = cumulative[-1]
    start = int(np.searchsorted(cumulative, total * low))
    end = int(np.searchsorted(cumulative, total * high)) + 1
    return start, max(end, start + 1)


def _union(boxes: list[Box]) -> Box:
    x0 = min(b.x for b in boxes)
    y0 = min(b.y for b in boxes)
    x1 = max(b.x + b.w for b in boxes)
    y1 = max(b.y + b.h for b in boxes)
    return Box(x0, y0, x1 - x0, y1 - y0)


def _inside(point: Point, box: Box) -> Point:
    """The point moved into the box: the crop keeps the focal point and the subject together."""
    return Point(min(max(point.x, box.x), box.x + box.w), min(max(point.y, box.y), box.y + box.h))


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)
