"""Encoder settings at equal SSIMULACRA2: bytes and seconds of each mode against a baseline mode.

    .venv/bin/python bench/quality_encoders.py [--photos 10] [--width 1080] [--score 78]

For each photo (spread over ``../shared/testdata/corpus-dev`` plus two camera JPEGs), the upright
sRGB picture ``--width`` wide (or its own width if narrower) is encoded in every mode at a grid of qualities, each output decoded
and scored against that level (SSIMULACRA2, and SSIM in luma); per photo the bytes and seconds at
the score ``--score`` are interpolated along each mode's curve. Printed per format: each mode's
bytes and encode time at that score as a ratio to the first mode of the format (geometric mean
over photos), and the mode's SSIM there. One pinned core. Asserts nothing.

With ``--per-width``, instead: for camera JPEGs and HEICs (``--photos`` of them), the quality each
preset width needs to reach ``--score`` in today's encoders (interpolated from a grid, each level
scored against itself), as an offset from the quality the 1080 level needs: whether a quality per
width rather than per photo would buy bytes.

Modes (``--modes`` picks some by position, the first of each format being the baseline): JPEG
progressive with optimised Huffman tables (today's preset); mozjpeg's trellis quantisation,
deringing, scan optimisation and quant table 3 (libvips' ``jpegsave`` options, which libvips
ignores unless built on mozjpeg); Google's jpegli through ``pyjpegli`` (its defaults: one
sequential scan, 4:2:0, adaptive quantisation; the binding sets nothing else); baseline JPEG with standard
Huffman tables (libjpeg's defaults, what jpegli's published comparisons start from). AVIF (aom
through libavif, which tunes aom for ``iq`` by default) at speed 9 (effort 0, today's), speed 8
(effort 1, imgproxy's), speed 9 with 4:4:4 chroma, speed 9 with aom's ``tune=ssim``, speed 9 without aom's trellis quantisation
(``disable-trellis-quant=1``: each coefficient rounded, no rate-distortion search over them); libvips'
``heifsave`` (libheif + aom, sharp's path) with its default tuning (``iq`` in libvips 8.18) and with
``tune=ssim`` (libheif's own default, which sharp 0.34.5's AVIF scores match); and libavif with aom's
``sharpness=1``, ``deltaq-mode=1`` and ``tune=ssimulacra2``.

``--ssim`` compares at SSIM scores too, and ``--both S,M`` at the fewest bytes where SSIMULACRA2
reaches S and SSIM reaches M (per photo; e.g. a peer's mean scores).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pyjpegli
import pyvips
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.encoders import ssim  # noqa: E402
from bench.quality import TESTDATA, upright_srgb  # noqa: E402
from bench.quality import photos as quality_photos  # noqa: E402
from media_pipeline import ssimulacra2, vips  # noqa: E402


def jpeg(trellis: bool, progressive: bool = True) -> Callable[[pyvips.Image, int], bytes]:
    """libvips' jpegsave; ``progressive=False`` is also without optimised Huffman tables (libjpeg's
    defaults, what Pillow's default save makes)."""
    def run(image: pyvips.Image, quality: int) -> bytes:
        return image.jpegsave_buffer(Q=quality, interlace=progressive, optimize_coding=progressive, trellis_quant=trellis,
                                     overshoot_deringing=trellis, optimize_scans=trellis,
                                     quant_table=3 if trellis else 0, keep="none")
    return run


def jpegli() -> Callable[[pyvips.Image, int], bytes]:
    """Google's jpegli through ``pyjpegli`` (its defaults: sequential, 4:2:0, adaptive quantisation)."""
    def run(image: pyvips.Image, quality: int) -> bytes:
        return pyjpegli.encode(image.write_to_memory(), image.width, image.height, quality=quality)
    return run


