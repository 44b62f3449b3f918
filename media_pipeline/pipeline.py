"""The photo pipeline: bytes in, renditions, metadata, placeholder and hashes out.

It reads as the list of steps it runs, in order (cf. imgproxy's ``mainPipeline``):

    sniff + probe      header only; format by magic bytes; pixel limit before any decode
    decode             explicit loader per format, shrink-on-load, fail on truncated data
    fit_largest        resample to the largest rendition width (scale from the upright geometry)
                       and hold it in memory: orienting and colour work then touch fewer pixels,
                       and rotating no longer fights the loader's sequential access
    orient             EXIF orientation applied exactly once (never for HEIF/AVIF: libheif did it)
    to_colour          embedded profile (P3, Adobe RGB, CMYK, grey) or a default one -> 8-bit sRGB,
                       or Display P3 (tagged) for a wide-gamut source when the preset says p3 (colour.py)
    drop_opaque_alpha  an alpha band that is all 255 only costs bytes
    cascade            each smaller width resized from the next larger one (one decode in all)
    encode             every width in every preset format, with no metadata; an auto-quality
                       format first gets this photo's quality (quality.py, autoquality.py)
    placeholder        BlurHash and dominant colour from the smallest level
    hashes             perceptual hashes from the smallest level
    identify           SHA-256 of the largest level's pixels, the near-duplicate
                       fingerprint (view hashes, see dedupe.py) of the smallest level and
                       ORB keypoints of a 512 px one (keypoints.py)
    find_focus         focal point and subject box from a 512 px level (focus.py); crops
                       are cut around them from the same levels (crops.py)

Nothing here touches the network, files or the clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import cv2
import numpy as np
import pyvips

from media_pipeline import collage, colour, dedupe, focus, hdr, keypoints, quality, vips
from media_pipeline.encode import WHITE, encode, rendition_traits
from media_pipeline.errors import CorruptImage
from media_pipeline.hashing import PDQ_SIDE, perceptual_hashes
from media_pipeline.pdq import pdq
from media_pipeline.metadata import extract_metadata
from media_pipeline.models import (
    EncodedRendition,
    EncoderSettings,
    Hashes,
    ImageFormat,
    Focus,
    ImageInfo,
    PhotoMetadata,
    Placeholder,
    Preset,
)
from media_pipeline.placeholders import make_placeholder
from media_pipeline.probe import _first_line, probe

PLACEHOLDER_SIZE = 32
# The level whose tiles the quality search scores: its renditions' scores sit between those of the
# larger ones (higher at a given quality) and of the smaller ones (lower), see bench/quality.py.
PROBE_WIDTH = 1080


@dataclass
class Job:
    """The state the steps pass along. ``image`` is replaced by each step."""

    data: bytes | memoryview = field(repr=False)
    info: ImageInfo
    widths: tuple[int, ...]  # descending, never above the upright width
    wanted_gamut: str = colour.SRGB  # the preset's: p3 renders a wide-gamut source in Display P3
    gamut: str = colour.SRGB  # what the levels are in, once ``to_colour`` ran
    keep_hdr: bool = False  # the preset keeps gain maps (MP_HDR=keep)
    # An HDR source's gain map (hdr.py), upright once ``orient`` ran; each level carries its own.
    gainmap: pyvips.Image | None = None
    gainmap_ratio: float = 1.0  # the decoded picture's size over its gain map's (4 in most phones' files)
    image: pyvips.Image | None = None
    levels: dict[int, pyvips.Image] = field(default_factory=dict)
    # ``level_near``'s arrays by long side: PDQ, keypoints and the focus all read the 512 px one.
    near: dict[int, np.ndarray] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ProcessedPhoto:
    info: ImageInfo
    metadata: PhotoMetadata
    renditions: tuple[EncodedRendition, ...]
    placeholder: Placeholder
    hashes: Hashes


def rendition_widths(preset_widths: tuple[int, ...], upright_width: int) -> tuple[int, ...]:
    """Preset widths that do not upscale, plus the original's own width when it is narrower than the largest."""
    widths = [w for w in preset_widths if w <= upright_width]
    if upright_width < max(preset_widths) and upright_width not in widths:
        widths.append(upright_width)
    return tuple(sorted(widths, reverse=True))


