"""The auto-quality search against the best it could do: encodes, overshoot and probe bytes.

    .venv/bin/python bench/quality_search.py [--corpus 20] [--camera 6] [--heic 3] [--target avif=78 jpeg=78.5]
                                             [--set jpeg.accept=2 ...] [--try avif:start=68,slope=0.75 ...]
                                             [--follow avif=jpeg] [--curves /tmp/probe-curves.json]

For each photo (the same ones as bench/quality.py), the probe the pipeline would search on is
encoded at every quality of a range and scored (SSIMULACRA2), once: the photo's whole curve,
cached in ``--curves``. Then the search (``autoquality.search``) runs on those curves, with the
preset's settings (``--set`` over them, as in bench/quality.py) and with each ``--try``
(settings over those), and is compared with the lowest quality whose probe score reaches the
target: how many encodes it took, how many quality steps and score points above that optimum it
stopped, and the probe bytes that cost. Prints a table; asserts nothing.

``--follow avif=jpeg`` fits the quality AVIF needs on a photo against the quality JPEG's search
found it needs (``Choice.needed``) on the corpus photos of even index (by name), and reports the
fit and the search that starts from it (``follow``, ``follow_fit``) on the photos it did not
see: the corpus photos of odd index, then the camera photos and HEICs.
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

RANGES = {"avif": range(40, 96), "jpeg": range(50, 99)}  # what a search tries at targets near 78


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
                decoded = quality.decode(enc.format, data)
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


def simulate(all_curves: dict, fmt: str, auto: AutoQuality, leader: AutoQuality | None = None) -> dict[str, float]:
    """The search of ``fmt`` on every photo's curve; with ``leader``, the format ``auto`` follows is
    searched first with those settings and ``fmt`` starts where its result predicts."""
    encodes, steps, points, extra_bytes, misses = [], [], [], [], 0
    for photo, by_format in all_curves.items():
        rows = _rows(by_format, fmt)
        best = _optimum(rows, auto)
        start = None
        if leader is not None and auto.follow:
            start = autoquality.follow_start(auto, _search(_rows(by_format, auto.follow), leader)[0])
        choice, calls = _search(rows, auto, start)
        got = _near(rows, choice.quality)
        encodes.append(calls)
        steps.append(got - best)
        points.append(rows[got][1] - rows[best][1])
        extra_bytes.append(rows[got][0] / rows[best][0] - 1)
        misses += rows[got][1] < auto.target
    return {"encodes": float(np.mean(encodes)), "max encodes": max(encodes), "steps": float(np.mean(steps)),
            "points": float(np.mean(points)), "bytes": float(np.mean(extra_bytes)), "misses": misses}


def _rows(by_format: dict, fmt: str) -> dict[int, tuple[int, float]]:
    return {q: (size, score) for q, size, score in by_format[fmt]}


def _optimum(rows: dict[int, tuple[int, float]], auto: AutoQuality) -> int:
    """The lowest quality whose probe score reaches the target (``auto.max`` if none does)."""
    return next((q for q in sorted(rows) if rows[q][1] >= auto.target and auto.min <= q <= auto.max), auto.max)


def _search(rows: dict[int, tuple[int, float]], auto: AutoQuality, start: int | None = None) -> tuple[autoquality.Choice, int]:
    """The search on one curve: its choice and how many encodes it took."""
    calls: list[int] = []

    def score_at(q: int) -> float:
        calls.append(q)
        return rows[_near(rows, q)][1]

    return autoquality.search(score_at, auto, start), len(calls)


def fit_follow(all_curves: dict, fmt: str, auto: AutoQuality, leader: AutoQuality) -> tuple[float, float]:
    """(intercept, scale) of a least-squares line from the leader's ``needed`` to ``fmt``'s optimum."""
    needed, optimum = _pairs(all_curves, fmt, auto, leader)
    scale, intercept = np.polyfit(needed, optimum, 1)
    return round(float(intercept), 1), round(float(scale), 3)


def follow_error(all_curves: dict, fmt: str, auto: AutoQuality, leader: AutoQuality) -> float:
    """The root mean square, in quality steps, of ``fmt``'s optimum less what ``auto.follow_fit`` predicts."""
    needed, optimum = _pairs(all_curves, fmt, auto, leader)
    intercept, scale = auto.follow_fit
    return float(np.sqrt(np.mean((optimum - (intercept + scale * needed)) ** 2)))


def _pairs(all_curves: dict, fmt: str, auto: AutoQuality, leader: AutoQuality) -> tuple[np.ndarray, np.ndarray]:
    """(the leader's ``needed``, ``fmt``'s optimum) per photo, flat pictures left out: every quality
    passes on them, so their optimum is the curve's first quality, not a need."""
    assert auto.follow is not None
    real = [c for c in all_curves.values() if c["detail"] > 0.5]
    needed = np.array([_search(_rows(c, auto.follow), leader)[0].needed for c in real])
    return needed, np.array([_optimum(_rows(c, fmt), auto) for c in real])


