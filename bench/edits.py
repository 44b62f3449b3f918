"""The edits a repost goes through, made from a photo's pixels (RGB uint8 arrays).

Shared by the dedupe evaluation and the tests. Random choices come from a ``random.Random`` the
caller seeds, so a run is repeatable but no edit is tuned to one file. ``OVERLAYS`` are the
opposite: each is drawn identically on every photo, as one app or one meme template draws it.
"""

from __future__ import annotations

import random
from typing import Callable

import cv2
import numpy as np

Edit = Callable[[np.ndarray, random.Random], np.ndarray]

_WORDS = "when you finally get the shot lol same energy every weekend no filter needed mood goals".split()


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def decode_rgb(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    scale = rng.uniform(0.4, 0.7)
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def recompress(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    return decode_rgb(jpeg_bytes(rgb, rng.randint(25, 45)))


def brightness(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    gain = rng.uniform(0.75, 1.3)
    offset = rng.uniform(-30, 30)
    return np.clip(rgb.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def greyscale(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.dstack([grey] * 3)


def mirror(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


def border(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """A plain frame on every side, or letterbox/pillarbox bars to a square."""
    h, w = rgb.shape[:2]
    colour = rng.choice([(255, 255, 255), (0, 0, 0), (240, 236, 228), (30, 30, 36)])
    if rng.random() < 0.5:
        pad = int(max(h, w) * rng.uniform(0.04, 0.12))
        return cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=colour)
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return cv2.copyMakeBorder(rgb, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def screenshot(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """A phone screenshot of the photo in a feed: status bar, header, the photo at full width,
    a caption and buttons below, then the whole thing shared at a lower resolution."""
    width, height = 1080, 2340
    dark = rng.random() < 0.5
    bg = (0, 0, 0) if dark else (255, 255, 255)
    fg = (240, 240, 240) if dark else (20, 20, 20)
    canvas = np.full((height, width, 3), bg, np.uint8)
    cv2.putText(canvas, "9:41", (40, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.6, fg, 3, cv2.LINE_AA)
    cv2.rectangle(canvas, (900, 40), (1010, 80), fg, 3)
    cv2.circle(canvas, (70, 220), 45, (200, 120, 60), -1)
    cv2.putText(canvas, "some_account", (140, 235), cv2.FONT_HERSHEY_SIMPLEX, 1.4, fg, 3, cv2.LINE_AA)
    h, w = rgb.shape[:2]
    shown = cv2.resize(rgb, (width, int(h * width / w)), interpolation=cv2.INTER_AREA)
    top = 300
    bottom = min(height - 300, top + shown.shape[0])
    canvas[top:bottom] = shown[: bottom - top]
    for i, words in enumerate((rng.sample(_WORDS, 5), rng.sample(_WORDS, 4))):
        cv2.putText(canvas, " ".join(words), (40, bottom + 110 + i * 70), cv2.FONT_HERSHEY_SIMPLEX, 1.5, fg, 3, cv2.LINE_AA)
    for x in (60, 200, 340):
        cv2.circle(canvas, (x, bottom + 40), 26, fg, 3)
    shared = cv2.resize(canvas, (720, 1560), interpolation=cv2.INTER_AREA)
    return decode_rgb(jpeg_bytes(shared, 80))


def centre_crop(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """About 10% cut off: each side keeps 86-94% of its length, centred."""
    h, w = rgb.shape[:2]
    keep = rng.uniform(0.86, 0.94)
    dy, dx = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
    return np.ascontiguousarray(rgb[dy : h - dy, dx : w - dx])


def caption(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """Meme-style text over the lower part of the picture, white with a black outline."""
    out = rgb.copy()
    h, w = out.shape[:2]
    text = " ".join(rng.sample(_WORDS, 3)).upper()
    scale = 1.0
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, 2)
    scale = 0.85 * w / tw
    thick = max(2, int(scale * 2))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, thick)
    org = ((w - tw) // 2, int(h * rng.uniform(0.8, 0.92)))
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_DUPLEX, scale, (0, 0, 0), thick * 3, cv2.LINE_AA)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_DUPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def asymmetric_crop(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """Keep 65-80% of each side, from an off-centre position."""
    h, w = rgb.shape[:2]
    kh, kw = int(h * rng.uniform(0.65, 0.8)), int(w * rng.uniform(0.65, 0.8))
    y = rng.choice([0, h - kh]) if rng.random() < 0.5 else rng.randint(0, h - kh)
    x = rng.choice([0, w - kw])
    return np.ascontiguousarray(rgb[y : y + kh, x : x + kw])


def rotate5(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """5 degrees either way about the centre; the canvas keeps its size, corners go black."""
    h, w = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rng.choice([-5.0, 5.0]), 1.0)
    return cv2.warpAffine(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


EDITS: dict[str, Edit] = {
    "resize": resize,
    "recompress": recompress,
    "brightness": brightness,
    "greyscale": greyscale,
    "mirror": mirror,
    "border": border,
    "screenshot": screenshot,
    "crop10": centre_crop,
    "caption": caption,
    "asym_crop": asymmetric_crop,
    "rotate5": rotate5,
}


def tile(rgb: np.ndarray, index: int) -> np.ndarray:
    """One of four overlapping 60% tiles of a photo: distractors that share content with it."""
    h, w = rgb.shape[:2]
    th, tw = int(h * 0.6), int(w * 0.6)
    y, x = [(0, 0), (0, w - tw), (h - th, 0), (h - th, w - tw)][index % 4]
    return np.ascontiguousarray(rgb[y : y + th, x : x + tw])


# --------------------------------------------------------------------------- shared overlays
# What many distinct posts carry identically: one meme template, one app's watermark, one sticker,
# one frame. Each is drawn the same way on every photo (sized to the photo, as apps do), so two
# distinct photos under one overlay share every keypoint of the overlay and nothing else. The
# ``rng`` argument is unused: an overlay that varied would not be shared.
_CAPTION = "WHEN THE WEEKEND FINALLY HITS"
_HANDLE = "@sunny.days.daily"
_FRAME_TEXT = "summer 2024 - best days ever"


def _fit_text(text: str, width: float, font: int = cv2.FONT_HERSHEY_DUPLEX) -> tuple[float, int, tuple[int, int]]:
    """The scale and stroke at which ``text`` is ``width`` pixels wide, and its size then."""
    (tw, _), _ = cv2.getTextSize(text, font, 1.0, 2)
    scale = width / tw
    thick = max(1, int(round(scale * 1.6)))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    return scale, thick, (tw, th)


def caption_bar(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """A meme template: a white bar above the picture with one line of black text."""
    h, w = rgb.shape[:2]
    bar = int(h * 0.2)
    out = cv2.copyMakeBorder(rgb, bar, 0, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    scale, thick, (tw, th) = _fit_text(_CAPTION, 0.9 * w)
    cv2.putText(out, _CAPTION, ((w - tw) // 2, (bar + th) // 2), cv2.FONT_HERSHEY_DUPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out


_MEME_TOP, _MEME_BOTTOM = "ME EXPLAINING MY PLANS", "NOBODY ASKED THOUGH"


def _outlined_text(out: np.ndarray, text: str, y: int, width_share: float) -> None:
    """White text with a black outline, centred, ``width_share`` of the picture wide, drawn in place."""
    w = out.shape[1]
    scale, thick, (tw, _) = _fit_text(text, width_share * w)
    x, edge = (w - tw) // 2, max(1, thick)
    for dx, dy in ((-edge, -edge), (edge, -edge), (-edge, edge), (edge, edge), (0, edge), (0, -edge), (edge, 0), (-edge, 0)):
        cv2.putText(out, text, (x + dx, y + dy), cv2.FONT_HERSHEY_DUPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_DUPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def caption_text(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """The same outlined caption laid over the lower part of every picture."""
    out = rgb.copy()
    _outlined_text(out, _CAPTION, int(out.shape[0] * 0.88), 0.9)
    return out


def watermark(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """An app's mark in the bottom-right corner: a logo (rounded square, lens, dot) and a handle,
    white at 85% over the picture."""
    h, w = rgb.shape[:2]
    layer = np.zeros_like(rgb)
    mask = np.zeros((h, w), np.uint8)
    scale, thick, (tw, th) = _fit_text(_HANDLE, 0.3 * w, cv2.FONT_HERSHEY_SIMPLEX)
    margin = int(0.03 * w)
    side = int(th * 2.2)
    x0, y0 = w - margin - tw - side - margin // 2, h - margin - side
    for target, value in ((layer, (255, 255, 255)), (mask, 255)):
        cv2.rectangle(target, (x0, y0), (x0 + side, y0 + side), value, max(2, side // 10), cv2.LINE_AA)
        cv2.circle(target, (x0 + side // 2, y0 + side // 2), side // 4, value, max(2, side // 10), cv2.LINE_AA)
        cv2.circle(target, (x0 + side * 3 // 4, y0 + side // 4), max(1, side // 16), value, -1, cv2.LINE_AA)
        cv2.putText(target, _HANDLE, (w - margin - tw, y0 + (side + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, value, thick, cv2.LINE_AA)
    alpha = (mask.astype(np.float32) / 255 * 0.85)[..., None]
    return (rgb * (1 - alpha) + layer * alpha).astype(np.uint8)


def sticker(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """A smiley sticker with a white die-cut edge, in the same place on every picture."""
    out = rgb.copy()
    h, w = out.shape[:2]
    r = int(min(h, w) * 0.12)
    cx, cy = int(w * 0.75), int(h * 0.28)
    cv2.circle(out, (cx, cy), r + max(3, r // 8), (255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(out, (cx, cy), r, (255, 204, 0), -1, cv2.LINE_AA)
    cv2.circle(out, (cx, cy), r, (40, 30, 0), max(2, r // 18), cv2.LINE_AA)
    for ex in (-1, 1):
        cv2.ellipse(out, (cx + ex * r // 3, cy - r // 4), (r // 9, r // 5), 0, 0, 360, (40, 30, 0), -1, cv2.LINE_AA)
    cv2.ellipse(out, (cx, cy + r // 8), (r // 2, r // 3), 0, 20, 160, (40, 30, 0), max(2, r // 12), cv2.LINE_AA)
    return out


def frame(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """A polaroid-style frame template: an off-white border, wider below, with a handwritten-style line."""
    h, w = rgb.shape[:2]
    side = int(w * 0.06)
    out = cv2.copyMakeBorder(rgb, side, int(h * 0.22), side, side, cv2.BORDER_CONSTANT, value=(248, 246, 240))
    scale, thick, (tw, th) = _fit_text(_FRAME_TEXT, 0.7 * w, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX)
    y = side + h + (int(h * 0.22) + th) // 2
    cv2.putText(out, _FRAME_TEXT, (side + (w - tw) // 2, y), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, scale, (40, 40, 60), thick, cv2.LINE_AA)
    return out


def two_line_meme(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """The classic meme: one line of outlined text at the top of the picture and one at the bottom."""
    out = rgb.copy()
    h = out.shape[0]
    _outlined_text(out, _MEME_TOP, int(h * 0.14), 0.92)
    _outlined_text(out, _MEME_BOTTOM, int(h * 0.94), 0.92)
    return out


def top_caption(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """One outlined line near the top, as a trend's caption."""
    out = rgb.copy()
    _outlined_text(out, "POV: you found the best spot", int(out.shape[0] * 0.12), 0.8)
    return out


def centre_watermark(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """A stock-photo mark: large text across the middle, white at 45% over the picture."""
    h, w = rgb.shape[:2]
    layer = rgb.copy()
    scale, thick, (tw, th) = _fit_text("SAMPLE PHOTO", 0.8 * w)
    cv2.putText(layer, "SAMPLE PHOTO", ((w - tw) // 2, (h + th) // 2), cv2.FONT_HERSHEY_DUPLEX, scale, (255, 255, 255), thick * 2, cv2.LINE_AA)
    return (rgb * 0.55 + layer * 0.45).astype(np.uint8)


def story_frame(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """A story screenshot: dark bars above and below with the app's progress bars, avatar and
    handle, and a message field."""
    h = rgb.shape[0]
    top, bottom = int(h * 0.12), int(h * 0.14)
    out = cv2.copyMakeBorder(rgb, top, bottom, 0, 0, cv2.BORDER_CONSTANT, value=(18, 18, 18))
    width = out.shape[1]
    for i in range(4):
        x0, y0 = int(width * (0.03 + i * 0.24)), int(top * 0.15)
        cv2.rectangle(out, (x0, y0), (x0 + int(width * 0.22), y0 + 3), (230, 230, 230) if i < 2 else (110, 110, 110), -1)
    r = int(top * 0.25)
    cv2.circle(out, (int(width * 0.08), int(top * 0.6)), r, (200, 80, 160), -1, cv2.LINE_AA)
    cv2.putText(out, "travel.with.kim  2h", (int(width * 0.08) + 2 * r, int(top * 0.6) + r // 2), cv2.FONT_HERSHEY_SIMPLEX,
                r / 16, (255, 255, 255), 1, cv2.LINE_AA)
    y = top + h + bottom // 2
    cv2.rectangle(out, (int(width * 0.05), y - bottom // 4), (int(width * 0.75), y + bottom // 4), (120, 120, 120), 2, cv2.LINE_AA)
    cv2.putText(out, "Send message", (int(width * 0.08), y + bottom // 10), cv2.FONT_HERSHEY_SIMPLEX, bottom / 60, (200, 200, 200), 1, cv2.LINE_AA)
    cv2.circle(out, (int(width * 0.87), y), bottom // 5, (230, 230, 230), 2, cv2.LINE_AA)
    return out


OVERLAYS: dict[str, Edit] = {
    "caption_bar": caption_bar,
    "caption_text": caption_text,
    "watermark": watermark,
    "sticker": sticker,
    "frame": frame,
    # Added after the matcher's thresholds were set, as a check they were not fitted to the five above.
    "two_line_meme": two_line_meme,
    "top_caption": top_caption,
    "centre_watermark": centre_watermark,
    "story_frame": story_frame,
}


# --------------------------------------------------------------------------- harder reposts
def filler(height: int, width: int, rng: random.Random) -> np.ndarray:
    """A made picture for a collage's other cells: gradients and shapes, so it matches nothing indexed."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.dstack([rng.uniform(40, 220) + rng.uniform(-60, 60) * (x / width) + rng.uniform(-60, 60) * (y / height)
                      for _ in range(3)])
    out = np.clip(base, 0, 255).astype(np.uint8)
    for _ in range(rng.randint(8, 20)):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        cx, cy, r = rng.randint(0, width), rng.randint(0, height), rng.randint(4, max(5, min(height, width) // 4))
        if rng.random() < 0.5:
            cv2.circle(out, (cx, cy), r, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(out, (cx, cy), (cx + r, cy + r // 2), colour, -1)
    return out


def _fill(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``rgb`` scaled to cover a cell and cut to it, centred, as collage apps fill their cells."""
    h, w = rgb.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    big = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return big[y : y + height, x : x + width]


def collage(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """The photo as one cell of a grid of 2 to 9 cells (rows of different heights, cells of
    different widths) with gutters, on a 1080 px canvas; the other cells are made pictures."""
    side = 1080
    rows = rng.choice([1, 2, 2, 3])
    cols = rng.choice([2, 2, 3]) if rows == 1 else rng.choice([1, 2, 3])
    gutter = rng.randint(6, 24)
    colour = rng.choice([(255, 255, 255), (0, 0, 0), (245, 240, 230)])
    canvas = np.full((side, side, 3), colour, np.uint8)
    heights = np.array([rng.uniform(0.7, 1.3) for _ in range(rows)])
    heights = (heights / heights.sum() * (side - gutter * (rows + 1))).astype(int)
    cells = []
    top = gutter
    for r in range(rows):
        widths = np.array([rng.uniform(0.7, 1.3) for _ in range(cols)])
        widths = (widths / widths.sum() * (side - gutter * (cols + 1))).astype(int)
        left = gutter
        for c in range(cols):
            cells.append((top, left, int(heights[r]), int(widths[c])))
            left += int(widths[c]) + gutter
        top += int(heights[r]) + gutter
    mine = rng.randrange(len(cells))
    for i, (top, left, height, width) in enumerate(cells):
        picture = rgb if i == mine else filler(height, width, rng)
        canvas[top : top + height, left : left + width] = _fill(picture, height, width)
    return canvas


def zoom(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """A deep zoom: 25-50% of the area, anywhere in the picture, enlarged back to the photo's size."""
    h, w = rgb.shape[:2]
    keep = np.sqrt(rng.uniform(0.25, 0.5))
    kh, kw = int(h * keep), int(w * keep)
    y, x = rng.randint(0, h - kh), rng.randint(0, w - kw)
    return cv2.resize(np.ascontiguousarray(rgb[y : y + kh, x : x + kw]), (w, h), interpolation=cv2.INTER_CUBIC)


HARDER: dict[str, Edit] = {
    "collage": collage,
    "zoom": zoom,
}


# --------------------------------------------------------------------------- everyday edits, harder
# What a repost goes through in practice beyond the single edits above: filters, turns, squeezes,
# stickers, a photo of a screen, and several edits at once. Targets in bench/dedupe_eval.py.
def _curve(values: np.ndarray, contrast: float, pivot: float = 0.5) -> np.ndarray:
    """An S-curve (contrast > 1) or a flattening one (< 1) on 0..1 values, about ``pivot``."""
    return np.clip(pivot + (values - pivot) * contrast, 0, 1)


def _vignette(height: int, width: int, strength: float) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((x - width / 2) / (width / 2), (y - height / 2) / (height / 2)) / np.sqrt(2)
    return (1 - strength * r**2)[..., None]


def heavy_filter(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """One of an app's strong looks: a faded sepia, punchy saturated colour, a cold or warm grade
    with crushed shadows, grainy high-contrast black and white, or a cross-processed curve; most
    with a vignette."""
    x = rgb.astype(np.float32) / 255
    h, w = x.shape[:2]
    look = rng.choice(["sepia", "punchy", "grade", "noir", "cross"])
    if look == "sepia":
        matrix = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
        x = np.clip(x @ matrix.T, 0, 1) * 0.8 + 0.12  # faded blacks
    elif look == "punchy":
        grey = x.mean(axis=2, keepdims=True)
        x = _curve(grey + (x - grey) * rng.uniform(1.6, 2.0), rng.uniform(1.3, 1.5))
    elif look == "grade":
        tint = np.array([0.85, 0.95, 1.15] if rng.random() < 0.5 else [1.15, 1.0, 0.8], np.float32)
        x = np.clip(np.clip(x - 0.08, 0, 1) / 0.92 * tint, 0, 1) ** rng.uniform(1.1, 1.35)
    elif look == "noir":
        grey = _curve(x @ np.array([0.299, 0.587, 0.114], np.float32), rng.uniform(1.5, 1.9))
        noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 0.05, grey.shape).astype(np.float32)
        x = np.repeat(np.clip(grey + noise, 0, 1)[..., None], 3, axis=2)
    else:
        x = np.dstack([_curve(x[..., 0], 1.4, 0.45), np.clip(x[..., 1] * 1.1, 0, 1), _curve(x[..., 2], 0.7, 0.6) + 0.08])
    if rng.random() < 0.7:
        x = x * _vignette(h, w, rng.uniform(0.4, 0.8))
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def turn90(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """A quarter turn either way (a photo posted on its side)."""
    return np.ascontiguousarray(np.rot90(rgb, rng.choice([1, 3])))


def squeeze(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """One side squeezed or stretched: the aspect ratio changed by 0.6-0.85x or 1.2-1.5x, as a
    post forced into another frame without a crop."""
    h, w = rgb.shape[:2]
    factor = rng.uniform(0.6, 0.85) if rng.random() < 0.5 else rng.uniform(1.2, 1.5)
    size = (max(8, round(w * factor)), h) if rng.random() < 0.5 else (w, max(8, round(h * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _emoji(side: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """A sticker of ``side`` px: a face, heart or star in a flat colour with a white outline, and its mask."""
    layer = np.zeros((side, side, 3), np.uint8)
    mask = np.zeros((side, side), np.uint8)
    c, r = side // 2, side // 2 - max(2, side // 12)
    colour = rng.choice([(255, 205, 40), (235, 60, 90), (70, 160, 255), (120, 220, 90)])
    shape = rng.choice(["face", "heart", "star"])
    for target, fill, line in ((layer, colour, (255, 255, 255)), (mask, 255, 255)):
        if shape == "face":
            cv2.circle(target, (c, c), r, line, -1, cv2.LINE_AA)
            cv2.circle(target, (c, c), r - max(2, side // 16), fill, -1, cv2.LINE_AA)
            if target is layer:
                for ex in (c - r // 3, c + r // 3):
                    cv2.circle(target, (ex, c - r // 4), max(2, r // 8), (40, 30, 20), -1, cv2.LINE_AA)
                cv2.ellipse(target, (c, c + r // 6), (r // 2, r // 3), 0, 10, 170, (40, 30, 20), max(2, r // 10), cv2.LINE_AA)
        else:
            n = 5 if shape == "star" else 40
            angles = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) - np.pi / 2
            if shape == "star":
                radii = np.where(np.arange(2 * n) % 2 == 0, r, r * 0.45)
                points = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], axis=1)
            else:
                t = angles + np.pi / 2
                points = np.stack([c + r * 0.06 * 16 * np.sin(t) ** 3,
                                   c - r * 0.06 * (13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], axis=1)
            poly = points.astype(np.int32)
            cv2.fillPoly(target, [poly], fill, cv2.LINE_AA)
            cv2.polylines(target, [poly], True, line, max(2, side // 24), cv2.LINE_AA)
    return layer, mask


def stickers(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """One to three stickers of 12-25% of the width, anywhere on the picture, each post its own."""
    out = rgb.copy()
    h, w = out.shape[:2]
    for _ in range(rng.randint(1, 3)):
        side = max(12, min(h, w, int(w * rng.uniform(0.12, 0.25))))
        layer, mask = _emoji(side, rng)
        y, x = rng.randint(0, h - side), rng.randint(0, w - side)
        alpha = (mask.astype(np.float32) / 255)[..., None]
        region = out[y : y + side, x : x + side].astype(np.float32)
        out[y : y + side, x : x + side] = (region * (1 - alpha) + layer * alpha).astype(np.uint8)
    return out


def screen_photo(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """The photo on a monitor or phone, photographed: a dark bezel and surround, seen off-axis (each
    corner moved by up to 5% of the side), a little defocus, the screen's pixel grid beating
    against the camera's (a faint moire), a glare, a colour cast, sensor noise and the camera's JPEG."""
    h, w = rgb.shape[:2]
    scale = 1000 / max(h, w)
    screen = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA).astype(np.float32)
    sh, sw = screen.shape[:2]
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    period, angle = rng.uniform(5, 9), rng.uniform(0, np.pi)
    moire = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)[..., None]
    screen = screen * (1 + 0.06 * moire)
    gx, gy = rng.uniform(0, sw), rng.uniform(0, sh)
    glare = np.exp(-(((x - gx) / (0.35 * sw)) ** 2 + ((y - gy) / (0.35 * sh)) ** 2))[..., None]
    screen = screen * np.array([rng.uniform(0.9, 1.05), 1.0, rng.uniform(0.9, 1.1)], np.float32) + 70 * glare
    bezel = int(0.06 * max(sh, sw))
    framed = cv2.copyMakeBorder(np.clip(screen, 0, 255).astype(np.uint8), bezel, bezel, bezel, bezel,
                                cv2.BORDER_CONSTANT, value=(18, 18, 20))
    fh, fw = framed.shape[:2]
    margin = int(0.08 * max(fh, fw))
    out_w, out_h = fw + 2 * margin, fh + 2 * margin
    corners = np.float32([[0, 0], [fw, 0], [fw, fh], [0, fh]])
    jitter = lambda: rng.uniform(-0.05, 0.05)  # noqa: E731
    moved = np.float32([[margin + cx + jitter() * fw, margin + cy + jitter() * fh] for cx, cy in corners])
    matrix = cv2.getPerspectiveTransform(corners, moved)
    desk = tuple(int(v) for v in np.array([rng.randint(60, 140)] * 3) + np.array([rng.randint(-15, 15) for _ in range(3)]))
    shot = cv2.warpPerspective(framed, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=desk)
    shot = cv2.GaussianBlur(shot, (0, 0), rng.uniform(0.6, 1.2)).astype(np.float32)
    shot += np.random.default_rng(rng.randrange(1 << 30)).normal(0, 4, shot.shape).astype(np.float32)
    return decode_rgb(jpeg_bytes(np.clip(shot, 0, 255).astype(np.uint8), rng.randint(70, 88)))


def combined(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """Several edits at once, as a repost chain makes them: an off-centre crop keeping 75-90% of each
    side, a filter (contrast, saturation and brightness moved together), a caption, then a
    low-quality JPEG."""
    return recompress(_crop_filter_caption(rgb, rng), rng)


def combined_small(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """``combined`` shrunk to 40-70% before its JPEG: from a 481 px photo, a 130-300 px thumbnail."""
    return recompress(resize(_crop_filter_caption(rgb, rng), rng), rng)


def _crop_filter_caption(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    h, w = rgb.shape[:2]
    kh, kw = int(h * rng.uniform(0.75, 0.9)), int(w * rng.uniform(0.75, 0.9))
    y, x = rng.randint(0, h - kh), rng.randint(0, w - kw)
    out = np.ascontiguousarray(rgb[y : y + kh, x : x + kw]).astype(np.float32) / 255
    grey = out.mean(axis=2, keepdims=True)
    out = _curve(grey + (out - grey) * rng.uniform(0.6, 1.5), rng.uniform(0.8, 1.3)) * rng.uniform(0.85, 1.15)
    return caption((np.clip(out, 0, 1) * 255).astype(np.uint8), rng)


EVERYDAY: dict[str, Edit] = {
    "filter": heavy_filter,
    "turn90": turn90,
    "squeeze": squeeze,
    "stickers": stickers,
    "screen_photo": screen_photo,
    "combined": combined,
    "combined_small": combined_small,
}
