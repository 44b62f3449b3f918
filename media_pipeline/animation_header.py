"""Frame counts, delays and loop counts read from the container, for the animated formats libvips'
loaders read as one picture: APNG (its ``acTL`` and ``fcTL`` chunks) and AVIF image sequences (the
track's ``mdhd`` timescale and ``stts`` sample durations). Byte walks over chunk and box headers:
no pixel is decoded, and every length is checked against the data, so a forged one ends the walk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Boxes that only hold other boxes, on the way from the file to a track's sample table.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
_MAX_TIMING_ENTRIES = 1_000_000  # an stts entry covers any number of frames: more is a forged box


@dataclass(frozen=True)
class FrameTiming:
    frames: int
    delays: tuple[int, ...]  # ms, one per frame
    loop: int  # plays; 0 forever


def apng_timing(data: bytes | memoryview) -> FrameTiming | None:
    """An APNG's frames, delays and plays; None for a PNG that is not animated."""
    data = memoryview(data)
    if bytes(data[:8]) != _PNG_SIGNATURE:
        return None
    frames = plays = 0
    delays: list[int] = []
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            break
        if kind == b"IDAT" and frames == 0:
            # acTL comes before the first IDAT (APNG spec): without it the PNG is a still, and the
            # walk stops here rather than touching the header of every IDAT chunk of a large file.
            return None
        if kind == b"acTL" and length >= 8:
            frames, plays = struct.unpack(">II", body[:8])
        elif kind == b"fcTL" and length >= 26:
            numerator, denominator = struct.unpack(">HH", body[20:24])
            # The spec: a denominator of 0 means 100 (hundredths of a second).
            delays.append(round(1000 * numerator / (denominator or 100)))
        elif kind == b"IEND":
            break
        pos += 12 + length
    if frames < 2:
        return None
    return FrameTiming(frames=frames, delays=tuple(delays[:frames]), loop=plays)


def avif_sequence_timing(data: bytes | memoryview) -> FrameTiming | None:
    """An AVIF image sequence's frames and delays (from its first track); None without a track.
    AVIF carries no play count that libavif reads back here, so ``loop`` is 0 (forever)."""
    found: dict[str, object] = {}
    _walk(memoryview(data), found)
    timescale, entries = found.get("timescale"), found.get("stts")
    if not isinstance(timescale, int) or not isinstance(entries, list) or timescale <= 0:
        return None
    delays: list[int] = []
    for count, delta in entries:
        delays.extend([round(1000 * delta / timescale)] * min(count, 1_000_000 - len(delays)))
    if len(delays) < 2:
        return None
    return FrameTiming(frames=len(delays), delays=tuple(delays), loop=0)


def _walk(data: memoryview, found: dict[str, object]) -> None:
    pos = 0
    while pos + 8 <= len(data) and "stts" not in found:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1 and pos + 16 <= len(data):
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header or pos + size > len(data):
            return
        body = data[pos + header : pos + size]
        if kind in _CONTAINERS:
            _walk(body, found)
        elif kind == b"mdhd" and "timescale" not in found and len(body) >= 24:
            # version 1: 64-bit creation and modification times before the timescale.
            found["timescale"] = struct.unpack(">I", body[20:24] if body[0] == 1 else body[12:16])[0]
        elif kind == b"stts" and len(body) >= 8:
            (count,) = struct.unpack(">I", body[4:8])
            count = min(count, _MAX_TIMING_ENTRIES, (len(body) - 8) // 8)
            found["stts"] = [struct.unpack(">II", body[8 + 8 * i : 16 + 8 * i]) for i in range(count)]
        pos += size
