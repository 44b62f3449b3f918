"""PDQ bit for bit as Meta's reference computes it.

The pinned hashes were computed by the reference C++ (ThreatExchange `pdq/cpp`, through the
`pdqhash` 0.2.8 package built from its source distribution in a scratch virtualenv:
``pdqhash.compute(rgb)``, bits read most significant first) on the pictures ``pattern`` makes,
which need NumPy alone, so they are the same pixels wherever this runs. Sizes cover the reference's
paths: 64 x 64 (no downsampling), odd and extreme aspect ratios, a 5-pixel side (its minimum), a
large picture (window 16), and a grey one. Also checked against the package live on 66 pictures
(synthetic and the dev corpus): identical bits and quality on all.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from bench import edits
from media_pipeline.pdq import hamming, pdq
from tests import images
from tests.test_duplicates import ready


def pattern(width: int, height: int, seed: int) -> np.ndarray:
    """Waves of random direction and length per channel, and noise: NumPy alone."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.full((height, width, 3), 128.0)
    for _ in range(6):
        fx, fy = rng.uniform(-0.08, 0.08, 2)
        phase = rng.uniform(0, 2 * np.pi)
        amplitude = rng.uniform(10, 40, 3)
        img += amplitude * np.sin(fx * x + fy * y + phase)[..., None]
    img += rng.normal(0, 5, img.shape)
    return img.clip(0, 255).astype(np.uint8)


REFERENCE = [
    ((640, 480, 1), "d4e27a00d4a27e00d4a27e00d4e27e0fd4e17e35d49b81ff2bdf89553c1197ab", 100),
    ((480, 640, 2), "006b007baacf15237fa0af835596ff8cffa3ffce009b0ab11594aa951594aa95", 100),
    ((64, 64, 3), "4e3a2d2033f261a9e40b688147a77f13677f02f1950f9b47c62bd557cbbf6010", 98),
    ((1001, 257, 4), "c0107852d0107d52d1507f52d5587f52d5587fd2d5587fd22bf882acffc4154d", 100),
    ((37, 5, 5), "0a703aecf5afd592c8c20742cac2f8ff373d2aed0a703aecf58fd592c8c20742", 34),
    ((300, 300, 6), "4522005b112a007b552a207f152a007f552aff82aad4ff8beac2bfabffcdafa4", 100),
    ((2000, 1500, 7), "e0025aafe0125aaf60025aaf60425aab60005aab4550fabfebfa5841f5d6ffff", 100),
]


@pytest.mark.parametrize(("size", "expected", "quality"), REFERENCE)
def test_pdq_is_the_reference(size: tuple[int, int, int], expected: str, quality: int) -> None:
    found = pdq(pattern(*size))
    assert (found.hex, found.quality) == (expected, quality)


def test_grey_and_degenerate_pictures() -> None:
    grey = pattern(200, 150, 8)[..., 0]
    assert pdq(grey).hex == "3143094ee3c62b0e5bcfbbcef0a6e94e12af455e8aafdd5eaaab0009555182b5"
    assert pdq(np.dstack([grey] * 3)).hex == pdq(grey).hex
    assert pdq(np.zeros((4, 400, 3), np.uint8)).value == 0  # under the reference's 5-pixel minimum
    flat = pdq(np.full((300, 300, 3), 77, np.uint8))
    assert flat.quality == 0


def test_pdq_matches_edits_and_tells_photos_apart() -> None:
    photo = images.natural(800, 600, seed=3)
    recompressed = edits.decode_rgb(edits.jpeg_bytes(edits.resize(photo, random.Random(0)), 40))
    assert hamming(pdq(photo).value, pdq(recompressed).value) <= 31
    assert hamming(pdq(photo).value, pdq(images.natural(800, 600, seed=4)).value) > 70


def test_the_api_shows_the_pdq_hash(client: Any, services: Any) -> None:
    photo_id = ready(services, edits.jpeg_bytes(images.natural(900, 600, seed=5)))
    hashes = client.get(f"/v1/photos/{photo_id}").get_json()["hashes"]
    assert len(hashes["pdq"]) == 64 and int(hashes["pdq"], 16) > 0
    assert 50 <= hashes["pdq_quality"] <= 100
