"""Hostile files made here, each through the API and the worker's service call as a client would
send it: a 10,000-frame GIF, a PNG whose text chunk inflates to far more than the upload, EXIF
whose IFD offsets form a cycle, a JPEG with a ZIP or an HTML page appended, and a real-looking
JPEG cut at every tenth of its length. Each gets its documented outcome, the next upload still
works, and the ones that could blow up are also run in a child process whose peak RSS and time
are read back, so "bounded" is a number a test can check, not a hope."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from media_pipeline import service
from tests import images
from tests.conftest import REPO

# Generous bounds: what a worker child may cost for one small hostile file (its baseline with
# libvips, OpenCV and numpy imported is ~120 MiB here), and a hang guard, not a speed check.
PEAK_RSS_MIB = 400
SECONDS = 60


# --------------------------------------------------------------------------- the files
def gif_with_frames(frames: int, size: int = 16) -> bytes:
    """One small GIF frame from Pillow, repeated ``frames`` times behind one header."""
    out = io.BytesIO()
    Image.fromarray(images.scene(size, size)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(out, "GIF")
    one = out.getvalue()
    gct = 3 * 2 ** ((one[10] & 0x07) + 1) if one[10] & 0x80 else 0
    start = pos = 13 + gct
    while one[pos] == 0x21:  # extensions before the image: skip their sub-blocks
        pos += 2
        while one[pos]:
            pos += one[pos] + 1
        pos += 1
    assert one[pos] == 0x2C, "Pillow's GIF layout changed"
    image_start = pos
    pos += 10 + (3 * 2 ** ((one[pos + 9] & 0x07) + 1) if one[pos + 9] & 0x80 else 0) + 1  # descriptor, LCT, LZW size
    while one[pos]:
        pos += one[pos] + 1
    frame = b"\x21\xf9\x04\x00\x02\x00\x00\x00" + one[image_start : pos + 1]  # 20 ms per frame
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    return one[:start] + loop + frame * frames + b"\x3b"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_text(rgb: np.ndarray, inflated_bytes: int, plain_bytes: int) -> bytes:
    """A real PNG with a zTXt chunk that inflates to ``inflated_bytes`` and a tEXt chunk of
    ``plain_bytes``, both before the pixels, where a decoder meets them first."""
    data = images.png(rgb)
    ihdr_end = 8 + 25
    bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"MARKER-TEXT " * (inflated_bytes // 12), 9))
    plain = png_chunk(b"tEXt", b"Description\x00" + b"MARKER-TEXT " * (plain_bytes // 12))
    return data[:ihdr_end] + bomb + plain + data[ihdr_end:]


def cyclic_exif(orientation: int = 6) -> bytes:
    """Little-endian TIFF: IFD0 holds Make, Orientation and an Exif-IFD pointer back to itself,
    and its next-IFD offset is itself too: a parser that follows offsets without a visited set
    never ends."""
    entries = [
        (0x010F, 2, 4, b"Cyc\x00"),               # Make, inline
        (0x0112, 3, 1, struct.pack("<HH", orientation, 0)),
        (0x8769, 4, 1, struct.pack("<I", 8)),     # Exif IFD -> IFD0
        (0x8825, 4, 1, struct.pack("<I", 8)),     # GPS IFD -> IFD0
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    ifd += struct.pack("<I", 8)  # next IFD: IFD0 again
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def appended_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("payload/MARKER-ZIP.txt", "MARKER-ZIP " * 500)
    return out.getvalue()


APPENDED_HTML = b"<!doctype html><html><body><script>alert('MARKER-HTML')</script></body></html>\n" * 20


# --------------------------------------------------------------------------- helpers
def upload_and_process(client: Any, services: Any, data: bytes) -> tuple[int, dict[str, Any]]:
    """POST as a client app would, then run the worker's service call; answer the status the
    upload got and the photo as GET shows it afterwards (or the error body)."""
    response = client.post("/v1/photos", data=data, headers={"Content-Type": "application/octet-stream"})
    body = response.get_json()
    if response.status_code != 202:
        return response.status_code, body
    service.process_photo(services, body["id"])
    return 202, client.get(f"/v1/photos/{body['id']}").get_json()


def rendition_bodies(client: Any, photo: dict[str, Any]) -> list[bytes]:
    bodies = []
    for rendition in photo["renditions"]:
        response = client.get(rendition["url"])
        assert response.status_code == 200, rendition["url"]
        bodies.append(response.data)
    return bodies


def assert_next_upload_works(client: Any, services: Any) -> None:
    status, photo = upload_and_process(client, services, images.jpeg(images.natural(320, 240, seed=77)))
    assert status == 202 and photo["status"] == "ready", photo


_ISOLATED = r"""
import json, sys, time
from config.settings import Settings
from media_pipeline import animated_renditions, animation, pipeline
from media_pipeline.errors import MediaPipelineError
settings = Settings.from_env({})
data = sys.stdin.buffer.read()
started = time.monotonic()
try:
    job = pipeline.prepare(data, settings.preset(), settings.max_pixels)
    pipeline.describe(job, settings.preset())
    pipeline.identify(job)
    sizes = [len(r.data) for r in pipeline.iter_renditions(job, settings.preset().eager, release=True)]
    outcome = "rendered"
    if animated_renditions.animation_of(settings, job.info).kept:  # then every frame, as the worker does
        frames = animation.decode_frames(data, job.info)
        encoders = tuple(settings.preset().encoder(f) for f in animation.ANIMATED_FORMATS)
        sizes += [len(r.data) for r in animation.iter_animated(frames, job.widths, encoders)]
        outcome = "animated"
