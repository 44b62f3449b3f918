"""The cells of a collage: a grid of pictures separated by plain gutters.

A photo reposted as one cell of a grid is a fraction of the query's area and shares the
keypoint budget with its neighbours, so neither its hash nor its keypoints stand out. Cut into
its cells, the query becomes several ordinary ones. Collage apps lay cells out as a guillotine
grid: full-width gutters split the canvas into rows, and full-height gutters split each row into
cells (of any widths). A gutter is a short run of lines of one flat colour across the whole
segment, with picture on both sides; a flat band of sky is too long, and a line of a photo is
never flat end to end.

Pure: arrays in, values out.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]  # top, left, height, width

_FLAT = 3.0  # standard deviation (0..255) of a gutter line along its length
_SAME = 6.0  # gutter lines of one run differ in mean by less than this
_MIN_GUTTER = 2  # lines: a single flat line inside a photo is an artefact, not a gutter
_MAX_GUTTER = 0.06  # a run of flat lines longer than this share of the segment is not a gutter
_MIN_CELL = 0.12  # a cell is at least this share of the segment's side (else it is a stripe or a margin)
_MIN_AREA = 0.04  # and at least this share of the whole picture
MAX_CELLS = 9


def cells(grey: np.ndarray) -> list[Box]:
    """The cells of ``grey`` (uint8 or float luma) when it is a collage of two or more, else []."""
    image = grey.astype(np.float32)
    height, width = image.shape
    if min(height, width) < 64:
        return []
    found: list[Box] = []
    for top, bottom in _pieces(image, axis=0):
        for left, right in _pieces(image[top:bottom], axis=1):
            found.append((top, left, bottom - top, right - left))
    found = [box for box in found if box[2] * box[3] >= _MIN_AREA * height * width]
    if not 2 <= len(found) <= MAX_CELLS:
        return []
    return found


def _pieces(segment: np.ndarray, axis: int) -> list[tuple[int, int]]:
    """The spans between gutters along ``axis`` (0: rows of the segment, 1: columns), margins cut."""
    lines = segment if axis == 0 else segment.T
    size = lines.shape[0]
    flat = lines.std(axis=1) < _FLAT
    means = lines.mean(axis=1)
    spans, start = [], 0
    index = 0
    while index < size:
        if not flat[index]:
            index += 1
            continue
        end = index
        while end + 1 < size and flat[end + 1] and abs(means[end + 1] - means[index]) < _SAME:
            end += 1
        run = end - index + 1
        at_edge = index == 0 or end == size - 1
        if at_edge or _MIN_GUTTER <= run <= _MAX_GUTTER * size:
            if index > start:
                spans.append((start, index))
            start = end + 1
        index = end + 1
    if start < size:
        spans.append((start, size))
    return [(a, b) for a, b in spans if b - a >= _MIN_CELL * size]
