"""Encoder settings: seconds, bytes and SSIM per format and effort, for all preset widths of one photo.

    .venv/bin/python bench/encoders.py [PHOTO]     (default ../shared/testdata/camera-exif/IMG_9424.JPG)

One process, libvips on one thread (as a worker runs it). SSIM is measured on the 1080-wide level
against the pixels that were encoded, in luma. Prints a table; asserts nothing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pyvips

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.settings import Settings  # noqa: E402
from media_pipeline import pipeline, vips  # noqa: E402
from media_pipeline.encode import encode  # noqa: E402
from media_pipeline.models import EncoderSettings  # noqa: E402

DEFAULT_PHOTO = REPO.parent / "shared" / "testdata" / "camera-exif" / "IMG_9424.JPG"


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    return float((((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean())


def luma(image: pyvips.Image) -> np.ndarray:
    return image.colourspace("b-w").numpy()[..., 0]


def main() -> None:
    photo = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PHOTO
    if not photo.exists():
        sys.exit(f"{photo} not found: pass a photo")
    vips.configure(1)
    preset = Settings.from_env({}).preset()
    job = pipeline.prepare(photo.read_bytes(), preset, 50_000_000)
    ref = luma(job.levels[1080]) if 1080 in job.levels else luma(job.levels[job.widths[-1]])
    chosen = {e.format: e for e in preset.formats}
    candidates = [
        EncoderSettings("avif", 71, effort=0, avif_trellis=False), EncoderSettings("avif", 68, effort=0),
        EncoderSettings("avif", 63, effort=1), EncoderSettings("avif", 63, effort=0),
        EncoderSettings("webp", 79, effort=2), EncoderSettings("webp", 79, effort=4), EncoderSettings("webp", 76, effort=2),
        EncoderSettings("jpeg", 80), EncoderSettings("jpeg", 80, progressive=True),
        EncoderSettings("jpeg", 80, progressive=True, trellis=True), EncoderSettings("jpeg", 83, encoder="jpegli"),
    ]
    print(f"{photo.name}: {job.info.width}x{job.info.height}, widths {job.widths}")
    print("| format | quality | effort / mode | seconds (all widths) | KiB (all widths) | SSIM @1080 | preset |")
    print("|---|---|---|---|---|---|---|")
    for enc in candidates:
        encode(job.levels[job.widths[-1]], enc)  # warm-up: the first call of an encoder initialises it
        started = time.perf_counter()
        total = 0
        for width in job.widths:
            data = encode(job.levels[width], enc)
            total += len(data)
            if width == 1080 or (1080 not in job.levels and width == job.widths[-1]):
                score = ssim(ref, luma(pyvips.Image.new_from_buffer(data, "")))
        seconds = time.perf_counter() - started
        mode = f"effort {enc.effort}{'' if enc.avif_trellis else ', no trellis'}" if enc.format != "jpeg" else "jpegli" if enc.encoder == "jpegli" else (
            "progressive + trellis" if enc.trellis else "progressive" if enc.progressive else "baseline")
        # The preset's formats also say what they keep (gamut, dynamic range): compare the encoder settings alone.
        mark = "yes" if chosen.get(enc.format) == replace(enc, gamut=preset.gamut, dynamic_range=preset.dynamic_range) else ""
        print(f"| {enc.format} | {enc.quality} | {mode} | {seconds:.2f} | {total / 1024:.0f} | {score:.4f} | {mark} |")


if __name__ == "__main__":
    main()
