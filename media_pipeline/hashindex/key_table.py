"""Finding a vote's keys among an index's distinct sorted keys: through a table over the range
the keys fill, one memory read a key, or by binary search (``searchsorted``: about 26 dependent
reads a key over 67 million keys; at a million photos 4.8 of the 7.2 ms a thumbnail's 5,500-key
vote took). The table costs 4 bytes a value of its range, at most ``_DIRECT_DENSITY`` times the
keys' own 4 bytes."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

_DIRECT_MIN_KEYS = 1 << 16  # fewer keys are found about as fast by binary search: no table
_DIRECT_DENSITY = 4  # a table's range holds at most this many values a key


class Direct(NamedTuple):
    """Slots of the keys ``first`` to ``first + len(slots) - 1``, -1 for a value that is not a key."""

    first: int
    slots: np.ndarray


def direct_slots(keys: np.ndarray) -> Direct | None:
    """A table over the longest run of the largest keys that fills at least 1 / ``_DIRECT_DENSITY``
    of its range, when it holds ``_DIRECT_MIN_KEYS`` keys or more (keys below it, such as
    an older scheme's, are searched)."""
    if len(keys) < _DIRECT_MIN_KEYS or not len(keys):
        return None
    # A start tried every 1/65,536 of the keys: trying each would need int64 temporaries of every key.
    starts = np.arange(0, len(keys), max(1, len(keys) >> 16))
    spans = int(keys[-1]) - keys[starts].astype(np.int64) + 1
    dense = spans <= _DIRECT_DENSITY * (len(keys) - starts)
    if not dense.any():
        return None
    start = int(starts[np.argmax(dense)])
    if len(keys) - start < _DIRECT_MIN_KEYS:
        return None
    first = int(keys[start])
    slots = np.full(int(keys[-1]) - first + 1, -1, dtype=np.int32 if len(keys) < 2**31 else np.int64)
    slots[keys[start:].astype(np.int64) - first] = np.arange(start, len(keys))
    return Direct(first, slots)


def key_slots(keys: np.ndarray, direct: Direct | None, query: np.ndarray) -> np.ndarray:
    """The slots in ``keys`` (sorted, distinct) of the ``query`` keys (sorted, distinct) that are there."""
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    searched = query
    found = np.zeros(0, dtype=np.int64)
    if direct is not None:
        wide = query.astype(np.int64) - direct.first  # the range's end may be 2^32, past the keys' type
        inside = (wide >= 0) & (wide < len(direct.slots))
        if inside.all():  # the usual case at scale, in as few numpy calls as can be: a vote makes one a segment
            found = direct.slots[wide]
            return found[found >= 0]
        found = direct.slots[wide[inside]].astype(np.int64)
        found, searched = found[found >= 0], query[~inside]
    slots = np.searchsorted(keys, searched)
    slots = slots[(slots < len(keys)) & (keys[np.minimum(slots, len(keys) - 1)] == searched)]
    return np.concatenate([slots, found])
