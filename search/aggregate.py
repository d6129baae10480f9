"""Final-answer selection shared by every controller: majority, best-score, weighted vote, RPC.

Votes are grouped with the same equivalence judge the grader uses, so "1/2" and "0.5" count
as one answer in voting exactly when grading would call them equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from reasoning.types import AnswerJudge, Chain
from verifiers.confidence import mean_logprob_score

AGGREGATES = ("majority", "best_score", "weighted", "rpc")
VERIFIER_AGGREGATES = ("best_score", "weighted")  # the ones that need verifier scores
STEP_REDUCTIONS = ("last", "min", "prod", "mean")


def reduce_step_scores(scores: Sequence[float], how: str = "last") -> float:
    """One score for a chain from its per-step scores (0 when nothing was scored)."""
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "prod":
        return float(math.prod(scores))
    if how == "mean":
        return float(sum(scores) / len(scores))
    raise ValueError(f"unknown step score reduction {how!r}; valid: {list(STEP_REDUCTIONS)}")


@dataclass
class Selection:
    """The chosen candidate and how the vote went."""

    index: int | None
    answer: str | None
    clusters: list[int | None]
    votes: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # method-specific, e.g. RPC pruning


async def cluster_answers(answers: Sequence[str | None], judge: AnswerJudge) -> list[int | None]:
    """Cluster id per answer (None when no answer); first-seen order defines the ids."""
    representatives: list[str] = []
    clusters: list[int | None] = []
    for answer in answers:
        if answer is None:
            clusters.append(None)
            continue
        found = None
        for i, rep in enumerate(representatives):
            if answer == rep or await judge.equivalent(answer, rep):
                found = i
                break
        if found is None:
            representatives.append(answer)
            found = len(representatives) - 1
        clusters.append(found)
    return clusters


def _argmax_first(values: Sequence[float]) -> int:
    """Index of the largest value; ties go to the first (deterministic tie-breaking)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def select(
    answers: Sequence[str | None],
    clusters: Sequence[int | None],
    method: str = "majority",
    scores: Sequence[float] | None = None,
) -> Selection:
    """Pick one candidate. Candidates without an answer never win a vote."""
    if method not in AGGREGATES:
        raise ValueError(f"unknown aggregate {method!r}; valid: {list(AGGREGATES)}")
    if method == "rpc":
        raise ValueError("aggregate='rpc' needs the chains' texts and logprobs: use aggregate()")
    if method != "majority" and scores is None:
        raise ValueError(f"aggregate={method!r} needs verifier scores: set verifier=<name>")
    answered = [i for i, c in enumerate(clusters) if c is not None]
    if not answered:
        return Selection(None, None, list(clusters))
    n_clusters = max(c for c in clusters if c is not None) + 1
    weight = [0.0] * n_clusters
    first = [len(clusters)] * n_clusters
    for i in answered:
        c = clusters[i]
        assert c is not None
        weight[c] += 1.0 if method == "majority" else float(scores[i])  # type: ignore[index]
        first[c] = min(first[c], i)
    if method == "best_score":
        index = answered[_argmax_first([scores[i] for i in answered])]  # type: ignore[index]
    else:
        index = first[_argmax_first(weight)]
    votes = {str(answers[first[c]]): round(weight[c], 6) for c in range(n_clusters)}
    return Selection(index, answers[index], list(clusters), votes)


async def aggregate(
    chains: Sequence[Chain],
    judge: AnswerJudge,
    method: str = "majority",
    step_reduction: str = "last",
) -> Selection:
    """Extract, cluster and select over finished chains in one call."""
    answers = [judge.extract(c.text) for c in chains]
    if method == "rpc":
        probabilities = [chain_probability(c) for c in chains]
        return await rpc_select(answers, [c.text for c in chains], probabilities, judge)
    clusters = await cluster_answers(answers, judge)
    scores = None
    if method in VERIFIER_AGGREGATES:
        scores = [reduce_step_scores(c.scores, step_reduction) for c in chains]
    return select(answers, clusters, method, scores)


# --- RPC: reasoning pruning + perplexity consistency (ALGORITHMS.md 2.2) -----------------------


def chain_probability(chain: Chain) -> float:
    """p = exp(mean sampled-token logprob): RPC's length-normalised path probability."""
    if chain.logprobs is None:
        raise ValueError(
            f"aggregate='rpc' needs token logprobs but chain {chain.id} has none: "
            "set search.logprobs=0"
        )
    return mean_logprob_score(chain.logprobs)


