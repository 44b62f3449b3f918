"""Bytes against perceived quality: auto quality, today's fixed preset and sharp, on real photos.

    .venv/bin/python bench/quality.py [--corpus 0] [--camera 0] [--heic 0] [--avif-target 75] [--jpeg-target 75]

Photos: ``../shared/testdata/corpus-dev`` (``--corpus N``: every k-th photo so N are taken, 0 = all),
the camera JPEGs of ``camera-exif`` at least 1 MP (``--camera N``) and the HEICs of
``formats/heic`` (``--heic N``). Every variant makes the default preset's widths in AVIF and JPEG:

- ``ours-auto``: ``pipeline.process`` with both formats at ``quality = "auto"`` (the preset's own
  auto settings, or ``--avif-target``/``--jpeg-target`` over its fixed ones);
- ``ours-fixed``: the default preset as it is in ``config/presets.toml`` when fixed (AVIF q68 effort 0,
  JPEG q80 progressive);
- ``sharp-imgproxy``: sharp 0.34.5 (``bench/peers``) with imgproxy's documented defaults (AVIF q63
  at speed 8, JPEG q80 baseline);
- ``sharp-matched``: the same with, per format, the quality whose mean SSIMULACRA2 over the photos
  matches ours-auto's (found from a grid of three qualities, then rendered at that quality).

Each output is decoded and scored at its own size against the upright sRGB original resized
straight to that width (lanczos3), so no variant is its own reference: SSIMULACRA2
(media_pipeline/ssimulacra2.py) and SSIM in luma (bench/encoders.py). sharp's prebuilt libvips has
no HEVC decoder, so for a HEIC it gets a PNG of the decoded pixels. Seconds are one pinned core
(CPU 0), one run per photo after a warm-up; sharp's from its own timer (render.mjs, decode to
last encode). Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pyvips

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.encoders import ssim  # noqa: E402
from config.settings import Settings  # noqa: E402
from media_pipeline import pipeline, ssimulacra2, vips  # noqa: E402
from media_pipeline.models import AutoQuality, EncoderSettings, Preset  # noqa: E402

TESTDATA = REPO.parent / "shared" / "testdata"
PEERS = REPO / "bench" / "peers"
MAX_PIXELS = 60_000_000
IMGPROXY = {"avif": EncoderSettings("avif", 63, effort=1), "jpeg": EncoderSettings("jpeg", 80)}
GRID = {"avif": (50, 63, 76), "jpeg": (65, 80, 92)}  # sharp qualities tried to match ours-auto's mean
AUTO_DEFAULTS = {"avif": (30, 90, 64, 0.9), "jpeg": (30, 95, 76, 0.55)}  # min, max, start, slope


# --------------------------------------------------------------------------- inputs and references
def photos(corpus: int, camera: int, heic: int) -> list[Path]:
    def every(files: list[Path], n: int) -> list[Path]:
        return files if n <= 0 or n >= len(files) else files[:: max(1, len(files) // n)][:n]

    corpus_files = sorted(p for p in (TESTDATA / "corpus-dev").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    camera_files = [p for p in sorted((TESTDATA / "camera-exif").iterdir()) if _megapixels(p) >= 1.0]
    heic_files = sorted((TESTDATA / "formats" / "heic").iterdir())
    return every(corpus_files, corpus) + every(camera_files, camera) + every(heic_files, heic)


def _megapixels(path: Path) -> float:
    try:
        info = pipeline.probe(path.read_bytes(), MAX_PIXELS)
    except Exception:  # noqa: BLE001 - a file the pipeline refuses is simply not measured
        return 0.0
    return info.width * info.height / 1e6


def upright_srgb(path: Path) -> pyvips.Image:
    if path.suffix.lower() in (".heic", ".heif"):
        image = pipeline._decode_heic(path.read_bytes())
    else:
        image = pyvips.Image.new_from_file(str(path)).autorot()
    if image.get_typeof("icc-profile-data"):
        image = image.icc_transform("srgb", embedded=True, intent="relative")
    image = image.colourspace("srgb")
    return image.flatten(background=[255, 255, 255]) if image.hasalpha() else image[:3]


def references(image: pyvips.Image, widths: tuple[int, ...]) -> dict[int, np.ndarray]:
    return {w: image.resize(w / image.width, kernel="lanczos3").cast("uchar").numpy() for w in widths}


# --------------------------------------------------------------------------- variants
def presets() -> tuple[Preset, Preset]:
    """(auto, fixed) versions of the default preset, AVIF and JPEG only."""
    preset = Settings.from_env({}).preset()
    formats = tuple(e for e in preset.formats if e.format in ("avif", "jpeg"))
    fixed = dataclasses.replace(preset, formats=tuple(dataclasses.replace(e, auto=None) for e in formats), eager_formats=())
    auto = dataclasses.replace(preset, formats=tuple(_auto(e) for e in formats), eager_formats=())
    return auto, fixed


def _auto(enc: EncoderSettings) -> EncoderSettings:
    target = TARGETS.get(enc.format)
    if enc.auto is not None and target is None:
        return enc
    low, high, start, slope = AUTO_DEFAULTS[enc.format]
    auto = AutoQuality(target=target or 75.0, min=low, max=high, start=start, slope=slope)
    return dataclasses.replace(enc, quality=start, auto=auto)


TARGETS: dict[str, float] = {}


def run_ours(data: bytes, preset: Preset) -> tuple[float, dict[tuple[int, str], bytes], dict[str, int]]:
    started = time.perf_counter()
    processed = pipeline.process(data, preset, MAX_PIXELS)
    seconds = time.perf_counter() - started
    qualities = {r.format: r.quality for r in processed.renditions}
    return seconds, {(r.width, r.format): r.data for r in processed.renditions}, qualities


def search_seconds(data: bytes, preset: Preset) -> float:
    job = pipeline.prepare(data, preset, MAX_PIXELS)
    started = time.perf_counter()
    pipeline.choose_qualities(job, preset.formats)
    return time.perf_counter() - started


def run_sharp(photo: Path, widths: tuple[int, ...], formats: dict[str, EncoderSettings], outdir: Path) -> tuple[float, dict]:
    """sharp renders ``formats`` (name -> settings) at ``widths``; (seconds, {(width, name): bytes})."""
    outdir.mkdir(parents=True, exist_ok=True)
    spec = {"widths": list(widths), "formats": [
        {"name": name, "format": e.format, "quality": e.quality, "effort": e.effort, "progressive": e.progressive,
         "trellis": e.trellis} for name, e in formats.items()]}
    env = {**os.environ, "UV_THREADPOOL_SIZE": "1", "VIPS_CONCURRENCY": "1"}
    done = subprocess.run(["node", str(PEERS / "render.mjs"), str(photo), str(outdir), json.dumps(spec), "1"],
                          capture_output=True, text=True, env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    outputs = {(int(p.stem), p.suffix[1:]): p.read_bytes() for p in outdir.iterdir()}
    return result["seconds"][0], outputs


def score(ref: np.ndarray, blob: bytes) -> tuple[float, float]:
    got = pyvips.Image.new_from_buffer(blob, "")
    got = (got.flatten(background=[255, 255, 255]) if got.hasalpha() else got).colourspace("srgb")[:3].numpy()
    if got.shape != ref.shape:  # libraries round a height differently by a pixel
        got = cv2.resize(got, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
    grey = lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # noqa: E731
    return ssimulacra2.score(ref, got), ssim(grey(ref), grey(got))


# --------------------------------------------------------------------------- the run
class Tally:
    """Per variant and format: bytes, scores; per variant and width: bytes; per variant: seconds."""

    def __init__(self) -> None:
        self.bytes: dict[tuple[str, str], int] = defaultdict(int)
        self.scores: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.ssims: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.by_width: dict[tuple[str, int], int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, variant: str, refs: dict[int, np.ndarray], outputs: dict[tuple[int, str], bytes],
            fmt_of: dict[str, str] | None = None) -> None:
        for (width, name), blob in outputs.items():
            fmt = (fmt_of or {}).get(name, name)
            s2, s1 = score(refs[width], blob)
            self.bytes[variant, fmt] += len(blob)
            self.scores[variant, fmt].append(s2)
            self.ssims[variant, fmt].append(s1)
            self.by_width[variant, width] += len(blob)

    def mean(self, variant: str, fmt: str) -> float:
        return float(np.mean(self.scores[variant, fmt]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=int, default=0, help="corpus-dev photos, spread over the folder (0: all)")
    parser.add_argument("--camera", type=int, default=0, help="camera JPEGs of at least 1 MP (0: all)")
    parser.add_argument("--heic", type=int, default=0, help="HEIC/HEIF files (0: all)")
    parser.add_argument("--avif-target", type=float, help="auto target for AVIF (default: the preset's)")
    parser.add_argument("--jpeg-target", type=float, help="auto target for JPEG (default: the preset's)")
    parser.add_argument("--cost-only", action="store_true", help="only the metric's cost per megapixel")
    args = parser.parse_args()
    if args.avif_target:
        TARGETS["avif"] = args.avif_target
    if args.jpeg_target:
        TARGETS["jpeg"] = args.jpeg_target
    if not TESTDATA.is_dir():
        sys.exit(f"needs {TESTDATA}")
    if not (PEERS / "node_modules" / "sharp").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True)
    os.sched_setaffinity(0, {0})
    vips.configure(1)
    cv2.setNumThreads(1)
    metric_cost()
    if args.cost_only:
        return
    auto, fixed = presets()
    inputs = photos(args.corpus, args.camera, args.heic)
    print(f"{len(inputs)} photos; auto: " + ", ".join(f"{e.format} target {e.auto.target:g} (q{e.auto.min}-{e.auto.max}, "
                                                        f"start {e.auto.start}, budget {e.auto.budget})" for e in auto.formats if e.auto))
    run_ours(inputs[0].read_bytes(), auto)  # warm-up: libraries load, encoders initialise
    tally, chosen, search = Tally(), defaultdict(list), []
    grid = {f"{fmt}-q{q}": dataclasses.replace(IMGPROXY[fmt], quality=q) for fmt in GRID for q in GRID[fmt]}
    grid_fmt = {name: e.format for name, e in grid.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for i, photo in enumerate(inputs):
            data = photo.read_bytes()
            image = upright_srgb(photo)
            widths = pipeline.rendition_widths(fixed.widths, image.width)
            refs = references(image, widths)
            sharp_input = photo
            if photo.suffix.lower() in (".heic", ".heif"):
                sharp_input = Path(tmp) / f"{i}.png"
                image.pngsave(str(sharp_input), compression=1)
            for variant, preset in (("ours-auto", auto), ("ours-fixed", fixed)):
                seconds, outputs, qualities = run_ours(data, preset)
                tally.seconds[variant] += seconds
                tally.add(variant, refs, outputs)
                if variant == "ours-auto":
                    for fmt, q in qualities.items():
                        chosen[fmt].append(q)
            search.append(search_seconds(data, auto))
            seconds, outputs = run_sharp(sharp_input, widths, IMGPROXY, Path(tmp) / f"{i}-imgproxy")
            tally.seconds["sharp-imgproxy"] += seconds
            tally.add("sharp-imgproxy", refs, outputs)
            _, outputs = run_sharp(sharp_input, widths, grid, Path(tmp) / f"{i}-grid")
            for (width, name), blob in outputs.items():
                tally.add(name, refs, {(width, name): blob}, grid_fmt)
            print(f"  {photo.name}: {image.width}x{image.height}, auto q " +
                  ", ".join(f"{f} {chosen[f][-1]}" for f in chosen), flush=True)
        matched = {fmt: dataclasses.replace(IMGPROXY[fmt], quality=match_quality(tally, fmt, tally.mean("ours-auto", fmt)))
                   for fmt in GRID}
        for i, photo in enumerate(inputs):
            image = upright_srgb(photo)
            widths = pipeline.rendition_widths(fixed.widths, image.width)
            sharp_input = Path(tmp) / f"{i}.png" if photo.suffix.lower() in (".heic", ".heif") else photo
            _, outputs = run_sharp(sharp_input, widths, matched, Path(tmp) / f"{i}-matched")
            tally.add("sharp-matched", references(image, widths), outputs)
    report(tally, chosen, search, matched, len(inputs))


def metric_cost() -> None:
    """Milliseconds per megapixel of SSIMULACRA2 on one core (best of 3): a whole pair, and a
    distorted picture against an original prepared once (what the quality search does)."""
    from tests import images

    print("| picture | MP | score ms | ms/MP | compare (prepared original) ms | ms/MP |\n|---|---|---|---|---|---|")
    for width, height in ((512, 384), (1080, 1440), (2160, 2880)):
        original = images.natural(width, height, seed=3)
        distorted = cv2.GaussianBlur(original, (0, 0), 0.8)
        prepared = ssimulacra2.reference(original)
        pair = _best(lambda: ssimulacra2.score(original, distorted))
        against = _best(lambda: ssimulacra2.compare(prepared, distorted))
        mp = width * height / 1e6
        print(f"| {width}x{height} | {mp:.2f} | {pair * 1000:.0f} | {pair * 1000 / mp:.0f} | {against * 1000:.0f} | "
              f"{against * 1000 / mp:.0f} |", flush=True)


def _best(run: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def match_quality(tally: Tally, fmt: str, goal: float) -> int:
    """The grid quality interpolated to the mean score ``goal``, rounded up."""
    qualities = GRID[fmt]
    means = [tally.mean(f"{fmt}-q{q}", fmt) for q in qualities]
    return int(np.ceil(np.interp(goal, means, qualities)))


def report(tally: Tally, chosen: dict[str, list[int]], search: list[float], matched: dict[str, EncoderSettings], count: int) -> None:
    variants = ("ours-auto", "ours-fixed", "sharp-imgproxy", "sharp-matched")
    print(f"\n| variant | format | KiB | vs sharp-imgproxy | mean SSIMULACRA2 | p5 SSIMULACRA2 | mean SSIM | p5 SSIM |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt in ("avif", "jpeg"):
        for variant in variants:
            s2, s1 = tally.scores[variant, fmt], tally.ssims[variant, fmt]
            label = f"{variant} (q{matched[fmt].quality})" if variant == "sharp-matched" else variant
            print(f"| {label} | {fmt} | {tally.bytes[variant, fmt] / 1024:.0f} | "
                  f"{tally.bytes[variant, fmt] / tally.bytes['sharp-imgproxy', fmt]:.2f}x | {np.mean(s2):.2f} | "
                  f"{np.percentile(s2, 5):.2f} | {np.mean(s1):.4f} | {np.percentile(s1, 5):.4f} |")
    print("\n| variant | total KiB | vs sharp-imgproxy | s/photo | sharp-imgproxy s / variant s |")
    print("|---|---|---|---|---|")
    total = {v: sum(tally.bytes[v, f] for f in ("avif", "jpeg")) for v in variants}
    for variant in variants:
        seconds = tally.seconds.get(variant)
        timing = (f"{seconds / count:.3f} | {tally.seconds['sharp-imgproxy'] / seconds:.2f}x" if seconds else "– | –")
        print(f"| {variant} | {total[variant] / 1024:.0f} | {total[variant] / total['sharp-imgproxy']:.2f}x | {timing} |")
    widths = sorted({w for _, w in tally.by_width}, reverse=True)
    print("\nBytes per width (KiB, both formats): " + "; ".join(
        f"{v}: " + ", ".join(f"{w} {tally.by_width[v, w] / 1024:.0f}" for w in widths if tally.by_width[v, w]) for v in variants))
    for fmt, qs in chosen.items():
        print(f"auto {fmt} quality: mean {np.mean(qs):.1f}, min {min(qs)}, max {max(qs)}")
    print(f"quality search: {np.mean(search) * 1000:.0f} ms/photo mean, {np.max(search) * 1000:.0f} max "
          f"(both formats; in ours-auto's time)")
    avif, jpeg = tally.bytes["ours-auto", "avif"], tally.bytes["ours-auto", "jpeg"]
    print(f"ours-auto AVIF / JPEG bytes: {avif / jpeg:.2f}x at mean scores {tally.mean('ours-auto', 'avif'):.2f} / "
          f"{tally.mean('ours-auto', 'jpeg'):.2f}")


if __name__ == "__main__":
    main()
