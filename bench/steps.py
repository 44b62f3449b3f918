"""Where a photo's time goes, step by step: the pipeline's own steps, then every preset format.

    .venv/bin/python bench/steps.py [PHOTO ...] [--repeat 4]

One process pinned to CPU 0, libvips on one thread. Each step of ``pipeline.STEPS`` is timed
as it runs, so a lazy step (``to_srgb``) costs little and the step that first materialises its
pixels (``cascade``) pays for it. ``fixed`` is every step but the encoders: what the
``ours-all / floor`` ratio of bench/renditions.py adds to the encoders. Prints the best run
(lowest total) of ``--repeat`` after one warm-up. Default photos: the 12 MP camera JPEG and the
12 MP HEIC of ../shared/testdata, or a 12 MP JPEG made here when that folder is absent.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.renditions import CAMERA_JPEG, HEIC, MAX_PIXELS, photo_jpeg  # noqa: E402
from config.settings import Settings  # noqa: E402
from media_pipeline import pipeline, vips  # noqa: E402
from media_pipeline.models import Preset  # noqa: E402
from media_pipeline.probe import probe  # noqa: E402


def time_steps(data: bytes, preset: Preset) -> dict[str, float]:
    """Seconds per step for one photo, encoders last (every format the preset defines)."""
    spent: dict[str, float] = {}
    started = time.perf_counter()
    info = probe(data, MAX_PIXELS)
    spent["probe"] = time.perf_counter() - started
    job = pipeline.Job(data=data, info=info, widths=pipeline.rendition_widths(preset.widths, info.upright_size[0]))
    for step in pipeline.STEPS:
        started = time.perf_counter()
        step(job)
        spent[step.__name__] = time.perf_counter() - started
    started = time.perf_counter()
    pipeline.describe(job, preset)
    spent["describe"] = time.perf_counter() - started
    started = time.perf_counter()
    for width in job.widths:
        for enc in preset.formats:
            pipeline.encode(job.levels[width], enc)
    spent["encoders"] = time.perf_counter() - started
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    vips.configure(1)
    preset = Settings.from_env({}).preset()
    with tempfile.TemporaryDirectory() as scratch:
        photos = args.photos or [p for p in (CAMERA_JPEG, HEIC) if p.exists()]
        if not photos:
            photos = [photo_jpeg(Path(scratch) / "made-12mp.jpg", 4032, 3024)]
        names = ["probe", *(step.__name__ for step in pipeline.STEPS), "describe", "encoders"]
        print("| photo | " + " | ".join(f"{n} ms" for n in names) + " | fixed ms | (fixed + encoders) / encoders |")
        print("|---" * (len(names) + 3) + "|")
        for photo in photos:
            data = photo.read_bytes()
            runs = [time_steps(data, preset) for _ in range(args.repeat + 1)][1:]
            best = min(runs, key=lambda run: sum(run.values()))
            fixed = sum(best.values()) - best["encoders"]
            cells = " | ".join(f"{best[n] * 1000:.0f}" for n in names)
            print(f"| {photo.name} | {cells} | {fixed * 1000:.0f} | {(fixed + best['encoders']) / best['encoders']:.2f}x |")


if __name__ == "__main__":
    main()
