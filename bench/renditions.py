"""Renditions side by side: this pipeline, sharp, Pillow and the bare encoders, on one core.

    .venv/bin/python bench/renditions.py [--repeat 3] [--growth 500]

Photos: ``../shared/testdata/camera-exif/IMG_9424.JPG`` (12 MP JPEG); a 12 MP JPEG this script
makes from real photos with an Adobe RGB profile and EXIF orientation 6; a 12 MP HEIC
(``formats/heic/iphone_13_pro_max.HEIC``) and a JPEG of the same upright pixels; a 50 MP JPEG
(ours only, for memory). Every variant runs in its own child process pinned to CPU 0 (libvips and
sharp on one thread), so its peak RSS is its own (``wait4``).

Variants, all making the default preset's widths (320..2160, never upscaled):

Seconds are the best of ``--repeat`` runs after one warm-up run.

- ``ours``: what ingest does with the default preset: ``pipeline.process`` with the eager formats
  (AVIF and JPEG; WebP is rendered on demand), placeholder and perceptual hashes included;
- ``ours+identify``: the same plus what duplicate detection needs (pixel digest, view hashes, keypoints);
- ``ours-all``: every format the preset defines (AVIF, WebP, JPEG), as a reprocess of all formats would;
- ``floor``: only the encoders, from the already resized levels in memory: every preset format;
- ``sharp``: sharp 0.34.5 (``bench/peers``), every preset format with the same settings, its
  fastest way (see render.mjs);
- ``sharp-imgproxy``: sharp with imgproxy's documented defaults: JPEG q80 baseline, WebP q79 effort 4,
  AVIF q63 at aom speed 8 (libvips effort 1);
- ``pillow``: Pillow with the nearest settings it has (no trellis quantisation in its libjpeg).

Quality: every output is decoded and compared in luma (SSIM) with a reference made from the
full-resolution upright sRGB pixels resized straight to that width, so no variant is its own
reference. ``--growth N`` runs ``pipeline.process`` N times over 1 MP photos in one process and
prints RSS every N/10. Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pyvips

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.encoders import ssim  # noqa: E402
from config.settings import Settings  # noqa: E402
from media_pipeline import dedupe, pipeline, vips  # noqa: E402
from media_pipeline.encode import encode  # noqa: E402
from media_pipeline.hashing import PDQ_SIDE, perceptual_hashes  # noqa: E402
from media_pipeline.models import EncoderSettings, Preset  # noqa: E402
from media_pipeline.placeholders import make_placeholder  # noqa: E402

TESTDATA = REPO.parent / "shared" / "testdata"
CAMERA_JPEG = TESTDATA / "camera-exif" / "IMG_9424.JPG"
HEIC = TESTDATA / "formats" / "heic" / "iphone_13_pro_max.HEIC"
ADOBE_RGB_SOURCE = TESTDATA / "formats" / "jpeg" / "xmp_test.jpg"  # its embedded profile is Adobe RGB
CORPUS = TESTDATA / "corpus-dev"
PEERS = REPO / "bench" / "peers"
MAX_PIXELS = 60_000_000

IMGPROXY_DEFAULTS = (
    EncoderSettings("avif", 63, effort=1),
    EncoderSettings("webp", 79, effort=4),
    EncoderSettings("jpeg", 80),
)
VARIANTS = ("ours", "ours+identify", "ours-all", "floor", "sharp", "sharp-imgproxy", "pillow")


# --------------------------------------------------------------------------- inputs
def corpus_mosaic(width: int, height: int, seed: int = 0) -> pyvips.Image:
    """A photo-like image of ``width`` x ``height`` tiled from real photos (no flat synthetic areas)."""
    files = sorted(p for p in CORPUS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng = np.random.default_rng(seed)
    picks = [files[i] for i in rng.choice(len(files), 12, replace=False)]
    tile_w, tile_h = width // 4, height // 3
    tiles = [pyvips.Image.thumbnail(str(p), tile_w, height=tile_h, crop="centre").colourspace("srgb")[:3] for p in picks]
    return pyvips.Image.arrayjoin(tiles, across=4).embed(0, 0, width, height, extend="mirror")


def photo_jpeg(path: Path, width: int, height: int, seed: int = 0, quality: int = 90) -> Path:
    """A photo-like JPEG: a mosaic of real photos, or a generated scene without ../shared/testdata."""
    try:
        corpus_mosaic(width, height, seed=seed).jpegsave(str(path), Q=quality)
    except (FileNotFoundError, ValueError):
        from tests import images

        path.write_bytes(images.jpeg(images.natural(width, height, seed=seed), quality=quality))
    return path


def make_inputs(folder: Path) -> dict[str, Path]:
    inputs = {"camera JPEG 12 MP": CAMERA_JPEG}
    mosaic = corpus_mosaic(4000, 3000)
    adobe = pyvips.Image.new_from_file(str(ADOBE_RGB_SOURCE)).get("icc-profile-data")
    (folder / "adobe.icc").write_bytes(adobe)
    stored = mosaic.icc_transform(str(folder / "adobe.icc"), input_profile="srgb", intent="relative").rot270().copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    inputs["Adobe RGB, orientation 6, 12 MP"] = _save(stored, folder / "adobe-o6.jpg", keep="all")
    inputs["HEIC 12 MP"] = HEIC
    upright = pipeline._decode_heic(HEIC.read_bytes())
    inputs["JPEG of the HEIC's pixels"] = _save(upright, folder / "heic-pixels.jpg", keep="icc")
    inputs["JPEG 50 MP (ours only)"] = _save(corpus_mosaic(8660, 5773, seed=1), folder / "50mp.jpg", keep="none")
    return inputs


def _save(image: pyvips.Image, path: Path, keep: str) -> Path:
    image.jpegsave(str(path), Q=92, keep=keep)
    return path


# --------------------------------------------------------------------------- variants (child side)
def run_variant(variant: str, photo: Path, outdir: Path, repeat: int) -> dict:
    os.sched_setaffinity(0, {0})
    vips.configure(1)
    preset = Settings.from_env({}).preset()
    if variant == "ours-all":
        preset = dataclasses.replace(preset, eager_formats=())
    data = photo.read_bytes()
    if variant in ("sharp", "sharp-imgproxy"):
        return _run_sharp(variant, photo, preset, outdir, repeat)
    seconds, encoder_seconds, total = [], [], 0
    in_encoders = _time_encoders() if variant == "ours-all" else [0.0]
    for i in range(-1, repeat):  # run -1 warms up: libraries load, encoders initialise
        in_encoders[0] = 0.0
        if variant == "floor":
            job = pipeline.prepare(data, preset, MAX_PIXELS)
            started = time.perf_counter()
            outputs = [(w, e.format, encode(job.levels[w], e)) for w in job.widths for e in preset.formats]
        elif variant == "pillow":
            started = time.perf_counter()
            outputs = pillow_render(data, preset)
        else:
            started = time.perf_counter()
            processed = pipeline.process(data, preset, MAX_PIXELS)
            if variant == "ours+identify":
                pipeline.identify(pipeline.prepare(data, preset, MAX_PIXELS, widths=pipeline.identity_widths(preset)))
            outputs = [(r.width, r.format, r.data) for r in processed.renditions]
        if i < 0:
            continue
        seconds.append(time.perf_counter() - started)
        encoder_seconds.append(in_encoders[0])
        total = sum(len(d) for _, _, d in outputs)
        if i == 0:
            for width, fmt, blob in outputs:
                (outdir / f"{width}.{fmt}").write_bytes(blob)
    return {"seconds": seconds, "encoder_seconds": encoder_seconds, "bytes": total, "rss_mib": peak_rss()}


def _time_encoders() -> list[float]:
    """Wrap the pipeline's encoder call to add up, per run, the time spent in the encoders: the
    floor measured inside the same run as the whole, so a slow spell of the shared machine
    moves both instead of the ratio."""
    spent = [0.0]
    inner = pipeline.encode

    def timed(image: pyvips.Image, enc: EncoderSettings) -> bytes:
        started = time.perf_counter()
        try:
            return inner(image, enc)
        finally:
            spent[0] += time.perf_counter() - started

    pipeline.encode = timed
    return spent


def _run_sharp(variant: str, photo: Path, preset: Preset, outdir: Path, repeat: int) -> dict:
    formats = preset.formats if variant == "sharp" else IMGPROXY_DEFAULTS
    upright_width = pipeline.probe(photo.read_bytes(), MAX_PIXELS).upright_size[0]
    spec = {
        "widths": list(pipeline.rendition_widths(preset.widths, upright_width)),
        "formats": [{"format": e.format, "quality": e.quality, "effort": e.effort,
                     "progressive": e.progressive, "trellis": e.trellis} for e in formats],
    }
    env = {**os.environ, "UV_THREADPOOL_SIZE": "1", "VIPS_CONCURRENCY": "1"}
    done = subprocess.run(["node", str(PEERS / "render.mjs"), str(photo), str(outdir), json.dumps(spec), str(repeat)],
                          capture_output=True, text=True, env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["rss_mib"] = max(result["rss_mib"], peak_rss())
    return result


def peak_rss() -> float:
    """This process's peak RSS in MiB (VmHWM: unlike ru_maxrss it starts afresh at exec)."""
    return _proc_status_mib("VmHWM")


