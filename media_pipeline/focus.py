"""Where a photo's subject is: a focal point and a subject box, both in 0..1 of the upright picture.

Found once per photo from a small level the pipeline already holds (no extra decode):

    faces      OpenCV's frontal-face Haar cascade, whose model file ships inside the
               opencv-python-headless wheel (``cv2.data.haarcascades``): nothing is downloaded
    saliency   the connected region of strongest detail as the subject box (a subject's edges
               against a plainer background); libvips' ``smartcrop`` attention centre as the focal
               point when it falls inside it, else the region's detail-weighted centre
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
# Detail above this share of its 99th percentile is strong; gaps up to this share of the long side
# between strong edges are closed into one region.
STRONG_SHARE = 0.45
CLOSE_SHARE = 0.03
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
        return Focus(focal_point=union.centre, subject=union, source="faces", faces=tuple(faces))
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
    """The region of strongest detail as the subject, its detail-weighted centre as the focal point
    (moved to libvips' attention centre when that falls inside the region); ``None`` if flat."""
    height, width = grey.shape[:2]
    detail = _detail(grey)
    if float(detail.mean()) < FLAT_DETAIL:
        return None
    region = _strongest_region(detail)
    box = _region_box(region)
    weight = detail * region
    total = float(weight.sum())
    centroid = Point(float((weight.sum(axis=0) * np.arange(width)).sum() / total / width),
                     float((weight.sum(axis=1) * np.arange(height)).sum() / total / height))
    image = pyvips.Image.new_from_array(np.ascontiguousarray(rgb), interpretation="srgb")
    # The window size only decides how far libvips looks; the attention centre is what we keep.
    side = max(1, min(width, height) // 2)
    _, found = image.smartcrop(side, side, interesting="attention", attention_x=True, attention_y=True)
    attention = Point(_clamp(found["attention_x"] / width), _clamp(found["attention_y"] / height))
    inside = box.x <= attention.x <= box.x + box.w and box.y <= attention.y <= box.y + box.h
    return Focus(focal_point=attention if inside else _inside(centroid, box), subject=box, source="saliency")


def _strongest_region(detail: np.ndarray) -> np.ndarray:
    """A 0/1 mask of the connected region of strong detail that holds the most of it: a subject
    stands out from a softer background by its edges; texture scattered over a whole picture
    makes one large region, and then the subject box is most of the picture."""
    strong = (detail > STRONG_SHARE * float(np.percentile(detail, 99))).astype(np.uint8)
    # Close the gaps between a subject's edges so it is one region, not a scatter of outlines.
    size = max(3, round(max(detail.shape) * CLOSE_SHARE)) | 1
    closed = cv2.morphologyEx(strong, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    count, labels = cv2.connectedComponents(closed)
    if count <= 1:
        return np.ones_like(detail)
    mass = np.bincount(labels.ravel(), weights=detail.ravel(), minlength=count)
    mass[0] = 0  # the background label
    return (labels == int(mass.argmax())).astype(detail.dtype)


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


def _region_box(region: np.ndarray) -> Box:
    height, width = region.shape
    ys, xs = np.nonzero(region)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    return Box(x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)


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