# --------------------------------------------------------------------------- steps
def decode(job: Job) -> None:
    info = job.info
    keep_hdr = job.keep_hdr and info.hdr is not None
    if info.format is ImageFormat.HEIC:
        job.image, job.gainmap = vips.load_heic(job.data, gainmap=keep_hdr)
        if job.gainmap is not None:
            job.gainmap_ratio = job.image.width / job.gainmap.width
        return
    options: dict[str, object] = {"fail_on": "truncated", "access": "sequential"}
    if info.format is ImageFormat.JPEG:
        upright_width = info.upright_size[0]
        options["shrink"] = _jpeg_shrink(upright_width, job.widths[0])
    if keep_hdr and info.hdr == hdr.ULTRA_HDR:
        try:
            image = vips.load_ultra_hdr(job.data, **options)
            gainmap = image.get_gainmap()
            # Never larger than the picture (its header says so before any decode): a gain-map
            # bomb inside an otherwise small JPEG is dropped, not decoded.
            if gainmap is not None and gainmap.width <= image.width and gainmap.height <= image.height:
                job.image, job.gainmap = image, gainmap.copy_memory()  # it borrows the loader's blob
                job.gainmap_ratio = image.width / gainmap.width  # both shrunk on load alike
                return
        except pyvips.Error:
            pass  # a gain map libultrahdr cannot read: the SDR picture alone, as any JPEG viewer shows it
    job.image = vips.load(job.data, info.format, **options)


def orient(job: Job) -> None:
    image = job.image
    if job.gainmap is not None:
        tag = image.get("orientation") if job.info.applies_exif_orientation and image.get_typeof("orientation") else 1
        job.gainmap = hdr.oriented(job.gainmap, tag).copy_memory()
    if job.info.applies_exif_orientation:
        job.image = image.autorot()
    elif image.get_typeof("orientation"):
        image = image.copy()
        image.remove("orientation")
        job.image = image


def to_colour(job: Job) -> None:
    job.gamut = colour.output_gamut(job.image, job.wanted_gamut)
    job.image = colour.to_gamut(job.image, job.gamut)


def fit_largest(job: Job) -> None:
    image = job.image
    upright_width = image.height if _swaps_axes(job.info, image) else image.width
    if upright_width != job.widths[0]:
        image = _resize(image, job.widths[0] / upright_width)
    job.image = image.copy_memory()


def drop_opaque_alpha(job: Job) -> None:
    image = job.image
    if image.hasalpha() and image[image.bands - 1].min() >= 255:
        job.image = image[: image.bands - 1]


def cascade(job: Job) -> None:
    # The orientation and colour transform are still lazy here: materialise them once, or every
    # encoder of the largest width and the next level's resize would each run them again.
    previous = job.image.copy_memory()
    # Let go of the pre-transform copy fit_largest made: holding it would add a whole largest
    # level (19 MB at 2160 x 2880) to the peak while the encoders run.
    job.image = previous
    for width in job.widths:
        if previous.width != width:
            previous = _resize(previous, width / previous.width, exact_width=width).copy_memory()
        if job.gainmap is not None:
            previous = hdr.attach(previous, job.gainmap, job.gainmap_ratio)
        job.levels[width] = previous


STEPS: tuple[Callable[[Job], None], ...] = (decode, fit_largest, orient, to_colour, drop_opaque_alpha, cascade)


# --------------------------------------------------------------------------- entry points
def prepare(data: bytes | memoryview, preset: Preset, max_pixels: int, info: ImageInfo | None = None,
            widths: tuple[int, ...] | None = None) -> Job:
    """Probe (unless ``info`` is given) and run every step up to the in-memory cascade.

    ``widths`` (descending) replaces the preset's, e.g. for one on-demand rendition.
    """
    vips.configure()
    info = info or probe(data, max_pixels)
    wanted = widths or preset.widths
    job = Job(data=data, info=info, widths=rendition_widths(wanted, info.upright_size[0]), wanted_gamut=preset.gamut,
              keep_hdr=preset.dynamic_range == "hdr")
    try:
        for step in STEPS:
            step(job)
    except pyvips.Error as exc:
        raise CorruptImage(f"cannot decode the {info.format.value}: {_first_line(exc)}") from exc
    return job


def iter_renditions(job: Job, encoders: tuple[EncoderSettings, ...],
                    only: set[tuple[int, str]] | None = None, release: bool = False) -> Iterator[EncodedRendition]:
    """Encode every level in every given format (or just the (width, format) pairs in ``only``),
    smallest first; a generator so callers can time each.

    With ``release``, each level is let go once its formats are made, so the largest level's
    encoders, where a job's memory peaks (an AVIF encoder's state for 2160 x 2880 is over 100
    MiB), run with no other level alive. The job has no levels left afterwards.

    An auto-quality format gets its quality for this photo first (``choose_qualities``)."""
    wanted = [enc for enc in encoders if only is None or any(fmt == enc.format for _, fmt in only)]
    # A format whose search follows another's is searched after it, even if that one is not made here.
    leaders = [enc for enc in encoders if enc not in wanted and any(w.auto and w.auto.follow == enc.format for w in wanted)]
    qualities = choose_qualities(job, tuple(wanted) + tuple(leaders))
    chosen = qualities.encoders[:len(wanted)]
    for width in reversed(job.widths):
        level = job.levels.pop(width) if release else job.levels[width]
        for enc, score in chosen:
            if only is not None and (width, enc.format) not in only:
                continue
            try:
                # The search's own file when its probe was this whole level, at these settings.
                data = qualities.files.get((width, enc.format)) or encode(level, enc)
            except pyvips.Error as exc:
                raise CorruptImage(f"cannot encode {enc.format} at {width}: {_first_line(exc)}") from exc
            yield EncodedRendition(width=level.width, height=level.height, format=enc.format, data=data,
                                   quality=enc.quality, score=score, **rendition_traits(level, enc))
    if release:
        job.image = None