def avif(speed: int, subsampling: str, **advanced: str) -> Callable[[pyvips.Image, int], bytes]:
    """libavif through Pillow; ``advanced`` are aom's codec options (``tune``, ``sharpness``, ...)."""
    def run(image: pyvips.Image, quality: int) -> bytes:
        picture = Image.frombuffer("RGB", (image.width, image.height), image.write_to_memory(), "raw", "RGB", 0, 1)
        out = io.BytesIO()
        picture.save(out, "AVIF", quality=quality, speed=speed, subsampling=subsampling, max_threads=1,
                     advanced=[(k.replace("_", "-"), v) for k, v in advanced.items()] or None)
        return out.getvalue()
    return run


def heif_avif(effort: int, tune: str | None = None) -> Callable[[pyvips.Image, int], bytes]:
    """libvips' ``heifsave`` (libheif + aom, sharp's path), 4:2:0, 8 bits; ``tune`` is libheif's."""
    def run(image: pyvips.Image, quality: int) -> bytes:
        return image.heifsave_buffer(Q=quality, compression="av1", encoder="aom", effort=effort, subsample_mode="on",
                                     bitdepth=8, keep="none", **({"tune": tune} if tune else {}))
    return run


MODES: dict[str, list[tuple[str, Callable[[pyvips.Image, int], bytes], range]]] = {
    "jpeg": [("progressive (today)", jpeg(False), range(50, 98, 4)),
             ("mozjpeg trellis + table 3", jpeg(True), range(50, 98, 4)),
             ("jpegli (pyjpegli defaults)", jpegli(), range(42, 98, 4)),
             ("baseline, standard Huffman tables", jpeg(False, progressive=False), range(50, 98, 4))],
    "avif": [("speed 9, 4:2:0 (today)", avif(9, "4:2:0"), range(30, 94, 6)),
             ("speed 8, 4:2:0", avif(8, "4:2:0"), range(30, 94, 6)),
             ("speed 9, 4:4:4", avif(9, "4:4:4"), range(30, 94, 6)),
             ("speed 9, 4:2:0, aom tune=ssim", avif(9, "4:2:0", tune="ssim"), range(30, 94, 6)),
             ("heifsave effort 0 (libvips 8.18: aom tune=iq)", heif_avif(0), range(30, 94, 6)),
             ("heifsave effort 0, tune=ssim (libheif's default)", heif_avif(0, "ssim"), range(30, 94, 6)),
             ("speed 9, sharpness=1", avif(9, "4:2:0", sharpness="1"), range(30, 94, 6)),
             ("speed 9, deltaq-mode=1", avif(9, "4:2:0", deltaq_mode="1"), range(30, 94, 6)),
             ("speed 9, tune=ssimulacra2", avif(9, "4:2:0", tune="ssimulacra2"), range(30, 94, 6)),
             ("speed 9, 4:2:0, aom trellis off", avif(9, "4:2:0", disable_trellis_quant="1"), range(30, 94, 6)),
             # How far a slower search of the same encoder goes (issue #19's byte target).
             ("speed 6, 4:2:0", avif(6, "4:2:0"), range(30, 94, 6)),
             ("speed 4, 4:2:0", avif(4, "4:2:0"), range(30, 94, 6))],
}


def curve(level: pyvips.Image, ref: ssimulacra2.Reference, grey: np.ndarray, encoder: Callable[[pyvips.Image, int], bytes],
          qualities: range) -> np.ndarray:
    """Rows of (quality, bytes, seconds, SSIMULACRA2, SSIM)."""
    rows = []
    for quality in qualities:
        started = time.perf_counter()
        data = encoder(level, quality)
        seconds = time.perf_counter() - started
        decoded = pyvips.Image.new_from_buffer(data, "").colourspace("srgb")[:3].numpy()
        rows.append((quality, len(data), seconds, ssimulacra2.compare(ref, decoded),
                     ssim(grey, cv2.cvtColor(decoded, cv2.COLOR_RGB2GRAY))))
    return np.array(rows)


