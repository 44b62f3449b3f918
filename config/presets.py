"""The rendition preset: ``config/presets.toml`` read into the core's frozen ``Preset``, with
every problem in it reported as a ValueError naming it. ``Settings.preset`` calls it with the
settings that change how every format renders (MP_COLOR_GAMUT, MP_HDR)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from media_pipeline.framing import parse_aspect
from media_pipeline.models import AutoQuality, EncoderSettings, Preset

PRESETS_FILE = Path(__file__).with_name("presets.toml")
# The encoders a format may name (``encoder = ...``); the first is the default.
ENCODERS = {"avif": ("default",), "webp": ("default",), "jpeg": ("default", "jpegli")}


def load_preset(path: Path, gamut: str = "srgb", dynamic_range: str = "sdr") -> Preset:
    """Read the rendition preset from TOML into the core's frozen ``Preset``, every format
    rendering in ``gamut`` and ``dynamic_range`` (MP_COLOR_GAMUT, MP_HDR)."""
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    default = doc["default"]
    formats = tuple(
        EncoderSettings(
            format=name,
            quality=auto.start if (auto := _auto_quality(name, opts)) else int(opts["quality"]),
            effort=int(opts.get("effort", 0)),
            progressive=bool(opts.get("progressive", False)),
            # ``trellis``: mozjpeg's for JPEG (off unless asked), aom's for AVIF (on unless turned off).
            trellis=name != "avif" and bool(opts.get("trellis", False)),
            avif_trellis=name != "avif" or bool(opts.get("trellis", True)),
            auto=auto,
            encoder=str(opts.get("encoder", "default")),
            gamut=gamut,
            dynamic_range=dynamic_range,
        )
        for name, opts in default["formats"].items()
    )
    for enc in formats:
        if enc.format not in ("avif", "webp", "jpeg"):
            raise ValueError(f"unknown rendition format {enc.format!r}")
        if not 1 <= enc.quality <= 100:
            raise ValueError(f"{enc.format} quality must be 1..100")
        if enc.encoder not in ENCODERS[enc.format]:
            raise ValueError(f"{enc.format} encoder must be one of {', '.join(ENCODERS[enc.format])}, not {enc.encoder!r}")
        if enc.encoder == "jpegli" and (enc.progressive or enc.trellis):
            raise ValueError("the jpegli encoder writes baseline JPEG without trellis: set progressive and trellis false")
        if enc.auto and enc.auto.follow:
            leader = next((e for e in formats if e.format == enc.auto.follow), None)
            if leader is None or leader.auto is None or leader.auto.follow:
                raise ValueError(f"{enc.format} follows {enc.auto.follow!r}, which must be an auto format that follows none")
    eager = tuple(default.get("eager_formats", [enc.format for enc in formats]))
    if not eager or not set(eager) <= {enc.format for enc in formats}:
        raise ValueError("eager_formats must name formats defined under [default.formats]")
    widths = tuple(sorted({int(w) for w in default["widths"]}, reverse=True))
    if not widths or widths[-1] < 16:
        raise ValueError("widths must be a non-empty list of widths >= 16")
    aspects = tuple(dict.fromkeys(str(a).strip() for a in default.get("aspects", [])))
    bad = [a for a in aspects if parse_aspect(a) is None]
    if bad:
        raise ValueError(f"aspects must be A:B with A and B from 1 to 99, not {', '.join(bad)}")
    crop_widths = tuple(sorted({int(w) for w in default.get("crop_widths", [])}, reverse=True))
    if aspects and (not crop_widths or crop_widths[-1] < 16):
        raise ValueError("crop_widths must be a non-empty list of widths >= 16 when aspects are set")
    placeholder = doc.get("placeholder", {})
    return Preset(
        widths=widths,
        formats=formats,
        eager_formats=eager,
        blurhash_x=int(placeholder.get("components_x", 4)),
        blurhash_y=int(placeholder.get("components_y", 3)),
        aspects=aspects,
        crop_widths=crop_widths if aspects else (),
    )


# Score points per quality step near the usual targets, measured on 29 photos' probe curves
# (bench/quality_search.py; AVIF 0.8 and JPEG 0.66 left the search 1.6 and 1.2% of probe bytes above
# the lowest passing quality, against 3.2 and 4.7% with 0.9 and 0.55): the search's second guess
# steps by (target - score) / slope from its first.
_AUTO_SLOPE = {"avif": 0.8, "webp": 0.7, "jpeg": 0.66}


def _auto_quality(fmt: str, opts: dict[str, Any]) -> AutoQuality | None:
    """``quality = "auto"`` with ``target``, ``min``, ``max`` (and optionally ``start``, ``slope``,
    ``budget``, ``accept``, ``follow`` and ``follow_fit``)."""
    if opts.get("quality") != "auto":
        return None
    low, high = int(opts.get("min", 30)), int(opts.get("max", 90))
    fit = [float(v) for v in opts.get("follow_fit", (0.0, 1.0))]
    follow = opts.get("follow")
    auto = AutoQuality(target=float(opts["target"]), min=low, max=high, start=int(opts.get("start", (low + high) // 2)),
                       slope=float(opts.get("slope", _AUTO_SLOPE.get(fmt, 0.7))), budget=int(opts.get("budget", 3)),
                       accept=float(opts.get("accept", 1.0)), follow=None if follow is None else str(follow),
                       follow_fit=(fit[0], fit[1]) if len(fit) == 2 else (float("nan"), float("nan")))
    if not 1 <= auto.min <= auto.start <= auto.max <= 100:
        raise ValueError(f"{fmt} auto quality needs 1 <= min <= start <= max <= 100")
    if not 0 < auto.target <= 100 or auto.budget < 1 or auto.slope <= 0 or auto.accept < 1:
        raise ValueError(f"{fmt} auto quality needs a target in 0..100, a budget of at least 1, a positive slope "
                         "and an accept of at least 1")
    if len(fit) != 2 or auto.follow == fmt:
        raise ValueError(f"{fmt} auto quality: follow names another format, follow_fit is [intercept, scale]")
    return auto
