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


def test_an_add_that_fills_the_unbucketed_rows_while_another_thread_buckets_neither_deadlocks_nor_stops_lookups(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a background thread, the ``add`` past ``rebuild_after`` buckets the rows itself. While
    another thread's ``rebuild`` is half-way (the rebuild lock held, the lock let go), that add must
    wait for it without holding the lock it needs next, and searches must answer meanwhile."""
    import threading

    from media_pipeline.hashindex import memory

    rng = np.random.default_rng(3)
    values = {f"p{i:02d}": int.from_bytes(rng.bytes(32), "big") for i in range(31)}  # 11 added: past 10
    index = MemoryHashIndex(rebuild_after=10)
    for photo_id, value in list(values.items())[:20]:
        index.add(photo_id, None, [("full", value)])
    bucketing, go_on = threading.Event(), threading.Event()
    column = memory.chunk_column

    def paused(words: np.ndarray, layout: object, i: int) -> np.ndarray:
        if threading.current_thread() is other:
            bucketing.set()
            assert go_on.wait(10)
        return column(words, layout, i)

    monkeypatch.setattr(memory, "chunk_column", paused)
    other = threading.Thread(target=index.rebuild, daemon=True)
    other.start()
    assert bucketing.wait(10)
    adding = threading.Thread(target=lambda: [index.add(p, None, [("full", v)]) for p, v in list(values.items())[20:]],
                              daemon=True)
    adding.start()
    searched = threading.Thread(target=index.search, args=([values["p00"]], 0), daemon=True)
    searched.start()
    searched.join(10)
    assert not searched.is_alive(), "a search waited for the bucketing"
    go_on.set()
    other.join(10)
    adding.join(10)
    assert not other.is_alive() and not adding.is_alive(), "the add and the rebuild deadlocked"
    assert {h.photo_id for h in index.search(list(values.values()), 0)} == set(values)
    assert index._built == 31  # the add bucketed what it filled
