"""The greedy baseline: one sample at temperature 0."""

from __future__ import annotations

from typing import ClassVar

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.types import Problem
from search.best_of_n import BestOfN
from search.settings import MaxTokens, SearchSettings, TopLogprobs, settings


@settings
class Greedy(SearchSettings):
    """Temperature-0 decoding: what the model says without any search.

    Greedy has no `n`, `temperature`, `top_p` or `aggregate`: it always takes one sample at
    T=0 and answers with it, so a sweep `search=greedy search.n=4` is refused by name rather
    than run under a label that did not act.
    """

    name: ClassVar[str] = "greedy"

    max_tokens: MaxTokens = 512
    top_logprobs: TopLogprobs = None

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        one = BestOfN(
            n=1,
            temperature=0.0,
            top_p=1.0,
            max_tokens=self.max_tokens,
            top_logprobs=self.top_logprobs,
        )
        return await one.run(problem, ctx)
