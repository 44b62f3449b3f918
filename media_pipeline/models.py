"""Frozen values passed between the layers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from media_pipeline import PIPELINE_VERSION
from media_pipeline.framing import Focus, Point


class ImageFormat(str, Enum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    GIF = "gif"
    TIFF = "tiff"
    HEIC = "heic"
    AVIF = "avif"


OUTPUT_CONTENT_TYPES = {"avif": "image/avif", "webp": "image/webp", "jpeg": "image/jpeg"}
OUTPUT_EXTENSIONS = {"avif": "avif", "webp": "webp", "jpeg": "jpg"}
EXTENSION_FORMATS = {ext: fmt for fmt, ext in OUTPUT_EXTENSIONS.items()}
# The URL segment of an animated photo's still (/i/<id>/poster/<w>.<ext>): never a spec (a hex
# hash) nor an aspect (A x B).
POSTER_SEGMENT = "poster"


# Formats whose extra pages are frames of an animation (a multi-page TIFF or HEIC is not one). A PNG
# is animated when it is an APNG, an AVIF when it is an image sequence (not a collection of items):
# probe counts their frames from the container (animation_header.py).
ANIMATABLE_FORMATS = frozenset({ImageFormat.GIF, ImageFormat.WEBP, ImageFormat.PNG, ImageFormat.AVIF})


class PhotoStatus(str, Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class _OutputFormat:
    """Content type and file extension of anything with an output ``format``."""

    format: str

    @property
    def content_type(self) -> str:
        return OUTPUT_CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return OUTPUT_EXTENSIONS[self.format]


@dataclass(frozen=True)
class AutoQuality:
    """A preset format's ``quality = "auto"``: per photo, the lowest encoder quality in
    ``min``..``max`` whose SSIMULACRA2 reaches ``target`` (media_pipeline/autoquality.py)."""

    target: float
    min: int
    max: int
    start: int  # the first quality tried
    slope: float  # expected score points per quality step near the target, for the second guess
    budget: int = 3  # encodes of the probe at most
    # A passing try whose score is less than ``accept`` slope steps above the target ends the
    # search (1: stop only when one quality lower would most likely fail).
    accept: float = 1.0
    # ``follow``: another auto format searched first, from whose result this one's first try is
    # predicted: round(intercept + scale * the quality the other needed), ``follow_fit`` being
    # (intercept, scale), fitted on probe curves (docs/performance.md "Auto quality").
    follow: str | None = None
    follow_fit: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class EncoderSettings(_OutputFormat):
    format: str  # avif | webp | jpeg
    quality: int  # with ``auto``: the quality chosen for this photo, or ``auto.start`` in a preset
    effort: int = 0
    progressive: bool = False
    trellis: bool = False  # JPEG: mozjpeg's trellis quantisation
    # AVIF: aom's trellis quantisation (a rate-distortion search over each block's coefficients,
    # aom's default); False rounds them instead (docs/performance.md "Crops").
    avif_trellis: bool = True
    auto: AutoQuality | None = None
    # ``default``: the format's usual encoder (encode.py); ``jpegli``: Google's jpegli for JPEG.
    encoder: str = "default"
    # What a wide-gamut or HDR source keeps (MP_COLOR_GAMUT, MP_HDR): ``p3`` renders wide-gamut
    # sources in Display P3; ``keep`` keeps a gain map where the format can carry one.
    gamut: str = "srgb"
    dynamic_range: str = "sdr"

    @property
    def spec(self) -> str:
        """Hash of everything that changes this format's bytes; part of its rendition keys, so a
        changed setting writes new keys for this format only and the others are kept as they are."""
        canonical = json.dumps({"pipeline": PIPELINE_VERSION, **_settings_dict(self)}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _settings_dict(enc: EncoderSettings) -> dict[str, Any]:
    # A fixed quality hashes as it did before ``auto`` existed, so adding the field re-keys nothing;
    # an auto one hashes its target, bounds and search too, so fixed -> auto is a reprocess diff.
    # Likewise sRGB and SDR (what every rendition was before wide colour and HDR), aom's own
    # trellis quantisation and the default encoder (the only one before jpegli) hash as before.
    settings = asdict(enc)
    for name, legacy in (("auto", None), ("gamut", "srgb"), ("dynamic_range", "sdr"), ("avif_trellis", True), ("encoder", "default")):
        if settings[name] == legacy:
            del settings[name]
    # An auto search with the settings it had before ``accept`` and ``follow`` existed hashes as before.
    for name, legacy in (("accept", 1.0), ("follow", None), ("follow_fit", (0.0, 1.0))):
        if "auto" in settings and settings["auto"][name] == legacy:
            del settings["auto"][name]
    return settings


@dataclass(frozen=True)
class Preset:
    widths: tuple[int, ...]  # descending
    formats: tuple[EncoderSettings, ...]  # every format the service can make
    eager_formats: tuple[str, ...] = ()  # made at ingest; empty means all; the rest on demand
    blurhash_x: int = 4
    blurhash_y: int = 3
    aspects: tuple[str, ...] = ()  # crop aspects made at ingest, "A:B"
    crop_widths: tuple[int, ...] = ()  # descending; each aspect at each width its window holds

    @property
    def eager(self) -> tuple[EncoderSettings, ...]:
        return tuple(e for e in self.formats if not self.eager_formats or e.format in self.eager_formats)

    def encoder(self, fmt: str) -> EncoderSettings | None:
        return next((e for e in self.formats if e.format == fmt), None)

    @property
    def gamut(self) -> str:
        """``p3`` (wide-gamut sources rendered in Display P3) or ``srgb``; the same in every format."""
        return self.formats[0].gamut if self.formats else "srgb"

    @property
    def dynamic_range(self) -> str:
        """``hdr`` (gain maps kept where a format carries one) or ``sdr``."""
        return self.formats[0].dynamic_range if self.formats else "sdr"

    @property
    def version(self) -> str:
        """Short hash of everything that changes rendition bytes; part of every rendition key."""
        fields = {**asdict(self), "formats": [_settings_dict(enc) for enc in self.formats]}
        canonical = json.dumps({"pipeline": PIPELINE_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, before any pixel is decoded."""

    format: ImageFormat
    width: int  # stored width of one frame, before orientation
    height: int
    pages: int = 1
    orientation: int = 1  # EXIF tag as found in the source (1 when absent)
    has_alpha: bool = False
    exif: bytes | None = field(default=None, repr=False)
    icc_profile: bytes | None = field(default=None, repr=False)
    delays: tuple[int, ...] = field(default=(), repr=False)  # per frame, ms, as the header says
    loop: int = 0  # times an animation plays; 0 forever
    hdr: str | None = None  # the kind of gain map it carries (hdr.ULTRA_HDR, hdr.APPLE), None for SDR

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def animated(self) -> bool:
        return self.pages > 1 and self.format in ANIMATABLE_FORMATS

    @property
    def frames(self) -> int:
        return self.pages if self.animated else 1

    @property
    def duration_ms(self) -> int:
        return sum(self.delays) if self.animated else 0

    @property
    def applies_exif_orientation(self) -> bool:
        # HEIF/AVIF carry irot/imir boxes that libheif already applies; their EXIF orientation is
        # informational only, and applying it too would rotate the picture twice.
        return self.format not in (ImageFormat.HEIC, ImageFormat.AVIF)

    @property
    def upright_size(self) -> tuple[int, int]:
        if self.applies_exif_orientation and self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class CameraInfo:
    make: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class PhotoMetadata:
    taken_at: str | None = None
    camera: CameraInfo = CameraInfo()
    orientation: int = 1
    color_profile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PhotoMetadata":
        return cls(
            taken_at=data.get("taken_at"),
            camera=CameraInfo(**(data.get("camera") or {})),
            orientation=int(data.get("orientation") or 1),
            color_profile=data.get("color_profile"),
        )


