"""Client hints on the negotiated image URLs: which width a browser's hints ask for.

A page that lays an image out at 300 CSS px on a 3x screen needs 900 device pixels; with
``Sec-CH-Width`` (the layout width in device pixels) or ``Sec-CH-DPR`` (the device pixel ratio, the
URL's width being CSS pixels) the origin picks the smallest preset width that covers them, and
``Save-Data: on`` steps one preset width down from there. Only the negotiated URLs (no extension)
read hints: an app that names a width and a format gets exactly that. Responses that may depend on
them say so in ``Vary``, and ``Accept-CH`` asks browsers to send them.

Pure: header values and widths in, a width out.
"""

from __future__ import annotations

import bisect
import re
from typing import Mapping

# What a negotiated answer may depend on, and the hints a browser is asked to send.
VARY = "Accept, Sec-CH-Width, Sec-CH-DPR, Save-Data"
ACCEPT_CH = "Sec-CH-Width, Sec-CH-DPR"
# Hints outside these are garbage or hostile; they are ignored, not clamped.
MAX_HINT_WIDTH = 20_000
MAX_DPR = 8.0
# Structured-field integer and decimal (RFC 8941): digits, and for the DPR an optional fraction.
_INTEGER = re.compile(r"^[0-9]{1,15}$")
_DECIMAL = re.compile(r"^[0-9]{1,12}(?:\.[0-9]{1,3})?$")


def wanted_pixels(headers: Mapping[str, str], url_width: int) -> int | None:
    """The device pixels the hints ask for: ``Sec-CH-Width`` when valid, else the URL's width
    times a valid ``Sec-CH-DPR``; ``None`` when neither is sent (or both are invalid)."""
    width = (headers.get("Sec-CH-Width") or "").strip()
    if _INTEGER.match(width) and 0 < int(width) <= MAX_HINT_WIDTH:
        return int(width)
    dpr = (headers.get("Sec-CH-DPR") or "").strip()
    if _DECIMAL.match(dpr) and 0 < float(dpr) <= MAX_DPR:
        return max(1, round(url_width * float(dpr)))
    return None


def save_data(headers: Mapping[str, str]) -> bool:
    return (headers.get("Save-Data") or "").strip().lower() == "on"


def hinted_width(headers: Mapping[str, str], url_width: int, widths: tuple[int, ...]) -> int | None:
    """The preset width (of ``widths``) the hints pick: the smallest that covers the wanted
    pixels (the largest when none does), one smaller with ``Save-Data: on``; ``None`` when no
    hint is sent, and then the URL's width stands."""
    if not widths:
        return None
    wanted = wanted_pixels(headers, url_width)
    saving = save_data(headers)
    if wanted is None and not saving:
        return None
    ordered = sorted(set(widths))
    if wanted is None:  # Save-Data alone: the next preset width below the URL's
        below = bisect.bisect_left(ordered, url_width)
        return ordered[below - 1] if below > 0 else None
    index = min(bisect.bisect_left(ordered, wanted), len(ordered) - 1)
    return ordered[max(index - 1, 0)] if saving else ordered[index]


def fallbacks(chosen: int, widths: tuple[int, ...]) -> list[int]:
    """``chosen`` and then the smaller preset widths, widest first: a photo narrower than a preset
    width has no rendition at it, and the hints then get the widest that exists."""
    return [chosen, *sorted((w for w in set(widths) if w < chosen), reverse=True)]
