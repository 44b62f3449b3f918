"""HDR photos with a gain map: finding them from the header, and their gain map following the picture.

An Ultra HDR JPEG (Google's Ultra HDR, Adobe's gain map, ISO 21496-1) is an SDR picture every
screen shows plus a small gain map an HDR screen multiplies it by (in log space, between the
min and max content boosts its metadata gives). An iPhone HEIC carries the same idea as an
auxiliary image (``urn:com:apple:photo:2020:aux:hdrgainmap``). The pipeline renders the SDR base
as usual and carries the gain map beside it: oriented with the picture, resized with each level
(at the source's base-to-gain-map ratio), cut with each crop; a JPEG rendition then writes both
(libvips' Ultra HDR save). Pure: images and bytes in, values out.
"""

from __future__ import annotations

import io
import math
import struct
import warnings

import pillow_heif
import pyvips
from PIL import Image

from media_pipeline import tonemap
from media_pipeline.models import ImageFormat

ULTRA_HDR = "ultra-hdr"  # a JPEG gain map (Google Ultra HDR / Adobe hdrgm XMP / ISO 21496-1)
# tonemap.PQ and tonemap.HLG: an HDR picture with no SDR one inside, tone-mapped (no gain map kept)
APPLE = "apple"  # a HEIC with Apple's HDR gain map auxiliary image
APPLE_GAINMAP = "urn:com:apple:photo:2020:aux:hdrgainmap"
_ISO_21496 = b"urn:iso:std:iso:ts:21496:-1"
# The APP segments before the first picture: the gain-map metadata sits there, well inside this.
_HEADER_BYTES = 1 << 16


def detect(data: bytes | memoryview, fmt: ImageFormat, xmp: bytes | None) -> str | None:
    """Which kind of gain map the file carries, from its header alone; ``None`` for an SDR photo."""
    if fmt is ImageFormat.JPEG:
        if xmp and b"hdrgm:Version" in xmp or _ISO_21496 in bytes(data[:_HEADER_BYTES]):
            return ULTRA_HDR
        return None
    if fmt is ImageFormat.HEIC:
        try:
            info = pillow_heif.open_heif(io.BytesIO(bytes(data))).info
        except (ValueError, RuntimeError, OSError):
            return None
        if APPLE_GAINMAP in (info.get("aux") or {}):
            return APPLE
        # PQ or HLG with no SDR picture inside: tone-mapped to SDR (tonemap.py).
        return tonemap.transfer(info.get("nclx_profile"), info.get("bit_depth"))
    return None


def oriented(gainmap: pyvips.Image, orientation: int) -> pyvips.Image:
    """The gain map turned as EXIF ``orientation`` turns the picture."""
    if orientation in (1, 0):
        return gainmap
    turned = gainmap.copy()
    turned.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return turned.autorot()


def sized(gainmap: pyvips.Image, width: int, height: int) -> pyvips.Image:
    """The gain map at exactly ``width`` x ``height`` (at least a pixel each way)."""
    width, height = max(1, width), max(1, height)
    if (gainmap.width, gainmap.height) == (width, height):
        return gainmap
    out = gainmap.resize(width / gainmap.width, vscale=height / gainmap.height, kernel="linear")
    if (out.width, out.height) != (width, height):  # float rounding: at most a pixel
        out = out.embed(0, 0, width, height, extend="copy")
    return out


def attach(level: pyvips.Image, gainmap: pyvips.Image, ratio: float) -> pyvips.Image:
    """``level`` carrying the gain map made for it: ``ratio`` times smaller, as in the source."""
    fitted = sized(gainmap, round(level.width / ratio), round(level.height / ratio)).copy_memory()
    out = level.copy()
    out.set_type(pyvips.GValue.image_type, "gainmap", fitted)
    return out


def carried(image: pyvips.Image) -> pyvips.Image | None:
    """The gain map an image carries (attached by ``attach``), else ``None``."""
    return image.get("gainmap") if image.get_typeof("gainmap") else None


def follow_crop(cut: pyvips.Image, level: pyvips.Image, left: int, top: int, width: int, height: int) -> pyvips.Image:
    """``cut`` (the window ``left, top, width, height`` of ``level``, resized) with the same window
    of the level's gain map, at the level's ratio."""
    gainmap = carried(level)
    if gainmap is None:
        return cut
    sx, sy = gainmap.width / level.width, gainmap.height / level.height
    x, y = min(gainmap.width - 1, int(left * sx)), min(gainmap.height - 1, int(top * sy))
    window = gainmap.extract_area(x, y, max(1, min(gainmap.width - x, round(width * sx))),
                                  max(1, min(gainmap.height - y, round(height * sy))))
    return attach(cut, window, level.width / gainmap.width)


# --------------------------------------------------------------------------- Apple's gain map
_APPLE_MAKER = b"Apple iOS\x00"
_EXIF_IFD, _MAKER_NOTE = 0x8769, 0x927C
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 8: 2, 9: 4, 10: 8}


