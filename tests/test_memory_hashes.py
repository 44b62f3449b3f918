"""The in-memory hash index's bulk loads: a photo's rows arrive together (a catalog load, an
upload) or in pieces (two batches, interleaved rows); replacing and removing it must reach every
row either way (the contract suite covers the port)."""

from __future__ import annotations

import numpy as np
import pytest

from media_pipeline.hashindex import MemoryHashIndex
from media_pipeline.hashindex.memory import to_words


@pytest.mark.parametrize("rebuild_after", [2, 10_000])  # bucketed, or scanned
def test_a_photo_loaded_in_pieces_is_removed_and_replaced_whole(rebuild_after: int) -> None:
    rng = np.random.default_rng(2)
    values = {name: [int.from_bytes(rng.bytes(32), "big") for _ in range(3)] for name in ("a", "b", "c")}
    index = MemoryHashIndex(rebuild_after=rebuild_after)
    # "a" in two batches, "b" interleaved with "c" within one.
    index.add_many(["a", "a"], [None, None], ["full", "crop"], to_words(values["a"][:2]))
    index.add_many(["b", "c", "a", "b", "c"], [None, "carol", None, None, "carol"], ["full", "full", "top", "crop", "crop"],
                   to_words([values["b"][0], values["c"][0], values["a"][2], values["b"][1], values["c"][1]]))
    index.rebuild()
    assert index.count() == 7
    hits = index.search([values["a"][2], values["b"][1]], 0)
    assert {(h.photo_id, h.view) for h in hits} == {("a", "top"), ("b", "crop")}
    assert [h.photo_id for h in index.search([values["c"][1]], 0, owner="carol")] == ["c"]
    index.remove("a")
    assert index.count() == 4
    assert index.search(values["a"], 0) == []
    index.add("b", None, [("full", values["b"][2])])  # replaces both of its rows
    assert index.count() == 3
    assert index.search(values["b"][:2], 0) == []
    assert [(h.photo_id, h.view) for h in index.search([values["b"][2]], 0)] == [("b", "full")]
    assert {h.photo_id for h in index.search([values["c"][0], values["c"][1]], 0)} == {"c"}


def test_room_reserved_for_a_bulk_load_is_allocated_once_and_exactly() -> None:
    from media_pipeline.hashindex.memory import MemoryHashIndex, to_words

    index = MemoryHashIndex()
    index.reserve(3_000)
    values = [(i * 0x9E3779B97F4A7C15) << 128 | i for i in range(3_000)]
    for start in range(0, 3_000, 1_000):
        index.add_many([f"p{i}" for i in range(start, start + 1_000)], [None] * 1_000, ["full"] * 1_000,
                       to_words(values[start : start + 1_000]), rebuild=False)
    index.rebuild()
    assert len(index._words) == 3_000  # no doubling's spare room
    assert [(h.photo_id, h.distance) for h in index.search([values[1_234] ^ 7], 3)] == [("p1234", 3)]
