"""Model-free confidence verifiers: score a chain from its own token logprobs.

No extra model is queried, so these cost nothing beyond sampling with `search.top_logprobs` set
(0 for the sampled-token scores, k >= 2 for self-certainty). The logprobs are whatever the
backend returns: with vLLM V1 that is the *raw* model distribution (before temperature, top-p and
penalties: vLLM's default `logprobs_mode`), so scores do not move with the sampling temperature.

A chain's logprobs are one flat sequence that is not aligned to its steps, so every verifier here
gives one whole-chain score and repeats it for every step (any step reduction then agrees). The
statistics themselves live in the core (`reasoning/logprobs.py`), shared with HyPER and RPC.
"""

from __future__ import annotations

from reasoning.logprobs import mean_logprob_score, self_certainty_score, window_min_score
from reasoning.types import Chain, Problem, StepScores


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
    """Self-certainty from the top-k alternatives (`reasoning.logprobs.token_kl_from_uniform`)."""

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
