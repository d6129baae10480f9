"""Best-of-N: sample N whole solutions, then pick one by vote or verifier score.

See docs/best-of-n.md.
"""

from __future__ import annotations

from typing import ClassVar

from reasoning.budget import BudgetExhausted
from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.steps import chain_from_completion
from reasoning.tree import NodeStatus
from reasoning.types import Chain, Problem, Sampling
from search.aggregate import VERIFIER_AGGREGATES
from search.conclude import conclude
from search.settings import (
    AggregateName,
    BatchSize,
    MaxTokens,
    Sampled,
    Samples,
    StepReductionName,
    TopLogprobs,
    invalid,
    settings,
)


@settings
class BestOfN(Sampled):
    """N samples at temperature T; `aggregate` = majority | best_score | weighted | rpc."""

    name: ClassVar[str] = "best_of_n"

    n: Samples = 8
    max_tokens: MaxTokens = 512
    aggregate: AggregateName = "majority"
    step_reduction: StepReductionName = "last"
    batch_size: BatchSize = None
    # 0: sampled tokens (RPC, mean-logprob confidence); k: also top-k (self-certainty)
    top_logprobs: TopLogprobs = None

    def check(self) -> None:
        if self.aggregate == "rpc" and self.top_logprobs is None:
            raise invalid(
                "aggregate", "rpc", "needs token logprobs: set search.top_logprobs=0 (or k > 0)"
            )

    @property
    def verifier_use(self) -> str | None:
        if self.aggregate in VERIFIER_AGGREGATES:
            return f"search.aggregate={self.aggregate} ranks the samples by verifier score"
        return None  # majority and rpc need none; a custom vote gets scores when there are any

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        chains: list[Chain] = []
        batch = self.batch_size or self.n
        try:
            while len(chains) < self.n:
                sampling = Sampling(
                    temperature=self.temperature,
                    top_p=self.top_p,
                    max_tokens=self.max_tokens,
                    n=min(batch, self.n - len(chains)),
                    logprobs=self.top_logprobs,
                )
                for completion in await ctx.generate(sampling):
                    chain = chain_from_completion(completion)
                    ctx.tree.add(chain, NodeStatus.FINISHED)
                    chains.append(chain)
        except BudgetExhausted:
            pass  # ctx.stopped_by records which limit; vote over what we have
        return await conclude(ctx, chains, self.aggregate, self.step_reduction)