except MediaPipelineError as exc:
    outcome = exc.code
seconds = time.monotonic() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"outcome": outcome, "seconds": seconds, "peak_mib": peak / 1024}))
"""


def run_isolated(data: bytes) -> dict[str, Any]:
    """The worker's steps on ``data`` in a fresh process: its outcome, time and peak RSS."""
    done = subprocess.run([sys.executable, "-c", _ISOLATED], input=data, capture_output=True, cwd=REPO, timeout=SECONDS * 2)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def assert_bounded(data: bytes) -> dict[str, Any]:
    report = run_isolated(data)
    assert report["peak_mib"] < PEAK_RSS_MIB and report["seconds"] < SECONDS, report
    return report


# --------------------------------------------------------------------------- the cases
def test_a_ten_thousand_frame_gif_renders_its_first_frame_within_bounds(client: Any, services: Any) -> None:
    data = gif_with_frames(10_000)
    status, photo = upload_and_process(client, services, data)
    assert status == 202 and photo["status"] == "ready", photo
    assert photo["original"]["animation"] == {"kept": False, "reason": "too_many_frames"}  # MP_MAX_FRAMES
    for body in rendition_bodies(client, photo):
        first = images.decode(body)
        assert (first.get("n-pages") if first.get_typeof("n-pages") else 1) == 1  # a still, not 10,000 frames
        assert (first.width, first.height) == (16, 16)
    assert assert_bounded(data)["outcome"] == "rendered"
    assert_next_upload_works(client, services)


def test_an_animation_at_the_frame_limit_renders_moving_within_bounds(client: Any, services: Any) -> None:
    data = gif_with_frames(services.settings.max_frames, size=48)
    status, photo = upload_and_process(client, services, data)
    assert status == 202 and photo["status"] == "ready", photo
    assert photo["original"]["animation"]["kept"] and any(r["animated"] for r in photo["renditions"])
    assert assert_bounded(data)["outcome"] == "animated"
    assert_next_upload_works(client, services)


def test_a_gif_whose_canvas_times_frames_passes_the_animation_limit_stays_still_and_bounded(client: Any, services: Any) -> None:
    """A tiny file whose logical screen is large: 200 frames of a 1-pixel patch on a 2000 x 2000
    canvas are 800 megapixels once composited, from a few kilobytes."""
    data = bytearray(gif_with_frames(200, size=16))
    data[6:10] = struct.pack("<HH", 2000, 2000)  # the logical screen; the frames stay 16 x 16
    status, photo = upload_and_process(client, services, bytes(data))
    assert status == 202 and photo["status"] == "ready", photo
    assert photo["original"]["animation"] == {"kept": False, "reason": "too_many_animation_pixels"}
    assert not any(r["animated"] for r in photo["renditions"])
    assert assert_bounded(bytes(data))["outcome"] == "rendered"
    assert_next_upload_works(client, services)


