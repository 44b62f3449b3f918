"""Animated renditions in the service: whether a photo's animation is kept (decided at ingest from
the header and the settings), which animated renditions it should have, and storing them. Joins
the core (``animation``) to storage, like ``crop_renditions``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from config.settings import Settings
from media_pipeline import animation, metrics, pipeline
from media_pipeline.models import Animation, EncoderSettings, ImageInfo, Photo, Preset, Rendition
from media_pipeline.storage import IMMUTABLE, rendition_key

if TYPE_CHECKING:
    from media_pipeline.service import Services


def limits(settings: Settings) -> animation.AnimationLimits:
    return animation.AnimationLimits(max_pixels=settings.max_animation_pixels, max_frames=settings.max_frames)


def animation_of(settings: Settings, info: ImageInfo) -> Animation:
    """What the catalog records about an upload's animation, from its header."""
    return animation.verdict(info, limits(settings))


def animated_spec(spec: str) -> str:
    """The key spec of an animated rendition: its format's spec, marked, so the animation and
    the still poster of the same width and format have keys (and immutable URLs) of their own."""
    return hashlib.sha256(f"{spec}:animated".encode()).hexdigest()[:10]


@dataclass(frozen=True)
class WantedAnimation:
    width: int
    encoder: EncoderSettings

    @property
    def spec(self) -> str:
        return animated_spec(self.encoder.spec)

    @property
    def identity(self) -> tuple[str, int, str]:
        return self.spec, self.width, self.encoder.format


def wanted_animations(preset: Preset, photo: Photo) -> list[WantedAnimation]:
    """Animated AVIF and WebP at every rendition width, for a photo whose animation is kept
    (whatever the preset's eager formats: the still JPEG is the fallback for other clients)."""
    if not photo.animation.kept:
        return []
    encoders = [enc for fmt in animation.ANIMATED_FORMATS if (enc := preset.encoder(fmt)) is not None]
    return [WantedAnimation(width, enc) for width in pipeline.rendition_widths(preset.widths, photo.original_width) for enc in encoders]


def animations_current(preset: Preset, photo: Photo) -> bool:
    have = {r.identity for r in photo.renditions if r.animated}
    return {w.identity for w in wanted_animations(preset, photo)} <= have


def render_animations(services: Services, photo_id: str, data: bytes | memoryview, info: ImageInfo,
                      wanted: list[WantedAnimation], existing: set[tuple[str, int, str]]) -> Iterator[Rendition]:
    """Decode every frame once, then encode and store the wanted animations not in ``existing``."""
    todo = [w for w in wanted if w.identity not in existing]
    if not todo:
        return
    specs = {(w.width, w.encoder.format): w.spec for w in todo}
    encoders = tuple(dict.fromkeys(w.encoder for w in todo))
    widths = tuple(sorted({w.width for w in todo}, reverse=True))
    with metrics.step("decode_frames"):
        frames = animation.decode_frames(data, info)
    for encoded in metrics.timed_iter("encode", animation.iter_animated(frames, widths, encoders, only=set(specs))):
        spec = specs[(encoded.width, encoded.format)]
        key = rendition_key(photo_id, spec, encoded.width, encoded.extension)
        with metrics.step("store"):
            services.storage.put(key, encoded.data, encoded.content_type, IMMUTABLE)
        metrics.BYTES_WRITTEN.labels("rendition").inc(len(encoded.data))
        yield Rendition(encoded.width, encoded.height, encoded.format, len(encoded.data), key, spec, encoded.quality,
                        animated=True)
