"""Where a photo's subject is: a focal point and a subject box, both in 0..1 of the upright picture.

Found once per photo from a small level the pipeline already holds (no extra decode), shrunk to
``LONG_SIDE``:

    faces      libfacedetection's YuNet (the ``yuface`` wheel, its model compiled into the
               library: nothing is downloaded), faces it is sure of that have a face's detail;
               the subject is the faces together with the salient region, the focal point the
               faces' centre, so a window that can hold both does and one that cannot keeps faces
    saliency   the connected region of strongest detail as the subject box (a subject's edges
               against a plainer background); the peak of an attention map (detail, skin,
               saturation: what libvips' ``smartcrop`` attention weighs) inside it as the focal point
    centre     when the picture is flat

Pure: arrays in, values out; no files, settings or clock.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from media_pipeline.framing import Box, Focus, Point

# The long side faces and saliency are looked for at: YuNet finds faces from about 10 px (5% of
# it), and its time grows with the pixels (bench/crops.py: about 6 ms of CPU at 192 px against
# 11 ms at 256 on a loaded core); a smaller face would not change a crop.
LONG_SIDE = 192
SALIENCY_SIDE = 256
# YuNet's score (0..1) below which a face is dropped. The score does not tell the false faces a
# detector sees in a blurred background (up to 0.90 in bench/crops.py's cases): the fine-detail
# test below does. Real faces at this size score 0.6-0.93 (a second face in a group, 0.69).
MIN_FACE_SCORE = 0.6
# A face in focus has fine detail (eyes, brows, lips, hair): one whose mean fine detail is under
# this share of the picture's strongest (its 99th percentile) is a shape in a blurred background.
# In bench/crops.py's cases the false faces there are at 0.01-0.10, the pasted real ones at
# 0.19-1.07; the test photos' faces at 0.10 (a close-up, smooth skin) to 0.45.
MIN_FACE_FINE = 0.09
# Detail above this share of its 99th percentile is strong; gaps up to this share of the long side
# between strong edges are closed into one region.
STRONG_SHARE = 0.45
CLOSE_SHARE = 0.03
PART_SHARE = 0.3
# Inside the strongest regions, the subject box is where the fine detail is at least this share of
# the picture's strongest (a region's closing can join a subject to softer edges beside it), less
# this percentage of those pixels at each side, so a speck does not stretch the box; the region's
# box when the sharp pixels spread over SHARP_SPREAD of it anyway. On bench/crops.py's cases (800
# of seeds 4-7; the share chosen on seeds 1-3 and 18) it took the 9:16 and 16:9 windows keeping
# the subject from 95.6% and 94.8% to 99.1% and 98.1%.
SHARP_SHARE = 0.4
SHARP_TAIL = 1.0
SHARP_SPREAD = 0.6
# Below this mean gradient the picture is flat (a sky, a wall): no saliency worth following.
FLAT_DETAIL = 2.0
# The attention map is averaged over squares of this share of the long side, so its peak is an
# area's, not a pixel's.
ATTENTION_AREA = 0.1

CENTRE = Focus(focal_point=Point(0.5, 0.5), subject=Box(0.0, 0.0, 1.0, 1.0), source="centre")


@lru_cache(maxsize=1)
def face_detector() -> ModuleType | None:
    """The ``yuface`` module, or ``None`` where it is not installed (its wheels are CPython 3.11):
    then the focus comes from saliency. Its OpenMP pool is set to one thread: a worker runs one
    photo per process, and more threads only spin (five times the CPU for the same answer)."""
    try:
        import yuface
    except ImportError:
        return None
    for gomp in (Path(yuface.__file__).parent.parent / "yuface.libs").glob("libgomp*.so*"):
        ctypes.CDLL(str(gomp)).omp_set_num_threads(1)
    return yuface


def find_focus(rgb: np.ndarray) -> Focus:
    """Faces first, then saliency, then the centre, from an HxWx3 uint8 upright picture."""
    rgb = _shrunk(rgb, SALIENCY_SIDE)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    fine = _fine_detail(grey)
    small = _shrunk(rgb, LONG_SIDE)
    salient = find_salient(small, _detail(grey), fine)
    faces = find_faces(small, fine)
    if faces:
        union = _union(faces)
        subject = _union([union, salient.subject]) if salient else union
        return Focus(focal_point=union.centre, subject=subject, source="faces", faces=tuple(faces))
    return salient or CENTRE


def find_faces(rgb: np.ndarray, fine: np.ndarray) -> list[Box]:
    """Frontal faces in ``rgb`` as boxes in 0..1: the detector's sure ones whose ``fine`` detail
    (a map of the same picture at any size) is a face's; empty when there are none (or no
    detector is installed)."""
    detector = face_detector()
    if detector is None:
        return []
    height, width = rgb.shape[:2]
    fine_h, fine_w = fine.shape
    strongest = max(_top_percentile(fine), 1e-6)
    _, boxes, _ = detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]), conf=MIN_FACE_SCORE)
    faces = []
    for x, y, w, h in (tuple(map(int, box)) for box in boxes):
        face = Box(max(x, 0) / width, max(y, 0) / height, (min(x + w, width) - max(x, 0)) / width,
                   (min(y + h, height) - max(y, 0)) / height)
        x0, y0 = round(face.x * fine_w), round(face.y * fine_h)
        x1, y1 = max(x0 + 1, round((face.x + face.w) * fine_w)), max(y0 + 1, round((face.y + face.h) * fine_h))
        if face.w > 0 and face.h > 0 and float(fine[y0:y1, x0:x1].mean()) >= MIN_FACE_FINE * strongest:
            faces.append(face)
    return faces


def find_salient(small: np.ndarray, detail: np.ndarray, fine: np.ndarray) -> Focus | None:
    """The region of strong detail with the most fine detail as the subject, the attention peak inside it as the
    focal point; ``None`` if the picture is flat. ``detail`` and ``fine`` are maps of one picture,
    ``small`` the same picture at any size (the attention map is made from it)."""
    if float(detail.mean()) < FLAT_DETAIL:
        return None
    region = _strongest_region(detail, fine)
    subject = _sharpest_box(region, fine)
    peak = _attention_peak(small, region)
    focal = Point(min(max(peak.x, subject.x), subject.x + subject.w), min(max(peak.y, subject.y), subject.y + subject.h))
    return Focus(focal_point=focal, subject=subject, source="saliency")


def _sharpest_box(region: np.ndarray, fine: np.ndarray) -> Box:
    """The box of the region's sharpest pixels (fine detail at least ``SHARP_SHARE`` of the
    picture's strongest), ``SHARP_TAIL`` percent trimmed at each side; the region's box when too
    few are that sharp to say, or when they cover most of it anyway."""
    sharp = (fine >= SHARP_SHARE * _top_percentile(fine)) & (region > 0)
    ys, xs = np.nonzero(sharp)
    if xs.size < 20:
        return _region_box(region)
    height, width = region.shape
    x0, x1 = np.percentile(xs, [SHARP_TAIL, 100 - SHARP_TAIL])
    y0, y1 = np.percentile(ys, [SHARP_TAIL, 100 - SHARP_TAIL])
    sharpest = Box(float(x0) / width, float(y0) / height, float(x1 + 1 - x0) / width, float(y1 + 1 - y0) / height)
    whole = _region_box(region)
    # Sharp pixels spread over most of the region (texture everywhere, a landscape): the region's
    # box, whose edges do not move with a JPEG's noise as a trimmed percentile's do.
    return whole if sharpest.w * sharpest.h >= SHARP_SPREAD * whole.w * whole.h else sharpest


def _attention_peak(rgb: np.ndarray, region: np.ndarray) -> Point:
    """Where the eye goes inside ``region`` (a 0/1 mask of any size): the peak of detail, skin and
    saturation averaged over an area, the cues libvips' ``smartcrop`` attention weighs, at a
    fraction of its cost (it is made at ``rgb``'s small size)."""
    height, width = rgb.shape[:2]
    detail = _detail(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    # The classic skin range in Cr/Cb, away from the darkest and brightest pixels.
    skin = cv2.inRange(ycrcb, (40, 135, 85), (240, 175, 130)).astype(np.float32) / 255
    saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, 1].astype(np.float32) / 255
    attention = detail / max(_top_percentile(detail), 1e-6) + 0.6 * skin + 0.4 * saturation
    side = max(3, round(ATTENTION_AREA * max(height, width))) | 1
    attention = cv2.blur(attention, (side, side))
    attention *= cv2.resize(region, (width, height), interpolation=cv2.INTER_NEAREST)
    y, x = np.unravel_index(int(attention.argmax()), attention.shape)
    return Point((x + 0.5) / width, (y + 0.5) / height)


def _strongest_region(detail: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """A 0/1 mask of the connected regions of strong detail that hold the most fine detail: a
    subject stands out from a softer background by its edges, and from a background out of focus
    by what a slight blur takes away (whose soft shapes still have edges); texture scattered over
    a whole picture makes one large region, and then the subject box is most of the picture."""
    strong = (detail > STRONG_SHARE * _top_percentile(detail)).astype(np.uint8)
    # Close the gaps between a subject's edges so it is one region, not a scatter of outlines.
    size = max(3, round(max(detail.shape) * CLOSE_SHARE)) | 1
    closed = cv2.morphologyEx(strong, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    count, labels = cv2.connectedComponents(closed)
    if count <= 1:
        return np.ones_like(detail)
    mass = np.bincount(labels.ravel(), weights=fine.ravel(), minlength=count)
    mass[0] = 0  # the background label
    # A subject whose inner edges are weaker than its parts' is several regions: keep each that
    # holds a good share of the strongest one's fine detail.
    kept = np.flatnonzero(mass >= PART_SHARE * mass.max())
    return np.isin(labels, kept).astype(detail.dtype)


# --------------------------------------------------------------------------- helpers
def _shrunk(rgb: np.ndarray, long_side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    if max(height, width) <= long_side:
        return np.ascontiguousarray(rgb[:, :, :3])
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(np.ascontiguousarray(rgb[:, :, :3]), size, interpolation=cv2.INTER_AREA)


def _detail(grey: np.ndarray) -> np.ndarray:
    """Gradient magnitude, smoothed: large where there are edges and texture, not on soft gradients."""
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0).astype(np.float32)
    magnitude = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    return cv2.GaussianBlur(magnitude, (0, 0), 2.0)


def _top_percentile(values: np.ndarray) -> float:
    """The 99th percentile, by partition rather than a sort."""
    flat = values.ravel()
    return float(np.partition(flat, int(0.99 * (flat.size - 1)))[int(0.99 * (flat.size - 1))])


def _fine_detail(grey: np.ndarray) -> np.ndarray:
    """What a slight blur takes away: large on in-focus edges and texture, near zero where the
    picture is out of focus (the smooth gradients ``_detail`` still sees)."""
    smooth = grey.astype(np.float32)
    return np.abs(smooth - cv2.GaussianBlur(smooth, (0, 0), 1.0))


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
