"""The in-memory keypoint vote index against a count of its own inputs: photos loaded in bulk,
filed one by one, replaced and removed, across rebuilds (the contract suite covers the port)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from media_pipeline.hashindex import MemoryFeatureIndex, counted_load, key_segment
from media_pipeline.hashindex.memory_features import SEGMENT_POSTINGS


def expected_votes(filed: dict[str, tuple[str, set[int]]], query: list[int], min_votes: int, owner: str | None = None) -> list[tuple[str, int]]:
    counts = Counter({photo_id: len(keys & set(query)) for photo_id, (who, keys) in filed.items() if owner is None or who == owner})
    return sorted(((p, n) for p, n in counts.items() if n >= min_votes), key=lambda x: (-x[1], x[0]))


@pytest.mark.parametrize("background, segment_postings", [(False, SEGMENT_POSTINGS), (True, SEGMENT_POSTINGS), (False, 700), (True, 700)])
def test_votes_match_a_count_across_bulk_loads_adds_removals_and_rebuilds(background: bool, segment_postings: int,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """In one segment, and in segments of 700 postings (about 17 of them, split as merges grow
    them); a re-sort renumbering 97 postings at a time, so its chunks end inside keys' runs."""
    monkeypatch.setattr(key_segment, "_CHUNK", 97)
    rng = np.random.default_rng(5)
    index = MemoryFeatureIndex(rebuild_after=500, merge_in_background=background, segment_postings=segment_postings)
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
    assert (len(index._segments) > 10) == (segment_postings == 700)
    assert max(len(segment) for segment in index._segments) <= 2 * segment_postings


