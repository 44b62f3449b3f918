"""media_pipeline/ssimulacra2.py against the reference implementation.

The reference scores below are what cloudinary/ssimulacra2's own binary (SSIMULACRA 2.1, commit
81feacf, built with its ``build_ssimulacra`` script on Debian 12: libhwy 1.0.3, lcms2 2.14) printed
for the pairs of ``tests/ssimulacra2_pairs.py``, written as PNG; that module's ``__main__`` makes
them again from a binary (``python -m tests.ssimulacra2_pairs PATH/TO/ssimulacra2``). The pairs
are made by the test itself: two made pictures of odd sizes, each blurred, JPEG-compressed at
q20/q50/q90 (Pillow's libjpeg, pinned by the lock) and noised, plus a pair of unrelated pictures.
"""

from __future__ import annotations

import numpy as np
import pytest

from media_pipeline import ssimulacra2
from tests import images
from tests.ssimulacra2_pairs import pairs

REFERENCE = {
    "natural/blur": 72.8752,
    "natural/jpeg20": 19.5337,
    "natural/jpeg50": 57.3628,
    "natural/jpeg90": 78.7261,
    "natural/noise": 49.6993,
    "scene/blur": 59.8251,
    "scene/jpeg20": 28.5084,
    "scene/jpeg50": 57.4535,
    "scene/jpeg90": 71.7592,
    "scene/noise": 50.113,
    "natural/other-photo": -396.3451,
}
TOLERANCE = 0.5


@pytest.fixture(scope="module")
def scored() -> dict[str, float]:
    return {name: ssimulacra2.score(original, distorted) for name, (original, distorted) in pairs().items()}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_matches_the_reference(scored: dict[str, float], name: str) -> None:
    assert scored[name] == pytest.approx(REFERENCE[name], abs=TOLERANCE)


def test_identical_pictures_score_100() -> None:
    picture = images.natural(200, 150, seed=4)
    assert ssimulacra2.score(picture, picture.copy()) == 100.0


def test_a_different_photo_scores_far_below_any_compression(scored: dict[str, float]) -> None:
    assert scored["natural/other-photo"] < 0 < scored["natural/jpeg20"]


def test_more_compression_scores_lower(scored: dict[str, float]) -> None:
    for picture in ("natural", "scene"):
        assert scored[f"{picture}/jpeg20"] < scored[f"{picture}/jpeg50"] < scored[f"{picture}/jpeg90"] < 100


def test_opaque_alpha_scores_as_rgb() -> None:
    original, distorted = pairs()["scene/jpeg50"]
    opaque = np.full(original.shape[:2] + (1,), 255, dtype=np.uint8)
    with_alpha = ssimulacra2.score(np.dstack([original, opaque]), np.dstack([distorted, opaque]))
    assert with_alpha == pytest.approx(ssimulacra2.score(original, distorted), abs=0.05)


def test_refuses_pairs_it_cannot_score() -> None:
    picture = images.natural(64, 48)
    with pytest.raises(ValueError):
        ssimulacra2.score(picture, picture[:40])
    with pytest.raises(ValueError):
        ssimulacra2.score(picture[:6], picture[:6])


def test_a_prepared_original_scores_as_the_pair_does() -> None:
    original, distorted = pairs()["natural/jpeg50"]
    prepared = ssimulacra2.reference(original)
    assert ssimulacra2.compare(prepared, distorted) == pytest.approx(ssimulacra2.score(original, distorted), abs=1e-9)
    tiny = images.natural(12, 9, seed=1)  # the last scale is below 8 px, as in the reference
    assert ssimulacra2.compare(ssimulacra2.reference(tiny), tiny[::-1].copy()) == pytest.approx(
        ssimulacra2.score(tiny, tiny[::-1].copy()), abs=1e-9)
