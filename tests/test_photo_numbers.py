"""Photo numbers in 3 bytes (hashindex/photo_numbers.py): every way in and out gives the numbers
back, narrow below 2^24 and widened past it."""

from __future__ import annotations

import numpy as np

from media_pipeline.hashindex.photo_numbers import PhotoNumbers


def test_numbers_below_two_to_the_24_take_three_bytes_and_come_back_whole() -> None:
    rng = np.random.default_rng(1)
    numbers = rng.integers(0, 1 << 24, size=10_000).astype(np.int32)
    numbers[:3] = [0, 65_535, (1 << 24) - 1]  # each half's edges
    column = PhotoNumbers.of(numbers)
    assert column.nbytes == 3 * len(numbers)
    positions = rng.integers(0, len(numbers), size=5_000)
    assert np.array_equal(column.take(positions), numbers[positions])
    assert np.array_equal(column.range(17, 4_000), numbers[17:4_000])
    filled = PhotoNumbers.empty(len(numbers), largest=(1 << 24) - 1)
    order = rng.permutation(len(numbers))
    filled.put(order, numbers[order])
    assert np.array_equal(filled.range(0, len(numbers)), numbers)


def test_an_insert_past_two_to_the_24_widens_the_column_and_leaves_the_old_one_as_it_was() -> None:
    numbers = np.arange(0, 5_000_000, 1_000, dtype=np.int32)
    column = PhotoNumbers.of(numbers)
    added = np.array([(1 << 24) + 5, 1 << 30, 7], dtype=np.int32)
    positions = np.array([0, 2_500, 5_000])
    grown = column.insert(positions, added)
    assert np.array_equal(grown.range(0, len(grown)), np.insert(numbers, positions, added))
    assert np.array_equal(grown.take(np.array([0, 2_501, len(grown) - 1])), [added[0], added[1], added[2]])
    assert grown.nbytes == 4 * len(grown)
    assert np.array_equal(column.range(0, len(column)), numbers) and column.nbytes == 3 * len(numbers)
