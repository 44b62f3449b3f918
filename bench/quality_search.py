"""The auto-quality search against the best it could do: encodes, overshoot and probe bytes.

    .venv/bin/python bench/quality_search.py [--corpus 20] [--camera 6] [--heic 3] [--target avif=78 jpeg=78.5]
                                             [--try avif:start=68,slope=0.75 ...] [--curves /tmp/probe-curves.json]

For each photo (the same ones as bench/quality.py), the probe the pipeline would search on is
encoded at every quality of a range and scored (SSIMULACRA2), once: the photo's whole curve,
cached in ``--curves``. Then the search (``autoquality.search``) runs on those curves, with the
preset's settings and with each ``--try`` (settings over the preset's), and is compared with the
lowest quality whose probe score reaches the target: how many encodes it took, how many quality
steps and score points above that optimum it stopped, and the probe bytes that cost. Prints a
table; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pyvips

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quality import MAX_PIXELS, OVERRIDES, _auto, photos  # noqa: E402
from config.settings import Settings  # noqa: E402
from media_pipeline import autoquality, pipeline, quality, ssimulacra2, vips  # noqa: E402
from media_pipeline.encode import encode  # noqa: E402
from media_pipeline.models import AutoQuality  # noqa: E402

RANGES = {"avif": range(30, 96), "jpeg": range(40, 99)}  # of a search from 30 (the preset's min) to 95


def curves(inputs: list[Path], path: Path) -> dict[str, dict[str, list[tuple[int, int, float]]]]:
    """{photo: {format: [(quality, probe bytes, score)]}}, from ``path`` when it holds them."""
    found = json.loads(path.read_text()) if path.exists() else {}
    preset = Settings.from_env({}).preset()
    for photo in inputs:
        if photo.name in found:
            continue
        job = pipeline.prepare(photo.read_bytes(), preset, MAX_PIXELS)
        probe = autoquality.probe_picture(job.levels[pipeline._probe_width(job)].numpy())
        reference = ssimulacra2.reference(quality._rgb(probe))
        picture = pyvips.Image.new_from_array(probe, interpretation="srgb")
        found[photo.name] = {}
        for enc in preset.formats:
            if enc.format not in RANGES:
                continue
            rows = []
            for q in RANGES[enc.format]:
                data = encode(picture, dataclasses.replace(enc, quality=q, auto=None))
                decoded = quality._LOADERS[enc.format](data).numpy()
                rows.append((q, len(data), ssimulacra2.compare(reference, quality._rgb(decoded))))
            found[photo.name][enc.format] = rows
        found[photo.name]["detail"] = detail(probe)
        path.write_text(json.dumps(found))
        print(f"  {photo.name}", flush=True)
    return {p.name: found[p.name] for p in inputs}


def detail(probe: np.ndarray) -> float:
    """How much fine detail a probe holds: the mean absolute difference between neighbouring
    pixels in luma (0 for a flat picture, about 3-15 for photos); a candidate predictor of the
    quality a photo needs, so the search could start there."""
    luma = probe[:, :, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float((np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean()) / 2)


def simulate(all_curves: dict, fmt: str, auto: AutoQuality) -> dict[str, float]:
    encodes, steps, points, extra_bytes, misses = [], [], [], [], 0
    for photo, by_format in all_curves.items():
        rows = {q: (size, score) for q, size, score in by_format[fmt]}
        passing = [q for q in sorted(rows) if rows[q][1] >= auto.target and auto.min <= q <= auto.max]
        best = passing[0] if passing else auto.max
        calls: list[int] = []

        def score_at(q: int) -> float:
            calls.append(q)
            return rows[_near(rows, q)][1]

        choice = autoquality.search(score_at, auto)
        got = _near(rows, choice.quality)
        encodes.append(len(calls))
        steps.append(got - best)
        points.append(rows[got][1] - rows[best][1])
        extra_bytes.append(rows[got][0] / rows[best][0] - 1)
        misses += rows[got][1] < auto.target
    return {"encodes": float(np.mean(encodes)), "max encodes": max(encodes), "steps": float(np.mean(steps)),
            "points": float(np.mean(points)), "bytes": float(np.mean(extra_bytes)), "misses": misses}


def _near(rows: dict, quality: int) -> int:
    """``quality``, or the nearest one the curve holds (only a flat picture's search leaves the range)."""
    return min(rows, key=lambda q: abs(q - quality))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=int, default=20)
    parser.add_argument("--camera", type=int, default=6)
    parser.add_argument("--heic", type=int, default=3)
    parser.add_argument("--target", nargs="*", default=[], metavar="FORMAT=SCORE")
    parser.add_argument("--try", dest="tries", action="append", default=[], metavar="FORMAT:NAME=VALUE,...")
    parser.add_argument("--curves", type=Path, default=Path("/tmp/probe-curves.json"))
    args = parser.parse_args()
    vips.configure(1)
    inputs = photos(args.corpus, args.camera, args.heic)
    all_curves = curves(inputs, args.curves)
    for item in args.target:
        fmt, _, value = item.partition("=")
        OVERRIDES.setdefault(fmt, {})["target"] = value
    preset = Settings.from_env({}).preset()
    print(f"\n{len(all_curves)} photos")
    print("| format | search | encodes (mean, max) | quality steps above the optimum | score points above | "
          "probe bytes above | below target |")
    print("|---|---|---|---|---|---|---|")
    for enc in preset.formats:
        if enc.format not in RANGES:
            continue
        base = _auto(enc).auto
        assert base is not None
        variants = [("preset", base)]
        for item in args.tries:
            fmt, _, settings = item.partition(":")
            if fmt == enc.format:
                changes = dict(kv.split("=") for kv in settings.split(","))
                variants.append((settings, dataclasses.replace(base, **{k: type(getattr(base, k))(float(v)) if k != "target"
                                                                        else float(v) for k, v in changes.items()})))
        for name, auto in variants:
            r = simulate(all_curves, enc.format, auto)
            print(f"| {enc.format} | {name} (target {auto.target:g}, start {auto.start}, slope {auto.slope:g}, budget "
                  f"{auto.budget}) | {r['encodes']:.2f}, {r['max encodes']} | {r['steps']:.2f} | {r['points']:.2f} | "
                  f"{r['bytes'] * 100:.1f}% | {r['misses']} |")
    details = np.array([c["detail"] for c in all_curves.values()])
    for enc in preset.formats:
        if enc.format in RANGES:
            target = float(OVERRIDES.get(enc.format, {}).get("target", 75))
            best = np.array([next((q for q, _, s in c[enc.format] if s >= target), RANGES[enc.format][-1])
                             for c in all_curves.values()])
            real = details > 0.5  # a flat picture (detail 0, optimum = min) would make any predictor look good
            corr = np.corrcoef(np.log(details[real] + 1), best[real])[0, 1]
            print(f"{enc.format} at {target:g}: optimum quality median {np.median(best):.0f} (p10 {np.percentile(best, 10):.0f}, "
                  f"p90 {np.percentile(best, 90):.0f}); correlation with log detail, flat pictures left out: {corr:.2f}")


if __name__ == "__main__":
    main()
