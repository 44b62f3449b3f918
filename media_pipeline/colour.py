"""The colour of renditions: sRGB, or Display P3 for sources whose profile reaches beyond sRGB.

A wide-gamut source (Display P3, Adobe RGB, Rec. 2020, ProPhoto) rendered in sRGB loses every
colour sRGB cannot show; rendered in Display P3, with the profile embedded, it keeps those inside
P3, which is what phones shoot and most screens sold since 2016 show. Every other source (sRGB,
no profile, CMYK, grey) stays untagged sRGB, as before. What apps draw without colour management
(the placeholder, the dominant colour) and what duplicates are found by stay sRGB:
``srgb_view`` gives those readers the sRGB picture of any level.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import pyvips
from PIL import Image, ImageCms

SRGB, P3 = "srgb", "p3"
GAMUTS = (P3, SRGB)

# The primaries and secondaries at full strength: the corners of an RGB profile's gamut.
_CORNERS = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]]], np.uint8)
# How far (8-bit steps) a corner may move through sRGB and back and still count as inside sRGB:
# sRGB profiles of other makers move by 0-2, Display P3's red by 40 and Adobe RGB's green by 60.
_ROUND_TRIP_TOLERANCE = 6


@functools.lru_cache(maxsize=32)
def is_wide_gamut(icc: bytes) -> bool:
    """Whether an RGB profile's gamut reaches beyond sRGB: its corners, converted to sRGB (where
    Little CMS clips what sRGB cannot show) and back, come back elsewhere. Any other profile
    (grey, CMYK, unreadable) is not wide here."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != "RGB":
            return False
        srgb = ImageCms.createProfile("sRGB")
        intent = ImageCms.Intent.RELATIVE_COLORIMETRIC
        corners = Image.fromarray(_CORNERS, "RGB")
        there = ImageCms.profileToProfile(corners, profile, srgb, renderingIntent=intent, outputMode="RGB")
        back = ImageCms.profileToProfile(there, srgb, profile, renderingIntent=intent, outputMode="RGB")
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError):
        return False
    moved = np.abs(np.asarray(back, np.int16) - _CORNERS.astype(np.int16)).max()
    return bool(moved > _ROUND_TRIP_TOLERANCE)


@functools.cache
def p3_profile() -> bytes:
    """libvips' built-in Display P3 profile (480 bytes), the one P3 levels carry."""
    pixel = pyvips.Image.new_from_array(np.zeros((1, 1, 3), np.uint8), interpretation="srgb")
    return bytes(pixel.icc_transform(P3, intent="relative").get("icc-profile-data"))


def output_gamut(image: pyvips.Image, wanted: str) -> str:
    """The gamut a decoded picture is rendered in: P3 when wanted and its profile is wide."""
    if wanted != P3 or image.interpretation == "cmyk" or not image.get_typeof("icc-profile-data"):
        return SRGB
    return P3 if is_wide_gamut(bytes(image.get("icc-profile-data"))) else SRGB


def to_gamut(image: pyvips.Image, gamut: str) -> pyvips.Image:
    """Any decoded picture as 8-bit RGB(A) in ``gamut``: sRGB untagged, Display P3 with the
    profile attached (the encoders embed it). The embedded profile (P3, Adobe RGB, CMYK, grey),
    or a default one, says what the numbers mean."""
    source = image
    has_profile = image.get_typeof("icc-profile-data") != 0
    try:
        if image.interpretation == "cmyk":
            image = image.icc_transform(gamut, input_profile="cmyk", embedded=has_profile, intent="relative", depth=8)
        elif has_profile:
            image = image.icc_transform(gamut, embedded=True, intent="relative", depth=8)
    except pyvips.Error:
        # A profile lcms rejects (truncated, wrong colour space for the pixels): treat the pixels as sRGB.
        image, gamut = source, SRGB
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    if image.bands not in (3, 4):
        image = image[:3] if image.bands > 4 else image.colourspace("srgb")
    if gamut == SRGB and image.get_typeof("icc-profile-data"):
        image = image.copy()
        image.remove("icc-profile-data")  # untagged means sRGB: the profile would only cost bytes
    return image


def is_tagged(image: pyvips.Image) -> bool:
    """Whether a level carries a profile (Display P3) the encoders must embed."""
    return image.get_typeof("icc-profile-data") != 0


def srgb_view(image: pyvips.Image) -> pyvips.Image:
    """A level as sRGB numbers, for readers that do not manage colour (placeholder, hashes)."""
    if not is_tagged(image):
        return image
    converted = image.icc_transform(SRGB, embedded=True, intent="relative", depth=8)
    converted = converted.copy()
    converted.remove("icc-profile-data")
    return converted
