"""Token-level repetition loops: a pure test on token ids (TrimR's third redundancy pattern)."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence


def repeats_ngram(ids: Sequence[int], *, window: int, ngram: int, repeats: int) -> bool:
    """Whether some `ngram`-token n-gram occurs at least `repeats` times (overlaps count) in
    the last `window` ids: a model stuck in a loop writes the same span again and again."""
    tail = list(ids[-window:])
    if len(tail) < ngram + repeats - 1:
        return False
    counts = Counter(tuple(tail[i : i + ngram]) for i in range(len(tail) - ngram + 1))
    return max(counts.values()) >= repeats


class NgramRepeats:
    """`repeats_ngram` of a growing id sequence, kept up to date id by id: the n-gram counts of
    the last `window` ids slide with it, so each new id costs O(1) instead of a recount of the
    whole window at every streamed token."""

    def __init__(self, *, window: int, ngram: int, repeats: int) -> None:
        self.window, self.ngram, self.repeats = window, ngram, repeats
        self._tail: deque[int] = deque()
        self._counts: Counter[tuple[int, ...]] = Counter()
        self._hot = 0  # n-grams counted at least `repeats` times

    @property
    def hit(self) -> bool:
        """Whether some n-gram of the last `window` ids occurs at least `repeats` times."""
        return self._hot > 0

    def extend(self, ids: Iterable[int]) -> bool:
        for i in ids:
            self._push(i)
        return self.hit

    def _push(self, token: int) -> None:
        tail, n = self._tail, self.ngram
        if len(tail) == self.window:  # the oldest id leaves, and the n-gram it started
            if len(tail) >= n:
                self._count(tuple(tail[k] for k in range(n)), -1)
            tail.popleft()
        tail.append(token)
        if len(tail) >= n:
            self._count(tuple(tail[k] for k in range(len(tail) - n, len(tail))), +1)

    def _count(self, gram: tuple[int, ...], by: int) -> None:
        before = self._counts[gram]
        after = before + by
        self._counts[gram] = after
        if after <= 0:
            del self._counts[gram]
        if before < self.repeats <= after:
            self._hot += 1
        elif after < self.repeats <= before:
            self._hot -= 1
