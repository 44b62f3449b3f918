"""How well near-duplicate detection finds reposts, and how often it pairs distinct photos.

    python bench/dedupe_eval.py [folder of distinct photos] [--near 31] [--limit N]

Every photo is indexed (its fingerprint through the real pipeline, as a worker makes it),
together with four 60% tiles of it as distractors that share content with it. Each edit in
bench/edits.py is applied to every photo, and the edited copy is looked up the way a new upload
is (all query views, mirrored too) at the chosen distance. Printed per edit: recall (the
original is among the hits) and false pairs (hits on any other photo or its tiles); then the
same over a range of distances, and the false pairs among the originals themselves.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import edits  # noqa: E402
from config.settings import Settings  # noqa: E402
from media_pipeline import dedupe, pipeline  # noqa: E402
from media_pipeline.hashindex import MemoryHashIndex  # noqa: E402

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "corpus-dev"
SWEEP = (16, 24, 31, 40, 48)
TARGETS = {"resize": 0.99, "recompress": 0.99, "brightness": 0.99, "greyscale": 0.99, "mirror": 0.99,
           "border": 0.95, "screenshot": 0.95, "crop10": 0.9, "caption": 0.9, "asym_crop": 0.5, "rotate5": 0.5}


def identify(data: bytes, settings: Settings) -> pipeline.Identity:
    preset = settings.preset()
    job = pipeline.prepare(data, preset, settings.max_pixels, widths=pipeline.identity_widths(preset))
    return pipeline.identify(job)


def main() -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--near", type=int, default=settings.near_distance, help="match distance (bits of 256)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos")
    parser.add_argument("--seed", default="dedupe-eval")
    args = parser.parse_args()
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if args.limit:
        files = files[: args.limit]
    if len(files) < 2:
        sys.exit(f"need at least two photos in {args.folder}")
    widest = max(SWEEP + (args.near,))

    index = MemoryHashIndex()
    source: dict[str, int] = {}
    originals: list[pipeline.Identity] = []
    queries: dict[str, list[dedupe.Fingerprint]] = {name: [] for name in edits.EDITS}
    seconds: list[float] = []
    for i, path in enumerate(files):
        data = path.read_bytes()
        started = time.perf_counter()
        identity = identify(data, settings)
        seconds.append(time.perf_counter() - started)
        originals.append(identity)
        index.add(f"o{i}", None, [(h.view, h.value) for h in identity.fingerprint.stored])
        source[f"o{i}"] = i
        rgb = edits.decode_rgb(data)
        for k in range(4):
            tile = identify(edits.jpeg_bytes(edits.tile(rgb, k)), settings).fingerprint
            index.add(f"t{i}-{k}", None, [(h.view, h.value) for h in tile.stored])
            source[f"t{i}-{k}"] = i
        for name, edit in edits.EDITS.items():
            edited = edit(rgb, random.Random(f"{args.seed}-{path.stem}-{name}"))
            queries[name].append(identify(edits.jpeg_bytes(edited), settings).fingerprint)

    def look_up(fp: dedupe.Fingerprint, own: int) -> tuple[int | None, list[int]]:
        """(distance to the original if found within the widest radius, distances of false hits)."""
        hits = index.search([q.value for q in fp.queries], widest, exclude=f"o{own}" if fp is originals[own].fingerprint else None)
        found = next((h.distance for h in hits if h.photo_id == f"o{own}"), None)
        return found, [h.distance for h in hits if source[h.photo_id] != own]

    print(f"# dedupe_eval: {len(files)} photos from {args.folder}, {index.count()} hashes indexed "
          f"({len(files)} originals + {4 * len(files)} distractor tiles), match distance {args.near} of 256\n")
    results = {name: [look_up(fp, i) for i, fp in enumerate(fps)] for name, fps in queries.items()}
    print("| edit | recall | target | false pairs | median distance found |")
    print("|---|---|---|---|---|")
    total_false = 0
    for name, rows in results.items():
        found = [d for d, _ in rows if d is not None and d <= args.near]
        false = sum(sum(1 for d in f if d <= args.near) for _, f in rows)
        total_false += false
        recall = len(found) / len(rows)
        ok = "yes" if recall >= TARGETS[name] else "no"
        median = statistics.median(found) if found else "-"
        print(f"| {name} | {recall:.3f} | {TARGETS[name]} ({ok}) | {false} | {median} |")
    base = [look_up(o.fingerprint, i) for i, o in enumerate(originals)]
    base_false = sum(sum(1 for d in f if d <= args.near) for _, f in base)
    pairs = len(files) * (len(edits.EDITS) + 1) * (len(files) - 1) * 5
    print(f"\nFalse pairs at {args.near}: {total_false} among edited copies, {base_false} among the originals "
          f"(about {pairs:,} cross pairs, each compared over every query view and stored view).")
    closest_false = min([d for rows in results.values() for _, f in rows for d in f] + [d for _, f in base for d in f], default=None)
    print(f"Closest false pair found within {widest}: {closest_false if closest_false is not None else f'none (> {widest})'}")

    print("\n| distance | " + " | ".join(results) + " | false pairs |")
    print("|---" * (len(results) + 2) + "|")
    for radius in SWEEP:
        recalls = [sum(1 for d, _ in rows if d is not None and d <= radius) / len(rows) for rows in results.values()]
        false = sum(sum(1 for d in f if d <= radius) for rows in list(results.values()) + [base] for _, f in rows)
        print(f"| {radius} | " + " | ".join(f"{r:.2f}" for r in recalls) + f" | {false} |")
    qualities = sorted(o.fingerprint.quality for o in originals)
    print(f"\nFingerprint + pixel digest per photo: median {1000 * statistics.median(seconds):.1f} ms (decode and resize included); "
          f"hash quality of the originals: min {qualities[0]:.1f}, median {np.median(qualities):.1f}")


if __name__ == "__main__":
    main()
