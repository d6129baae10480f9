"""Model-free confidence verifiers: score a chain from its own token logprobs.

No extra model is queried, so these cost nothing beyond sampling with `search.top_logprobs` set
(0 for the sampled-token scores, k >= 2 for self-certainty). The logprobs are whatever the
backend returns: with vLLM V1 that is the *raw* model distribution (before temperature, top-p and
penalties: vLLM's default `logprobs_mode`), so scores do not move with the sampling temperature.

A chain's logprobs are one flat sequence that is not aligned to its steps, so every verifier here
gives one whole-chain score and repeats it for every step (any step reduction then agrees).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from reasoning.types import Chain, Problem, StepScores

# Servers that cannot send -inf clamp it to this value; treat it (and below) as missing too.
LOGPROB_FLOOR = -9999.0


def finite_logprobs(values: Iterable[float]) -> list[float]:
    """The usable logprobs: NaN, +-inf and clamped -inf (<= -9999) dropped."""
    return [float(v) for v in values if math.isfinite(v) and v > LOGPROB_FLOOR]


def _need_logprobs(chain: Chain) -> tuple[float, ...]:
    if chain.logprobs is None:
        raise ValueError(
            f"chain {chain.id} has no token logprobs: sample with search.top_logprobs=0 (or k > 0) "
            "to use a confidence verifier"
        )
    return chain.logprobs


def _need_top_logprobs(chain: Chain) -> tuple[tuple[float, ...], ...]:
    if chain.top_logprobs is None:
        raise ValueError(
            f"chain {chain.id} has no top-k logprobs: sample with search.top_logprobs=k (k >= 2, "
            "e.g. 5) to use self-certainty"
        )
    return chain.top_logprobs


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


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
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    vals = finite_logprobs(logprobs)
    if not vals:
        return 0.0
    if len(vals) <= window:
        return _clip01(math.exp(sum(vals) / len(vals)))
    total = sum(vals[:window])
    lowest = total
    for i in range(window, len(vals)):
        total += vals[i] - vals[i - window]
        lowest = min(lowest, total)
    return _clip01(math.exp(lowest / window))


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


def _per_step(chain: Chain, score: float) -> list[float]:
    """The chain score repeated per step (at least one entry, so the score is never lost)."""
    return [score] * max(1, len(chain.steps))


class MeanLogprob:
    """Geometric-mean token probability of the sampled tokens."""

    name = "confidence:mean_logprob"

    async def score(self, problem: Problem, chains: list[Chain]) -> StepScores:
        return StepScores(
            [_per_step(c, mean_logprob_score(_need_logprobs(c))) for c in chains], tokens=0
        )


class WindowMinLogprob:
    """Lowest sliding-window ("group") confidence: exp(min window-mean logprob)."""

    name = "confidence:window_min"

    def __init__(self, window: int = 32) -> None:
        if window < 1:
            raise ValueError(f"verifier.window must be >= 1, got {window}")
        self.window = window

    async def score(self, problem: Problem, chains: list[Chain]) -> StepScores:
        return StepScores(
            [_per_step(c, window_min_score(_need_logprobs(c), self.window)) for c in chains],
            tokens=0,
        )


class SelfCertainty:
    """Self-certainty from the top-k alternatives (see `token_kl_from_uniform`)."""

    name = "confidence:self_certainty"

    async def score(self, problem: Problem, chains: list[Chain]) -> StepScores:
        return StepScores(
            [_per_step(c, self_certainty_score(_need_top_logprobs(c))) for c in chains],
            tokens=0,
        )


CONFIDENCE_KINDS = ("mean_logprob", "window_min", "self_certainty")


class ConfidenceVerifier:
    """The one class the config instantiates: `kind` picks the score, `window` the window size."""

    def __init__(self, kind: str = "mean_logprob", window: int = 32) -> None:
        if kind not in CONFIDENCE_KINDS:
            raise ValueError(f"verifier.kind={kind!r}; valid: {list(CONFIDENCE_KINDS)}")
        self.kind = kind
        self.window = window
        self._impl: MeanLogprob | WindowMinLogprob | SelfCertainty
        if kind == "mean_logprob":
            self._impl = MeanLogprob()
        elif kind == "window_min":
            self._impl = WindowMinLogprob(window)
        else:
            self._impl = SelfCertainty()
        self.name = self._impl.name

    async def score(self, problem: Problem, chains: list[Chain]) -> StepScores:
        return await self._impl.score(problem, chains)