def test_a_png_whose_text_inflates_past_the_upload_is_bounded_and_leaves_no_text(client: Any, services: Any) -> None:
    rgb = images.natural(400, 300, seed=5)
    data = png_with_text(rgb, inflated_bytes=300_000_000, plain_bytes=4_000_000)
    assert len(data) < 6_000_000  # the upload is small; its text is not
    status, photo = upload_and_process(client, services, data)
    # Either outcome is documented: a decoder that refuses the chunk (422 corrupt_image) or one
    # that skips it (ready). What must never happen is the text reaching a rendition or memory.
    assert (status == 422 and photo["error"]["code"] == "corrupt_image") or photo["status"] == "ready", photo
    if status == 202:
        for body in rendition_bodies(client, photo):
            assert b"MARKER-TEXT" not in body
            assert images.mean_abs_diff(images.decode(body), rgb) < 8
    assert_bounded(data)
    assert_next_upload_works(client, services)


def test_cyclic_exif_offsets_end_ready_without_metadata_loops(client: Any, services: Any) -> None:
    upright = images.natural(300, 200, seed=9)
    data = images.jpeg(upright, exif=cyclic_exif(orientation=1))
    assert data.count(b"II*\x00") == 1  # the EXIF went in as written
    status, photo = upload_and_process(client, services, data)
    assert status == 202 and photo["status"] == "ready", photo
    for body in rendition_bodies(client, photo):
        decoded = images.decode(body)
        assert not decoded.get_typeof("exif-data") and b"Cyc\x00" not in body
        assert images.mean_abs_diff(decoded, upright) < 6
    assert assert_bounded(data)["outcome"] == "rendered"
    assert_next_upload_works(client, services)


@pytest.mark.parametrize("appended,markers", [(appended_zip(), (b"PK\x03\x04", b"MARKER-ZIP")),
                                              (APPENDED_HTML, (b"<script", b"MARKER-HTML"))], ids=["zip", "html"])
def test_a_polyglots_appended_bytes_are_gone_from_every_rendition(client: Any, services: Any, appended: bytes,
                                                                  markers: tuple[bytes, ...]) -> None:
    upright = images.natural(900, 600, seed=3)
    data = images.jpeg(upright) + appended
    assert all(marker in data for marker in markers)  # the check can fail
    status, photo = upload_and_process(client, services, data)
    assert status == 202 and photo["status"] == "ready", photo
    assert photo["original"]["format"] == "jpeg"
    bodies = rendition_bodies(client, photo)
    assert len(bodies) == len(photo["renditions"]) >= 2
    for rendition, body in zip(photo["renditions"], bodies):
        assert not any(marker in body for marker in markers)
        if rendition["aspect"] == "original":  # a crop shows part of it (its pixels: test_crop_api.py)
            assert images.mean_abs_diff(images.decode(body), upright) < 6
    spec = photo["renditions"][0]["url"].split("/")[3]
    for path in (f"/i/{photo['id']}/original", f"/i/{photo['id']}/{spec}/original", f"/originals/{photo['id']}"):
        assert client.get(path).status_code == 404


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_a_jpeg_cut_at_every_tenth_is_refused_or_fails_never_half_rendered(client: Any, services: Any, progressive: bool) -> None:
    upright = images.natural(1600, 1200, seed=21)
    out = io.BytesIO()
    Image.fromarray(upright).save(out, "JPEG", quality=90, progressive=progressive, exif=images.exif_bytes(orientation=1))
    data = out.getvalue()
    outcomes = []
    for tenth in range(1, 10):
        status, photo = upload_and_process(client, services, data[: len(data) * tenth // 10])
        if status == 202:
            assert photo["status"] == "failed" and photo["error"]["code"] == "corrupt_image", (tenth, photo)
            assert "renditions" not in photo
        else:
            assert status == 422 and photo["error"]["code"] == "corrupt_image", (tenth, photo)
        outcomes.append(status)
    assert 202 in outcomes  # most cuts leave a readable header: the worker is what catches them
    status, photo = upload_and_process(client, services, data)
    assert status == 202 and photo["status"] == "ready"  # the whole file, for contrast
