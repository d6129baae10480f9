"""Bootstrap statistics: accuracy intervals over problems (and seeds) and paired differences.

Percentile bootstrap, seeded, so the same runs always give the same intervals. Problems (and,
with several seeds, seeds too) are resampled because that is where the uncertainty of a
benchmark score lives: another draw of problems of the same kind, another sampling seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

N_BOOTSTRAP = 2000
SEED = 0
LEVEL = 0.95
# Draws held at once (replicates x problems): a run of many problems is resampled in blocks
# of replicates, so memory stays bounded (about 8 MiB a block) whatever the number of
# problems. The generator gives the same numbers in blocks as in one draw: the intervals do
# not change.
MAX_CELLS = 2**20


def _block(n_problems: int) -> int:
    return max(1, MAX_CELLS // max(1, n_problems))


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile bootstrap interval."""

    value: float
    low: float
    high: float


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_accuracy(
    correct: pd.DataFrame | np.ndarray,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = SEED,
    level: float = LEVEL,
) -> Estimate:
    """Accuracy of a (seeds x problems) 0/1 matrix (NaN: not graded in that seed), with an
    interval that resamples problems and, when there are several seeds, seeds as well.

    The estimate is the mean over all graded cells; each bootstrap replicate draws seeds with
    replacement, then problems with replacement (as multinomial counts), and takes the same
    mean over the drawn cells; replicates that drew no graded cell are dropped.
    """
    m = np.asarray(correct, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    if m.size == 0 or np.isnan(m).all():
        return Estimate(float("nan"), float("nan"), float("nan"))
    value = float(np.nanmean(m))
    rng = np.random.default_rng(seed)
    n_seeds, n_problems = m.shape
    # a draw with replacement, as how often each seed / problem was drawn (multinomial counts)
    seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_bootstrap)
    graded = (~np.isnan(m)).astype(float)
    scores = np.nan_to_num(m)
    share = np.full(n_problems, 1 / n_problems)
    hits, counts = np.empty(n_bootstrap), np.empty(n_bootstrap)
    step = _block(n_problems)
    for at in range(0, n_bootstrap, step):
        block = slice(at, min(at + step, n_bootstrap))
        problems = rng.multinomial(n_problems, share, size=block.stop - block.start)
        hits[block] = np.einsum("bs,sp,bp->b", seeds[block], scores, problems)
        counts[block] = np.einsum("bs,sp,bp->b", seeds[block], graded, problems)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = hits / counts
    samples = samples[counts > 0]
    low, high = _percentiles(samples, level)
    return Estimate(value, min(low, value), max(high, value))


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of A minus B on the problems both graded, and who solved what alone."""

    difference: Estimate
    n: int
    accuracy_a: float
    accuracy_b: float
    only_a: list[str]
    only_b: list[str]


def paired_bootstrap(
    a: pd.Series,
    b: pd.Series,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = SEED,
    level: float = LEVEL,
) -> PairedDifference:
    """A and B are per-problem scores in [0, 1] indexed by problem id (a run's 0/1, or the
    fraction of seeds that solved it); only the problems both have are compared, and the
    same problems are drawn for both in each replicate (a paired bootstrap).

    A problem counts as solved when at least half of its seeds solved it.
    """
    joined = pd.concat({"a": a, "b": b}, axis=1, join="inner").dropna().sort_index()
    if joined.empty:
        nan = float("nan")
        return PairedDifference(Estimate(nan, nan, nan), 0, nan, nan, [], [])
    diff = (joined["a"] - joined["b"]).to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    step = _block(len(diff))
    means = np.concatenate(
        [
            diff[rng.integers(0, len(diff), size=(min(step, n_bootstrap - at), len(diff)))].mean(
                axis=1
            )
            for at in range(0, n_bootstrap, step)
        ]
    )
    value = float(diff.mean())
    low, high = _percentiles(means, level)
    solved_a, solved_b = joined["a"] >= 0.5, joined["b"] >= 0.5
    return PairedDifference(
        difference=Estimate(value, min(low, value), max(high, value)),
        n=len(joined),
        accuracy_a=float(joined["a"].mean()),
        accuracy_b=float(joined["b"].mean()),
        only_a=[str(i) for i in joined.index[solved_a & ~solved_b]],
        only_b=[str(i) for i in joined.index[solved_b & ~solved_a]],
    )
