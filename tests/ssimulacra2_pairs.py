"""(original, distorted) picture pairs for validating media_pipeline/ssimulacra2.py against the
reference tool, and the script that scores them with it.

    .venv/bin/python -m tests.ssimulacra2_pairs PATH/TO/ssimulacra2   # needs: the reference binary

writes every pair as PNG and prints the reference's score of each, the dictionary pinned in
``tests/test_ssimulacra2.py``. The binary is built from github.com/cloudinary/ssimulacra2 (commit
81feacf, "SSIMULACRA 2.1") with its own ``build_ssimulacra`` script, after ``apt-get install
build-essential cmake ninja-build libhwy-dev liblcms2-dev libjpeg62-turbo-dev libpng-dev``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from tests import images


def _jpeg(quality: int) -> Callable[[np.ndarray], np.ndarray]:
    def distort(rgb: np.ndarray) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(images.jpeg(rgb, quality=quality))).convert("RGB"))
    return distort


def _blur(rgb: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), 1.2)


def _noise(rgb: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rgb.astype(np.float32) + rng.normal(0, 8, rgb.shape)).clip(0, 255).astype(np.uint8)


# Odd sizes on purpose: the reference's 2x2 downsampling repeats the last row and column.
ORIGINALS: dict[str, Callable[[], np.ndarray]] = {
    "natural": lambda: images.natural(641, 479, seed=3),
    "scene": lambda: images.scene(500, 375, seed=2),
}
DISTORTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "blur": _blur,
    "jpeg20": _jpeg(20),
    "jpeg50": _jpeg(50),
    "jpeg90": _jpeg(90),
    "noise": _noise,
}


def pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (original, distorted); plus one pair of two unrelated pictures of the same size."""
    out = {}
    for oname, make in ORIGINALS.items():
        original = make()
        for dname, distort in DISTORTIONS.items():
            out[f"{oname}/{dname}"] = (original, distort(original))
    out["natural/other-photo"] = (ORIGINALS["natural"](), images.natural(641, 479, seed=11))
    return out


def reference_scores(binary: Path) -> dict[str, float]:
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (original, distorted) in pairs().items():
            a, b = Path(tmp) / "a.png", Path(tmp) / "b.png"
            a.write_bytes(images.png(original))
            b.write_bytes(images.png(distorted))
            done = subprocess.run([str(binary), str(a), str(b)], capture_output=True, text=True, check=True)
            scores[name] = round(float(done.stdout.strip()), 4)
    return scores


if __name__ == "__main__":
    for key, value in reference_scores(Path(sys.argv[1])).items():
        print(f'    "{key}": {value},')
