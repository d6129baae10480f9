"""Particle Gibbs (Puri et al. 2025; docs/particle-filtering.md): repeated particle-filter
passes (`passes`), each conditioned on a reference particle drawn from the previous pass.

The reference is replayed step by step (its prefix at each depth competes in the weights,
without regeneration or rescoring), may be copied into fresh slots, and is never replaced, so a
good path found early survives while N-1 fresh particles explore around it. The reference for
the next pass is drawn from the final pool with the same weights as resampling (the paper
samples it ∝ softmax over final rewards rather than taking the argmax).
Budget: N particles in the first pass, N-1 per later pass.

Two points on which the references disagree, each a key:

- `final_pool`: which particles compete for the final answer (the highest final reward).
  "all" (the default): the final pools of every pass. "last": the final pool of the last pass,
  the whole reference included. The official code (`particle_gibbs_batch.py`) keeps every
  pass's final particles, the reference appended; its evaluation notebook takes the argmax of
  each pass separately and its one single-answer rule (commented out) reads the last pass, so
  the paper presets set "last". its_hub (`algorithms/particle_gibbs.py`) also answers from the
  last iteration. We default to "all": the earlier passes are already paid for, and a
  well-scored answer the reference draw passed over is not thrown away.
- `reference_reward`: the reward the replayed reference competes with at depth d, where its
  prefix of d steps is the particle that is kept or copied. "prefix" (the default): that
  prefix's own score. "ahead": the score of its prefix one step longer (the whole reference
  past its end), as the official code reads `rewards[step]` for particles of `step` steps, so
  its copies are weighted by a step they do not have. "final": the whole reference's final
  reward at every depth, as its_hub weights a stopped reference particle.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.types import Chain, Problem
from search.conclude import conclude
from search.expand import is_scored
from search.particle_filter import (
    ParticleFilter,
    candidates,
    lineage,
    resample_indices,
)
from search.settings import Passes, invalid, settings

FINAL_POOLS = ("all", "last")


@settings
class ParticleGibbs(ParticleFilter):
    """`passes` conditional PF passes of `n` particles; answer = best final reward over the
    final pools of all passes (`final_pool="all"`) or of the last one (`"last"`)."""

    name: ClassVar[str] = "particle_gibbs"

    passes: Passes = 4
    final_pool: Literal["all", "last"] = "all"
    """which final pools compete: all (every pass's) | last (the last pass's, paper code)"""
    reference_reward: Literal["prefix", "ahead", "final"] = "prefix"
    """the reference's reward per depth: prefix | ahead (paper code) | final (its_hub)"""

    def check(self) -> None:
        super().check()
        if self.passes > 1 and self.n < 2:
            raise invalid(
                "n", self.n, "must be >= 2 with search.passes > 1 (one slot is the reference)"
            )

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        registry: dict[str, Chain] = {}
        pools: list[list[Chain]] = []
        records: list[dict[str, Any]] = []
        reference: Chain | None = None
        for it in range(1, self.passes + 1):
            run = await self.filter(
                ctx,
                registry,
                n_fresh=self.n if reference is None else self.n - 1,
                reference=lineage(reference, registry) if reference is not None else None,
                reference_reward=self.reference_reward,
                iteration=it,
            )
            pools.append(run.pool)
            records.append(
                {
                    "iteration": it,
                    "reference": reference.id if reference is not None else None,
                    "weights": [s["weights"] for s in run.steps],
                    "steps": run.steps,
                    "final": [c.id for c in run.pool if c.steps],
                }
            )
            final = [c for c in run.pool if is_scored(c)]
            if ctx.stopped_by is not None or it == self.passes or not final:
                break
            weights = self.weights([self.particle_reward(c) for c in final])
            reference = final[resample_indices(weights, 1, ctx.rng)[0]]
            ctx.tree.annotate(reference.id, reference_for=it + 1)
        if self.final_pool == "last":
            # the last pass's pool; its reference whole, as the official code returns it
            chains = candidates([pools[-1], [reference] if reference is not None else []])
        else:
            chains = candidates(pools)
        out = await conclude(ctx, chains, "best_score", self.final_ranking(chains))
        out.details.update(reward=self.reward_description, passes=records)
        return out