@dataclass(frozen=True)
class Placeholder:
    blurhash: str
    dominant_color: str  # "#rrggbb"


@dataclass(frozen=True)
class EncodedRendition(_OutputFormat):
    width: int
    height: int
    format: str
    data: bytes = field(repr=False)
    quality: int | None = None  # the encoder quality used
    score: float | None = None  # SSIMULACRA2 the quality search reached (auto quality only)
    aspect: str = "original"  # or "A:B" for a crop
    animated: bool = False  # every frame, not the still poster
    gamut: str = "srgb"  # or "p3": tagged Display P3
    hdr: bool = False  # carries a gain map (an Ultra HDR JPEG)


@dataclass(frozen=True)
class Rendition:
    """A stored rendition as the catalog knows it."""

    width: int
    height: int
    format: str
    bytes: int
    key: str
    spec: str
    quality: int | None = None  # encoder quality; None for renditions made before it was recorded
    score: float | None = None  # SSIMULACRA2 the quality search reached; None for a fixed quality
    aspect: str = "original"  # or "A:B" for a crop around the subject
    animated: bool = False  # every frame of an animated original; False for stills and posters
    gamut: str = "srgb"  # or "p3": tagged Display P3 (a wide-gamut source)
    hdr: bool = False  # carries a gain map: an HDR screen shows it in HDR

    @property
    def identity(self) -> tuple[str, int, str]:
        return self.spec, self.width, self.format


