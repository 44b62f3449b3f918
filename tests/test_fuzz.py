"""Fuzzing the untrusted path: sniff -> probe -> decode -> every step -> encoders, with hypothesis
mutating small valid files of every accepted format (flipped bytes, overwritten words such as
header dimensions, truncations, insertions, appended junk). Whatever the bytes, the answer is an
``ImageInfo`` within the pixel limit and renditions that decode, or a ``MediaError`` with a code;
never another exception, and each example within its deadline. ``MP_FUZZ_EXAMPLES`` raises the
count for a longer run and ``MP_FUZZ_RANDOM=1`` draws new examples."""

from __future__ import annotations

import io
import os
from datetime import timedelta
from functools import lru_cache

import pyvips
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from config.settings import Settings
from media_pipeline import pipeline
from media_pipeline.errors import MediaError
from media_pipeline.probe import probe
from media_pipeline.sniff import sniff
from tests import images

EXAMPLES = int(os.environ.get("MP_FUZZ_EXAMPLES", "2000"))
# CI replays the same examples every run, so a red build always means a change broke something;
# MP_FUZZ_RANDOM=1 explores new ones (and hypothesis keeps what it finds in .hypothesis/).
DERANDOMIZE = os.environ.get("MP_FUZZ_RANDOM") != "1"
MAX_PIXELS = 4_000_000  # small, so a forged header over it is refused like a real bomb


@lru_cache(maxsize=1)
def seeds() -> tuple[bytes, ...]:
    rgb = images.scene(72, 48, seed=5)
    vips = images.to_vips(rgb)
    gif = io.BytesIO()
    frames = [Image.fromarray(rgb), Image.fromarray(rgb[::-1].copy())]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return (
        images.oriented_jpeg(rgb, 6),
        images.with_profile(rgb, "p3"),
        images.png(rgb),
        images.png(images.scene(40, 30, seed=6)[..., :1].repeat(4, axis=2)),
        gif.getvalue(),
        vips.webpsave_buffer(Q=70),
        vips.tiffsave_buffer(),
        vips.heifsave_buffer(compression="av1", Q=50, effort=0),
    )


@lru_cache(maxsize=1)
def preset() -> object:
    return Settings.from_env({}).preset()


def mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, where, payload in edits:
        at = where % (len(out) + 1)
        if kind == "flip" and out:
            out[at % len(out)] ^= payload[0] | 1
        elif kind == "overwrite":
            out[at : at + len(payload)] = payload
        elif kind == "insert":
            out[at:at] = payload
        elif kind == "truncate":
            del out[max(1, at):]
        elif kind == "append":
            out += payload
    return bytes(out)


edits = st.lists(
    st.tuples(st.sampled_from(["flip", "overwrite", "insert", "truncate", "append"]), st.integers(0, 1 << 16),
              st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from([b"\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00",
                                                                            b"\xff\xd9", b"PK\x03\x04", b"<html>"]))),
    max_size=6,
)


@settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), suppress_health_check=list(HealthCheck),
          derandomize=DERANDOMIZE)
@given(seed=st.integers(0, 7), edits=edits)
def test_any_bytes_end_as_an_image_or_a_media_error(seed: int, edits: list[tuple[str, int, bytes]]) -> None:
    data = mutate(seeds()[seed], edits)
    try:
        sniff(data[:64])
        info = probe(data, MAX_PIXELS)
    except MediaError as exc:
        assert exc.code and exc.http_status in (400, 413, 415, 422)
        event(f"refused at the header: {exc.code}")
        return
    assert 0 < info.width * info.height <= MAX_PIXELS
    try:
        processed = pipeline.process(data, preset(), MAX_PIXELS, info)
    except MediaError as exc:
        assert exc.code
        event(f"failed in the pipeline: {exc.code}")
        return
    event(f"rendered: {info.format.value}")
    assert processed.renditions
    for rendition in processed.renditions:
        decoded = pyvips.Image.new_from_buffer(rendition.data, "")
        assert (decoded.width, decoded.height) == (rendition.width, rendition.height)
        assert rendition.width <= max(info.upright_size)


def test_a_png_text_chunk_named_in_latin_1_is_an_ordinary_png() -> None:
    """Found by the fuzzer: pyvips decodes every metadata field name as UTF-8, and a tEXt keyword
    "Ä" (one byte, 0xC4) made probing raise UnicodeDecodeError, a 500 at the API."""
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("\u00c4", "caption")
    out = io.BytesIO()
    Image.fromarray(images.scene(64, 48)).save(out, "PNG", pnginfo=text)
    info = probe(out.getvalue(), MAX_PIXELS)
    assert (info.format.value, info.width, info.height) == ("png", 64, 48)
    processed = pipeline.process(out.getvalue(), preset(), MAX_PIXELS, info)
    assert images.mean_abs_diff(images.decode(processed.renditions[-1].data), images.scene(64, 48)) < 8
