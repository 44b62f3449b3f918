"""How good the crops are: a labelled set built from a folder of photos, and three croppers.

Each case pastes one photo (the subject, scaled so it could fit every aspect's window) at a random
place on a low-detail background made from another photo (heavily blurred, desaturated, enlarged),
on a canvas from 2:1 to 1:2, so the subject box is known exactly. For each aspect the table gives
the share of cases whose crop keeps at least 90% of the subject box, for:

    ours        focus.find_focus + crops.crop_window (what the pipeline does)
    centre      the same window size, centred
    attention   libvips smartcrop(interesting="attention") alone, at the same window size

It also checks that a user's focal point is honoured (the window holds it and is as centred on it
as the edges allow), times the focus (CPU time of this process, from the 512 px level the
pipeline hands it, so a busy machine inflates it less than wall time), and reports what the focus finds on every photo as itself.
With ``--cost PHOTO...`` it times (CPU time), on one pinned core, what ingest does per photo with the default
preset (decode, cascade, placeholder, hashes, every eager rendition) without and with the focus and
the preset's crops, and the worker's whole task for the photo (``service.process_photo`` on
embedded defaults: the pipeline, identify and the duplicate search, storage writes and catalog
rows) with the default preset and with the same preset without crops: the four taken in turn,
best of ``--repeat`` rounds after a warm-up round. Then where the crops' time goes: the focus,
each cut and each crop's encode per format, timed apart.

    .venv/bin/python bench/crops.py ../shared/testdata/corpus-dev --cases 200
    .venv/bin/python bench/crops.py ../shared/testdata/corpus-dev --cases 0 --cost ../shared/testdata/camera-exif/IMG_9424.JPG
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, TypeVar

import cv2
import numpy as np
import pyvips

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import Settings  # noqa: E402
from media_pipeline import crop_renditions, crops, encode, focus, pipeline, service, vips  # noqa: E402
from media_pipeline.queue import RecordingQueue  # noqa: E402
from media_pipeline.framing import Box, Focus, Point, parse_aspect  # noqa: E402

T = TypeVar("T")
ASPECTS = ("1:1", "4:5", "9:16", "16:9")
LONG_SIDE = 1024
KEEP = 0.9
FOCUS_INPUT = 512  # pipeline.focus_image's level


def load(path: Path, long_side: int = LONG_SIDE) -> np.ndarray:
    image = pyvips.Image.thumbnail(str(path), long_side, height=long_side)
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    if image.bands < 3:
        image = image.colourspace("srgb")
    return np.ascontiguousarray(image.numpy()[:, :, :3])


def make_case(subject: np.ndarray, backdrop: np.ndarray, rng: random.Random) -> tuple[np.ndarray, Box]:
    """A canvas of a random aspect from 2:1 to 1:2, the subject pasted at a random place."""
    ratio = 2 ** rng.uniform(-1, 1)  # width / height
    width, height = (LONG_SIDE, round(LONG_SIDE / ratio)) if ratio >= 1 else (round(LONG_SIDE * ratio), LONG_SIDE)
    scale = max(width / backdrop.shape[1], height / backdrop.shape[0]) * 1.3
    big = cv2.resize(backdrop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)[:height, :width]
    blurred = cv2.GaussianBlur(big, (0, 0), 14).astype(np.float32)
    grey = blurred.mean(axis=2, keepdims=True)
    canvas = (0.3 * blurred + 0.7 * grey).clip(0, 255).astype(np.uint8)
    # The subject fits every aspect's window: no cropper could keep it otherwise.
    max_w = 0.9 * min(width, height * 9 / 16)
    max_h = 0.9 * min(height, width * 9 / 16)
    fit = min(max_w / subject.shape[1], max_h / subject.shape[0]) * rng.uniform(0.5, 1.0)
    pasted = cv2.resize(subject, None, fx=fit, fy=fit, interpolation=cv2.INTER_AREA)
    ph, pw = pasted.shape[:2]
    left, top = rng.randint(0, width - pw), rng.randint(0, height - ph)
    canvas[top : top + ph, left : left + pw] = pasted
    return canvas, Box(left / width, top / height, pw / width, ph / height)


def kept(window: crops.Window, box: Box, size: tuple[int, int]) -> float:
    width, height = size
    x0, y0, x1, y1 = box.x * width, box.y * height, (box.x + box.w) * width, (box.y + box.h) * height
    ix = max(0.0, min(x1, window.left + window.width) - max(x0, window.left))
    iy = max(0.0, min(y1, window.top + window.height) - max(y0, window.top))
    return ix * iy / max((x1 - x0) * (y1 - y0), 1e-9)


def attention_window(image: pyvips.Image, size: tuple[int, int], ratio: tuple[int, int]) -> crops.Window:
    shape = crops.crop_window(size, ratio, focus.CENTRE)
    out = image.smartcrop(shape.width, shape.height, interesting="attention")
    return crops.Window(out.xoffset, out.yoffset, shape.width, shape.height)


def centred_within_edges(window: crops.Window, point: Point, size: tuple[int, int]) -> bool:
    width, height = size
    left = min(max(round(point.x * width - window.width / 2), 0), width - window.width)
    top = min(max(round(point.y * height - window.height / 2), 0), height - window.height)
    inside = window.left <= point.x * width <= window.left + window.width and window.top <= point.y * height <= window.top + window.height
    return inside and abs(window.left - left) <= 1 and abs(window.top - top) <= 1


def ingest_seconds(data: bytes, with_crops: bool) -> tuple[float, float]:
    """CPU seconds (this process, every thread) of what ingest does with the default preset, and
    of the focus alone, in one run: on a shared machine, wall time measures the neighbours too."""
    preset = Settings.from_env({}).preset()
    started = time.process_time()
    job = pipeline.prepare(data, preset, 50_000_000)
    pipeline.describe(job, preset)
    focus_seconds = 0.0
    if with_crops:
        focus_started = time.process_time()
        found = pipeline.find_focus(job)
        focus_seconds = time.process_time() - focus_started
        wanted = crop_renditions.wanted_crops(preset, (job.info.upright_size[0], job.info.upright_size[1]), found)
        variants = tuple(dict.fromkeys(w.variant for w in wanted))
        list(crops.iter_crops(list(job.levels.values()), variants, preset.eager, found))
    list(pipeline.iter_renditions(job, preset.eager, release=True))
    return time.process_time() - started, focus_seconds


def crop_steps(data: bytes, repeat: int) -> dict[str, float]:
    """Best CPU seconds of each step of the crops (what ``crops.iter_crops`` does, one step at a
    time): the focus, each cut (window, resize, into memory) and each crop's encode per format."""
    preset = Settings.from_env({}).preset()
    job = pipeline.prepare(data, preset, 50_000_000)
    pipeline.describe(job, preset)
    steps: dict[str, float] = {}

    def timed(name: str, run: Callable[..., T], *args: object) -> T:
        started = time.process_time()
        result = run(*args)
        steps[name] = min(steps.get(name, float("inf")), time.process_time() - started)
        return result

    for _ in range(repeat + 1):
        found = timed("focus", pipeline.find_focus, job)  # from the 512 px array describe made
        wanted = crop_renditions.wanted_crops(preset, (job.info.upright_size[0], job.info.upright_size[1]), found)
        for variant in dict.fromkeys(w.variant for w in wanted):
            size = f"{variant.width}x{variant.height}"
            pixels = timed(f"cut {size}", cut_into_memory, list(job.levels.values()), variant, found)
            for enc in preset.eager:
                timed(f"{enc.format} {size}", encode.encode, pixels, enc)
    return steps