@dataclass(frozen=True)
class RenditionLookup:
    original_width: int
    renditions: tuple[Rendition, ...]
    owner: str | None = None  # for the cache tags on the answer

    def find(self, fmt: str, animated: bool | None = None) -> Rendition | None:
        """The rendition in ``fmt``: with ``animated`` None, the animated one where there is one
        (an animated photo is shown moving wherever the format can), else the still."""
        matching = [r for r in self.renditions if r.format == fmt and (animated is None or r.animated == animated)]
        return max(matching, key=lambda r: r.animated, default=None)


@dataclass(frozen=True)
class Animation:
    """What the original's header says about its frames, and whether its renditions move.
    ``dropped``: why they are stills only (a limit it passes), None when kept or not animated."""

    frames: int = 1
    duration_ms: int = 0
    dropped: str | None = None

    @property
    def animated(self) -> bool:
        return self.frames > 1

    @property
    def kept(self) -> bool:
        return self.animated and self.dropped is None


@dataclass(frozen=True)
class Hashes:
    phash: str  # 64-bit DCT hash, hex
    dhash: str  # 64-bit gradient hash, hex
    pdq: str | None = None  # Meta's 256-bit PDQ, hex as the reference writes it (None: made before it existed)
    pdq_quality: int | None = None  # PDQ's own 0..100 quality; the reference trusts matches from 50


@dataclass(frozen=True)
class Duplicate:
    """An earlier photo this one repeats. ``kind``: "exact" (same bytes or decoded pixels) or
    "near". ``distance``: bits of 256 between view hashes (0 when exact), or None for a match by
    keypoints, which says how many agreed in ``inliers`` instead."""

    id: str
    kind: str
    distance: int | None
    transform: str | None = None
    inliers: int | None = None

    @property
    def order(self) -> tuple[int, int, int, str]:
        """Exact first, then near by distance, then keypoint matches by inliers (most first)."""
        if self.distance is not None:
            return (0 if self.kind == "exact" else 1, self.distance, 0, self.id)
        return (2, 0, -(self.inliers or 0), self.id)


@dataclass(frozen=True)
class HashQuality:
    """How much a perceptual hash of the photo says (0..100), and whether it was near-matched at
    all: flat or near-blank pictures are not, or they would all match each other."""

    score: float
    matched: bool


@dataclass(frozen=True)
class Photo:
    """A catalog row."""

    id: str
    status: PhotoStatus
    owner: str | None
    sha256: str
    original_key: str
    original_format: str
    original_width: int
    original_height: int
    original_bytes: int
    created_at: float
    updated_at: float
    preset_version: str | None = None
    metadata: PhotoMetadata | None = None
    placeholder: Placeholder | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    renditions: tuple[Rendition, ...] = ()
    hashes: Hashes | None = None
    hash_quality: HashQuality | None = None
    duplicates: tuple[Duplicate, ...] = ()
    computed_focus: Focus | None = None  # found at ingest
    user_focal_point: Point | None = None  # set through the API; wins over the computed one
    external_id: str | None = None  # the main app's id of an imported photo, unique per owner
    hidden: bool = False  # hidden on its own (PATCH visible false)
    owner_hidden: bool = False  # its owner opted out (PUT /v1/owners/<owner>/visibility)
    original_hdr: bool = False  # an HDR original: a gain map (Ultra HDR JPEG, Apple HEIC) or PQ/HLG

    @property
    def visible(self) -> bool:
        """Whether its image URLs answer: neither the photo nor its owner is hidden."""
        return not (self.hidden or self.owner_hidden)
    animation: Animation = Animation()  # a still unless the original is an animation

    @property
    def focus(self) -> Focus | None:
        """What crops are cut around: the user's focal point when set, else the computed focus."""
        if self.computed_focus is None:
            return None
        return self.computed_focus.with_user_point(self.user_focal_point)