@pytest.mark.parametrize("removed", [0, 40, 140])
def test_a_vote_during_a_merge_counts_each_posting_once(removed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge replaces one segment at a time while lookups go on: before each segment is merged,
    the tail being merged must count for the keys not yet merged and only for them. With 40 of
    260 photos removed (more than an eighth), the same pass drops their postings and keeps every
    number; with 140 (more than half), it also numbers the photos anew, and the segments not yet
    rewritten are read through the old numbers' new ones. A photo filed and one removed in the
    middle of the pass count from then on."""
    rng = np.random.default_rng(6)
    index = MemoryFeatureIndex(rebuild_after=10**9, segment_postings=400)
    filed: dict[str, tuple[str, set[int]]] = {}
    ids = [f"bulk{i:03d}" for i in range(200)]
    keys = np.sort(rng.integers(0, 3_000, size=(200, 40)), axis=1)
    index.add_many(ids, [None] * 200, np.full(200, 40), keys.ravel())
    index.rebuild()
    filed.update({p: ("", set(row.tolist())) for p, row in zip(ids, keys)})
    for i in range(60):  # filed one by one: in the tail
        row = set(rng.integers(0, 3_000, size=40).tolist())
        index.add(f"new{i:02d}", None, sorted(row))
        filed[f"new{i:02d}"] = ("", row)
    for photo_id in (sorted(filed)[3 : 3 + 6 * removed : 6] if removed < 50 else sorted(filed)[:removed]):
        index.remove(photo_id)
        del filed[photo_id]
    query = rng.integers(0, 3_000, size=1_500).tolist()
    want = [expected_votes(filed, query, 1)]
    checked: list[bool] = []
    kept_dead: list[int] = []
    merged = key_segment.KeySegment.merged

    def checking(segment: key_segment.KeySegment, pending: np.ndarray) -> key_segment.KeySegment:
        checked.append(index.votes(query, limit=len(want[0]) + 1, min_votes=1) == want[0])
        if len(checked) == 5:
            row = set(rng.integers(0, 3_000, size=40).tolist())
            index.add("during", "carol", sorted(row))
            filed["during"] = ("carol", row)
            gone = sorted(filed)[-2]
            index.remove(gone)
            kept_dead.append(len(filed.pop(gone)[1]))  # its postings stay until a later pass
            want[0] = expected_votes(filed, query, 1)
        return merged(segment, pending)

    monkeypatch.setattr(key_segment.KeySegment, "merged", checking)
    segments = len(index._segments)
    index.rebuild()
    monkeypatch.setattr(key_segment.KeySegment, "merged", merged)
    assert segments > 10 and len(checked) == segments and all(checked), checked
    assert index.votes(query, limit=len(want[0]) + 1, min_votes=1) == want[0]
    assert index.votes(query, limit=5, min_votes=1, owner="carol") == expected_votes(filed, query, 1, "carol")[:5]
    assert index.filed_below(1 << 32, 1_000) == sorted((p, o) for p, (o, _) in filed.items())
    # The postings of the photos dead before the pass dropped; numbered anew only past half.
    assert index.postings() == sum(len(k) for _, k in filed.values()) + sum(kept_dead)
    assert len(index._ids) == (261 if removed < 130 else 261 - removed)
    index.rebuild()
    assert index.votes(query, limit=len(want[0]) + 1, min_votes=1) == want[0]


def test_a_dense_run_of_keys_is_found_through_its_table_and_sparse_keys_by_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys of a current scheme fill a range near 2^32 (a table finds them); an older scheme's are
    scattered below it (searched). Votes must count both alike, through merges and a re-sort."""
    from media_pipeline.hashindex import key_table

    monkeypatch.setattr(key_table, "_DIRECT_MIN_KEYS", 200)
    rng = np.random.default_rng(11)
    top = (1 << 32) - 3_000

    def keys_of_a_photo() -> set[int]:
        return set((top + rng.integers(0, 3_000, size=30)).tolist()) | set(rng.integers(0, 1 << 31, size=5).tolist())

    index = MemoryFeatureIndex(rebuild_after=400)
    filed: dict[str, tuple[str, set[int]]] = {}
    for i in range(120):
        filed[f"p{i:03d}"] = ("", keys_of_a_photo())
    ids = sorted(filed)
    index.add_many(ids, [None] * len(ids), np.array([len(filed[p][1]) for p in ids]), np.concatenate([sorted(filed[p][1]) for p in ids]))
    index.rebuild()
    assert index._segments[-1].direct is not None and index._segments[-1].direct.first >= top  # the sparse keys are left to the search
    for step in range(60):
        photo_id = ids[int(rng.integers(0, len(ids)))] if step % 3 else f"n{step:02d}"
        if step % 11 == 0:
            index.remove(photo_id)
            filed.pop(photo_id, None)
        else:
            filed[photo_id] = ("", keys_of_a_photo())
            index.add(photo_id, None, sorted(filed[photo_id][1]))
        if step % 10 == 9:
            old = sorted(next(iter(filed.values()))[1])  # one photo's keys, sparse ones included
            query = old + (top + rng.integers(0, 3_000, size=200)).tolist() + [(1 << 32) - 1, top - 1, 0]
            want = expected_votes(filed, query, 2)
            assert index.votes(query, limit=len(want) + 3, min_votes=2) == want
            assert index.votes(old, limit=1, min_votes=1)[0][1] == len(old)
    assert index._segments[-1].direct is not None


def test_sparse_keys_get_no_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys spread thinly over their range (a small library) are searched: a table over the range
    would cost 4 bytes a value for nothing."""
    from media_pipeline.hashindex import key_table

    monkeypatch.setattr(key_table, "_DIRECT_MIN_KEYS", 200)
    rng = np.random.default_rng(12)
    index = MemoryFeatureIndex()
    keys = np.unique(rng.integers(0, 1 << 24, size=200_000))  # more than 2^17: starts are sampled
    index.add_many(["a", "b"], [None, None], np.array([2_500, len(keys) - 2_500]), keys)
    index.rebuild()
    assert index._segments[-1].direct is None
    assert index.votes(keys[:40].tolist(), limit=2, min_votes=1) == [("a", 40)]


def _photos(seed: int, count: int, spread: int, low: int = 0) -> list[tuple[str, str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(f"p{seed}-{i:04d}", "alice" if i % 3 else "", np.sort(rng.integers(low, low + spread, size=int(rng.integers(1, 60)))))
            for i in range(count)]


def _batches(photos: list[tuple[str, str, np.ndarray]], size: int) -> list[tuple[list[str], list[str | None], np.ndarray, np.ndarray]]:
    return [([p for p, _, _ in part], [o or None for _, o, _ in part], np.array([len(k) for _, _, k in part]),
             np.concatenate([k for _, _, k in part])) for part in (photos[i : i + size] for i in range(0, len(photos), size))]


@pytest.mark.parametrize("spread, low, sparse_max, segment_postings",
                         [(3_000, 0, 1 << 22, SEGMENT_POSTINGS), (3_000, 0, 100, SEGMENT_POSTINGS), (3_000, (1 << 32) - 3_000, 100, SEGMENT_POSTINGS),
                          (1 << 31, 0, 1 << 22, SEGMENT_POSTINGS), (1 << 31, 0, 100, SEGMENT_POSTINGS), (3_000, 0, 1 << 22, 900),
                          (3_000, (1 << 32) - 3_000, 100, 900), (1 << 31, 0, 100, 900)])
def test_a_counted_load_votes_like_a_count_and_goes_on_taking_photos(spread: int, low: int, sparse_max: int, segment_postings: int,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Two passes, keys counted then placed: votes as a count of the photos' keys says, with a
    photo's repeated key filed once; keys counted one by one and per value of their range (past
    ``sparse_max`` distinct keys), at either end of the key space, and too many keys spread too
    wide to count per value (loaded the one-pass way), in one segment or placed straight into
    segments of 900 postings; then photos filed, removed, merged and sorted afresh."""
    monkeypatch.setattr(counted_load, "_SPARSE_MAX", sparse_max)
    monkeypatch.setattr(key_segment, "_CHUNK", 97)
    monkeypatch.setattr(counted_load, "ONE_PASS_MAX", 1_000)  # a few batches: read once more, counted
    photos = _photos(7, 700, spread, low)  # rng draws repeat keys within a photo now and then
    assert spread > 1 << 28 or any(len(np.unique(k)) < len(k) for _, _, k in photos)
    batches = _batches(photos, 64)
    calls = []
    index = MemoryFeatureIndex(rebuild_after=300, segment_postings=segment_postings)
    index.load(lambda: calls.append(1) or iter(batches))
    assert (len(index._segments) > 10) == (segment_postings == 900)
    assert len(calls) == 3  # a start in one pass, then counted and placed; or counted until too wide, then in one
    filed = {p: (o, set(k.tolist())) for p, o, k in photos}
    assert index.postings() == sum(len(k) for _, k in filed.values())
    rng = np.random.default_rng(8)
    for step in range(60):
        query = np.concatenate([photos[int(rng.integers(0, 700))][2], rng.integers(low, low + spread, size=50)]).tolist()
        for owner in (None, "alice"):
            want = expected_votes(filed, query, 2, owner)
            assert index.votes(query, limit=len(want) + 1, min_votes=2, owner=owner) == want
        if step % 3 == 0:
            index.remove(photos[step * 5][0])
            del filed[photos[step * 5][0]]
        keys = sorted(set(rng.integers(low, low + spread, size=40).tolist()))
        index.add(f"new{step}", None, keys)
        filed[f"new{step}"] = ("", set(keys))
    index.rebuild()
    for photo_id in sorted(filed)[::5]:
        index.remove(photo_id)
        del filed[photo_id]
    index.rebuild()  # sorted afresh
    present = sorted(filed)
    query = sorted(filed[present[0]][1] | filed[present[-1]][1])
    assert index.votes(query, limit=4, min_votes=1) == expected_votes(filed, query, 1)[:4]


def test_a_counted_load_whose_source_changes_between_its_passes_raises_and_leaves_the_index_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counted_load, "ONE_PASS_MAX", 0)
    photos = _photos(9, 200, 5_000)
    changed = [_batches(photos, 50), _batches(photos[:-1], 50), _batches(photos, 50),
               _batches([(p, o, np.unique(np.append(k, 4_999))) if i == 120 else (p, o, k) for i, (p, o, k) in enumerate(photos)], 50)]
    for first, second in ((changed[0], changed[1]), (changed[2], changed[3])):  # a photo gone; a photo with a key more
        passes = iter([first, first, second])  # the start of a one-pass read, the count, the placing
        index = MemoryFeatureIndex()
        with pytest.raises(ValueError, match="second pass"):
            index.load(lambda: iter(next(passes)))
        assert index.postings() == 0 and index.votes(photos[0][2].tolist(), limit=3, min_votes=1) == []
        index.load(lambda: iter(first))  # and it can be loaded again
        assert index.votes(photos[120][2].tolist(), limit=1, min_votes=1) == [(photos[120][0], len(np.unique(photos[120][2])))]