def cut_into_memory(levels: list[pyvips.Image], variant: crops.CropVariant, found: Focus) -> pyvips.Image:
    return crops.cut(levels, variant, found).copy_memory()


def task_seconds(data: bytes, with_crops: bool, workdir: Path) -> float:
    """CPU seconds (this process, every thread) of the worker's task for one uploaded photo, on a
    fresh data folder so no earlier copy is its duplicate."""
    settings = Settings.from_env({})
    workdir.mkdir(parents=True, exist_ok=True)
    if not with_crops:
        uncropped = workdir / "presets-without-crops.toml"
        uncropped.write_text(re.sub(r"(?m)^aspects = .*$", "aspects = []", settings.presets_file.read_text()))
        settings = settings.replace(presets_file=uncropped)
    services = service.build_services(settings.replace(data_dir=workdir / f"data-{with_crops}"), queue=RecordingQueue())
    upload = service.SpooledUpload.receive(io.BytesIO(data), services.settings.tmp_dir, services.settings.max_upload_bytes)
    try:
        photo_id = service.ingest(services, upload, None).id
    finally:
        upload.close()
    started = time.process_time()
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    return time.process_time() - started


def print_cost(paths: list[Path], repeat: int) -> None:
    os.sched_setaffinity(0, {0})
    print()
    print("| photo | ingest CPU s | with crops CPU s | ratio | focus CPU ms | worker task CPU s | with crops CPU s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    breakdowns = {}
    for path in paths:
        data = path.read_bytes()
        best: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as workdir:
            # Without and with crops taken in turn, so a neighbour's burst weighs on both alike.
            for run in range(repeat + 1):
                for with_crops in (False, True):
                    seconds, focus_seconds = ingest_seconds(data, with_crops)
                    task = task_seconds(data, with_crops, Path(workdir) / str(run))
                    if run:  # the first round warms up
                        for name, value in ((f"ingest {with_crops}", seconds), (f"task {with_crops}", task), ("focus", focus_seconds)):
                            if name != "focus" or with_crops:
                                best[name] = min(best.get(name, float("inf")), value)
        without, with_crops, task_without, task_with = (best[k] for k in ("ingest False", "ingest True", "task False", "task True"))
        print(f"| {path.name} | {without:.2f} | {with_crops:.2f} | {with_crops / without:.2f} | {best['focus'] * 1000:.0f} "
              f"| {task_without:.2f} | {task_with:.2f} | {task_with / task_without:.2f} |", flush=True)
        breakdowns[path.name] = crop_steps(data, repeat)
    print()
    print("Where the crops' time goes (CPU ms, best of the runs; crop sizes as the photo's windows allow):")
    print()
    for name, steps in breakdowns.items():
        by_kind: dict[str, float] = {}
        for step, seconds in steps.items():
            by_kind[step.split()[0]] = by_kind.get(step.split()[0], 0.0) + seconds
        print(f"- {name}: total {sum(steps.values()) * 1000:.0f}; " + ", ".join(f"{k} {v * 1000:.1f}" for k, v in by_kind.items())
              + "; " + ", ".join(f"{step} {seconds * 1000:.1f}" for step, seconds in steps.items() if step != "focus"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--cost", type=Path, nargs="*", default=[])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    vips.configure()
    if args.cost:
        print_cost(args.cost, args.repeat)
    if args.cases <= 0:
        return
    paths = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    photos = [load(p) for p in paths]
    rng = random.Random(args.seed)

    hits = {name: Counter() for name in ("ours", "centre", "attention")}
    sources: Counter[str] = Counter()
    focus_ms: list[float] = []
    honoured = checked = 0
    for _ in range(args.cases):
        subject, backdrop = rng.sample(photos, 2)
        canvas, box = make_case(subject, backdrop, rng)
        size = (canvas.shape[1], canvas.shape[0])
        # The pipeline hands the focus the 512 px level PDQ and the keypoints read (pipeline.focus_image).
        level = focus._shrunk(canvas, FOCUS_INPUT)
        started = time.process_time()
        found = focus.find_focus(level)
        focus_ms.append((time.process_time() - started) * 1000)
        sources[found.source] += 1
        image = pyvips.Image.new_from_array(canvas, interpretation="srgb")
        user = Focus(Point(rng.random(), rng.random()), found.subject, "user")
        for aspect in ASPECTS:
            ratio = parse_aspect(aspect)
            assert ratio is not None
            hits["ours"][aspect] += kept(crops.crop_window(size, ratio, found), box, size) >= KEEP
            hits["centre"][aspect] += kept(crops.crop_window(size, ratio, focus.CENTRE), box, size) >= KEEP
            hits["attention"][aspect] += kept(attention_window(image, size, ratio), box, size) >= KEEP
            honoured += centred_within_edges(crops.crop_window(size, ratio, user), user.focal_point, size)
            checked += 1

    print(f"{args.cases} cases from {len(photos)} photos in {args.folder} (seed {args.seed}); "
          f"share of crops keeping >= {KEEP:.0%} of the subject box")
    print()
    print("| cropper | " + " | ".join(ASPECTS) + " |")
    print("|---|" + "---:|" * len(ASPECTS))
    for name, counts in hits.items():
        print(f"| {name} | " + " | ".join(f"{counts[a] / args.cases:.1%}" for a in ASPECTS) + " |")
    print()
    print(f"user focal point honoured: {honoured}/{checked}")
    print(f"focus on the cases: {dict(sources)}; CPU {statistics.median(focus_ms):.1f} ms median, "
          f"{sorted(focus_ms)[int(0.9 * len(focus_ms))]:.1f} ms p90")

    as_is: Counter[str] = Counter()
    own_ms = []
    for rgb in photos:
        level = focus._shrunk(rgb, FOCUS_INPUT)
        started = time.process_time()
        as_is[focus.find_focus(level).source] += 1
        own_ms.append((time.process_time() - started) * 1000)
    print(f"the {len(photos)} photos as themselves (no known box): {dict(as_is)}; "
          f"{statistics.median(own_ms):.1f} ms median focus CPU from a {FOCUS_INPUT} px level")


if __name__ == "__main__":
    main()
