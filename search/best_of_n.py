"""Best-of-N: sample N whole solutions, then pick one by vote or verifier score."""

from __future__ import annotations

from dataclasses import dataclass

from reasoning.budget import BudgetExhausted
from reasoning.context import Context
from reasoning.steps import chain_from_completion
from reasoning.types import Chain, Outcome, Problem, Sampling
from search.aggregate import AGGREGATES, STEP_REDUCTIONS, VERIFIER_AGGREGATES
from search.conclude import conclude


@dataclass
class BestOfN:
    """N samples at temperature T; `aggregate` = majority | best_score | weighted | rpc."""

    n: int = 8
    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 1024
    aggregate: str = "majority"
    step_reduction: str = "last"
    batch_size: int | None = None  # samples per generator call; None sends all N at once
    # keep logprobs on the chains: None off, 0 sampled tokens (RPC, mean-logprob confidence),
    # k also the top-k alternatives per token (self-certainty)
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"search.n must be >= 1, got {self.n}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"search.aggregate={self.aggregate!r}; valid: {list(AGGREGATES)}")
        if self.aggregate == "rpc" and self.logprobs is None:
            raise ValueError(
                "search.aggregate=rpc needs token logprobs: set search.logprobs=0 (or k > 0)"
            )
        if self.step_reduction not in STEP_REDUCTIONS:
            raise ValueError(
                f"search.step_reduction={self.step_reduction!r}; valid: {list(STEP_REDUCTIONS)}"
            )

    @property
    def needs_verifier(self) -> bool:
        return self.aggregate in VERIFIER_AGGREGATES  # majority and rpc need none

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
                    logprobs=self.logprobs,
                )
                for completion in await ctx.generate(sampling):
                    chain = chain_from_completion(completion)
                    ctx.tree.add(chain, status="finished")
                    chains.append(chain)
        except BudgetExhausted:
            pass  # ctx.stopped_by records which limit; vote over what we have
        return await conclude(ctx, chains, self.aggregate, self.step_reduction)