def _probe_width(job: Job) -> int:
    """The smallest level at least PROBE_WIDTH wide, else the largest."""
    return min((w for w in job.widths if w >= PROBE_WIDTH), default=job.widths[0])


@dataclass(frozen=True)
class Qualities:
    """``choose_qualities``' answer: each encoder with the quality to use for this photo and the
    score the search reached (None for a fixed quality), and the renditions the search already
    made, by (width, format): the probe's files when the probe was a whole level."""

    encoders: list[tuple[EncoderSettings, float | None]]
    files: dict[tuple[int, str], bytes]


def choose_qualities(job: Job, encoders: tuple[EncoderSettings, ...]) -> Qualities:
    """Search each auto encoder's quality on the level nearest PROBE_WIDTH, at full resolution."""
    if not any(enc.auto for enc in encoders):
        return Qualities(encoders=[(enc, None) for enc in encoders], files={})
    width = _probe_width(job)
    try:
        chosen = quality.choose_all(quality.probe(job.levels[width]), encoders)
    except pyvips.Error as exc:
        raise CorruptImage(f"cannot encode while choosing a quality: {_first_line(exc)}") from exc
    choices = chosen.choices
    return Qualities(
        encoders=[(enc, None) if enc.auto is None else (replace(enc, quality=choices[enc.format].quality), choices[enc.format].score)
                  for enc in encoders],
        files={(width, fmt): data for fmt, data in chosen.files.items()})


def small_rgb(job: Job, long_side: int | None = None) -> np.ndarray:
    """The smallest level, alpha flattened on white, as HxWx3 uint8 (optionally shrunk further)."""
    rgb = _pixels(job.levels[job.widths[-1]], None)
    height, width = rgb.shape[:2]
    if long_side and max(height, width) > long_side:
        # An area average of the in-memory array: a tenth of the time of another libvips pipeline.
        scale = long_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


def _pixels(image: pyvips.Image, long_side: int | None) -> np.ndarray:
    image = colour.srgb_view(image)
    if long_side and max(image.width, image.height) > long_side:
        image = image.thumbnail_image(long_side, height=long_side)
    if image.hasalpha():
        image = image.flatten(background=WHITE)
    return image.numpy()


def shared_hash(job: Job) -> Hashes:
    """The PDQ hash alone (for a blocklist check without the rest of ``describe``)."""
    found = pdq(level_near(job, PDQ_SIDE))
    return Hashes(phash="", dhash="", pdq=found.hex, pdq_quality=found.quality)


def describe(job: Job, preset: Preset) -> tuple[PhotoMetadata, Placeholder, Hashes]:
    """What the catalog keeps besides renditions: metadata, placeholder, perceptual hashes."""
    return (
        extract_metadata(job.info),
        make_placeholder(small_rgb(job, PLACEHOLDER_SIZE), preset.blurhash_x, preset.blurhash_y),
        perceptual_hashes(small_rgb(job), level_near(job, PDQ_SIDE)),
    )


@dataclass(frozen=True)
class Identity:
    """What duplicates are found by: exact (decoded upright pixels), near (view hashes) and
    local (keypoints, for crops and rotations)."""

    pixel_sha256: str
    fingerprint: dedupe.Fingerprint
    features: keypoints.LocalFeatures
    keypoint_image: np.ndarray  # what ``features`` were found in; a search may look again, elsewhere
    # When the picture is a collage, each cell as a picture of its own (no pixel digest, no cells).
    cells: tuple["Identity", ...] = ()


def identify(job: Job) -> Identity:
    largest = job.levels[job.widths[0]]
    digest = hashlib.sha256(f"{largest.width}x{largest.height}x{largest.bands}:".encode())
    digest.update(largest.write_to_memory())
    image = keypoints.keypoint_image(dedupe.luma(level_near(job, keypoints.LONG_SIDE)))
    return Identity(
        pixel_sha256=digest.hexdigest(),
        fingerprint=dedupe.fingerprint(small_rgb(job)),
        features=keypoints.extract(image),
        keypoint_image=image,
        cells=tuple(_cell_identity(largest, box, image.shape) for box in collage.cells(image)),
    )