def _near(rows: dict, quality: int) -> int:
    """``quality``, or the nearest one the curve holds (only a flat picture's search leaves the range)."""
    return min(rows, key=lambda q: abs(q - quality))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=int, default=20)
    parser.add_argument("--camera", type=int, default=6)
    parser.add_argument("--heic", type=int, default=3)
    parser.add_argument("--target", nargs="*", default=[], metavar="FORMAT=SCORE")
    parser.add_argument("--set", action="append", default=[], metavar="FORMAT.NAME=VALUE",
                        help="override an auto setting of the searches, as in bench/quality.py")
    parser.add_argument("--try", dest="tries", action="append", default=[], metavar="FORMAT:NAME=VALUE,...")
    parser.add_argument("--follow", nargs="*", default=[], metavar="FORMAT=LEADER",
                        help="fit FORMAT's start on LEADER's result on half the corpus, check on the rest")
    parser.add_argument("--curves", type=Path, default=Path("/tmp/probe-curves.json"))
    args = parser.parse_args()
    vips.configure(1)
    inputs = photos(args.corpus, args.camera, args.heic)
    all_curves = curves(inputs, args.curves)
    for item in args.target:
        fmt, _, value = item.partition("=")
        OVERRIDES.setdefault(fmt, {})["target"] = value
    for item in args.set:
        key, _, value = item.partition("=")
        fmt, _, name = key.partition(".")
        OVERRIDES.setdefault(fmt, {})[name] = value
    preset = Settings.from_env({}).preset()
    bases = {enc.format: _auto(enc).auto for enc in preset.formats if enc.format in RANGES}
    follows = dict(item.split("=") for item in args.follow)
    corpus = sorted(p.name for p in inputs if p.parent.name == "corpus-dev")
    fit_set = {name: all_curves[name] for name in corpus[0::2]}
    check_sets = {"all photos": all_curves} if not follows else {
        "corpus, odd index": {name: all_curves[name] for name in corpus[1::2]},
        "camera and HEIC": {p.name: all_curves[p.name] for p in inputs if p.parent.name != "corpus-dev"}}
    for set_name, chosen in check_sets.items():
        if not chosen:
            continue
        print(f"\n{set_name}: {len(chosen)} photos")
        print("| format | search | encodes (mean, max) | quality steps above the optimum | score points above | "
              "probe bytes above | below target |")
        print("|---|---|---|---|---|---|---|")
        for fmt, base in bases.items():
            assert base is not None
            variants = [("preset", base, None)]
            for item in args.tries:
                name, _, settings = item.partition(":")
                if name == fmt:
                    changes = dict(kv.split("=") for kv in settings.split(","))
                    variants.append((settings, dataclasses.replace(base, **{k: type(getattr(base, k))(float(v)) if k != "target"
                                                                            else float(v) for k, v in changes.items()}), None))
            if fmt in follows:
                leader = bases[follows[fmt]]
                assert leader is not None
                probe = dataclasses.replace(base, follow=follows[fmt])
                fitted = dataclasses.replace(probe, follow_fit=fit_follow(fit_set, fmt, probe, leader))
                variants.append((f"follows {follows[fmt]}: {fitted.follow_fit[0]:g} + {fitted.follow_fit[1]:g} x needed, fitted on "
                                 f"{len(fit_set)} photos (RMS error {follow_error(fit_set, fmt, fitted, leader):.2f} steps there, "
                                 f"{follow_error(chosen, fmt, fitted, leader):.2f} here, flat pictures left out)", fitted, leader))
            for name, auto, leader in variants:
                r = simulate(chosen, fmt, auto, leader)
                print(f"| {fmt} | {name} (target {auto.target:g}, start {auto.start}, slope {auto.slope:g}, budget "
                      f"{auto.budget}, accept {auto.accept:g}) | {r['encodes']:.2f}, {r['max encodes']} | {r['steps']:.2f} | "
                      f"{r['points']:.2f} | {r['bytes'] * 100:.1f}% | {r['misses']} |")
    details = np.array([c["detail"] for c in all_curves.values()])
    for fmt, base in bases.items():
        assert base is not None
        best = np.array([_optimum(_rows(c, fmt), base) for c in all_curves.values()])
        real = details > 0.5  # a flat picture (detail 0, optimum = min) would make any predictor look good
        corr = np.corrcoef(np.log(details[real] + 1), best[real])[0, 1]
        print(f"{fmt} at {base.target:g}: optimum quality median {np.median(best):.0f} (p10 {np.percentile(best, 10):.0f}, "
              f"p90 {np.percentile(best, 90):.0f}); correlation with log detail, flat pictures left out: {corr:.2f}")


if __name__ == "__main__":
    main()
