"""`search=threads`: rollouts that fork into concurrent threads and join back (docs/threads.md).

One controller carries the four published forms; `policy` picks who decides to fork and how
the threads meet again, and each policy's own settings live under `search.<policy>`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from reasoning.context import Context
from reasoning.outcome import Outcome
from reasoning.types import Problem, Sampling
from search.aggregate import VOTES
from search.conclude import conclude
from search.settings import Sampled, invalid
from search.threads.apr import APR
from search.threads.fork_join import ForkJoin
from search.threads.hogwild import Hogwild
from search.threads.runtime import RolloutResult, ThreadPolicy
from search.threads.threadweaver import ThreadWeaver

POLICIES: dict[str, type[Any]] = {p.name: p for p in (ThreadWeaver, APR, ForkJoin, Hogwild)}


@dataclass
class Threads(Sampled):
    """`n` rollouts of one thread policy, run concurrently, their answers voted by `aggregate`."""

    name: ClassVar[str] = "threads"
    aggregates: ClassVar[tuple[str, ...]] = tuple(VOTES)
    # each policy's settings block (search.<policy>); empty means the policy's own defaults
    policies: ClassVar[dict[str, type[Any]]] = POLICIES

    temperature: float = 0.6
    top_p: float = 0.95
    policy: str = "threadweaver"
    n: int = 1
    aggregate: str = "majority"
    # tokens one rollout's text may hold after the prompt, threads included (its context)
    max_tokens: int = 1024
    threadweaver: dict[str, Any] = field(default_factory=dict)
    apr: dict[str, Any] = field(default_factory=dict)
    fork_join: dict[str, Any] = field(default_factory=dict)
    hogwild: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.policy not in POLICIES:
            raise invalid("policy", self.policy, f"must be one of {list(POLICIES)}")
        self._policy: ThreadPolicy = self._build(self.policy)

    def _build(self, name: str) -> ThreadPolicy:
        settings = dict(getattr(self, name) or {})
        cls = POLICIES[name]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            valid = ", ".join(sorted(known))
            raise ValueError(f"search.{name}.{unknown[0]} is not a {name} setting; valid: {valid}")
        return cls(**settings)

    @property
    def verifier_use(self) -> str | None:
        use = getattr(self._policy, "verifier_use", None)
        if use:
            return use
        return super().verifier_use

    async def run(self, problem: Problem, ctx: Context) -> Outcome:
        sampling = Sampling(
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens
        )
        results: list[RolloutResult] = await asyncio.gather(
            *(self._policy.rollout(ctx, sampling, f"r{i}") for i in range(self.n))
        )
        outcome = await conclude(ctx, [r.chain for r in results], self.aggregate)
        outcome.details["policy"] = self.policy
        outcome.details["rollouts"] = [r.details for r in results]
        return outcome