def test_a_counted_load_refuses_keys_out_of_order_or_range_and_a_filled_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counted_load, "ONE_PASS_MAX", 0)
    index = MemoryFeatureIndex()
    with pytest.raises(ValueError, match="ascending"):
        index.load(lambda: iter([(["a"], [None], np.array([3]), np.array([5, 9, 7]))]))
    with pytest.raises(ValueError, match="2\\^32"):
        index.load(lambda: iter([(["a"], [None], np.array([2]), np.array([5, 1 << 32]))]))
    index.add("a", None, [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        index.load(lambda: iter([(["b"], [None], np.array([1]), np.array([5]))]))


def test_a_small_source_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    photos = _photos(11, 300, 4_000)
    calls = []
    index = MemoryFeatureIndex()
    index.load(lambda: calls.append(1) or iter(_batches(photos, 64)))
    assert len(calls) == 1
    filed = {p: (o, set(k.tolist())) for p, o, k in photos}
    query = sorted(filed[photos[5][0]][1] | filed[photos[250][0]][1])
    assert index.votes(query, limit=5, min_votes=2) == expected_votes(filed, query, 2)[:5]


def test_an_add_that_fills_the_tail_while_another_thread_merges_neither_deadlocks_nor_stops_lookups(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a background merger, the ``add`` that fills the tail merges it itself. While another
    thread's ``rebuild`` is half-way (the rebuild lock held, this lock let go for a segment), that
    add must wait for the rebuild without holding the lock the rebuild needs next, and votes must
    answer meanwhile; once both are done, every photo is counted once."""
    import threading

    rng = np.random.default_rng(8)
    index = MemoryFeatureIndex(rebuild_after=200, segment_postings=300)
    filed: dict[str, tuple[str, set[int]]] = {}
    for i in range(40):
        row = set(rng.integers(0, 2_000, size=30).tolist())
        index.add(f"p{i:02d}", None, sorted(row))
        filed[f"p{i:02d}"] = ("", row)
    index.rebuild()
    for i in range(40, 45):  # a tail for the other thread's merge, short of the threshold
        row = set(rng.integers(0, 2_000, size=30).tolist())
        index.add(f"p{i:02d}", None, sorted(row))
        filed[f"p{i:02d}"] = ("", row)
    merging, go_on = threading.Event(), threading.Event()
    merged = key_segment.KeySegment.merged

    def paused(segment: key_segment.KeySegment, pending: np.ndarray) -> key_segment.KeySegment:
        merging.set()
        assert go_on.wait(10)
        return merged(segment, pending)

    monkeypatch.setattr(key_segment.KeySegment, "merged", paused)
    other = threading.Thread(target=index.rebuild, daemon=True)
    other.start()
    assert merging.wait(10)
    monkeypatch.setattr(key_segment.KeySegment, "merged", merged)
    rows = {f"q{i}": set(rng.integers(0, 2_000, size=30).tolist()) for i in range(8)}  # 240 postings: past 200
    adding = threading.Thread(target=lambda: [index.add(p, None, sorted(r)) for p, r in rows.items()], daemon=True)
    adding.start()
    query = rng.integers(0, 2_000, size=600).tolist()
    answered = threading.Thread(target=index.votes, args=(query, 5, 1), daemon=True)
    answered.start()
    answered.join(10)
    assert not answered.is_alive(), "a vote waited for the merge"
    go_on.set()
    other.join(10)
    adding.join(10)
    assert not other.is_alive() and not adding.is_alive(), "the add and the rebuild deadlocked"
    filed.update({p: ("", r) for p, r in rows.items()})
    assert index.votes(query, limit=len(filed), min_votes=1) == expected_votes(filed, query, 1)
    assert len(index._tail) <= 200  # the add merged what it filled (390 postings were in the tail)
