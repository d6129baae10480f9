"""Token-level repetition loops: a pure test on token ids (TrimR's third redundancy pattern)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def repeats_ngram(ids: Sequence[int], *, window: int, ngram: int, repeats: int) -> bool:
    """Whether some `ngram`-token n-gram occurs at least `repeats` times (overlaps count) in
    the last `window` ids: a model stuck in a loop writes the same span again and again."""
    tail = list(ids[-window:])
    if len(tail) < ngram + repeats - 1:
        return False
    counts = Counter(tuple(tail[i : i + ngram]) for i in range(len(tail) - ngram + 1))
    return max(counts.values()) >= repeats
