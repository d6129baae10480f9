"""Particle filtering (Puri et al. 2025, arXiv 2502.01618; docs/particle-filtering.md): sample
the reward-weighted posterior over reasoning paths instead of maximising the verifier, so one
over-rated step cannot take over the search the way it can in beam search.

Details follow the official code (`particle_gibbs_batch.py`):

- Reward = "model aggregation", as the paper and its code use: the PRM scores the whole partial
  answer as ONE step (`step_reduction="model"`, the default; the verifier sees the prefix with
  its newline runs collapsed, as the official code writes it). `last`, `min`, `prod` and `mean`
  instead reduce the verifier's per-step scores; "last" is not the same number for a PRM that
  sees a step tag after every step.
- Weights softmax(logit(r) / resample_temperature) with r clipped to (EPS, 1 - EPS), i.e.
  w ∝ (r/(1-r))^(1/T) (`weighting="reward"` gives the paper's eq. 3, softmax(r / T)).
- Reward precision. The official code reads the PRM's probabilities from a bfloat16 tensor, so
  every reward >= 0.998046875 is exactly 1.0, and clips them to float64 machine epsilon
  (2.2e-16) before the logit: a reward of 1.0 has logit ~36.04, against ~13.8 under our 1e-6
  clip. Among particles near 1 it cannot tell 0.9985 from 0.9999 (equal weights, and the final
  argmax ties to the first), while a particle read below 1.0 (r < 0.998046875) gets at most
  e^-30.5 of their weight.
  `reward_precision="float"` (the default) reads rewards as the verifier returns them, clipped
  to (1e-6, 1 - 1e-6): the rounding is an artefact of the reference's dtype, not part of the
  method. `reward_precision="bf16"` reproduces the official code: rewards rounded to bfloat16
  (nearest, ties to even, as a float32 -> bfloat16 cast does) for the weights, the reference
  draw of particle Gibbs and the final pick, and the logit clipped at machine epsilon.
- `resample_inactive` on: finished particles stay in the pool with their final reward, may be
  copied, and are never expanded again.
- Final answer: the particle of the final pool with the highest final reward (when the budget
  stopped the search before any particle finished: the best-scored partial one).

Each step grows every active particle by one step in ONE `expand` call (width 1 each, so copies
sample independently); the last allowed step writes to EOS, as in SAL. At each resampling the
tree records every particle's fate: "resampled" (weight = its share of the mass, copies) or
"pruned"; the per-step rewards, weights, ESS and picks go to `Outcome.details["steps"]`.

Weights are the current rewards (as in the official code), not accumulated incremental weights;
with `resample="ess"` the same weights only decide whether to resample (ESS = 1 / sum w^2).

Token budget: the Context refuses a call once the ledger reaches `generated_tokens=B` and clamps
each call to what is left, but all calls of one step go out together, so the guaranteed bound is
ledger < B before the last step and ledger <= B - 1 + tokens of that step's calls
<= B - 1 + n * min(max_step_tokens, B) at the end. Steps generated past the limit cannot be
scored (the Context refuses the verifier too), so they stay in the tree unscored and the answer
comes from the last scored pool.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.settings import Probability
from reasoning.tree import NodeStatus
from reasoning.types import Chain, Problem
from search.aggregate import StepReduction, reduce_step_scores
from search.conclude import conclude
from search.expand import expand, is_scored, score
from search.settings import ResampleTemperature, Samples, StepReductionName, Stepwise, settings

EPS = 1e-6  # rewards are clipped to (EPS, 1 - EPS) before the logit
REFERENCE_EPS = sys.float_info.epsilon  # the official code's clip (float64 machine epsilon)
WEIGHTINGS = ("logit", "reward")
RESAMPLING = ("always", "ess")
PRECISIONS = ("float", "bf16")


def bfloat16(x: float) -> float:
    """`x` rounded to the nearest bfloat16 (ties to even) through float32, as a float32 tensor
    cast to bfloat16 rounds it: 0.998 -> 0.99609375, 0.9985 -> 1.0, 0.99 -> 0.98828125."""
    (bits,) = struct.unpack("<I", struct.pack("<f", float(x)))
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def reward(chain: Chain, step_reduction: str | StepReduction = "model") -> float:
    """A particle's reward: its reduced step scores (under model aggregation, the score of its
    whole prefix), 0 when unscored."""
    return reduce_step_scores(chain.scores, step_reduction)


def particle_weights(
    rewards: Sequence[float],
    temperature: float = 1.0,
    weighting: str = "logit",
    eps: float = EPS,
) -> list[float]:
    """softmax(logit(clip(r)) / T) (official code) or softmax(r / T) (paper eq. 3); `logit`
    clips r to (eps, 1 - eps)."""
    if weighting == "logit":
        clipped = [min(max(float(r), eps), 1.0 - eps) for r in rewards]
        logits = [math.log(r / (1.0 - r)) / temperature for r in clipped]
    elif weighting == "reward":
        logits = [float(r) / temperature for r in rewards]
    else:
        raise ValueError(f"unknown weighting {weighting!r}; valid: {list(WEIGHTINGS)}")
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def effective_sample_size(weights: Sequence[float]) -> float:
    """ESS = 1 / sum w^2: n for uniform weights, 1 when one particle holds all the mass."""
    return 1.0 / sum(w * w for w in weights)


def resample_indices(weights: Sequence[float], k: int, rng: random.Random) -> list[int]:
    """`k` multinomial draws by inverse CDF on `rng.random()`, sorted so copies sit together.

    Written out (not `rng.choices`) so the picks for a given seed are pinned by hand in tests.
    """
    cum = list(itertools.accumulate(weights))
    total = cum[-1]
    picks = []
    for _ in range(k):
        i = min(bisect.bisect_right(cum, rng.random() * total), len(cum) - 1)
        while weights[i] <= 0.0 and i > 0:  # float rounding at the top end: never a 0 weight
            i -= 1
        picks.append(i)
    return sorted(picks)


def lineage(chain: Chain, registry: dict[str, Chain]) -> list[Chain]:
    """The scored prefixes of `chain`, one per depth (1 .. len(steps))."""
    path = [chain]
    while path[-1].parent in registry:
        path.append(registry[path[-1].parent])  # type: ignore[index]
    path.reverse()
    if len(path) != len(chain.steps):
        raise RuntimeError(f"lineage of {chain.id} is incomplete: {len(path)} prefixes")
    return path


REFERENCE_REWARDS = ("prefix", "ahead", "final")


def reference_slot(rule: str, depth: int, reference: Sequence[Chain]) -> int:
    """Which prefix of the reference (index into its prefixes by depth) gives its reward at
    `depth` (0-based: the particles have depth + 1 steps): its own ("prefix"), the next longer
    one ("ahead": the official code reads `rewards[step]`, one step ahead), or the whole
    reference ("final": its_hub). Past its end, the whole reference."""
    last = len(reference) - 1
    if rule == "prefix":
        return min(depth, last)
    if rule == "ahead":
        return min(depth + 1, last)
    if rule == "final":
        return last
    raise ValueError(f"unknown reference reward {rule!r}; valid: {list(REFERENCE_REWARDS)}")


@dataclass
class FilterRun:
    """One particle-filter pass: the final pool (slot 0 is the reference, if any) and its steps."""

    pool: list[Chain]
    steps: list[dict[str, Any]] = field(default_factory=list)


def candidates(pools: Sequence[Sequence[Chain]]) -> list[Chain]:
    """Unique scored particles, finished ones only when there are any (else best partial)."""
    seen: dict[str, Chain] = {}
    for pool in pools:
        for c in pool:
            if c.steps and c.id not in seen:
                seen[c.id] = c
    scored = [c for c in seen.values() if is_scored(c)]
    finished = [c for c in scored if c.finished]
    return finished or scored or list(seen.values())


@settings
class ParticleFilter(Stepwise):
    """N particles grown one step at a time, resampled ∝ softmax(logit(reward) / T)."""

    name: ClassVar[str] = "particle_filter"

    n: Samples = 8
    resample_temperature: ResampleTemperature = 1.0
    resample: Literal["always", "ess"] = "always"
    """always: resample every step | ess: only when ESS < ess_threshold * n"""
    ess_threshold: Probability = 0.5
    """fraction of n under which the ESS triggers resampling (resample=ess only)"""
    weighting: Literal["logit", "reward"] = "logit"
    """logit: softmax(logit(r)/T) (official code) | reward: softmax(r/T) (paper)"""
    step_reduction: StepReductionName = "model"  # the paper's model aggregation
    reward_precision: Literal["float", "bf16"] = "float"
    """float: rewards as the verifier returns them | bf16: rounded to bfloat16, the logit
    clipped at machine epsilon (official code)"""

    def particle_reward(self, chain: Chain) -> float:
        """The reward the weights, the reference draw and the final pick read (rounded to
        bfloat16 under `reward_precision="bf16"`)."""
        r = reward(chain, self.step_reduction)
        return bfloat16(r) if self.reward_precision == "bf16" else r

    def weights(self, rewards: Sequence[float]) -> list[float]:
        """Resampling weights of `rewards`, with the clip that goes with the precision."""
        eps = REFERENCE_EPS if self.reward_precision == "bf16" else EPS
        return particle_weights(rewards, self.resample_temperature, self.weighting, eps)

    def final_ranking(self, chains: Sequence[Chain]) -> str | StepReduction:
        """How the final pick ranks `chains`: by `step_reduction`, rounded to bfloat16 under
        `reward_precision="bf16"` (ties then go to the first, like the reference's argmax).
        Chains still to be scored keep the plain name, so `conclude` scores them as configured.
        """
        if self.reward_precision != "bf16" or not all(is_scored(c) for c in chains):
            return self.step_reduction
        return lambda scores: bfloat16(reduce_step_scores(scores, self.step_reduction))

    @property
    def verifier_use(self) -> str | None:
        return f"search={self.name} weights its particles by verifier reward at every step"

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        run = await self.filter(ctx, {}, n_fresh=self.n)
        chains = candidates([run.pool])
        out = await conclude(ctx, chains, "best_score", self.final_ranking(chains))
        out.details.update(
            reward=self.reward_description,
            weights=[s["weights"] for s in run.steps],
            steps=run.steps,
            final=[c.id for c in run.pool if c.steps],  # roots: stopped before step 1
        )
        return out

    async def filter(
        self,
        ctx: Context,
        registry: dict[str, Chain],
        *,
        n_fresh: int,
        reference: list[Chain] | None = None,
        reference_reward: str = "prefix",
        iteration: int = 1,
    ) -> FilterRun:
        """One PF pass; with `reference` (its prefixes by depth) it is the conditional PF of PG.

        The reference holds slot 0: it is replayed (no generation, no rescoring), competes in
        the weights, can be copied into fresh slots, and is never replaced. At depth d its
        prefix of d steps is the one replayed and copied; the reward it competes with is that
        prefix's (`reference_reward="prefix"`), the next longer prefix's ("ahead", as the
        official code reads it) or the whole reference's ("final", as its_hub does).
        """
        ref = reference or []
        pool: list[Chain] = ([ref[0]] if ref else []) + [Chain()] * n_fresh
        run = FilterRun(pool)
        for depth in range(self.max_steps):
            active = [i for i, c in enumerate(pool) if not c.finished and not (ref and i == 0)]
            last = depth == self.max_steps - 1  # the last step writes to EOS, as in SAL
            kids = await expand(ctx, [pool[i] for i in active], 1, self.sampling, last=last)
            scored = iter(await score(ctx, [k[0] for k in kids if k], self.step_reduction))
            stalled = False
            for i, grown in zip(active, kids, strict=True):
                kid = next(scored) if grown else None
                if kid is None or not is_scored(kid):
                    stalled = True  # budget: keep the scored parent
                    continue
                pool[i] = registry[kid.id] = kid
            if ref:
                pool[0] = ref[min(depth, len(ref) - 1)]
            if stalled or ctx.stopped_by is not None:
                break
            rewards = [self.particle_reward(c) for c in pool]
            if ref:
                rewards[0] = self.particle_reward(ref[reference_slot(reference_reward, depth, ref)])
            weights = self.weights(rewards)
            ess = effective_sample_size(weights)
            # With the budget spent nothing more can grow: keep the scored pool as it is, since
            # resampling now could only drop the particle with the highest final reward.
            done = ctx.exhausted() is not None or all(c.finished for c in pool)
            resampled = not done and (
                self.resample == "always" or ess < self.ess_threshold * len(pool)
            )
            step: dict[str, Any] = {
                "iteration": iteration,
                "depth": depth + 1,
                "particles": [c.id for c in pool],
                "finished": [c.finished for c in pool],
                "rewards": rewards,
                "weights": weights,
                "ess": ess,
                "resampled": resampled,
                "picks": None,
                "tokens": ctx.ledger.generated_tokens,
            }
            run.steps.append(step)
            if done:
                break
            if resampled:
                fixed = [0] if ref else []  # the reference slot survives unconditionally
                picks = fixed + resample_indices(weights, len(pool) - len(fixed), ctx.rng)
                self._mark(ctx, pool, weights, picks, iteration, reference=bool(ref))
                step["picks"] = picks
                pool[:] = [pool[j] for j in picks]
                if all(c.finished for c in pool):
                    break  # only finished particles were drawn: nothing left to grow
        return run

    @property
    def reward_description(self) -> str:
        reduction = self.step_reduction
        name = reduction if isinstance(reduction, str) else "a custom function"
        return f"step scores reduced by {name}"

    @staticmethod
    def _mark(
        ctx: Context,
        pool: list[Chain],
        weights: list[float],
        picks: list[int],
        iteration: int,
        *,
        reference: bool,
    ) -> None:
        """Record each particle's fate: "resampled" (with its weight and copies) or "pruned"."""
        mass: dict[str, float] = {}
        for c, w in zip(pool, weights, strict=True):
            mass[c.id] = mass.get(c.id, 0.0) + w
        copies = {cid: 0 for cid in mass}
        for j in picks:
            copies[pool[j].id] += 1
        for cid, w in mass.items():
            status = NodeStatus.RESAMPLED if copies[cid] else NodeStatus.PRUNED
            extra = {"reference": True} if reference and cid == pool[0].id else {}
            ctx.tree.mark(cid, status, weight=w, copies=copies[cid], iteration=iteration, **extra)