def apple_headroom(exif: bytes | None) -> float | None:
    """The HDR headroom (how many times brighter than SDR white the brightest gain reaches) an
    iPhone photo's maker note gives, by Apple's published rule on its tags 33 and 48
    ("Applying Apple HDR effect to your photos"); ``None`` without them."""
    notes = _apple_maker_note(exif)
    if notes is None or 33 not in notes or 48 not in notes:
        return None
    maker33, maker48 = notes[33], notes[48]
    if maker33 < 1.0:
        stops = -20.0 * maker48 + 1.8 if maker48 <= 0.01 else -0.101 * maker48 + 1.601
    else:
        stops = -70.0 * maker48 + 3.0 if maker48 <= 0.01 else -0.303 * maker48 + 2.303
    return float(2.0 ** max(stops, 0.0))


def _apple_maker_note(exif: bytes | None) -> dict[int, float] | None:
    """The numeric tags of Apple's maker note (big-endian IFD, offsets from the note's start)."""
    if not exif:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = Image.Exif()
            start = exif.find(b"Exif\x00\x00")
            parsed.load(exif[start:] if 0 <= start <= 8 else exif)
            note = parsed.get_ifd(_EXIF_IFD).get(_MAKER_NOTE)
        if not isinstance(note, bytes) or not note.startswith(_APPLE_MAKER) or note[12:14] != b"MM":
            return None
        (count,) = struct.unpack_from(">H", note, 14)
        values: dict[int, float] = {}
        for i in range(min(count, 256)):
            tag, kind, n, raw = struct.unpack_from(">HHI4s", note, 16 + 12 * i)
            if n != 1 or kind not in (3, 4, 5, 8, 9, 10):
                continue
            size = _TYPE_SIZES[kind]
            data = raw if size <= 4 else note[struct.unpack(">I", raw)[0]:][:size]
            if kind in (5, 10):
                num, den = struct.unpack(">ii" if kind == 10 else ">II", data)
                values[tag] = num / den if den else 0.0
            else:
                values[tag] = float(struct.unpack({3: ">H", 8: ">h", 4: ">I", 9: ">i"}[kind], data[:size])[0])
        return values
    except (struct.error, ValueError, TypeError, OSError, SyntaxError):
        return None


def apple_as_ultra_hdr(image: pyvips.Image, gainmap: pyvips.Image, headroom: float) -> tuple[pyvips.Image, pyvips.Image]:
    """An iPhone photo's SDR picture and gain map, restated as Ultra HDR's.

    Apple: HDR = SDR x (1 + (headroom - 1) x g), g the gain map through the sRGB curve to linear.
    Ultra HDR (min boost 1, max boost = headroom, gamma 1, no offsets): HDR = SDR x headroom^r,
    so r = log(1 + (headroom - 1) x g) / log(headroom), written back to 8 bits."""
    g = gainmap[0] / 255.0
    # The sRGB curve, as numbers (libvips' colourspace would take one band for grey at gamma 2.2).
    g = (g > 0.04045).ifthenelse(((g + 0.055) / 1.055) ** 2.4, g / 12.92)
    recovery = (g * (headroom - 1.0) + 1.0).log() / math.log(headroom)
    encoded = (recovery * 255.0 + 0.5).cast("uchar").copy(interpretation="b-w")
    return with_gainmap(image, encoded, headroom)


def with_gainmap(image: pyvips.Image, encoded: pyvips.Image, max_boost: float, offset: float = 0.0) -> tuple[pyvips.Image, pyvips.Image]:
    """``image`` with Ultra HDR's gain-map metadata for ``encoded`` (8-bit log recovery, 0 = no
    boost, 255 = ``max_boost``; HDR = (SDR + offset) x boost - offset), and the gain map."""
    out = image.copy()
    for name, value in (("gainmap-max-content-boost", [float(max_boost)] * 3), ("gainmap-min-content-boost", [1.0] * 3),
                        ("gainmap-gamma", [1.0] * 3), ("gainmap-offset-sdr", [offset] * 3), ("gainmap-offset-hdr", [offset] * 3)):
        out.set_type(pyvips.GValue.array_double_type, name, value)
    out.set_type(pyvips.GValue.gdouble_type, "gainmap-hdr-capacity-min", 1.0)
    out.set_type(pyvips.GValue.gdouble_type, "gainmap-hdr-capacity-max", float(max_boost))
    out.set_type(pyvips.GValue.gint_type, "gainmap-use-base-cg", 1)
    # libvips writes Ultra HDR when the picture has gain-map data, as a loaded Ultra HDR JPEG
    # has; the gain map each level carries (``attach``) is what it then writes.
    encoded = encoded.copy_memory()
    out.set_type(pyvips.GValue.blob_type, "gainmap-data", encoded.jpegsave_buffer(Q=90, keep="none"))
    return out, encoded
