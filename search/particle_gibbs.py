"""Particle Gibbs (Puri et al. 2025; docs/particle-filtering.md): repeated particle-filter
passes (`passes`), each conditioned on a reference particle drawn from the previous pass.

The reference is replayed step by step (its prefix at each depth competes in the weights with
its stored score, without regeneration or rescoring), may be copied into fresh slots, and is
never replaced, so a good path found early survives while N-1 fresh particles explore around
it. The reference for the next pass is drawn from the final pool with the same weights as
resampling (the paper samples it ∝ softmax over final rewards rather than taking the argmax).
Budget: N particles in the first pass, N-1 per later pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.types import Chain, Problem
from search.conclude import conclude
from search.expand import is_scored
from search.particle_filter import (
    ParticleFilter,
    candidates,
    lineage,
    particle_weights,
    resample_indices,
    reward,
)
from search.settings import invalid


@dataclass
class ParticleGibbs(ParticleFilter):
    """`passes` conditional PF passes of `n` particles; answer = best over all final pools."""

    name: ClassVar[str] = "particle_gibbs"

    passes: int = 4

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
            rewards = [reward(c, self.step_reduction) for c in final]
            weights = particle_weights(rewards, self.resample_temperature, self.weighting)
            reference = final[resample_indices(weights, 1, ctx.rng)[0]]
            ctx.tree.annotate(reference.id, reference_for=it + 1)
        out = await conclude(ctx, candidates(pools), "best_score", self.step_reduction)
        out.details.update(reward=self.reward_description, passes=records)
        return out
