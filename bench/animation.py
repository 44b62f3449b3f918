"""Animated renditions: bytes, time and quality of our animated AVIF and WebP against the source
and sharp's animated WebP, and the memory and time an animation costs by its size (where the
defaults of MP_MAX_ANIMATION_PIXELS and MP_MAX_FRAMES come from).

    .venv/bin/python bench/animation.py            # the animated files of ../shared/testdata
    .venv/bin/python bench/animation.py --limits   # synthetic GIFs of growing size, each in a child process

Per file, at the file's own width (the rendition a feed shows it at): bytes as a ratio of the
source's, encode time (decode of every frame included) as a ratio of the still pipeline's time
on the same file in this process (its poster and the preset's still renditions), and the mean
SSIMULACRA2 over the frames against the source's composited frames (media_pipeline/ssimulacra2.py;
with alpha, the lower of the scores on dark and light grey). sharp 0.34.5 (``bench/peers``, its
defaults: quality 80, effort 4) makes the peer's animated WebP, timed by its own clock after a
warm-up. One libvips thread everywhere.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyvips
from PIL import Image, ImageSequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.settings import Settings  # noqa: E402
from media_pipeline import animation, pipeline, ssimulacra2, vips  # noqa: E402
from media_pipeline.probe import probe  # noqa: E402

TESTDATA = REPO.parent / "shared" / "testdata"
PEERS = REPO / "bench" / "peers"
NO_LIMITS = animation.AnimationLimits(max_pixels=10**12, max_frames=10**6)


def source_frames(data: bytes, info) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    frames = animation.decode_frames(data, info)
    return [f.numpy() for f in frames.frames]


def pillow_frames(data: bytes) -> list[tuple[np.ndarray, int]]:
    """Every frame of an animated AVIF or WebP with its duration, as Pillow (libavif, libwebp's
    demuxer) plays it."""
    with Image.open(io.BytesIO(data)) as picture:
        return [(np.asarray(frame.convert("RGBA")), int(frame.info.get("duration") or 0)) for frame in ImageSequence.Iterator(picture)]


def shown_at(frames: list[tuple[np.ndarray, int]], starts: list[int]) -> list[np.ndarray]:
    """The frame on screen at each of ``starts`` (ms): an encoder may merge identical frames."""
    ends = np.cumsum([duration for _, duration in frames])
    return [frames[min(int(np.searchsorted(ends, start, side="right")), len(frames) - 1)][0] for start in starts]


def mean_score(reference: list[np.ndarray], delays: tuple[int, ...], encoded: bytes) -> float:
    """Mean SSIMULACRA2 over the source's frames of what the encoded animation shows at each one's start."""
    starts = [0, *np.cumsum(delays)[:-1].tolist()]
    scores = []
    for ref, dist in zip(reference, shown_at(pillow_frames(encoded), starts)):
        if ref.shape[2] == 3:
            dist = dist[:, :, :3]
        scores.append(ssimulacra2.score(ref, dist))
    return float(np.mean(scores))


def sharp_webp(path: Path, width: int) -> tuple[int, float, bytes] | None:
    if not (PEERS / "node_modules" / "sharp").exists():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, capture_output=True)
        if done.returncode != 0:
            return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sharp.webp"
        done = subprocess.run(["node", str(PEERS / "animated.mjs"), str(path), str(out), str(width), "3"], capture_output=True, text=True)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "Error" in line] or [f"exit {done.returncode}"]
            print(f"sharp failed on {path.name}: {errors[0].strip()}", file=sys.stderr)
            return None
        report = json.loads(done.stdout.splitlines()[-1])
        return report["bytes"], min(report["seconds"]), out.read_bytes()


def files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            if probe(path.read_bytes(), 60_000_000).animated:
                found.append(path)
        except Exception:  # noqa: BLE001 - not an image we read: not an animation either
            continue
    return found


def compare_files(folder: Path, with_sharp: bool) -> None:
    settings = Settings.from_env({})
    preset = settings.preset()
    print(f"{'file':28} {'frames':>6} {'source B':>9} | {'ours':>5} {'bytes':>5} {'time':>6} {'score':>5} | peer:  bytes  time  score")
    rows: list[dict[str, object]] = []  # per file: source format, then (bytes ratio, score) per kind
    for path in files(folder):
        data = path.read_bytes()
        info = probe(data, settings.max_pixels)
        started = time.perf_counter()
        job = pipeline.prepare(data, preset, settings.max_pixels, info)
        list(pipeline.iter_renditions(job, preset.eager, release=True))
        still_seconds = time.perf_counter() - started
        reference = source_frames(data, info)
        row: dict[str, object] = {"gif": info.format.value == "gif"}
        for fmt in animation.ANIMATED_FORMATS:
            enc = preset.encoder(fmt)
            started = time.perf_counter()
            frames = animation.decode_frames(data, info)
            out = next(animation.iter_animated(frames, (frames.width,), (enc,)))
            seconds = time.perf_counter() - started
            score = mean_score(reference, frames.delays, out.data)
            row[fmt] = (len(out.data) / len(data), score)
            peer = ""
            if with_sharp and fmt == "webp" and (found := sharp_webp(path, frames.width)) is not None:
                peer_bytes, peer_seconds, peer_data = found
                row["sharp"] = (peer_bytes / len(data), mean_score(reference, frames.delays, peer_data))
                peer = f"{peer_bytes / len(data):6.2f}x {peer_seconds * 1000:5.0f}ms {row['sharp'][1]:5.1f}"  # type: ignore[index]
            print(f"{path.name:28} {info.frames:6d} {len(data):9d} | {fmt:>5} {row[fmt][0]:4.2f}x {seconds / still_seconds:5.2f}x "  # type: ignore[index]
                  f"{score:5.1f} | {peer}   ({seconds * 1000:.0f} ms; still pipeline {still_seconds * 1000:.0f} ms)")
        rows.append(row)
    print()
    # Bytes ratios by their geometric mean and median (one tiny GIF weighs as much as a large one);
    # every comparison over the same files.
    for label, chosen in (("all files", rows), ("GIF sources", [r for r in rows if r["gif"]]),
                          ("files sharp read", [r for r in rows if "sharp" in r])):
        parts = []
        for kind in ("avif", "webp", "sharp"):
            pairs = [r[kind] for r in chosen if kind in r]
            if len(pairs) == len(chosen) and pairs:
                ratios = np.array([b for b, _ in pairs])  # type: ignore[misc]
                parts.append(f"{kind} {np.exp(np.log(ratios).mean()):.2f}x (median {np.median(ratios):.2f}x), "
                             f"score {np.mean([sc for _, sc in pairs]):.1f}")  # type: ignore[misc]
        print(f"{label} ({len(chosen)}): " + "; ".join(parts))


_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from config.settings import Settings
from media_pipeline import animation, pipeline
from media_pipeline.probe import probe
settings = Settings.from_env({})
preset = settings.preset()
data = sys.stdin.buffer.read()
started = time.monotonic()
info = probe(data, settings.max_pixels)
job = pipeline.prepare(data, preset, settings.max_pixels, info)
pipeline.describe(job, preset); pipeline.identify(job)
list(pipeline.iter_renditions(job, preset.eager, release=True))
frames = animation.decode_frames(data, info)
widths = pipeline.rendition_widths(preset.widths, info.upright_size[0])
encoders = tuple(preset.encoder(f) for f in animation.ANIMATED_FORMATS)
sizes = [len(r.data) for r in animation.iter_animated(frames, widths, encoders)]
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.monotonic() - started, "peak_mib": peak / 1024, "bytes": sum(sizes)}))
"""


