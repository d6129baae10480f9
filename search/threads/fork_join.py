"""Controller-driven fork-join: the controller, not the model, decides where to fork.

The rollout decodes the model's plan (its first paragraph) or nothing, forks `threads`
concurrent continuations of that shared prefix, and joins them by one of three rules: a summary
continuation that reads every thread, the verifier's best thread, or a vote over the threads'
answers (docs/threads.md). It needs no model trained on a thread format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from reasoning.context import Context
from reasoning.steps import split_steps
from reasoning.types import Chain, FinishReason, Sampling
from search.aggregate import STEP_REDUCTIONS, aggregate, reduce_step_scores
from search.threads.runtime import (
    Branch,
    Rollout,
    RolloutResult,
    Thread,
    bad_setting,
    check_count,
    continuation,
    fork,
    join,
)

JOINS = ("summary", "verifier", "vote")
FORK_POINTS = ("plan", "start")

SUMMARY_CUE = (
    "\n\nThe threads above worked on the problem in parallel. Comparing them, the final answer "
    "is $\\boxed{"
)


def merged_threads(texts: list[str]) -> str:
    """The threads as the summary reads them: numbered sections, in fork order."""
    return "".join(f"\n\n### Thread {i + 1}\n{t.strip()}" for i, t in enumerate(texts))


@dataclass
class ForkJoin:
    """`search.policy=fork_join`."""

    name: ClassVar[str] = "fork_join"

    threads: int = 4
    # plan: fork after the model's first paragraph (its plan); start: fork at the first token
    fork_after: str = "plan"
    # control text the answer starts with (e.g. "Plan:"), as if the model wrote it; null: none
    prefix: str | None = None
    plan_tokens: int = 128
    # what each thread's request adds to the shared prefix ({i}: the thread's number, from 1)
    thread_opening: str = ""
    # tokens per thread; null: what is left of the rollout's context
    max_thread_tokens: int | None = None
    # summary: one continuation reads all threads and writes the answer; verifier: the thread
    # the verifier scores best; vote: the majority answer of the threads
    join: str = "summary"
    summary_cue: str = SUMMARY_CUE
    summary_tokens: int = 64
    step_reduction: str = "last"  # the verifier join's per-step scores -> one score

    def __post_init__(self) -> None:
        for key, low in (("threads", 1), ("plan_tokens", 1), ("summary_tokens", 1)):
            check_count(self.name, key, getattr(self, key), low)
        check_count(self.name, "max_thread_tokens", self.max_thread_tokens, 1, optional=True)
        if self.fork_after not in FORK_POINTS:
            raise bad_setting(
                self.name, "fork_after", self.fork_after, f"must be one of {list(FORK_POINTS)}"
            )
        if self.join not in JOINS:
            raise bad_setting(self.name, "join", self.join, f"must be one of {list(JOINS)}")
        if self.step_reduction not in STEP_REDUCTIONS:
            raise bad_setting(
                self.name,
                "step_reduction",
                self.step_reduction,
                f"must be one of {list(STEP_REDUCTIONS)}",
            )
        if "{" in self.thread_opening.replace("{i}", ""):
            raise bad_setting(
                self.name, "thread_opening", self.thread_opening, "may only use the field {i}"
            )

    @property
    def verifier_use(self) -> str | None:
        if self.join == "verifier":
            return "search.fork_join.join=verifier keeps the thread the verifier scores best"
        return None

    async def rollout(self, ctx: Context, sampling: Sampling, label: str) -> RolloutResult:
        run = Rollout.start(ctx, ctx.render(None), sampling.max_tokens, label=label)
        run.force(self.prefix or "")
        details: dict[str, Any] = {"label": label, "join": self.join}
        if self.fork_after == "plan":
            plan = await run.decode(
                continuation(sampling, min(self.plan_tokens, run.left), ("\n\n",))
            )
            details["plan_tokens"] = plan.tokens
            if plan.hit_eos or plan.refused or plan.finish == FinishReason.ABORT:
                # the model ended its answer inside the plan: nothing left to fork
                run.end(plan.finish, "ended before the fork")
                return RolloutResult(run.chain, details)
            # a plan cut by plan_tokens is forked where it was cut
        if run.left <= 0:
            run.end(FinishReason.LENGTH, "no tokens left to fork")
            return RolloutResult(run.chain, details)
        cap = run.left if self.max_thread_tokens is None else min(self.max_thread_tokens, run.left)
        # split the rollout's context between the threads' text and what the join writes
        branches = [
            Branch(str(i + 1), run.prompt + self._opening(i), self._opening(i))
            for i in range(self.threads)
        ]
        threads = await fork(
            ctx, run.chain, branches, continuation(sampling, cap), policy=self.name, rollout=run
        )
        details["thread_tokens"] = [t.result.tokens for t in threads]
        if self.join == "summary":
            await self._summarize(run, threads, sampling)
        else:
            chosen = await self._choose(ctx, run, threads)
            details["chosen"] = chosen
            join(
                run,
                threads,
                threads[chosen].branch.opening + threads[chosen].text,
                policy=self.name,
                rule=self.join,
                chosen=threads[chosen].label,
            )
            run.end(FinishReason.STOP)
        return RolloutResult(run.chain, details)

    def _opening(self, i: int) -> str:
        return self.thread_opening.replace("{i}", str(i + 1))

    async def _summarize(self, run: Rollout, threads: list[Thread], sampling: Sampling) -> None:
        texts = [t.branch.opening + t.text for t in threads]
        join(run, threads, merged_threads(texts), policy=self.name, rule="summary")
        run.force(self.summary_cue)
        # the summary is part of the rollout's context, but always gets its own tokens
        run.budget_tokens = max(run.budget_tokens, run.decoded_tokens + self.summary_tokens)
        step = await run.decode(continuation(sampling, self.summary_tokens), rule="summary")
        run.end(step.finish)

    async def _choose(self, ctx: Context, run: Rollout, threads: list[Thread]) -> int:
        """The index of the thread the join keeps."""
        whole = [Chain(steps=split_steps(run.text + t.branch.opening + t.text)) for t in threads]
        if self.join == "vote":
            if ctx.judge is None:
                raise ValueError("search.fork_join.join=vote needs an answer judge")
            selection = await aggregate(whole, ctx.judge, "majority")
            return selection.index if selection.index is not None else 0
        scores = await ctx.score(whole)
        reduced = [reduce_step_scores(s, self.step_reduction) if s else 0.0 for s in scores]
        return max(range(len(reduced)), key=lambda i: (reduced[i], -i))
