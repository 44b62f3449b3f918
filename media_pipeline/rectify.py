"""A photo of a screen or of a print: the picture shown on it, seen head-on again.

Someone reposting from another phone or a monitor photographs it: the picture sits in a bezel or
a white border, off-axis (a trapezoid, not a rectangle), on a desk. No view of the whole frame
hashes near the original, and moire, glare and noise cost the keypoints many of their votes. But
the screen's outline is usually the strongest quadrilateral in the picture: its edges are found,
the convex hull of each connected edge is simplified to a polygon, and each four-cornered one
covering 15-98% of the picture is warped back to a rectangle. A bezel or border left around the
picture is a frame of one colour, which ``dedupe.content_box`` then cuts off.

Pure: a luma array in, rectified luma arrays out.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_QUADS = 3  # the largest few: a screen's outer and inner edge, and one more (a window, a painting)
_MIN_AREA, _MAX_AREA = 0.15, 0.98  # of the picture
_POLYGON_TOLERANCE = 0.02  # of the hull's perimeter, when simplifying it to corners
_MIN_SIDE = 16  # pixels: smaller rectified pictures hash nothing useful


def quadrilaterals(grey: np.ndarray) -> list[np.ndarray]:
    """Up to MAX_QUADS four-cornered outlines in ``grey`` (HxW uint8), largest first, each 4x2
    float32 corners in order: top-left, top-right, bottom-right, bottom-left."""
    height, width = grey.shape
    if min(height, width) < 2 * _MIN_SIDE:
        return []
    edges = cv2.dilate(cv2.Canny(cv2.GaussianBlur(grey, (5, 5), 0), 30, 90), np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found: list[tuple[float, np.ndarray]] = []
    for contour in contours:
        _, _, box_width, box_height = cv2.boundingRect(contour)
        if box_width * box_height < _MIN_AREA * height * width:
            continue  # its hull is smaller still: most of a textured picture's edges end here, cheaply
        hull = cv2.convexHull(contour)
        area = cv2.contourArea(hull)
        if not _MIN_AREA * height * width <= area <= _MAX_AREA * height * width:
            continue
        corners = cv2.approxPolyDP(hull, _POLYGON_TOLERANCE * cv2.arcLength(hull, True), True)
        if len(corners) == 4:
            ordered = _clockwise(corners.reshape(4, 2).astype(np.float32))
            if len(np.unique(ordered, axis=0)) == 4:  # a diamond can give one corner two roles
                found.append((area, ordered))
    found.sort(key=lambda item: -item[0])
    return [corners for _, corners in found[:MAX_QUADS]]


def rectified(grey: np.ndarray, corners: np.ndarray) -> np.ndarray | None:
    """The inside of ``corners`` (as ``quadrilaterals`` gives them) warped to a rectangle as wide
    and high as its longer opposite sides; None when that is too small to hash."""
    top = float(np.linalg.norm(corners[1] - corners[0]))
    bottom = float(np.linalg.norm(corners[2] - corners[3]))
    left = float(np.linalg.norm(corners[3] - corners[0]))
    right = float(np.linalg.norm(corners[2] - corners[1]))
    width, height = int(round(max(top, bottom))), int(round(max(left, right)))
    if min(width, height) < _MIN_SIDE:
        return None
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    return cv2.warpPerspective(grey, cv2.getPerspectiveTransform(corners, target), (width, height), flags=cv2.INTER_LINEAR)


def _clockwise(corners: np.ndarray) -> np.ndarray:
    """Top-left (smallest x + y), top-right (smallest y - x), bottom-right, bottom-left."""
    total, difference = corners.sum(axis=1), corners[:, 1] - corners[:, 0]
    return np.float32([corners[np.argmin(total)], corners[np.argmin(difference)],
                       corners[np.argmax(total)], corners[np.argmax(difference)]])
