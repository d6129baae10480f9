"""The one solve path: a problem and the parts of a search in, its outcome (or failure) out.

The Python API, the evaluation runner and the reasoning server all solve a problem the same
way: build a `Context` from the parts, let the controller `run`, `settle` what the search owes
its record (events, critical-path tokens). Keeping that in one function means a run, an API
call and a server request can never differ in how a problem is solved, only in what they do
with the result.

A fault inside the search does not escape: it comes back in `Solved.error` with what the
search spent until then (`Solved.ledger`), because the caller decides what a fault means (the
runner records a problem-level fault and stops on a run-level one; the API raises it).
`BaseException`s that are not `Exception`s (Ctrl-C, cancellation) propagate as they are:
cancelling the task that runs `solve_problem` cancels the search and, with it, every generator
request in flight (the backends abort them when their awaiting task is cancelled).

A `ProgressFeed` (the server's streaming) sees the search while it runs and is closed when
`solve_problem` returns or raises, whatever happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasoning.budget import Budget, Ledger
from reasoning.context import Context, Sampler
from reasoning.controller import Controller
from reasoning.outcome import Outcome
from reasoning.progress import ProgressFeed
from reasoning.types import AnswerJudge, Generator, Problem, Verifier


@dataclass(frozen=True)
class SolveParts:
    """What solving a problem needs besides the problem and the seed.

    One set of parts serves every problem of a run (or every request of a server): nothing here
    holds per-problem state; the `Context` built per problem does.
    """

    generator: Generator
    search: Controller
    verifier: Verifier | None = None
    judge: AnswerJudge | None = None
    budget: Budget = Budget()
    sampler: Sampler | None = None  # a thought trimmer wrapping every sample, or None


@dataclass
class Solved:
    """What one solve produced: the outcome, or the error and what was spent before it."""

    problem: Problem
    context: Context | None  # None only when the Context itself could not be built
    outcome: Outcome | None = None
    error: Exception | None = None

    @property
    def ledger(self) -> Ledger:
        """What the search spent: the outcome's ledger, else the Context's up to the fault."""
        if self.outcome is not None:
            return self.outcome.ledger
        if self.context is not None:
            return self.context.ledger
        return Ledger()

    def result(self) -> Outcome:
        """The outcome, or the search's error raised (the API's way to report a fault)."""
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


async def solve_problem(
    problem: Problem, parts: SolveParts, *, seed: int = 0, feed: ProgressFeed | None = None
) -> Solved:
    """Solve `problem` with `parts` under `seed`; a fault of the search is in `Solved.error`.

    `feed` receives the search's progress (reasoning/progress.py) and is closed at the end,
    also on an error or a cancellation."""
    ctx: Context | None = None
    outcome: Outcome | None = None
    try:
        ctx = Context(
            problem,
            parts.generator,
            verifier=parts.verifier,
            judge=parts.judge,
            budget=parts.budget,
            seed=seed,
            sampler=parts.sampler,
            feed=feed,
        )
        outcome = await parts.search.run(problem, ctx)
        ctx.settle(outcome)
        if ctx.progress is not None:
            ctx.progress.status("done")
    except Exception as exc:
        if outcome is None and ctx is not None:  # what the failed search spent until then
            ctx.tick()
            ctx.settle()
        return Solved(problem, ctx, outcome, exc)
    finally:
        if feed is not None:
            feed.close()
    return Solved(problem, ctx, outcome)
