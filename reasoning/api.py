"""The Python API: `solve`, `asolve`, `solve_many`, built from the same config as the CLI.

A newcomer's script works as written: without an `if __name__ == "__main__":` guard (the
engine's and the grader's processes never re-run the caller's script:
`reasoning.process.spawn_without_main`), and quiet like the CLI (vLLM's output goes to a log
file, `reasoning.process.default_engine_log()`, unless `verbose=True`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from reasoning.budget import Budget
from reasoning.build import (
    build_budget,
    build_generator,
    build_judge,
    build_sampler,
    build_search,
    build_verifier,
    check_verifier,
    compose_config,
    refuse_inert_trim,
    resolve_search,
)
from reasoning.context import Sampler
from reasoning.controller import Controller
from reasoning.loop import run_sync
from reasoning.outcome import Outcome
from reasoning.process import default_engine_log, engine_output_to, spawn_without_main
from reasoning.solver import SolveParts, solve_problem
from reasoning.types import AnswerJudge, Generator, Problem, Verifier


def _problem(question: str | Problem, answer: str | None = None, index: int = 0) -> Problem:
    if isinstance(question, Problem):
        return question
    return Problem(id=f"q{index}", question=question, answer=answer)


class _Session:
    """The objects one API call needs (its `SolveParts`), from config names or ready objects."""

    def __init__(
        self,
        search: str | Controller,
        model: str,
        backend: str,
        verifier: str | Verifier | None,
        budget: Budget | dict[str, Any] | None,
        generator: Generator | None,
        judge: AnswerJudge | None,
        overrides: Sequence[str],
        trim: str | Sampler | None = None,
    ) -> None:
        groups = [f"model={model}", f"backend={backend}"]
        if isinstance(trim, str):
            groups.append(f"+trim={trim}")
        if isinstance(search, str):
            groups.append(f"search={search}")
        if isinstance(verifier, str):
            groups.append(f"verifier={verifier}")
        # search=auto: the advisor's pick for the config's dataset, model and budget
        cfg = resolve_search(compose_config([*groups, *overrides]))
        self.search = build_search(cfg) if isinstance(search, str) else search
        if isinstance(verifier, str):
            self.verifier = build_verifier(cfg)
        else:
            self.verifier = verifier
        if isinstance(budget, Budget):
            self.budget = budget
        elif isinstance(budget, dict):
            self.budget = Budget(**budget)
        else:
            self.budget = build_budget(cfg)
        check_verifier(self.search, self.verifier)
        self.sampler = build_sampler(cfg) if isinstance(trim, str) else trim
        if self.sampler is not None:  # refused before the engine starts, not after
            refuse_inert_trim(self.search)
        self.generator = generator or build_generator(cfg)
        self.judge = judge if judge is not None else build_judge(cfg)
        self.parts = SolveParts(
            generator=self.generator,
            search=self.search,
            verifier=self.verifier,
            judge=self.judge,
            budget=self.budget,
            sampler=self.sampler,
        )

    async def solve(self, problem: Problem, seed: int) -> Outcome:
        """The core solve path (`reasoning.solver`); a fault of the search is raised."""
        return (await solve_problem(problem, self.parts, seed=seed)).result()


async def asolve_many(
    questions: Sequence[str | Problem],
    *,
    search: str | Controller = "best_of_n",
    model: str = "smollm2-135m",
    backend: str = "vllm",
    verifier: str | Verifier | None = "none",
    budget: Budget | dict[str, Any] | None = None,
    seed: int = 0,
    generator: Generator | None = None,
    judge: AnswerJudge | None = None,
    overrides: Sequence[str] = (),
    trim: str | Sampler | None = None,
    verbose: bool = False,
) -> list[Outcome]:
    """Solve many problems concurrently on one engine (the engine batches across them).

    `search`, `model`, `backend` and `verifier` are config names (as on the CLI), or ready
    objects; `overrides` are CLI-style `key=value` strings, e.g. ["search.n=16"]; `trim` a
    thought trimmer's config name (conf/trim: trimr, sdv, budget) or a ready one.

    Quiet like the CLI: an engine this call starts writes its output (vLLM's start-up log, its
    engine-core and worker processes, their shutdown) to `reasoning-engine-<pid>.log` in the
    temp folder, named in the error when it fails to start; `verbose=True` leaves it on the
    terminal. An engine already running (the API shares one per backend config) keeps the
    output of the call that started it. No `if __name__ == "__main__":` guard is needed.
    """
    log = None if verbose else default_engine_log()
    with spawn_without_main(), engine_output_to(log):
        session = _Session(
            search, model, backend, verifier, budget, generator, judge, overrides, trim
        )
        problems = [_problem(q, index=i) for i, q in enumerate(questions)]
        return list(await asyncio.gather(*(session.solve(p, seed) for p in problems)))


async def asolve(question: str | Problem, **kwargs: Any) -> Outcome:
    """Solve one problem (async). Keyword arguments as in `asolve_many`."""
    return (await asolve_many([question], **kwargs))[0]


def solve(question: str | Problem, **kwargs: Any) -> Outcome:
    """Solve one problem and return its Outcome (answer, chosen chain, chains, ledger, tree)."""
    return run_sync(asolve(question, **kwargs))


def solve_many(questions: Sequence[str | Problem], **kwargs: Any) -> list[Outcome]:
    """Solve many problems concurrently; returns Outcomes in the input order."""
    return run_sync(asolve_many(questions, **kwargs))