def _proc_status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pillow_render(data: bytes, preset: Preset) -> list[tuple[int, str, bytes]]:
    import pillow_heif
    from PIL import Image, ImageCms, ImageOps

    pillow_heif.register_heif_opener()
    image = Image.open(io.BytesIO(data))
    upright_width = image.height if (image.getexif().get(0x0112, 1) in (5, 6, 7, 8)) else image.width
    widths = pipeline.rendition_widths(preset.widths, upright_width)
    image.draft("RGB", (widths[0], widths[0]))  # JPEG DCT scaling, never below the largest width
    image = ImageOps.exif_transpose(image)
    icc = image.info.get("icc_profile")
    if icc:
        image = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                          ImageCms.createProfile("sRGB"), outputMode="RGB")
    image = image.convert("RGB")
    outputs = []
    level = image
    for width in widths:
        level = level.resize((width, max(1, round(level.height * width / level.width))), Image.LANCZOS)
        for enc in preset.formats:
            buffer = io.BytesIO()
            if enc.format == "avif":
                level.save(buffer, "AVIF", quality=enc.quality, speed=9 - enc.effort)
            elif enc.format == "webp":
                level.save(buffer, "WEBP", quality=enc.quality, method=enc.effort)
            else:
                level.save(buffer, "JPEG", quality=enc.quality, progressive=enc.progressive, optimize=True)
            outputs.append((width, enc.format, buffer.getvalue()))
    return outputs