# Bounds of the reference fit; the shape cap is ours: a component collapsing onto a few equal
# values drives the unbounded MLE to shape -> inf (and x**shape to overflow).
_MIN_PARAM, _MAX_SHAPE = 0.01, 200.0
_MIN_WEIGHT, _MAX_WEIGHT = 0.2, 0.8
_TINY = 1e-12  # p is floored here before taking logs (a path with no usable token has p = 0)


@dataclass(frozen=True)
class WeibullMixture:
    """w * Weibull(shape1, scale1) + (1 - w) * Weibull(shape2, scale2), fitted by EM."""

    weight: float
    shape1: float
    scale1: float
    shape2: float
    scale2: float
    loglik: float
    iterations: int

    def means(self) -> tuple[float, float]:
        """Component means, scale * Gamma(1 + 1/shape): which one is "high" is decided here."""
        return (
            self.scale1 * math.gamma(1.0 + 1.0 / self.shape1),
            self.scale2 * math.gamma(1.0 + 1.0 / self.shape2),
        )

    def log_joint(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """log(w_j * pdf_j(x_i)), shape (n, 2)."""
        return _log_joint(_safe_log(x), self.params())

    def posteriors(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """Posterior component probabilities, shape (n, 2)."""
        lj = self.log_joint(x)
        return np.exp(lj - np.logaddexp(lj[:, 0], lj[:, 1])[:, None])

    def params(self) -> tuple[float, float, float, float, float]:
        return (self.weight, self.shape1, self.scale1, self.shape2, self.scale2)


def _safe_log(x: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(x, dtype=float), _TINY))


def _log_joint(lx: np.ndarray, params: tuple[float, float, float, float, float]) -> np.ndarray:
    w, k1, s1, k2, s2 = params
    return np.stack(
        [
            math.log(w) + _weibull_logpdf(lx, k1, s1),
            math.log(1.0 - w) + _weibull_logpdf(lx, k2, s2),
        ],
        axis=1,
    )


def _weibull_logpdf(lx: np.ndarray, shape: float, scale: float) -> np.ndarray:
    z = lx - math.log(scale)
    with np.errstate(over="ignore"):
        return math.log(shape) - math.log(scale) + (shape - 1.0) * z - np.exp(shape * z)


def _logsumexp(a: np.ndarray) -> float:
    m = float(np.max(a))
    if not math.isfinite(m):
        return m
    return m + math.log(float(np.sum(np.exp(a - m))))


def _weighted_weibull_mle(lx: np.ndarray, r: np.ndarray) -> tuple[float, float] | None:
    """Shape and scale maximising sum_i r_i log pdf(x_i), within the bounds.

    The profile score in the shape, E_t[log x] - 1/shape - E_r[log x] (t: weights r x**shape),
    is increasing, so bisection on log(shape) finds the unique root deterministically.
    """
    total = float(np.sum(r))
    if total < _TINY:
        return None
    with np.errstate(divide="ignore"):
        lr = np.log(r)
    mean_lx = float(np.sum(r * lx)) / total

    def profile_score(shape: float) -> float:
        lw = lr + shape * lx
        t = np.exp(lw - np.max(lw))
        return float(np.sum(t * lx) / np.sum(t)) - 1.0 / shape - mean_lx

    lo, hi = math.log(_MIN_PARAM), math.log(_MAX_SHAPE)
    if profile_score(_MIN_PARAM) >= 0.0:
        shape = _MIN_PARAM
    elif profile_score(_MAX_SHAPE) <= 0.0:
        shape = _MAX_SHAPE
    else:
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if profile_score(math.exp(mid)) < 0.0:
                lo = mid
            else:
                hi = mid
        shape = math.exp(0.5 * (lo + hi))
    log_scale = (_logsumexp(lr + shape * lx) - math.log(total)) / shape
    return shape, max(_MIN_PARAM, math.exp(log_scale))


def fit_weibull_mixture(
    x: Sequence[float], *, max_iter: int = 500, tol: float = 1e-10
) -> WeibullMixture | None:
    """Maximum-likelihood 2-component Weibull mixture by EM, or None when the fit fails.

    EM instead of the reference's bounded quasi-Newton (no scipy here): same likelihood, same
    init (w=0.5, (1, 1), (1.5, 2)) and bounds (w in [0.2, 0.8], shapes/scales >= 0.01); each
    M-step is the bounded maximiser (the weight's objective is concave, so clipping is exact).
    Deterministic: no randomness, fixed iteration cap.
    """
    lx = _safe_log(x)
    if lx.size < 2 or not np.all(np.isfinite(lx)):
        return None
    params = (0.5, 1.0, 1.0, 1.5, 2.0)
    prev = -math.inf
    iterations = 0
    while True:
        lj = _log_joint(lx, params)  # E-step
        norm = np.logaddexp(lj[:, 0], lj[:, 1])
        loglik = float(np.sum(norm))
        if not math.isfinite(loglik):
            return None
        if iterations >= max_iter or loglik - prev <= tol * (1.0 + abs(loglik)):
            break
        prev = loglik
        post = np.exp(lj - norm[:, None])
        weight = min(_MAX_WEIGHT, max(_MIN_WEIGHT, float(np.mean(post[:, 0]))))  # M-step
        first = _weighted_weibull_mle(lx, post[:, 0]) or params[1:3]
        second = _weighted_weibull_mle(lx, post[:, 1]) or params[3:5]
        params = (weight, *first, *second)
        iterations += 1
    if not all(math.isfinite(v) for v in params):
        return None
    return WeibullMixture(*params, loglik=loglik, iterations=iterations)


@dataclass
class RpcPruning:
    """Which paths reasoning pruning keeps, and why (for the outcome's details)."""

    keep: list[bool]
    mixture: WeibullMixture | None = None
    skipped: str | None = None  # why pruning was not applied, None when it was


def rpc_prune(probabilities: Sequence[float]) -> RpcPruning:
    """Drop path i iff its "low" posterior beats "high" and p_i < mean(p).

    "High" is the component with the larger mean. Skipped (all kept) when K < 4, std(p) < 1e-6
    or the fit fails: a mixture cannot be fitted meaningfully to so little spread.
    """
    p = np.asarray(probabilities, dtype=float)
    keep = [True] * len(p)
    if len(p) < 4:
        return RpcPruning(keep, skipped="fewer than 4 paths")
    if float(np.std(p)) < 1e-6:
        return RpcPruning(keep, skipped="constant path probabilities")
    mix = fit_weibull_mixture(p)
    if mix is None:
        return RpcPruning(keep, skipped="Weibull mixture fit failed")
    m1, m2 = mix.means()
    high = 0 if m1 > m2 else 1
    post = mix.posteriors(p)
    mean_p = float(np.mean(p))
    keep = [not (post[i, 1 - high] > post[i, high] and p[i] < mean_p) for i in range(len(p))]
    return RpcPruning(keep, mix)


async def rpc_select(
    answers: Sequence[str | None],
    texts: Sequence[str],
    probabilities: Sequence[float],
    judge: AnswerJudge,
) -> Selection:
    """Reasoning pruning, then perplexity consistency over the surviving paths.

    Cluster score = sum of p_i over the *distinct* completion texts of the cluster's survivors
    (identical texts count once: it estimates probability mass, not frequency). Argmax wins,
    ties to the cluster seen first among survivors; the chosen index is that first survivor.
    If pruning would leave no answered path, votes go over all paths instead of no answer.
    """
    pruning = rpc_prune(probabilities)
    clusters = await cluster_answers(answers, judge)
    keep = list(pruning.keep)
    skipped = pruning.skipped
    answered = [i for i, c in enumerate(clusters) if c is not None]
    if answered and not any(keep[i] for i in answered):
        keep = [True] * len(keep)
        skipped = "no answered path survived pruning; voted over all paths"
    details: dict[str, Any] = {
        "rpc": {
            "probabilities": [round(float(p), 6) for p in probabilities],
            "pruned": [i for i, k in enumerate(keep) if not k],
            "pruning_skipped": skipped,
            "mixture": asdict(pruning.mixture) if pruning.mixture is not None else None,
        }
    }
    if not answered:
        return Selection(None, None, list(clusters), details=details)
    n_clusters = max(c for c in clusters if c is not None) + 1
    score = [0.0] * n_clusters
    first_any = [len(clusters)] * n_clusters
    first_kept = [len(clusters)] * n_clusters
    seen: list[set[str]] = [set() for _ in range(n_clusters)]
    for i in answered:
        c = clusters[i]
        assert c is not None
        first_any[c] = min(first_any[c], i)
        if not keep[i]:
            continue
        first_kept[c] = min(first_kept[c], i)
        if texts[i] not in seen[c]:
            seen[c].add(texts[i])
            score[c] += float(probabilities[i])
    eligible = sorted(
        (c for c in range(n_clusters) if first_kept[c] < len(clusters)), key=lambda c: first_kept[c]
    )
    best = eligible[_argmax_first([score[c] for c in eligible])]
    index = first_kept[best]
    votes = {str(answers[first_any[c]]): round(score[c], 6) for c in range(n_clusters)}
    return Selection(index, answers[index], list(clusters), votes, details)
