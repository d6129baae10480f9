"""The Context: the only door from a controller to the generator and the verifier.

Metering and budget enforcement live here and nowhere else, so no controller can spend
compute the ledger does not see, and every controller stops on the same limits.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import replace

from reasoning.budget import LIMITS, SCORING_LIMITS, Budget, BudgetExhausted, Ledger
from reasoning.tree import SearchTree
from reasoning.types import AnswerJudge, Chain, Completion, Generator, Problem, Sampling, Verifier


class Context:
    """Per-problem handle: generator, verifier, budget + ledger, search tree, seeded RNG."""

    def __init__(
        self,
        problem: Problem,
        generator: Generator,
        *,
        verifier: Verifier | None = None,
        judge: AnswerJudge | None = None,
        budget: Budget | None = None,
        seed: int = 0,
    ) -> None:
        self.problem = problem
        self.generator = generator
        self.verifier = verifier
        self.judge = judge
        self.budget = budget or Budget()
        self.ledger = Ledger()
        self.tree = SearchTree()
        self.seed = seed
        self.rng = random.Random(f"{seed}:{problem.id}")
        self.stopped_by: str | None = None
        self._started = time.monotonic()
        self._reserved_tokens = 0  # held by generator calls in flight (see _fit)
        self._reserved_samples = 0
        self._released = asyncio.Event()  # set whenever a call in flight returns its reservation

    def tick(self) -> None:
        """Bring the wall-clock counter up to date."""
        self.ledger.wall_s = time.monotonic() - self._started

    def exhausted(self, limits: tuple[str, ...] = LIMITS) -> str | None:
        """The first of `limits` reached (remembered in `stopped_by`), or None."""
        self.tick()
        limit = self.ledger.exhausted(self.budget, limits)
        if limit is not None:
            self.stopped_by = limit
        return limit

    def check(self, limits: tuple[str, ...] = LIMITS) -> None:
        """Raise BudgetExhausted when one of `limits` is reached (and remember which)."""
        limit = self.exhausted(limits)
        if limit is not None:
            raise BudgetExhausted(limit)

    def _fit(self, sampling: Sampling) -> Sampling | None:
        """Shrink one call so that it cannot overshoot the budget by much; None: wait first.

        Calls in flight hold a reservation (their n and n * max_tokens), so concurrent calls of
        one search share what is left instead of each seeing all of it: the generated tokens end
        at most one token per sample above the limit. A call that would be cut down while
        others hold reservations waits for them instead (None): they mostly stop early (a step
        ends at its delimiter) and hand back what they did not use. Only a call with nothing
        else in flight is clamped, or refused when nothing is left.
        """
        in_flight = self._reserved_samples > 0
        n, max_tokens = sampling.n, sampling.max_tokens
        if self.budget.samples is not None:
            left = self.budget.samples - self.ledger.samples - self._reserved_samples
            if left < n and in_flight:
                return None
            if left <= 0:
                self.stopped_by = "samples"
                raise BudgetExhausted("samples")
            n = min(n, left)
        if self.budget.generated_tokens is not None:
            left = (
                self.budget.generated_tokens - self.ledger.generated_tokens - self._reserved_tokens
            )
            fit = min(max_tokens, math.ceil(left / n))
            if fit < max_tokens and in_flight:
                return None
            if left <= 0:
                self.stopped_by = "generated_tokens"
                raise BudgetExhausted("generated_tokens")
            max_tokens = max(1, fit)
        seed = sampling.seed if sampling.seed is not None else self.rng.randrange(2**31)
        return replace(sampling, n=n, max_tokens=max_tokens, seed=seed)

    def render(self, chain: Chain | None = None) -> str:
        return self.generator.render(self.problem, chain)

    async def generate(self, sampling: Sampling, chain: Chain | None = None) -> list[Completion]:
        """Sample continuations of `chain` (or of the bare prompt) and meter them."""
        while True:
            self.check()
            fitted = self._fit(sampling)
            if fitted is not None:
                break
            self._released.clear()
            await self._released.wait()
        reserved_tokens = fitted.n * fitted.max_tokens
        self._reserved_samples += fitted.n
        self._reserved_tokens += reserved_tokens
        try:
            completions = await self.generator.complete(self.render(chain), fitted)
        finally:
            self._reserved_samples -= fitted.n
            self._reserved_tokens -= reserved_tokens
            # waiters re-fit at their next turn, after this call's spend is in the ledger below
            self._released.set()
        led = self.ledger
        led.generator_calls += 1
        led.samples += len(completions)
        tokens = sum(c.tokens for c in completions)
        # Replayed calls count toward the budget like fresh ones, so a replay makes exactly the
        # decisions of the recorded run; `replayed_tokens` says how much of that was not computed.
        led.generated_tokens += tokens
        if completions:
            led.prompt_tokens += completions[0].prompt_tokens
            led.cached_prompt_tokens += completions[0].cached_prompt_tokens
            if all(c.cached for c in completions):
                led.cache_hits += 1
                led.replayed_tokens += tokens
        self.tick()
        return completions

    async def score(self, chains: list[Chain]) -> list[list[float]]:
        """Per-step verifier scores of `chains`, metered as one verifier call per chain.

        A spent generator budget does not stop scoring: the search may still rank what it has.
        """
        if self.verifier is None:
            raise ValueError(
                "this search needs a verifier: set verifier=<name> (see conf/verifier)"
            )
        self.check(SCORING_LIMITS)
        scores = await self.verifier.score(self.problem, chains)
        self._check_scores(chains, scores)
        self.ledger.verifier_calls += len(chains)
        self.ledger.verifier_tokens += getattr(scores, "tokens", 0)
        if getattr(scores, "cached", False):
            self.ledger.cache_hits += 1
        self.tick()
        return [list(s) for s in scores]

    def _check_scores(self, chains: list[Chain], scores: list[list[float]]) -> None:
        """A verifier owes one score per step of every chain: a short list would be read as
        an unscored chain and quietly change the vote, so it is an error here."""
        name = getattr(self.verifier, "name", type(self.verifier).__name__)
        if len(scores) != len(chains):
            raise ValueError(
                f"verifier {name} returned {len(scores)} results for {len(chains)} chains"
            )
        for chain, s in zip(chains, scores, strict=True):
            if len(s) != len(chain.steps):
                raise ValueError(
                    f"verifier {name} returned {len(s)} scores for a chain of "
                    f"{len(chain.steps)} steps (problem {self.problem.id}); a verifier scores "
                    "every step (search.step_reduction=model asks for the whole prefix as one)"
                )

    def extract(self, text: str) -> str | None:
        if self.judge is None:
            raise ValueError("no answer judge configured")
        return self.judge.extract(text)
