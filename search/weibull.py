"""A two-component Weibull mixture fitted by EM: RPC's model of path probabilities.

Reasoning pruning (Zhou et al. 2025, "Bridging internal probability and self-consistency",
docs/best-of-n.md) keeps the paths in the high-probability component. The fit is deterministic
(fixed initialisation, no random restarts) and uses numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
