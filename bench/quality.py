"""Bytes against perceived quality: auto quality, today's fixed preset and sharp, on real photos.

    .venv/bin/python bench/quality.py [--corpus 0] [--camera 0] [--heic 0] [--set avif.target=78 ...]

Photos: ``../shared/testdata/corpus-dev`` (``--corpus N``: every k-th photo so N are taken, 0 = all),
the camera JPEGs of ``camera-exif`` at least 1 MP (``--camera N``) and the HEICs of
``formats/heic`` (``--heic N``). Every variant makes the default preset's widths in AVIF and JPEG:

- ``ours-auto``: ``pipeline.process`` with both formats at ``quality = "auto"`` (the preset's own
  auto settings, or AUTO_DEFAULTS over its fixed ones; ``--set FORMAT.NAME=VALUE`` overrides any auto or
  encoder setting, e.g. ``avif.target=78``, ``jpeg.trellis=1``, ``avif.effort=1``);
- ``ours-fixed``: the default preset's fixed qualities (when a format is auto, the fixed settings it
  had before: AVIF q68 effort 0, JPEG q80 progressive);
- ``sharp-imgproxy``: sharp 0.34.5 (``bench/peers``) with imgproxy's documented defaults (AVIF q63
  at speed 8, JPEG q80 baseline);
- ``sharp-matched``: the same with, per format, the quality whose mean SSIMULACRA2 over the photos
  matches ours-auto's (found from a grid of three qualities, then rendered at that quality).

Each output is decoded and scored at its own size against the upright sRGB original resized
straight to that width (lanczos3), so no variant is its own reference: SSIMULACRA2
(media_pipeline/ssimulacra2.py) and SSIM in luma (bench/encoders.py). sharp's prebuilt libvips has
no HEVC decoder, so for a HEIC it gets a PNG of the decoded pixels. Seconds are one pinned core
(``--cpu``, default 0), one run per photo after a warm-up; sharp's from its own timer (render.mjs, decode to
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
from media_pipeline import autoquality, pipeline, quality, ssimulacra2, vips  # noqa: E402
from media_pipeline.models import AutoQuality, EncoderSettings, Preset  # noqa: E402

TESTDATA = REPO.parent / "shared" / "testdata"
PEERS = REPO / "bench" / "peers"
MAX_PIXELS = 60_000_000
IMGPROXY = {"avif": EncoderSettings("avif", 63, effort=1), "jpeg": EncoderSettings("jpeg", 80)}
GRID = {"avif": (50, 63, 76), "jpeg": (65, 80, 92)}  # sharp qualities tried to match ours-auto's mean
# The fixed preset before auto quality, for ``ours-fixed`` when the preset's formats are auto.
FIXED = {"avif": EncoderSettings("avif", 68, effort=0), "jpeg": EncoderSettings("jpeg", 80, progressive=True)}
# For a fixed preset: the auto settings of docs/performance.md "Auto quality" (the targets that
# reach sharp-imgproxy's mean score on both judges; JPEG's for jpegli, the preset's encoder; AVIF's
# first try predicted from JPEG's result, fitted by bench/quality_search.py --follow avif=jpeg).
AUTO_DEFAULTS = {"avif": AutoQuality(78.3, 30, 90, 69, 0.8, accept=2.0, follow="jpeg", follow_fit=(6.8, 0.768)),
                 "jpeg": AutoQuality(78.2, 30, 95, 85, 0.8, accept=2.0)}


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
        image, _ = vips.load_heic(path.read_bytes())
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
    fixed = dataclasses.replace(preset, formats=tuple(FIXED[e.format] if e.auto else e for e in formats), eager_formats=())
    auto = dataclasses.replace(preset, formats=tuple(_auto(e) for e in formats), eager_formats=())
    return auto, fixed


def _auto(enc: EncoderSettings) -> EncoderSettings:
    """The preset's auto settings for this format (or, for a fixed one, AUTO_DEFAULTS),
    with the ``--set`` overrides applied."""
    auto = enc.auto or AUTO_DEFAULTS[enc.format]
    overrides = OVERRIDES.get(enc.format, {})
    auto_fields = {f.name: f.type for f in dataclasses.fields(AutoQuality)}
    auto = dataclasses.replace(auto, **{k: _typed(v, auto_fields[k]) for k, v in overrides.items() if k in auto_fields})
    enc_fields = {f.name: f.type for f in dataclasses.fields(EncoderSettings)}
    unknown = set(overrides) - set(auto_fields) - set(enc_fields)
    if unknown:
        sys.exit(f"--set: no setting {', '.join(sorted(unknown))} for {enc.format}")
    enc = dataclasses.replace(enc, **{k: _typed(v, enc_fields[k]) for k, v in overrides.items() if k not in auto_fields})
    return dataclasses.replace(enc, quality=auto.start, auto=auto)


def _typed(raw: str, type_name: object) -> object:
    name = str(type_name)
    if "str" in name:
        return raw
    if "tuple" in name:  # follow_fit=20.9,0.59
        return tuple(float(v) for v in raw.split(","))
    if "bool" in name:
        return raw.lower() in ("1", "true", "yes")
    return float(raw) if "float" in name else int(raw)


OVERRIDES: dict[str, dict[str, str]] = {}


def run_ours(data: bytes, preset: Preset) -> tuple[float, dict[tuple[int, str], bytes]]:
    started = time.perf_counter()
    processed = pipeline.process(data, preset, MAX_PIXELS)
    seconds = time.perf_counter() - started
    return seconds, {(r.width, r.format): r.data for r in processed.renditions}


def search(data: bytes, preset: Preset) -> tuple[float, dict[str, autoquality.Choice]]:
    """The search alone, as ``pipeline.choose_qualities`` runs it: (seconds, per format its choice)."""
    job = pipeline.prepare(data, preset, MAX_PIXELS)
    largest = job.levels[pipeline._probe_width(job)]
    started = time.perf_counter()
    choices = quality.choose_all(quality.probe(largest), preset.formats).choices
    seconds = time.perf_counter() - started
    return seconds, choices


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
        self.width_scores: dict[tuple[str, str, int], list[float]] = defaultdict(list)
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
            self.width_scores[variant, fmt, width].append(s2)

    def mean(self, variant: str, fmt: str) -> float:
        return float(np.mean(self.scores[variant, fmt]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=int, default=0, help="corpus-dev photos, spread over the folder (0: all)")
    parser.add_argument("--camera", type=int, default=0, help="camera JPEGs of at least 1 MP (0: all)")
    parser.add_argument("--heic", type=int, default=0, help="HEIC/HEIF files (0: all)")
    parser.add_argument("--set", action="append", default=[], metavar="FORMAT.NAME=VALUE",
                        help="override an auto setting of ours-auto (avif.target=78, jpeg.trellis=1, avif.effort=1, ...)")
    parser.add_argument("--cost-only", action="store_true", help="only the metric's cost per megapixel")
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin to")
    parser.add_argument("--no-cost", action="store_true", help="skip the metric's cost per megapixel")
    parser.add_argument("--no-matched", action="store_true",
                        help="skip sharp at a matched quality (its grid costs most of the scoring time)")
    args = parser.parse_args()
    for item in args.set:
        key, _, value = item.partition("=")
        fmt, _, name = key.partition(".")
        OVERRIDES.setdefault(fmt, {})[name] = value
    if not TESTDATA.is_dir():
        sys.exit(f"needs {TESTDATA}")
    if not (PEERS / "node_modules" / "sharp").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True)
    os.sched_setaffinity(0, {args.cpu})
    vips.configure(1)
    cv2.setNumThreads(1)
    if not args.no_cost:
        metric_cost()
    if args.cost_only:
        return
    auto, fixed = presets()
    inputs = photos(args.corpus, args.camera, args.heic)
    print(f"{len(inputs)} photos; auto: " + ", ".join(f"{e.format} target {e.auto.target:g} (q{e.auto.min}-{e.auto.max}, "
                                                        f"start {e.auto.start}, budget {e.auto.budget})" for e in auto.formats if e.auto))
    run_ours(inputs[0].read_bytes(), auto)  # warm-up: libraries load, encoders initialise
    tally, chosen, searches, encodes = Tally(), defaultdict(list), [], []
    grid = {} if args.no_matched else {f"{fmt}-q{q}": dataclasses.replace(IMGPROXY[fmt], quality=q)
                                       for fmt in GRID for q in GRID[fmt]}
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
                seconds, outputs = run_ours(data, preset)
                tally.seconds[variant] += seconds
                tally.add(variant, refs, outputs)
            seconds, choices = search(data, auto)
            searches.append(seconds)
            encodes.append(sum(len(c.tried) for c in choices.values()))
            for fmt, choice in choices.items():
                chosen[fmt].append(choice.quality)
            seconds, outputs = run_sharp(sharp_input, widths, IMGPROXY, Path(tmp) / f"{i}-imgproxy")
            tally.seconds["sharp-imgproxy"] += seconds
            tally.add("sharp-imgproxy", refs, outputs)
            if grid:
                _, outputs = run_sharp(sharp_input, widths, grid, Path(tmp) / f"{i}-grid")
                for (width, name), blob in outputs.items():
                    tally.add(name, refs, {(width, name): blob}, grid_fmt)
            print(f"  {photo.name}: {image.width}x{image.height}; search " + "; ".join(
                f"{f} " + " ".join(f"q{q}={s:.1f}" for q, s in c.tried) + f" -> q{c.quality}" for f, c in choices.items()),
                flush=True)
        matched = {} if not grid else {
            fmt: dataclasses.replace(IMGPROXY[fmt], quality=match_quality(tally, fmt, tally.mean("ours-auto", fmt)))
            for fmt in GRID}
        for i, photo in enumerate(inputs if matched else ()):
            image = upright_srgb(photo)
            widths = pipeline.rendition_widths(fixed.widths, image.width)
            sharp_input = Path(tmp) / f"{i}.png" if photo.suffix.lower() in (".heic", ".heif") else photo
            _, outputs = run_sharp(sharp_input, widths, matched, Path(tmp) / f"{i}-matched")
            tally.add("sharp-matched", references(image, widths), outputs)
    report(tally, chosen, searches, encodes, matched, len(inputs))


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


def report(tally: Tally, chosen: dict[str, list[int]], search: list[float], encodes: list[int], matched: dict[str, EncoderSettings], count: int) -> None:
    variants = ("ours-auto", "ours-fixed", "sharp-imgproxy") + (("sharp-matched",) if matched else ())
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
    print("Mean SSIMULACRA2 per width: " + "; ".join(
        f"{v} {f}: " + ", ".join(f"{w} {np.mean(tally.width_scores[v, f, w]):.1f}" for w in widths if tally.width_scores[v, f, w])
        for v in ("ours-auto", "sharp-imgproxy") for f in ("avif", "jpeg")))
    for fmt, qs in chosen.items():
        print(f"auto {fmt} quality: mean {np.mean(qs):.1f}, min {min(qs)}, max {max(qs)}")
    print(f"quality search: {np.mean(search) * 1000:.0f} ms/photo mean, {np.max(search) * 1000:.0f} max, "
          f"{np.mean(encodes):.1f} probe encodes/photo mean, {max(encodes)} max "
          f"(both formats; in ours-auto's time)")
    avif, jpeg = tally.bytes["ours-auto", "avif"], tally.bytes["ours-auto", "jpeg"]
    print(f"ours-auto AVIF / JPEG bytes: {avif / jpeg:.2f}x at mean scores {tally.mean('ours-auto', 'avif'):.2f} / "
          f"{tally.mean('ours-auto', 'jpeg'):.2f}")


if __name__ == "__main__":
    main()
