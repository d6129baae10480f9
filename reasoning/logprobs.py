"""Token-logprob statistics: the one implementation every controller and verifier reads.

Two inputs occur: the sampled tokens' logprobs (one float per token) and, per token, the top-k
alternatives' logprobs as vLLM returns them, the sampled token's included (k + 1 values where it
is outside the top k): DeepConf's token confidence, self-certainty, HyPER's path statistics.
Servers that cannot send -inf clamp it to -9999; every statistic here drops that placeholder
(and NaN, +-inf) before it counts, so a score does not depend on which server produced it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

LOGPROB_FLOOR = -9999.0
"""Servers that cannot send -inf clamp it to this value; it (and below) counts as missing."""


def finite_logprobs(values: Iterable[float]) -> list[float]:
    """The usable logprobs: NaN, +-inf and clamped -inf (<= -9999) dropped."""
    return [float(v) for v in values if math.isfinite(v) and v > LOGPROB_FLOOR]


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def window_min_mean(values: Sequence[float], window: int) -> float | None:
    """The lowest mean over sliding windows of `window` values (one window when shorter; None
    with none): a short weak stretch that the overall mean hides."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not values:
        return None
    if len(values) <= window:
        return sum(values) / len(values)
    total = sum(values[:window])
    lowest = total
    for i in range(window, len(values)):
        total += values[i] - values[i - window]
        lowest = min(lowest, total)
    return lowest / window


# --- sampled-token logprobs -------------------------------------------------------------------


def mean_logprob_score(logprobs: Sequence[float]) -> float:
    """exp(mean token logprob): the geometric-mean token probability (0 with no usable token)."""
    vals = finite_logprobs(logprobs)
    if not vals:
        return 0.0
    return _clip01(math.exp(sum(vals) / len(vals)))


def window_min_score(logprobs: Sequence[float], window: int = 32) -> float:
    """exp(lowest mean logprob over sliding windows of `window` tokens).

    One confident-looking average can hide a short stretch where the model was guessing; the
    weakest window exposes it. Shorter sequences are one window.
    """
    lowest = window_min_mean(finite_logprobs(logprobs), window)
    return 0.0 if lowest is None else _clip01(math.exp(lowest))


# --- top-k alternatives per token -------------------------------------------------------------


def top_probability(top: Iterable[float]) -> float:
    """The most likely token's probability at one position (0 with no usable value)."""
    vals = finite_logprobs(top)
    return math.exp(max(vals)) if vals else 0.0


def token_confidence(top: Sequence[float], k: int | None = None) -> float | None:
    """DeepConf's c_t = -mean of the usable logprobs at one position (higher: more peaked);
    None with no usable value.

    With `k=None` (DeepConf's rule, facebookresearch/deepconf `compute_confidence`) every entry
    the backend returned counts: vLLM returns the top k plus the sampled token, so k + 1 values
    where the sampled token is outside the top k. An integer `k` keeps only the k largest (the
    sampled token's own entry then drops out), an older reading kept as an option."""
    if k is not None:
        vals = sorted(finite_logprobs(top), reverse=True)[:k]
        return -sum(vals) / len(vals) if vals else None
    # every entry counts: one pass, no list (this runs once per generated token)
    total, count = 0.0, 0
    for v in top:
        if LOGPROB_FLOOR < v < math.inf:  # NaN fails both comparisons
            total += v
            count += 1
    return -total / count if count else None


def token_confidences(top_logprobs: Sequence[Sequence[float]], k: int | None = None) -> list[float]:
    """`token_confidence` of every position that has one."""
    return [c for c in (token_confidence(t, k) for t in top_logprobs) if c is not None]


def tail_confidence(
    top_logprobs: Sequence[Sequence[float]], window: int, k: int | None = None
) -> float:
    """Mean token confidence over the last `window` tokens that have one (0 with none); reads
    from the end, so its cost is the window's, not the sequence's."""
    tail: list[float] = []
    for top in reversed(top_logprobs):
        if len(tail) >= window:
            break
        c = token_confidence(top, k)
        if c is not None:
            tail.append(c)
    tail.reverse()  # summed in sequence order, as a forward pass would
    return sum(tail) / len(tail) if tail else 0.0


def min_group_confidence(
    top_logprobs: Sequence[Sequence[float]], window: int, k: int | None = None
) -> float:
    """The lowest mean token confidence over sliding windows of `window` tokens (one window when
    shorter; 0 with none): a short stretch of guessing that the tail mean can hide."""
    lowest = window_min_mean(token_confidences(top_logprobs, k), window)
    return 0.0 if lowest is None else lowest


def token_kl_from_uniform(top: Sequence[float]) -> float | None:
    """KL(U_k || p_k) for one token, p_k the top-k distribution renormalised over itself.

    The true self-certainty is KL(U_V || p) over the whole vocabulary; only the top-k values are
    available, so this is the top-k approximation (0 for a flat top-k, large when the top token
    dominates). None when fewer than 2 usable alternatives (KL over one token is always 0).
    """
    vals = finite_logprobs(top)
    k = len(vals)
    if k < 2:
        return None
    top_lp = max(vals)
    log_z = top_lp + math.log(sum(math.exp(v - top_lp) for v in vals))
    # KL(U||p) = sum_j (1/k) log((1/k) / p_j) = -log k - mean_j log p_j
    kl = -math.log(k) - sum(v - log_z for v in vals) / k
    return max(0.0, kl)


def self_certainty_score(top_logprobs: Sequence[Sequence[float]]) -> float:
    """1 - exp(-mean per-token KL(U_k || p_k)), in [0, 1); 0 with no usable token."""
    kls = [kl for kl in map(token_kl_from_uniform, top_logprobs) if kl is not None]
    if not kls:
        return 0.0
    return _clip01(1.0 - math.exp(-sum(kls) / len(kls)))


class ConfidenceTrail:
    """The token confidences of one growing sequence, each position computed once.

    A pool of paths that grow by chunks has its statistics read every round; recomputing them
    over every token so far makes a long run quadratic. `update` reads only the positions added
    since the last call (a sequence that was rewritten rather than extended starts over), and the
    lowest sliding-window mean is carried along the same way.
    """

    def __init__(self, k: int | None = None, window: int = 1) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.k, self.window = k, window
        self.values: list[float] = []
        self._seen: tuple[Sequence[float], ...] = ()
        self._lowest: float | None = None  # lowest sum over full windows so far
        self._sum = 0.0  # sum of the last `window` values

    def update(self, top_logprobs: Sequence[Sequence[float]]) -> ConfidenceTrail:
        top = tuple(top_logprobs)
        if top is self._seen:  # read again in the same round (stats, expand, reduce)
            return self
        n = len(self._seen)
        if len(top) < n or top[:n] != self._seen:  # rewritten, not extended: start over
            self.values, self._lowest, self._sum, n = [], None, 0.0, 0
        w = self.window
        for c in token_confidences(top[n:], self.k):
            self.values.append(c)
            self._sum += c
            if len(self.values) > w:
                self._sum -= self.values[-w - 1]
            if len(self.values) >= w:
                self._lowest = self._sum if self._lowest is None else min(self._lowest, self._sum)
        self._seen = top
        return self

    def tail(self, window: int) -> float:
        """`tail_confidence` of the sequence."""
        tail = self.values[-window:]
        return sum(tail) / len(tail) if tail else 0.0

    def lowest_window_mean(self) -> float:
        """`min_group_confidence` of the sequence with this trail's window."""
        if not self.values:
            return 0.0
        if self._lowest is None:  # shorter than one window: its mean
            return sum(self.values) / len(self.values)
        return self._lowest / self.window
