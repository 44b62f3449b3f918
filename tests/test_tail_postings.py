"""The keypoint index's tail against a dict of lists: every posting found under its key, through
the table's growth, with keys that share buckets and keys filed by many photos."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from media_pipeline.hashindex.tail_postings import TailPostings


def test_numbers_of_finds_every_posting_of_the_keys_asked_for() -> None:
    rng = np.random.default_rng(4)
    tail = TailPostings()
    filed: dict[int, list[int]] = defaultdict(list)
    common = rng.integers(0, 1 << 32, size=20, dtype=np.uint64)  # filed by many photos: long chains
    for number in range(3_000):  # 3,000 x ~40 postings: the table doubles several times
        keys = np.unique(np.concatenate([rng.integers(0, 1 << 32, size=30, dtype=np.uint64), rng.choice(common, size=10),
                                         [number * 1024 % 4096]]).astype(np.uint32))  # patterned low keys too
        tail.add(keys, number)
        for key in keys.tolist():
            filed[key].append(number)
        if number % 500 == 499:
            present = rng.choice(np.array(sorted(filed), dtype=np.uint32), size=300, replace=False)
            query = np.unique(np.concatenate([present, common.astype(np.uint32), rng.integers(0, 1 << 32, size=300, dtype=np.uint64).astype(np.uint32)]))
            want = sorted(n for key in query.tolist() for n in filed.get(key, ()))
            assert sorted(tail.numbers_of(query).tolist()) == want
    keys, numbers = tail.pairs()
    assert len(tail) == len(keys) == sum(len(v) for v in filed.values())
    assert sorted(zip(keys.tolist(), numbers.tolist())) == sorted((k, n) for k, ns in filed.items() for n in ns)


def test_an_empty_tail_finds_nothing() -> None:
    tail = TailPostings()
    assert tail.numbers_of(np.array([1, 2, 3], dtype=np.uint32)).tolist() == []
    assert len(tail) == 0 and len(tail.pairs()[0]) == 0