# --------------------------------------------------------------------------- parent side
def measure(variant: str, photo: Path, outdir: Path, repeat: int) -> dict:
    """Run one variant in a child process; None when it cannot (sharp has no HEVC decoder)."""
    outdir.mkdir(parents=True, exist_ok=True)
    child = subprocess.run([sys.executable, __file__, "--child", variant, str(photo), str(outdir), str(repeat)],
                           capture_output=True, text=True)
    if child.returncode != 0:
        print(f"<!-- {variant} on {photo.name} failed: {child.stderr.strip().splitlines()[-1][:200]} -->")
        return None
    return json.loads(child.stdout.strip().splitlines()[-1])


def references(photo: Path, widths: tuple[int, ...]) -> dict[int, np.ndarray]:
    image = pyvips.Image.new_from_file(str(photo))
    if photo.suffix.lower() == ".heic":
        image = pipeline._decode_heic(photo.read_bytes())
    else:
        image = image.autorot()
    if image.get_typeof("icc-profile-data"):
        image = image.icc_transform("srgb", embedded=True, intent="relative")
    luma = image.colourspace("b-w")[0]
    return {w: luma.resize(w / luma.width, kernel="lanczos3").numpy() for w in widths}


def quality(outdir: Path, refs: dict[int, np.ndarray]) -> dict[str, float]:
    scores: dict[str, list[float]] = {}
    for path in outdir.iterdir():
        width, fmt = int(path.stem), path.suffix[1:]
        ref = refs.get(width)
        if ref is None:
            continue
        got = pyvips.Image.new_from_buffer(path.read_bytes(), "").colourspace("b-w")[0].numpy()
        if got.shape != ref.shape:  # rounding of the height differs by a pixel between libraries
            got = cv2.resize(got, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
        scores.setdefault(fmt, []).append(ssim(ref, got))
    return {fmt: float(np.mean(v)) for fmt, v in scores.items()}


def print_ratios(rows: dict[str, dict]) -> None:
    """The issue's targets as ratios of this run's figures."""
    def ratio(a: str, b: str) -> str:
        return f"{rows[a]['best'] / rows[b]['best']:.2f}x" if a in rows and b in rows else "n/a"

    lines = [f"ours-all / floor = {ratio('ours-all', 'floor')}"]
    if "ours-all" in rows:
        runs = rows["ours-all"]
        per_run = [total / enc for total, enc in zip(runs["seconds"], runs["encoder_seconds"]) if enc]
        lines[0] += (f" (within each ours-all run, whole / its encoders: "
                     f"{', '.join(f'{r:.2f}x' for r in per_run)})")
    lines += [f"sharp / ours-all = {ratio('sharp', 'ours-all')}",
              f"sharp-imgproxy / ours = {ratio('sharp-imgproxy', 'ours')}"]
    if "sharp-imgproxy" in rows:
        ours, peer = rows["ours"], rows["sharp-imgproxy"]
        better = all(ours["ssim"][f] >= peer["ssim"][f] - 0.0005 for f in ours["ssim"])
        lines.append(f"ours {'>=' if better else '<'} sharp-imgproxy SSIM in each format it makes (0.0005 tolerance), "
                     f"bytes {ours['bytes'] / peer['bytes']:.2f}x")
    print("\n" + "; ".join(lines))


def describe_cost(photo: Path) -> tuple[float, float]:
    """Milliseconds (median of 30) for placeholder + perceptual hashes, and for the near-duplicate
    view hashes, both from the in-memory smallest level."""
    preset = Settings.from_env({}).preset()
    job = pipeline.prepare(photo.read_bytes(), preset, MAX_PIXELS, widths=pipeline.identity_widths(preset))
    describe, views = [], []
    for _ in range(30):
        started = time.perf_counter()
        small = pipeline.small_rgb(job)
        make_placeholder(pipeline.small_rgb(job, pipeline.PLACEHOLDER_SIZE), preset.blurhash_x, preset.blurhash_y)
        perceptual_hashes(small, pipeline.level_near(job, PDQ_SIDE))
        middle = time.perf_counter()
        dedupe.fingerprint(small)
        describe.append(middle - started)
        views.append(time.perf_counter() - middle)
    return statistics.median(describe) * 1000, statistics.median(views) * 1000


def growth(count: int) -> None:
    os.sched_setaffinity(0, {0})
    vips.configure(1)
    preset = Settings.from_env({}).preset()
    photos = [_jpeg(corpus_mosaic(1200, 900, seed=i)) for i in range(10)]
    print(f"\n## RSS over {count} photos (1 MP JPEGs, pipeline.process in one process)\n")
    print("| photos | RSS MiB |\n|---|---|")
    for i in range(1, count + 1):
        pipeline.process(photos[i % len(photos)], preset, MAX_PIXELS)
        if i == 1 or i % max(1, count // 10) == 0:
            print(f"| {i} | {_rss_now():.0f} |", flush=True)


def _jpeg(image: pyvips.Image) -> bytes:
    return image.jpegsave_buffer(Q=90)


def _rss_now() -> float:
    return _proc_status_mib("VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant and photo; the fastest is shown")
    parser.add_argument("--growth", type=int, default=500, help="photos for the RSS growth run (0: skip)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--photos", default="", help="only the inputs whose label contains this (e.g. HEIC)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--growth-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.growth_child:
        growth(args.growth_child)
        return
    if args.child:
        variant, photo, outdir, repeat = args.child
        print(json.dumps(run_variant(variant, Path(photo), Path(outdir), int(repeat))))
        return
    if not CAMERA_JPEG.exists() or not HEIC.exists():
        sys.exit(f"needs {TESTDATA}")
    if not (PEERS / "node_modules" / "sharp").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True)
    variants = args.variants.split(",")
    preset = Settings.from_env({}).preset()
    print(f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, one core (CPU 0), "
          f"best of {args.repeat} runs (a shared VM: the minimum is the least disturbed); SSIM in luma against a direct resize of the upright sRGB original")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = make_inputs(folder)
        seconds_of: dict[str, float] = {}
        for label, photo in inputs.items():
            if args.photos.lower() not in label.lower():
                continue
            info = pipeline.probe(photo.read_bytes(), MAX_PIXELS)
            widths = pipeline.rendition_widths(preset.widths, info.upright_size[0])
            refs = references(photo, widths)
            print(f"\n## {label}: {photo.name}, {info.width}x{info.height}, widths {list(widths)}\n")
            print("| variant | s/photo | vs ours | peak RSS MiB | total KiB | SSIM avif | SSIM webp | SSIM jpeg |")
            print("|---|---|---|---|---|---|---|---|")
            rows = []
            for variant in (("ours",) if "50 MP" in label else variants):
                outdir = folder / label.replace(" ", "_").replace(",", "") / variant
                result = measure(variant, photo, outdir, args.repeat)
                if result is None:
                    print(f"| {variant} | could not decode it | | | | | | |")
                    continue
                result["best"] = min(result["seconds"])
                result["ssim"] = quality(outdir, refs)
                rows.append((variant, result))
            by_name = dict(rows)
            ours = by_name["ours"]["best"]
            seconds_of[label] = ours
            for variant, r in rows:
                s = r["ssim"]
                print(f"| {variant} | {r['best']:.3f} | {r['best'] / ours:.2f} | {r['rss_mib']:.0f} | "
                      f"{r['bytes'] / 1024:.0f} | {s.get('avif', 0):.4f} | {s.get('webp', 0):.4f} | {s.get('jpeg', 0):.4f} |",
                      flush=True)
            print_ratios(by_name)
        heic, same = seconds_of.get("HEIC 12 MP"), seconds_of.get("JPEG of the HEIC's pixels")
        if heic and same:
            print(f"\nHEIC vs the JPEG of the same pixels: {heic:.3f} s / {same:.3f} s = {heic / same:.2f}x")
        describe_ms, views_ms = describe_cost(CAMERA_JPEG)
        print(f"\nFrom the in-memory 320 px level (median of 30): placeholder + perceptual hashes {describe_ms:.2f} ms; "
              f"near-duplicate view hashes {views_ms:.2f} ms")
    if args.growth:  # in a fresh process: this one holds every reference image
        subprocess.run([sys.executable, __file__, "--growth-child", str(args.growth)], check=True)


if __name__ == "__main__":
    main()