JUDGES = {"SSIMULACRA2": 3, "SSIM": 4}  # column of each judge in a curve's rows


def at_score(rows: np.ndarray, goal: float, judge: str = "SSIMULACRA2") -> tuple[float, float, float, float] | None:
    """(bytes, seconds, SSIMULACRA2, SSIM) interpolated where ``judge`` scores ``goal``; None if the
    curve misses it."""
    col = JUDGES[judge]
    order = np.argsort(rows[:, col])
    scores = np.maximum.accumulate(rows[order, col])
    if not scores[0] <= goal <= scores[-1]:
        return None
    return tuple(float(np.interp(goal, scores, rows[order, c])) for c in (1, 2, 3, 4))  # type: ignore[return-value]


def at_both(rows: np.ndarray, goals: tuple[float, float]) -> tuple[float, float, float, float] | None:
    """The fewer bytes along the curve at which SSIMULACRA2 reaches ``goals[0]`` and SSIM ``goals[1]``:
    the point of the judge that needs more bytes."""
    points = [at_score(rows, goal, judge) for judge, goal in zip(("SSIMULACRA2", "SSIM"), goals)]
    if any(p is None for p in points):
        return None
    return max(points, key=lambda p: p[0])  # type: ignore[arg-type, return-value]


def per_width(goals: list[float], count: int) -> None:
    from config.settings import Settings
    from media_pipeline import pipeline

    preset = Settings.from_env({}).preset()
    photos = sorted((TESTDATA / "camera-exif").glob("IMG_*.JPG"))[:1] + sorted((TESTDATA / "formats" / "heic").iterdir())
    photos = photos[:count]
    modes = {"jpeg": MODES["jpeg"][0], "avif": MODES["avif"][0]}
    offsets: dict[tuple[str, float, int], list[float]] = {}
    for photo in photos:
        job = pipeline.prepare(photo.read_bytes(), preset, 60_000_000)
        if 1080 not in job.levels:
            continue
        needed: dict[tuple[str, float, int], float] = {}
        for width in job.widths:
            level = job.levels[width]
            level = level.flatten(background=[255, 255, 255]) if level.hasalpha() else level
            pixels = level.numpy()[:, :, :3]
            level = pyvips.Image.new_from_array(pixels, interpretation="srgb")
            ref, grey = ssimulacra2.reference(pixels), cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
            for fmt, (_, encoder, qualities) in modes.items():
                rows = curve(level, ref, grey, encoder, qualities)
                order = np.argsort(rows[:, 3])
                for goal in goals:
                    needed[fmt, goal, width] = float(np.interp(goal, np.maximum.accumulate(rows[order, 3]), rows[order, 0]))
        for (fmt, goal, width), q in needed.items():
            offsets.setdefault((fmt, goal, width), []).append(q - needed[fmt, goal, 1080])
        print(f"  {photo.name}: " + ", ".join(f"{f} {g:g} @{w}: q{q:.1f}" for (f, g, w), q in needed.items()), flush=True)
    print("| format | SSIMULACRA2 | width | quality offset from 1080's (mean, min, max) |")
    print("|---|---|---|---|")
    for (fmt, goal, width), found in sorted(offsets.items()):
        print(f"| {fmt} | {goal:g} | {width} | {np.mean(found):+.1f} ({min(found):+.1f}, {max(found):+.1f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--width", type=int, default=1080)
    parser.add_argument("--score", type=float, nargs="+", default=[78.0], help="SSIMULACRA2 scores to compare at")
    parser.add_argument("--ssim", type=float, nargs="*", default=[], help="SSIM scores to compare at as well")
    parser.add_argument("--both", nargs="*", default=[], metavar="SSIMULACRA2,SSIM",
                        help="pairs of scores both to be reached (e.g. a peer's means), to compare at as well")
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin to")
    parser.add_argument("--camera", type=int, default=0, help="instead of --photos: bench/quality.py's camera JPEGs (0 = all when --heic is given)")
    parser.add_argument("--heic", type=int, default=0, help="and its HEICs (0 = all when --camera is given)")
    parser.add_argument("--formats", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--skip", nargs="*", default=[], help="leave out the modes whose name contains one of these")
    parser.add_argument("--modes", nargs="+", type=int, help="which modes of each format by position (the first is the baseline)")
    parser.add_argument("--per-width", action="store_true", help="the quality offset each width needs")
    args = parser.parse_args()
    if args.modes:
        for fmt in MODES:
            MODES[fmt] = [m for i, m in enumerate(MODES[fmt]) if i in args.modes]
    vips.configure(1)
    cv2.setNumThreads(1)
    if args.per_width:  # qualities only, no timing: not pinned
        per_width(args.score, args.photos)
        return
    os.sched_setaffinity(0, {args.cpu})
    if args.camera or args.heic:  # bench/quality.py's camera photos and HEICs (0 = all), without corpus-dev
        photos = quality_photos(1, args.camera, args.heic)[1:]
    else:
        corpus = sorted(p for p in (TESTDATA / "corpus-dev").iterdir() if p.suffix.lower() in (".jpg", ".png"))
        photos = corpus[:: max(1, len(corpus) // max(1, args.photos - 2))][: args.photos - 2]
        photos += sorted((TESTDATA / "camera-exif").glob("IMG_*.JPG"))[:2]
    goals: list[tuple[str, object]] = [("SSIMULACRA2", g) for g in args.score] + [("SSIM", g) for g in args.ssim]
    goals += [("both", tuple(float(v) for v in pair.split(","))) for pair in args.both]
    found: dict[tuple[str, str, str, object], list[tuple[float, float, float, float]]] = {}
    used = 0
    for photo in photos:
        image = upright_srgb(photo)
        used += 1
        # In memory, so an encode's time is the encoder's, not a resize libvips would redo each time.
        level = image.resize(min(1.0, args.width / image.width), kernel="lanczos3").cast("uchar").copy_memory()
        pixels = level.numpy()
        ref, grey = ssimulacra2.reference(pixels), cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        for fmt, modes in ((f, MODES[f]) for f in args.formats):
            curves = [(name, curve(level, ref, grey, encoder, qualities)) for name, encoder, qualities in modes
                      if not any(word in name for word in args.skip)]
            for judge, goal in goals:
                points = [(name, at_both(rows, goal) if judge == "both" else at_score(rows, goal, judge))  # type: ignore[arg-type]
                          for name, rows in curves]
                if all(p is not None for _, p in points):  # a photo counts only where every mode reaches the score
                    for name, p in points:
                        found.setdefault((fmt, name, judge, goal), []).append(p)  # type: ignore[arg-type]
        print(f"  {photo.name}", flush=True)
    print(f"\n{used} photos at {args.width} px wide or their own width")
    print("| format | mode | at | photos | bytes vs first mode | encode time vs first mode | mean SSIMULACRA2, SSIM there |")
    print("|---|---|---|---|---|---|---|")
    for fmt, modes in ((f, MODES[f]) for f in args.formats):
        for judge, goal in goals:
            base = np.array(found.get((fmt, modes[0][0], judge, goal), []))
            for name, _, _ in modes:
                if any(word in name for word in args.skip):
                    continue
                rows = np.array(found.get((fmt, name, judge, goal), []))
                if not len(rows):
                    continue
                ratio = lambda col: float(np.exp(np.mean(np.log(rows[:, col] / base[:, col]))))  # noqa: E731
                at = f"both {goal[0]:g}, {goal[1]:g}" if judge == "both" else f"{judge} {goal:g}"  # type: ignore[index]
                print(f"| {fmt} | {name} | {at} | {len(rows)} | {ratio(0):.3f}x | {ratio(1):.2f}x | "
                      f"{rows[:, 2].mean():.2f}, {rows[:, 3].mean():.4f} |")


if __name__ == "__main__":
    main()