def synthetic_gif(side: int, frames: int) -> bytes:
    """A moving gradient-and-noise scene, one GIF frame per step: every frame differs everywhere."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    pictures = []
    for i in range(frames):
        shifted = np.roll(base, i * 3, axis=1)
        pictures.append(Image.fromarray(shifted).quantize(64))
    out = io.BytesIO()
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=40, loop=0)
    return out.getvalue()


def measure_limits() -> None:
    """The whole worker path (poster, stills, every animated width and format) per size, each in
    a fresh process; a baseline with the still pipeline alone comes first."""
    print(f"{'frames x side':>14} {'Mpx':>6} | {'peak MiB':>8} {'seconds':>7} {'bytes':>9}")
    for side, frames in ((480, 1), (480, 44), (480, 108), (480, 217)):
        data = synthetic_gif(side, frames)
        done = subprocess.run([sys.executable, "-c", _CHILD if frames > 1 else _CHILD.split("frames = animation")[0]
                               + "print(json.dumps({'seconds': time.monotonic() - started, 'peak_mib': "
                               "next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) / 1024, 'bytes': 0}))",
                               str(REPO)], input=data, capture_output=True)
        if done.returncode != 0:
            print(f"{frames:>5} x {side:<6} failed: {done.stderr.decode()[-300:]}")
            continue
        report = json.loads(done.stdout.splitlines()[-1])
        print(f"{frames:>5} x {side:<6} {frames * side * side / 1e6:6.1f} | {report['peak_mib']:8.0f} {report['seconds']:7.1f} {report['bytes']:9d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=TESTDATA / "formats", help="where the animated files are")
    parser.add_argument("--limits", action="store_true", help="memory and time by animation size, not the files")
    parser.add_argument("--no-sharp", action="store_true", help="without the peer")
    args = parser.parse_args()
    vips.configure()
    pyvips.concurrency_set(1)
    measure_limits() if args.limits else compare_files(args.folder, with_sharp=not args.no_sharp)


if __name__ == "__main__":
    main()
