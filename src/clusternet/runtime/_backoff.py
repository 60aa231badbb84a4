"""Exponential backoff with jitter, for loops that retry against an API server."""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``initial * factor**n`` seconds, capped at ``cap``, each stretched by up to
    ``jitter`` of itself so that many clients failing together do not retry together.

    :meth:`next_delay` counts one more failure; :meth:`reset` after a success.
    """

    def __init__(
        self, initial: float = 0.8, cap: float = 30.0, factor: float = 2.0, jitter: float = 1.0
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1 or jitter < 0:
            raise ValueError("backoff needs 0 < initial <= cap, factor >= 1 and jitter >= 0")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.failures = 0

    def next_delay(self) -> float:
        base = min(self.cap, self.initial * self.factor ** min(self.failures, 64))
        self.failures += 1
        return min(self.cap, base * (1 + random.uniform(0, self.jitter)))

    def reset(self) -> None:
        self.failures = 0
