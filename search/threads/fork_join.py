"""Controller-driven fork-join: the controller, not the model, decides where to fork.

The rollout decodes the model's plan (its first paragraph) or nothing, forks `threads`
concurrent continuations of that shared prefix, and joins them by one of three rules: a summary
continuation that reads every thread, the verifier's best thread, or a vote over the threads'
answers (docs/threads.md). It needs no model trained on a thread format.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from reasoning.context import Context
from reasoning.settings import Count, TokenCap
from reasoning.steps import split_steps, whole_prefix
from reasoning.types import Chain, FinishReason, Sampling
from search.aggregate import aggregate, reduce_step_scores, scores_whole_prefix
from search.settings import (
    AnswerCue,
    AnswerTokens,
    MaxThreadTokens,
    Prefix,
    StepReductionName,
    StrategySettings,
    settings,
)
from search.threads.runtime import Branch, Rollout, RolloutResult, Thread, continuation

JOINS = ("summary", "verifier", "vote")
FORK_POINTS = ("plan", "start")

SUMMARY_CUE = (
    "\n\nThe threads above worked on the problem in parallel. Comparing them, the final answer "
    "is $\\boxed{"
)


def merged_threads(texts: list[str]) -> str:
    """The threads as the summary reads them: numbered sections, in fork order."""
    return "".join(f"\n\n### Thread {i + 1}\n{t.strip()}" for i, t in enumerate(texts))


@settings
class ForkJoin(StrategySettings):
    """`search/strategy=fork_join`."""

    name: ClassVar[str] = "fork_join"

    threads: Count = 4
    """threads forked per rollout"""
    fork_after: Literal["plan", "start"] = "plan"
    """plan: fork after the model's first paragraph (its plan) | start: at the first token"""
    prefix: Prefix = None  # e.g. "Plan:"; null: none
    plan_tokens: TokenCap = 128
    """tokens of the plan before the fork"""
    thread_opening: str = ""
    """what each thread's request adds to the shared prefix ({i}: its number, from 1)"""
    max_thread_tokens: MaxThreadTokens = None
    join: Literal["summary", "verifier", "vote"] = "summary"
    """summary: a continuation reads every thread and answers | verifier: the thread the
    verifier scores best (needs verifier=...) | vote: the threads' majority answer"""
    answer_cue: AnswerCue = SUMMARY_CUE
    answer_tokens: AnswerTokens = 64
    step_reduction: StepReductionName = "last"
    """the verifier join's per-step scores -> one score; model: the verifier scores each
    thread's whole text as one step"""

    def __post_init__(self) -> None:
        if self.join == "summary" and self.answer_tokens < 1:
            raise self.invalid(
                "answer_tokens", self.answer_tokens, "must be >= 1 with join=summary"
            )
        if "{" in self.thread_opening.replace("{i}", ""):
            raise self.invalid("thread_opening", self.thread_opening, "may only use the field {i}")

    @property
    def verifier_use(self) -> str | None:
        if self.join == "verifier":
            return "search.strategy.join=verifier keeps the thread the verifier scores best"
        return None

    async def rollout(self, ctx: Context, sampling: Sampling, label: str) -> RolloutResult:
        run = Rollout.start(
            ctx, ctx.render(None), sampling.max_tokens, label=label, policy=self.name
        )
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
        # the summary is written into the same context: its tokens are kept for it up front
        room = run.left - (self.answer_tokens if self.join == "summary" else 0)
        if room < self.threads:
            run.end(FinishReason.LENGTH, "no tokens left to fork")
            return RolloutResult(run.chain, details)
        # the threads write into the rollout's one context: they share what is left of it
        cap = room // self.threads
        if self.max_thread_tokens is not None:
            cap = min(self.max_thread_tokens, cap)
        branches = [
            Branch(str(i + 1), run.prompt + self._opening(i), self._opening(i))
            for i in range(self.threads)
        ]
        threads = await run.fork(branches, continuation(sampling, cap))
        details["thread_tokens"] = [t.result.tokens for t in threads]
        if self.join == "summary":
            await self._summarize(run, threads, sampling)
        else:
            chosen = await self._choose(ctx, run, threads)
            details["chosen"] = chosen
            run.join(
                threads,
                threads[chosen].branch.opening + threads[chosen].text,
                rule=self.join,
                chosen=threads[chosen].label,
            )
            run.end(FinishReason.STOP)
        return RolloutResult(run.chain, details)

    def _opening(self, i: int) -> str:
        return self.thread_opening.replace("{i}", str(i + 1))

    async def _summarize(self, run: Rollout, threads: list[Thread], sampling: Sampling) -> None:
        texts = [t.branch.opening + t.text for t in threads]
        run.join(threads, merged_threads(texts), rule="summary")
        run.force(self.answer_cue)
        # the threads left the summary's tokens free (reserved before the fork)
        step = await run.decode(continuation(sampling, self.answer_tokens), rule="summary")
        run.end(step.finish)

    async def _choose(self, ctx: Context, run: Rollout, threads: list[Thread]) -> int:
        """The index of the thread the join keeps."""
        whole = [Chain(steps=split_steps(run.text + t.branch.opening + t.text)) for t in threads]
        if self.join == "vote":
            if ctx.judge is None:
                raise ValueError("search.fork_join.join=vote needs an answer judge")
            selection = await aggregate(whole, ctx.judge, "majority")
            return selection.index if selection.index is not None else 0
        # step_reduction=model: the verifier reads each thread's whole text as one step, as
        # every controller's "model aggregation" does (search/expand.py's score)
        if scores_whole_prefix(self.step_reduction):
            whole = [whole_prefix(c) for c in whole]
        scores = await ctx.score(whole)
        reduced = [reduce_step_scores(s, self.step_reduction) if s else 0.0 for s in scores]
        return max(range(len(reduced)), key=lambda i: (reduced[i], -i))
