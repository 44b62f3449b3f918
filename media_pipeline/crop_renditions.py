"""Crop renditions in the service: which crops a photo should have, storing them, rendering one
on demand, and a user's focal point. Joins the core (``crops``, ``pipeline``) to storage and the
catalog, like ``service``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from media_pipeline import crops, metrics, pipeline
from media_pipeline.framing import Focus, Point, parse_aspect
from media_pipeline.models import EncodedRendition, EncoderSettings, Photo, PhotoStatus, Preset, Rendition
from media_pipeline.storage import IMMUTABLE, rendition_key

if TYPE_CHECKING:
    from media_pipeline.service import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WantedCrop:
    """One crop rendition a photo should have, and the spec of its immutable key."""

    variant: crops.CropVariant
    encoder: EncoderSettings
    spec: str

    @property
    def identity(self) -> tuple[str, int, str]:
        return self.spec, self.variant.width, self.encoder.format

    @property
    def selector(self) -> tuple[str, int, str]:
        return self.variant.aspect, self.variant.width, self.encoder.format


def wanted_crops(preset: Preset, upright_size: tuple[int, int], focus: Focus, aspects: tuple[str, ...] | None = None,
                 widths: tuple[int, ...] | None = None, encoders: tuple[EncoderSettings, ...] | None = None,
                 from_original: bool = False) -> list[WantedCrop]:
    """The crops of the preset (or of the given aspects, widths and formats) a photo of
    ``upright_size`` gets around ``focus``: every width the largest level's window holds (at
    ingest, crops are cut from the cascade), or with ``from_original`` every width the picture's
    own window holds (an on-demand crop decodes the original at the size it needs)."""
    level = upright_size if from_original else pipeline.largest_level_size(preset.widths, upright_size)
    variants = crops.plan(preset.aspects if aspects is None else aspects, preset.crop_widths if widths is None else widths, level, focus)
    return [WantedCrop(v, enc, crops.crop_spec(enc.spec, v.aspect, focus))
            for v in variants for enc in (preset.eager if encoders is None else encoders)]


def render_crops(services: Services, photo_id: str, job: pipeline.Job, wanted: list[WantedCrop], focus: Focus,
                 only: set[tuple[str, int, str]] | None = None) -> Iterator[Rendition]:
    """Cut, encode and store the wanted crops (those in ``only``) from the job's levels."""
    specs = {w.selector: w.spec for w in wanted}
    variants = tuple(dict.fromkeys(w.variant for w in wanted))
    encoders = tuple(dict.fromkeys(w.encoder for w in wanted))
    levels = list(job.levels.values())
    for encoded in metrics.timed_iter("encode", crops.iter_crops(levels, variants, encoders, focus, only=only)):
        yield store_crop(services, photo_id, encoded, specs[(encoded.aspect, encoded.width, encoded.format)])


def store_crop(services: Services, photo_id: str, encoded: EncodedRendition, spec: str) -> Rendition:
    key = rendition_key(photo_id, spec, encoded.width, encoded.extension)
    with metrics.step("store"):
        services.storage.put(key, encoded.data, encoded.content_type, IMMUTABLE)
    metrics.BYTES_WRITTEN.labels("rendition").inc(len(encoded.data))
    return Rendition(encoded.width, encoded.height, encoded.format, len(encoded.data), key, spec, aspect=encoded.aspect,
                     gamut=encoded.gamut, hdr=encoded.hdr)


def render_crop_on_demand(services: Services, photo_id: str, aspect: str, width: int, fmt: str) -> Rendition | None:
    """One crop not made at ingest, stored under its immutable key and recorded (like
    ``service.render_on_demand``). ``None`` if the photo is gone, has no focus yet, or its window
    does not hold ``width``."""
    preset = services.preset
    encoder = preset.encoder(fmt)
    photo = services.catalog.get_photo(photo_id)
    if encoder is None or photo is None or photo.status is not PhotoStatus.READY or photo.focus is None:
        return None
    focus = photo.focus
    upright = (photo.original_width, photo.original_height)
    wanted = wanted_crops(preset, upright, focus, (aspect,), (width,), (encoder,), from_original=True)
    ratio = parse_aspect(aspect)
    if not wanted or ratio is None:
        return None
    data = services.storage.get(photo.original_key)
    # One level, the narrowest whose window holds the width: no more decoded than the crop needs,
    # and more than the cascade's largest level where it must (a 4:5 crop at 1080 of a wide photo,
    # a 9:16 of a landscape one), up to the pixels of the largest level ingest ever holds (a
    # portrait photo's: 2160 x 2880), which bounds this request's memory as ingest's is bounded.
    level = crops.level_width_holding(upright, ratio, width)
    largest = max(preset.widths)
    if level > largest and level * round(upright[1] * level / upright[0]) > largest * round(largest * 4 / 3):
        return None
    job = pipeline.prepare(data, preset, services.settings.max_pixels, widths=(level,))
    rendition = next(render_crops(services, photo_id, job, wanted, focus))
    if not services.catalog.add_rendition(photo_id, rendition):
        services.storage.delete(rendition.key)
        return None
    log.info("on-demand crop", extra={"photo_id": photo_id, "aspect": aspect, "width": width, "format": fmt})
    return rendition


def set_focal_point(services: Services, photo: Photo, point: Point | None) -> bool:
    """Record a user's focal point (``None``: back to the computed one) and queue the photo, whose
    worker renders the crops under new keys and retires the old ones. ``False`` if it is not ready."""
    if not services.catalog.set_user_focal_point(photo.id, point):
        return False
    services.queue.enqueue_process(photo.id)
    return True


def crops_current(preset: Preset, photo: Photo) -> bool:
    """Whether the photo has every crop its preset and focus call for, and no current crop cut
    around another focus (an on-demand one made before the focal point changed)."""
    focus = photo.focus
    if focus is None:
        return not preset.aspects
    wanted = {w.identity for w in wanted_crops(preset, (photo.original_width, photo.original_height), focus)}
    have = [r for r in photo.renditions if r.aspect != "original"]
    stale = any(r.spec != crops.crop_spec(enc.spec, r.aspect, focus) for r in have if (enc := preset.encoder(r.format)))
    return wanted <= {r.identity for r in have} and not stale
