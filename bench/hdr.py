"""What keeping HDR and wide colour costs: time and bytes of every eager rendition of the same
photos with the gain map kept (MP_HDR=keep) against SDR only (MP_HDR=sdr), and with Display P3
kept (MP_COLOR_GAMUT=p3) against sRGB (srgb), run in the same process. Ratios are per photo
(best of ``--repeat`` runs of ``pipeline.process``, the whole ingest pipeline, on one thread),
plus bytes of the JPEG renditions alone, the only ones that carry the gain map. Also how close an
HDR rendition comes to the source's HDR picture (libvips' ``uhdr2scRGB`` of each, at the
rendition's size): the mean difference in stops, against that of its SDR base alone.

    .venv/bin/python bench/hdr.py ../shared/testdata/formats/jpeg/ultra-hdr.jpg ../shared/testdata/formats/heic/iphone_13_pro_max.HEIC
    .venv/bin/python bench/hdr.py --gamut ../shared/testdata/camera-exif/IMG_9424.JPG ../shared/testdata/formats/jpeg/xmp_test.jpg
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyvips

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import Settings  # noqa: E402
from media_pipeline import pipeline, vips  # noqa: E402
from media_pipeline.models import Preset  # noqa: E402
from media_pipeline.probe import probe  # noqa: E402

LIMIT = 50_000_000


def run(data: bytes, preset: Preset, repeat: int) -> tuple[float, dict[str, int]]:
    """Best time of ``repeat`` runs, and bytes per format."""
    best = float("inf")
    sizes: dict[str, int] = {}
    for _ in range(repeat):
        started = time.perf_counter()
        result = pipeline.process(data, preset, LIMIT)
        best = min(best, time.perf_counter() - started)
        sizes = {}
        for r in result.renditions:
            sizes[r.format] = sizes.get(r.format, 0) + len(r.data)
    return best, sizes


def stops_from_source(data: bytes, preset: Preset) -> tuple[float, float] | None:
    """Mean |log2| difference of our largest HDR JPEG's HDR picture, and of its SDR base, from the source's."""
    try:
        source = pyvips.Image.uhdrload_buffer(data).uhdr2scRGB()
    except pyvips.Error:
        return None  # not an Ultra HDR JPEG: libvips cannot show the source's HDR picture
    jpeg = max((r for r in pipeline.process(data, preset, LIMIT).renditions if r.hdr), key=lambda r: r.width, default=None)
    if jpeg is None:
        return None
    reference = np.maximum(source.resize(jpeg.width / source.width, vscale=jpeg.height / source.height, kernel="linear").numpy()[..., :3], 0)
    ours = np.maximum(pyvips.Image.uhdrload_buffer(jpeg.data).uhdr2scRGB().numpy()[..., :3], 0)
    base = np.maximum(pyvips.Image.new_from_buffer(jpeg.data, "").colourspace("scrgb").numpy()[..., :3], 0)

    def stops(a: np.ndarray) -> float:
        return float(np.abs(np.log2(a + 1 / 64) - np.log2(reference + 1 / 64)).mean())
    return stops(ours), stops(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--gamut", action="store_true", help="compare MP_COLOR_GAMUT=p3 with srgb instead of MP_HDR")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    vips.configure()
    name, kept, flat = ("MP_COLOR_GAMUT", "p3", "srgb") if args.gamut else ("MP_HDR", "keep", "sdr")
    presets = {mode: Settings.from_env({name: mode}).preset() for mode in (kept, flat)}
    presets = {mode: Preset(widths=p.widths, formats=p.formats, eager_formats=p.eager_formats) for mode, p in presets.items()}
    print(f"{name}={kept} against {name}={flat}, best of {args.repeat}, eager formats {', '.join(presets[kept].eager_formats)}")
    print("| photo | kind | time (s) kept / flat | time ratio | bytes ratio (all) | bytes ratio (JPEG) | stops from the source's HDR: ours / SDR base |")
    print("|---|---|---|---|---|---|---|")
    for path in args.photos:
        data = path.read_bytes()
        info = probe(data, LIMIT)
        kind = info.hdr or ("wide gamut" if args.gamut else "sdr")
        run(data, presets[flat], 1)  # warm-up
        t_kept, b_kept = run(data, presets[kept], args.repeat)
        t_flat, b_flat = run(data, presets[flat], args.repeat)
        stops = None if args.gamut else stops_from_source(data, presets[kept])
        jpeg = f"{b_kept.get('jpeg', 0) / b_flat['jpeg']:.2f}x" if b_flat.get("jpeg") else "-"
        shown = f"{stops[0]:.2f} / {stops[1]:.2f}" if stops else "-"
        print(f"| {path.name} | {kind} | {t_kept:.2f} / {t_flat:.2f} | {t_kept / t_flat:.2f}x | "
              f"{sum(b_kept.values()) / sum(b_flat.values()):.2f}x | {jpeg} | {shown} |")


if __name__ == "__main__":
    main()
