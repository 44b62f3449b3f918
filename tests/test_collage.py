"""A photo reposted as one cell of a collage is found, whichever of the two came first."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from bench import edits
from media_pipeline import collage, dedupe, keypoints
from tests import images
from tests.test_duplicates import ready, textured


def grid(cells: list[np.ndarray], gutter: int = 12, colour: int = 255) -> tuple[np.ndarray, list[collage.Box]]:
    """Pictures side by side in rows (one list entry per row), with gutters and a margin."""
    height = max(c.shape[0] for c in cells)
    width = sum(c.shape[1] for c in cells) + gutter * (len(cells) + 1)
    canvas = np.full((height + 2 * gutter, width, 3), colour, np.uint8)
    boxes, left = [], gutter
    for cell in cells:
        canvas[gutter : gutter + cell.shape[0], left : left + cell.shape[1]] = cell
        boxes.append((gutter, left, cell.shape[0], cell.shape[1]))
        left += cell.shape[1] + gutter
    return canvas, boxes


def test_cells_are_found_between_gutters() -> None:
    pictures = [images.natural(200, 300, seed=s) for s in (1, 2, 3)]
    canvas, boxes = grid(pictures)
    found = collage.cells(dedupe.luma(canvas))
    assert len(found) == 3
    for (top, left, height, width), (t, l, h, w) in zip(sorted(found, key=lambda b: b[1]), boxes):
        assert abs(top - t) <= 2 and abs(left - l) <= 2 and abs(height - h) <= 3 and abs(width - w) <= 3


def test_a_photo_is_not_a_collage() -> None:
    for seed in range(5):
        assert collage.cells(dedupe.luma(images.natural(640, 480, seed=seed))) == []
        assert collage.cells(dedupe.luma(textured(seed))) == []
    framed = edits.border(images.natural(640, 480, seed=9), random.Random(0))
    assert len(collage.cells(keypoints.keypoint_image(dedupe.luma(framed)))) <= 1


def test_a_collage_cell_finds_its_original_and_the_original_finds_the_collage(settings: Any, queue: Any) -> None:
    """By the cells' hashes alone (keypoints off): the collage is looked up cell by cell, and
    its cells are stored as views of it for the photo that comes later."""
    from media_pipeline.service import build_services, delete_photo

    services = build_services(settings.replace(keypoint_matching="off"), queue=queue)
    original = images.natural(360, 480, seed=31)
    first = ready(services, edits.jpeg_bytes(original))
    canvas, _ = grid([images.natural(360, 480, seed=s) for s in (32, 33)] + [original])
    repost = ready(services, edits.jpeg_bytes(canvas, 85))
    assert [(d.id, d.transform) for d in services.catalog.get_photo(repost).duplicates] == [(first, "collage cell")]
    # The other order: the collage is there first, the photo it shows comes later.
    assert delete_photo(services, first)
    later = ready(services, edits.jpeg_bytes(original, 80))
    assert [(d.id, d.transform) for d in services.catalog.get_photo(later).duplicates] == [(repost, "collage cell")]


def test_a_cropped_collage_cell_is_found_through_the_api(client: Any, services: Any) -> None:
    original = textured(81)
    first = ready(services, edits.jpeg_bytes(original))
    ready(services, edits.jpeg_bytes(textured(82)))  # an unrelated photo
    repost = ready(services, edits.jpeg_bytes(edits.collage(original, random.Random(4)), 85))
    dups = client.get(f"/v1/photos/{repost}").get_json()["duplicates"]
    assert [d["id"] for d in dups] == [first]
