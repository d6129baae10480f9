"""`search=threads`: rollouts that fork into concurrent threads and join back (docs/threads.md).

One controller carries the four published forms; the strategy (`search/strategy=NAME`, a nested
Hydra group under `conf/search/strategy/`) decides who forks and how the threads meet again.
Hydra builds the chosen strategy from `search.strategy` (its own settings only), so the blocks
of the strategies not chosen do not exist in the config or in the records.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, ClassVar

from pydantic import Field

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.settings import Allowed
from reasoning.types import Problem, Sampling
from search.aggregate import VOTES
from search.conclude import conclude
from search.settings import (
    AggregateName,
    MaxTokens,
    Sampled,
    Samples,
    StrategySettings,
    Temperature,
    TopP,
    settings,
)
from search.threads.apr import APR
from search.threads.fork_join import ForkJoin
from search.threads.hogwild import Hogwild
from search.threads.runtime import RolloutResult, ThreadStrategy
from search.threads.threadweaver import ThreadWeaver

STRATEGIES: dict[str, type[ThreadStrategy]] = {
    s.name: s for s in (ThreadWeaver, APR, ForkJoin, Hogwild)
}

StrategySetting = Annotated[
    StrategySettings, Allowed(f"a thread strategy: one of {list(STRATEGIES)}")
]


def _threadweaver() -> StrategySettings:
    return ThreadWeaver()


@settings
class Threads(Sampled):
    """`n` rollouts of one thread strategy, run concurrently, their answers voted by `aggregate`."""

    name: ClassVar[str] = "threads"
    aggregates: ClassVar[tuple[str, ...]] = tuple(VOTES)
    decodes_own_prompts: ClassVar[bool] = True

    temperature: Temperature = 0.6
    top_p: TopP = 0.95
    strategy: Annotated[
        StrategySettings, Allowed(f"a thread strategy: one of {list(STRATEGIES)}")
    ] = Field(
        default_factory=_threadweaver,
        description="the thread strategy (search/strategy=NAME), built with its own settings",
    )
    n: Samples = 1
    aggregate: AggregateName = "majority"
    max_tokens: MaxTokens = 1024
    """the cap of each context (docs/threads.md): the rollout's one context, threads included
    (threadweaver, fork_join), the workers' shared one (hogwild), or each of APR's separately"""

    @property
    def _strategy(self) -> ThreadStrategy:
        return self.strategy  # type: ignore[return-value]

    @property
    def verifier_use(self) -> str | None:
        use = getattr(self.strategy, "verifier_use", None)
        if use:
            return use
        return super().verifier_use

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        sampling = Sampling(
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens
        )
        results: list[RolloutResult] = await asyncio.gather(
            *(self._strategy.rollout(ctx, sampling, f"r{i}") for i in range(self.n))
        )
        outcome = await conclude(ctx, [r.chain for r in results], self.aggregate)
        outcome.details["strategy"] = self.strategy.name
        outcome.details["rollouts"] = [r.details for r in results]
        return outcome
