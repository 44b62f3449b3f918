"""Small images the tests make themselves, so the suite needs no outside files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyvips
from PIL import Image

# Pillow's transpose that displays a stored image with EXIF orientation N upright, and its inverse.
DISPLAY = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {**DISPLAY, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def scene(width: int = 640, height: int = 480, seed: int = 1) -> np.ndarray:
    """An asymmetric, textured RGB picture: gradients, a few blocks, mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), dtype=np.float64)
    img[..., 0] = 255 * x / width
    img[..., 1] = 255 * y / height
    img[..., 2] = 128 + 100 * np.sin(x / (13 + seed)) * np.cos(y / 17)
    for _ in range(6):
        x0, y0 = rng.integers(0, width * 3 // 4), rng.integers(0, height * 3 // 4)
        img[y0 : y0 + height // 5, x0 : x0 + width // 6] = rng.integers(0, 255, 3)
    img[: height // 8, : width // 3] = (250, 250, 20)  # a top-left marker to tell orientations apart
    img += rng.normal(0, 4, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def to_vips(rgb: np.ndarray) -> pyvips.Image:
    return pyvips.Image.new_from_array(rgb).copy(interpretation="srgb" if rgb.ndim == 3 and rgb.shape[2] >= 3 else "b-w")


def jpeg(rgb: np.ndarray, quality: int = 92, exif: bytes | None = None, icc: bytes | None = None,
         comment: bytes | None = None) -> bytes:
    out = io.BytesIO()
    kwargs: dict[str, bytes] = {}
    if comment:
        kwargs["comment"] = comment
    if exif:
        kwargs["exif"] = exif
    if icc:
        kwargs["icc_profile"] = icc
    Image.fromarray(rgb).save(out, "JPEG", quality=quality, **kwargs)
    return out.getvalue()


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


def encode_with(image: pyvips.Image, suffix: str, **options: object) -> bytes:
    return image.write_to_buffer(suffix, **options)


def exif_bytes(orientation: int = 1, gps: bool = True, make: str = "TestMake", model: str = "TestCam 1",
               taken: str = "2024:05:06 07:08:09") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = make
    exif[0x0110] = model
    exif[0xA431] = "SERIAL-123456"  # BodySerialNumber lives in the Exif IFD; Pillow accepts it here too
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = taken
    sub[0x9011] = "+02:00"
    if gps:
        g = exif.get_ifd(0x8825)
        g[1] = "N"
        g[2] = (48.0, 51.0, 29.0)
        g[3] = "E"
        g[4] = (2.0, 17.0, 40.0)
    return exif.tobytes()


def oriented_jpeg(upright: np.ndarray, orientation: int) -> bytes:
    """Store ``upright`` so that a viewer honouring ``orientation`` shows it upright."""
    stored = Image.fromarray(upright)
    if orientation in INVERSE:
        stored = stored.transpose(INVERSE[orientation])
    return jpeg(np.asarray(stored), exif=exif_bytes(orientation=orientation, gps=False))


def with_profile(rgb: np.ndarray, profile: str, suffix: str = ".jpg", **options: object) -> bytes:
    """Convert sRGB pixels into ``profile`` (p3, cmyk) and embed it: same colours, other numbers."""
    image = to_vips(rgb).icc_transform(profile, intent="relative")
    return image.write_to_buffer(suffix, **options)


def forged_png(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height``: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def small_grey(image: pyvips.Image | np.ndarray, size: int = 64) -> np.ndarray:
    if isinstance(image, np.ndarray):
        image = to_vips(image)
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    image = image.thumbnail_image(size, height=size, size="force")
    image = image.colourspace("b-w") if image.bands >= 3 else image
    return image.numpy().astype(np.float64).reshape(size, size)


def mean_abs_diff(a: pyvips.Image | np.ndarray, b: pyvips.Image | np.ndarray, size: int = 64) -> float:
    """Mean absolute grey-level difference after scaling both to size x size: 0 is identical, ~60+ unrelated."""
    return float(np.abs(small_grey(a, size) - small_grey(b, size)).mean())


def mean_colour(image: pyvips.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, pyvips.Image):
        if image.hasalpha():
            image = image.flatten(background=[255, 255, 255])
        image = image.numpy()
    return image[..., :3].reshape(-1, 3).astype(np.float64).mean(axis=0)


def natural(width: int = 640, height: int = 480, seed: int = 1) -> np.ndarray:
    """A photo-like picture whose layout depends on ``seed``: smooth random fields at three
    scales plus some texture, so two seeds are as unrelated as two photos (a ``scene`` shares its
    gradients with every other scene)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), dtype=np.float32)
    for cells, weight in ((3, 90.0), (7, 50.0), (19, 25.0)):
        field = rng.uniform(-1, 1, (cells, cells, 3)).astype(np.float32)
        img += weight * cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    img += 128 + rng.normal(0, 6, img.shape).astype(np.float32)
    return img.clip(0, 255).astype(np.uint8)


def ultra_hdr_jpeg(sdr: np.ndarray, gainmap: np.ndarray, boost: float = 8.0, exif: bytes | None = None) -> bytes:
    """An Ultra HDR JPEG: ``sdr`` (HxWx3) as the base every screen shows, ``gainmap`` (hxw, 0..255,
    255 = ``boost`` times brighter on an HDR screen) as its gain map, written by libvips."""
    image = to_vips(sdr).copy()
    gm = pyvips.Image.new_from_array(np.ascontiguousarray(gainmap)).copy(interpretation="b-w")
    for name, value in (("gainmap-max-content-boost", [boost] * 3), ("gainmap-min-content-boost", [1.0] * 3),
                        ("gainmap-gamma", [1.0] * 3), ("gainmap-offset-sdr", [0.0] * 3), ("gainmap-offset-hdr", [0.0] * 3)):
        image.set_type(pyvips.GValue.array_double_type, name, value)
    image.set_type(pyvips.GValue.gdouble_type, "gainmap-hdr-capacity-min", 1.0)
    image.set_type(pyvips.GValue.gdouble_type, "gainmap-hdr-capacity-max", boost)
    image.set_type(pyvips.GValue.gint_type, "gainmap-use-base-cg", 1)
    image.set_type(pyvips.GValue.blob_type, "gainmap-data", gm.jpegsave_buffer(Q=95))
    image.set_type(pyvips.GValue.image_type, "gainmap", gm)
    data = image.jpegsave_buffer(Q=92, keep="gainmap")
    if exif is None:
        return data
    # libvips writes no EXIF with keep=gainmap: splice an APP1 segment in after SOI.
    segment = b"Exif\x00\x00" + exif if not exif.startswith(b"Exif") else exif
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + data[2:]


def exif_is_generic(data: bytes) -> bool:
    """Whether every EXIF block in ``data`` holds only what an encoder writes of its own accord
    (orientation, resolution, colour space, sizes): no camera, time, GPS or maker note."""
    start = 0
    while (pos := data.find(b"Exif\x00\x00", start)) >= 0:
        length = int.from_bytes(data[pos - 2 : pos], "big")
        exif = Image.Exif()
        exif.load(data[pos : pos + length - 2])
        if {0x010F, 0x0110, 0x0132, 0x8825} & set(exif) or {0x9003, 0x9004, 0x927C} & set(exif.get_ifd(0x8769)):
            return False
        start = pos + 6
    return True