def _cell_identity(largest: pyvips.Image, box: collage.Box, shape: tuple[int, ...]) -> Identity:
    """A collage cell identified as a picture of its own, cut from the largest level so a small
    cell keeps the detail its keypoints need."""
    top, left, height, width = box
    sy, sx = largest.height / shape[0], largest.width / shape[1]
    x, y = int(left * sx), int(top * sy)
    cell = largest.crop(x, y, max(1, min(largest.width - x, round(width * sx))), max(1, min(largest.height - y, round(height * sy))))
    rgb = _pixels(cell, keypoints.LONG_SIDE)
    image = keypoints.keypoint_image(dedupe.luma(rgb))
    return Identity(pixel_sha256="", fingerprint=dedupe.fingerprint(rgb), features=keypoints.extract(image), keypoint_image=image)


def preview_jpeg(job: Job, long_side: int = 512) -> bytes:
    """A small JPEG of the upright sRGB picture, without metadata, for an outside validator."""
    return _near_image(job, long_side).jpegsave_buffer(Q=80, keep="none")


def level_near(job: Job, long_side: int) -> np.ndarray:
    """The smallest level at least ``long_side`` on its long side (else the largest), shrunk to it,
    as a read-only array made once per job and size."""
    if long_side not in job.near:
        pixels = _near_image(job, long_side).numpy()
        pixels.flags.writeable = False  # shared by every reader: none may change it under another
        job.near[long_side] = pixels
    return job.near[long_side]


def _near_image(job: Job, long_side: int) -> pyvips.Image:
    fitting = [w for w in job.widths if max(job.levels[w].width, job.levels[w].height) >= long_side]
    level = job.levels[fitting[-1] if fitting else job.widths[0]]
    if max(level.width, level.height) > long_side:
        level = level.thumbnail_image(long_side, height=long_side)
    level = colour.srgb_view(level)
    return level.flatten(background=WHITE) if level.hasalpha() else level


def focus_image(job: Job) -> np.ndarray:
    """The upright picture the focus is found in: the 512 px array PDQ and the keypoints already
    read (focus.py shrinks it to its own sizes), so the focus makes no level of its own."""
    return level_near(job, PDQ_SIDE)


def find_focus(job: Job) -> Focus:
    """Where the subject is, from ``focus_image`` (no decode of its own)."""
    return focus.find_focus(focus_image(job))


def largest_level_size(preset_widths: tuple[int, ...], upright_size: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) of the largest level ``prepare`` makes for a picture of ``upright_size``:
    crops are planned from it before any pixel is decoded."""
    width = rendition_widths(preset_widths, upright_size[0])[0]
    return width, max(1, round(upright_size[1] * width / upright_size[0]))


def identity_widths(preset: Preset) -> tuple[int, ...]:
    """The levels ``identify`` reads: enough to identify a picture without rendering it."""
    return (max(preset.widths), min(preset.widths))


def process(data: bytes | memoryview, preset: Preset, max_pixels: int, info: ImageInfo | None = None) -> ProcessedPhoto:
    job = prepare(data, preset, max_pixels, info)
    metadata, placeholder, hashes = describe(job, preset)
    renditions = tuple(iter_renditions(job, preset.eager, release=True))
    return ProcessedPhoto(info=job.info, metadata=metadata, renditions=renditions, placeholder=placeholder, hashes=hashes)


# --------------------------------------------------------------------------- helpers
def _jpeg_shrink(upright_width: int, target_width: int) -> int:
    for shrink in (8, 4, 2):
        if upright_width / shrink >= target_width:
            return shrink
    return 1


def _swaps_axes(info: ImageInfo, image: pyvips.Image) -> bool:
    if not info.applies_exif_orientation or not image.get_typeof("orientation"):
        return False
    return image.get("orientation") in (5, 6, 7, 8)


def _resize(image: pyvips.Image, scale: float, exact_width: int | None = None) -> pyvips.Image:
    if image.hasalpha():
        # Premultiply so the colour of transparent pixels does not bleed into the edges.
        band_format = image.format
        resized = image.premultiply().resize(scale, kernel="lanczos3").unpremultiply().cast(band_format)
    else:
        resized = image.resize(scale, kernel="lanczos3")
    if exact_width and resized.width != exact_width:  # float rounding: at most one pixel
        resized = resized.embed(0, 0, exact_width, resized.height, extend="copy")
    return resized
