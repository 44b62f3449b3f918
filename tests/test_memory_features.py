"""The in-memory keypoint vote index against a count of its own inputs: photos loaded in bulk,
filed one by one, replaced and removed, across rebuilds (the contract suite covers the port)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from media_pipeline.hashindex import MemoryFeatureIndex


def expected_votes(filed: dict[str, tuple[str, set[int]]], query: list[int], min_votes: int, owner: str | None = None) -> list[tuple[str, int]]:
    counts = Counter({photo_id: len(keys & set(query)) for photo_id, (who, keys) in filed.items() if owner is None or who == owner})
    return sorted(((p, n) for p, n in counts.items() if n >= min_votes), key=lambda x: (-x[1], x[0]))


@pytest.mark.parametrize("background", [False, True])
def test_votes_match_a_count_across_bulk_loads_adds_removals_and_rebuilds(background: bool) -> None:
    rng = np.random.default_rng(5)
    index = MemoryFeatureIndex(rebuild_after=500, merge_in_background=background)
    filed: dict[str, tuple[str, set[int]]] = {}
    # Bulk: 300 photos of 40 keys from a small key space, so keys are shared and split across chunks.
    ids = [f"bulk{i:03d}" for i in range(300)]
    keys = rng.integers(0, 2_000, size=(300, 40))
    owners = ["alice" if i % 3 else "" for i in range(300)]
    index.add_many(ids, owners, np.full(300, 40), keys.ravel())
    index.rebuild()
    for photo_id, owner, row in zip(ids, owners, keys):
        filed[photo_id] = (owner, set(row.tolist()))
    for step in range(200):
        photo_id = f"bulk{int(rng.integers(0, 300)):03d}" if step % 2 else f"new{step:03d}"
        if step % 7 == 0:
            index.remove(photo_id)
            filed.pop(photo_id, None)
            continue
        row = set(rng.integers(0, 2_600, size=30).tolist())  # some keys no bulk photo has
        index.add(photo_id, "bob" if step % 5 == 0 else None, sorted(row) + sorted(row)[:3])  # repeats count once
        filed[photo_id] = ("bob" if step % 5 == 0 else "", row)
        if step % 25 == 0:
            query = rng.integers(0, 2_000, size=300).tolist()
            for owner in (None, "alice", "bob", ""):
                want = expected_votes(filed, query, 3, owner)
                assert index.votes(query, limit=len(want) + 5, min_votes=3, owner=owner) == want
            assert index.votes(query, limit=7, min_votes=1) == expected_votes(filed, query, 1)[:7]
    index.rebuild()  # merged: the dead photos' postings stay until enough photos are dead
    query = sorted(filed["new198"][1]) if "new198" in filed else sorted(filed["new196"][1])
    assert index.votes(query, limit=3, min_votes=1) == expected_votes(filed, query, 1)[:3]
    assert index.postings() > sum(len(keys) for _, keys in filed.values())
    for photo_id in sorted(filed)[::4]:
        index.remove(photo_id)
        del filed[photo_id]
    index.rebuild()  # a quarter dead: sorted afresh without them
    assert index.postings() == sum(len(keys) for _, keys in filed.values())
    assert index.votes(query, limit=9, min_votes=1) == expected_votes(filed, query, 1)[:9]


def test_keys_outside_32_bits_are_refused() -> None:
    index = MemoryFeatureIndex()
    with pytest.raises(ValueError):
        index.add("a", None, [1 << 32])
    assert index.votes([1 << 40, -1], limit=5, min_votes=1) == []
