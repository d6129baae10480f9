"""When to stop drawing samples for a vote: the adaptive self-consistency stop rules, as pure
functions of the answers seen so far (docs/adaptive-sc.md).

Each rule reads the samples' answer clusters in the order the samples were started (`None`: the
sample gave no answer) and returns the reason to stop, or None to draw more. A reason names
the rule and its setting only, the same on every problem, so that run summaries count stops by
it (`evals.runner.event_counts`). They hold no state, so a benchmark can replay them over
recorded answers and another controller can reuse them.

- `BetaStop`: the Beta-posterior rule of Adaptive-Consistency (Aggarwal et al. 2023): stop when
  P(the leading answer is the true majority) >= threshold.
- `WindowStop`: early-stopping self-consistency (Li et al. 2024): stop when every sample of the
  latest complete window of `window` samples gave the same answer.
- `DoublingStop`: its_hub's adaptive self-consistency: checks after 2, 4, 8, ... samples and stops
  when the leader holds at least `agreement` of the samples drawn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import comb
from typing import Protocol

Clusters = Sequence[int | None]  # per sample, in start order: its answer's cluster, or None


class StopRule(Protocol):
    """A stop test over the answers so far: a reason to stop, or None to draw more."""

    def __call__(self, clusters: Clusters) -> str | None: ...


def leader_counts(clusters: Clusters) -> tuple[int, int]:
    """Votes of the most and second most frequent answers (0 when absent); samples without an
    answer cast no vote."""
    counts = sorted(Counter(c for c in clusters if c is not None).values(), reverse=True)
    return (counts + [0, 0])[0], (counts + [0, 0])[1]


def regularized_beta_half(a: int, b: int) -> Fraction:
    """I_{1/2}(a, b), the Beta(a, b) CDF at 1/2, exactly, for integers a, b >= 1.

    For integer parameters I_x(a, b) = P(Binomial(a + b - 1, x) >= a), so at x = 1/2 it is
    sum_{j=a}^{n} C(n, j) / 2^n with n = a + b - 1: no scipy, no quadrature error."""
    if a < 1 or b < 1:
        raise ValueError(f"Beta parameters must be >= 1, got {a} and {b}")
    n = a + b - 1
    return Fraction(sum(comb(n, j) for j in range(a, n + 1)), 2**n)


def beta_majority_probability(v1: int, v2: int) -> float:
    """P(p1 > p2) for the leader's and the runner-up's shares under a uniform prior, given v1 and
    v2 votes: the posterior of p1 / (p1 + p2) is Beta(v1 + 1, v2 + 1), so this is
    1 - I_{1/2}(v1 + 1, v2 + 1) (Aggarwal et al. 2023, their Beta stopping criterion)."""
    return float(1 - regularized_beta_half(v1 + 1, v2 + 1))


@dataclass(frozen=True)
class BetaStop:
    """Stop once the leader's Beta-posterior probability of being the majority reaches
    `threshold` (>=, as the reference code compares). Checked after every answered sample."""

    threshold: float = 0.95

    def __call__(self, clusters: Clusters) -> str | None:
        v1, v2 = leader_counts(clusters)
        if v1 == 0:
            return None  # no answer yet: nothing to be confident about
        p = beta_majority_probability(v1, v2)
        if p >= self.threshold:
            return f"beta: P(majority) >= {self.threshold}"
        return None


@dataclass(frozen=True)
class WindowStop:
    """Stop when the latest complete window agrees: samples fall in consecutive, non-overlapping
    windows of `window` (samples 1..w, w+1..2w, ...); the rule looks only at a window's end, and
    stops when all of its samples gave one answer (zero entropy). A sample without an answer
    breaks its window's agreement."""

    window: int = 5

    def __call__(self, clusters: Clusters) -> str | None:
        k = len(clusters)
        if k == 0 or k % self.window:
            return None  # not at the end of a window
        last = clusters[k - self.window :]
        if last[0] is not None and all(c == last[0] for c in last):
            return f"window: {self.window} samples agree"
        return None


def is_doubling_checkpoint(k: int) -> bool:
    """Whether k samples close a doubling round: 2, 4, 8, 16, ... (its_hub: a first round of 2,
    then each round draws as many as all the rounds before it)."""
    return k >= 2 and k & (k - 1) == 0


@dataclass(frozen=True)
class DoublingStop:
    """its_hub's rounds: at 2, 4, 8, ... samples, stop when the leading answer holds at least
    `agreement` of all samples drawn (those without an answer count in the denominator)."""

    agreement: float = 0.75

    def __call__(self, clusters: Clusters) -> str | None:
        k = len(clusters)
        if not is_doubling_checkpoint(k):
            return None
        v1, _ = leader_counts(clusters)
        if v1 and Fraction(v1, k) >= Fraction(self.agreement).limit_denominator(10**9):
            return f"doubling: the leader holds >= {self.agreement} of the samples"
        return None


STOP_RULES = ("beta", "window", "doubling")


def stop_rule(
    name: str, *, threshold: float = 0.95, window: int = 5, agreement: float = 0.75
) -> StopRule:
    """The named rule with its parameter."""
    if name == "beta":
        return BetaStop(threshold)
    if name == "window":
        return WindowStop(window)
    if name == "doubling":
        return DoublingStop(agreement)
    raise ValueError(f"unknown stop rule {name!r}; valid: {list(STOP_RULES)}")
