"""The encoder quality of an auto-quality format for one photo: the search of autoquality.py, with
encode, decode and SSIMULACRA2 of the probe picture. Bytes and pixels in, a ``Choice`` out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyvips

from media_pipeline import autoquality, ssimulacra2
from media_pipeline.encode import WHITE, encode
from media_pipeline.models import EncoderSettings

# Our own encoders' output, so each format's own loader (never libvips' generic detection).
_LOADERS = {
    "avif": pyvips.Image.heifload_buffer,
    "webp": pyvips.Image.webpload_buffer,
    "jpeg": pyvips.Image.jpegload_buffer,
}


@dataclass(frozen=True)
class Probe:
    """What every auto format's search of one photo encodes and scores against: the probe picture
    and its SSIMULACRA2 reference, prepared once per photo rather than once per format."""

    picture: pyvips.Image
    reference: ssimulacra2.Reference


def probe(largest: pyvips.Image) -> Probe:
    """The probe cut from ``largest`` (the photo's largest level), with its reference."""
    pixels = autoquality.probe_picture(largest.numpy())
    return Probe(picture=pyvips.Image.new_from_array(pixels, interpretation="srgb"),
                 reference=ssimulacra2.reference(_rgb(pixels)))


def choose(photo: Probe, enc: EncoderSettings) -> autoquality.Choice:
    """Search ``enc.auto`` on the photo's probe."""
    assert enc.auto is not None

    def score_at(quality: int) -> float:
        data = encode(photo.picture, dataclasses.replace(enc, quality=quality))
        decoded = _LOADERS[enc.format](data).numpy()
        return ssimulacra2.compare(photo.reference, _rgb(decoded))

    return autoquality.search(score_at, enc.auto)


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """Alpha flattened on white, as the JPEG encoder does: a rendition is scored as it is seen on a
    white page (the reference tool would take the lower of a dark and a light background)."""
    if pixels.shape[2] == 3:
        return pixels
    alpha = pixels[:, :, 3:].astype(np.float32) / 255
    flat = pixels[:, :, :3] * alpha + np.float32(WHITE[0]) * (1 - alpha)
    return (flat + 0.5).astype(np.uint8)
