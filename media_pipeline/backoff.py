"""How long to wait before the next attempt at something owed to another service (a webhook, a CDN
purge): exponential, with jitter so that a receiver coming back is not hit by every retry at once."""

from __future__ import annotations

import random


def retry_delay(attempts: int, first: float, last: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: ``first`` doubled per attempt made, at most
    ``last``, stretched by a random 0-50 % (never shorter, so ``first`` is a floor)."""
    base = min(first * 2 ** min(attempts, 62), last)
    return base * (1 + (rng or random).random() / 2)
