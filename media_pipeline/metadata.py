"""What the catalog keeps from a photo's metadata: capture time, camera, orientation, profile name.

Parsing is defensive: broken EXIF (cyclic IFDs, zero-length strings, absurd counts) yields
``None`` fields, never an exception.
"""

from __future__ import annotations

import io
import re
import warnings

from PIL import Image, ImageCms

from media_pipeline.models import CameraInfo, ImageInfo, PhotoMetadata

_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
_EXIF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


def extract_metadata(info: ImageInfo) -> PhotoMetadata:
    make = model = taken_at = None
    orientation = info.orientation
    if info.exif:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" is the normal case for hostile files
            try:
                exif = Image.Exif()
                exif.load(_exif_payload(info.exif))
                make = _clean(exif.get(_MAKE))
                model = _clean(exif.get(_MODEL))
                sub = exif.get_ifd(_EXIF_IFD)
                taken_at = _iso_time(sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME), sub.get(_OFFSET_TIME_ORIGINAL))
                # libvips drops the tag from HEIF headers (libheif applied irot); report what the file says.
                tag = exif.get(_ORIENTATION)
                if isinstance(tag, int) and 1 <= tag <= 8:
                    orientation = tag
            except Exception:  # noqa: BLE001 - any malformed EXIF simply yields no metadata
                make = model = taken_at = None
    return PhotoMetadata(
        taken_at=taken_at,
        camera=CameraInfo(make=make, model=model),
        orientation=orientation,
        color_profile=profile_name(info.icc_profile),
    )


def profile_name(icc: bytes | None) -> str | None:
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return _clean(ImageCms.getProfileDescription(profile))
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError):
        return None


def _exif_payload(blob: bytes) -> bytes:
    # libvips hands HEIF EXIF over with the 4-byte TIFF-header offset that the box format uses.
    start = blob.find(b"Exif\x00\x00")
    if 0 <= start <= 8:
        return blob[start:]
    for magic in (b"II*\x00", b"MM\x00*"):
        pos = blob.find(magic)
        if 0 <= pos <= 8:
            return b"Exif\x00\x00" + blob[pos:]
    return blob


def _clean(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value[:200] or None


def _iso_time(value: object, offset: object) -> str | None:
    text = _clean(value)
    if not text:
        return None
    match = _EXIF_DATE.match(text)
    if not match:
        return None
    y, mo, d, h, mi, s = match.groups()
    if y == "0000":
        return None
    iso = f"{y}-{mo}-{d}T{h}:{mi}:{s}"
    off = _clean(offset)
    return iso + off if off and _OFFSET.match(off) else iso
