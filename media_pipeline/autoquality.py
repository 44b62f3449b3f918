"""Quality per photo and format: the lowest encoder quality whose SSIMULACRA2 reaches a target.

Pure: ``search`` takes a function from quality to score (the caller encodes, decodes and scores)
and returns the choice; ``probe_picture`` takes a level's pixels and returns what the search
encodes. No I/O, settings or clock.

Why a probe instead of the renditions themselves: the metric costs about as much per megapixel
as an AVIF encode (docs/performance.md "Auto quality"), so scoring a 2160 x 2880 level would
double a photo's time. The probe is a mosaic of tiles cut at full resolution from one level (the
pipeline passes the one nearest 1080 px wide), on the encoders' block grid, spread over the
picture: 12 tiles of 128 px are 0.2 MP whatever the photo's size. At a given quality the
renditions' own scores rise slightly with width; tests/test_quality.py holds every rendition of
made pictures and real photos to the target minus 3 points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from media_pipeline.models import AutoQuality

TILE = 128  # a multiple of AVIF's 64 px superblock and JPEG's 16 px MCU
GRID = (4, 3)  # tiles across, down


@dataclass(frozen=True)
class Choice:
    quality: int
    score: float | None  # the probe's score at ``quality``; None if that was not tried (nothing tried passed)
    tried: tuple[tuple[int, float], ...]  # (quality, score) in the order tried
    # Where the probe's score crosses the target, read from the tries (a fraction of a quality):
    # what a format that ``follow``s this one predicts its first try from.
    needed: float


def search(score_at: Callable[[int], float], auto: AutoQuality, start: int | None = None) -> Choice:
    """The lowest quality in ``auto.min..auto.max`` whose score reaches ``auto.target``, with at
    most ``auto.budget`` calls of ``score_at`` (scores rise with quality, nearly linearly over a
    few steps, with plateaus where an encoder's quantiser does not change).

    The first try is ``start`` (``auto.start`` unless given); from one score the next try steps by
    the expected slope; from two, it interpolates between the highest failing and the lowest
    passing quality, or extrapolates along the slope they show. A passing quality less than
    ``auto.accept`` slope steps above the target ends the search (at 1: one lower would most
    likely fail; more trades a step of bytes for fewer encodes). If nothing tried passes, the
    choice is ``auto.max`` unmeasured (quality first), and the last try aims past the target to
    avoid that."""
    tried: dict[int, float] = {}
    quality: int | None = _clamp(auto.start if start is None else start, auto)
    while quality is not None and quality not in tried:
        tried[quality] = score_at(quality)
        quality = _next_try(tried, auto, calls_left=auto.budget - len(tried))
    passing = [q for q, score in tried.items() if score >= auto.target]
    needed = _crossing(tried, auto)
    if not passing:
        return Choice(quality=auto.max, score=tried.get(auto.max), tried=tuple(tried.items()), needed=needed)
    best = min(passing)
    return Choice(quality=best, score=tried[best], tried=tuple(tried.items()), needed=needed)


def follow_start(auto: AutoQuality, leader: Choice) -> int:
    """The first try of a format that follows another: predicted from the quality the other
    needed on the same probe (``auto.follow_fit``), within ``min``..``max``."""
    intercept, scale = auto.follow_fit
    return _clamp(round(intercept + scale * leader.needed), auto)


def _crossing(tried: dict[int, float], auto: AutoQuality) -> float:
    """The quality at which the score reaches the target: interpolated between the highest
    failing and the lowest passing try when they bracket it, else along ``auto.slope`` from the
    try nearest to it."""
    goal = auto.target
    passing = [q for q, score in tried.items() if score >= goal]
    failing = [q for q, score in tried.items() if score < goal and (not passing or q < min(passing))]
    if passing and failing:
        low_pass, high_fail = min(passing), max(failing)
        s_fail, s_pass = tried[high_fail], tried[low_pass]
        return high_fail + (goal - s_fail) * (low_pass - high_fail) / max(s_pass - s_fail, 1e-6)
    nearest = min(passing) if passing else max(tried)
    return nearest + (goal - tried[nearest]) / auto.slope


def _next_try(tried: dict[int, float], auto: AutoQuality, calls_left: int) -> int | None:
    if calls_left <= 0:
        return None
    goal = auto.target
    passing = [q for q, score in tried.items() if score >= goal]
    low_pass = min(passing) if passing else None
    failing = [q for q, score in tried.items() if score < goal and (low_pass is None or q < low_pass)]
    high_fail = max(failing) if failing else None
    if low_pass is not None and tried[low_pass] - goal < auto.accept * auto.slope:
        return None  # one lower would most likely fail (or, with accept > 1, is not worth an encode)
    if low_pass is not None and high_fail is not None:
        if low_pass - high_fail <= 1:
            return None
        # Secant between the two qualities that bracket the target, rounded up so it passes.
        s_fail, s_pass = tried[high_fail], tried[low_pass]
        guess = high_fail + (goal - s_fail) * (low_pass - high_fail) / max(s_pass - s_fail, 1e-6)
        return min(max(math.ceil(guess), high_fail + 1), low_pass - 1)
    if low_pass is not None:
        steps = math.floor((tried[low_pass] - goal) / auto.slope)
        return None if low_pass == auto.min else _clamp(low_pass - steps, auto)
    assert high_fail is not None
    if high_fail == auto.max:
        return None  # out of reach
    slope = auto.slope
    if len(failing) >= 2:  # the slope the two best failures show, if it is a usable one
        second = sorted(failing)[-2]
        measured = (tried[high_fail] - tried[second]) / (high_fail - second)
        slope = measured if measured > auto.slope / 4 else auto.slope
    steps = (goal - tried[high_fail]) / slope
    if calls_left == 1:
        steps = steps * 1.5 + 2  # the last try should pass: aim past the target (and a quantiser plateau)
    return _clamp(high_fail + max(1, math.ceil(steps)), auto)


def _clamp(quality: int, auto: AutoQuality) -> int:
    return min(max(quality, auto.min), auto.max)


def probe_picture(level: np.ndarray) -> np.ndarray:
    """What the search encodes: 12 full-resolution tiles of ``level`` (HxWxC) joined 4 x 3, each
    centred in its cell of a 4 x 3 grid and snapped to the 64 px block grid; the level itself when
    it is not much larger than that mosaic."""
    height, width = level.shape[:2]
    across, down = GRID
    if width < across * TILE * 1.5 or height < down * TILE * 1.5:
        return level
    rows = []
    for j in range(down):
        y = _snap((j + 0.5) * height / down - TILE / 2, height)
        rows.append(np.hstack([level[y:y + TILE, x:x + TILE]
                               for x in (_snap((i + 0.5) * width / across - TILE / 2, width) for i in range(across))]))
    return np.ascontiguousarray(np.vstack(rows))


def _snap(offset: float, size: int) -> int:
    return min(max(0, int(offset) // 64 * 64), size - TILE)
