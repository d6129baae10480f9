"""The evaluation runner: many problems in flight, one JSONL line per finished problem, resume.

Every finished problem is on disk (flushed and fsynced) before the next one is counted, so a
run killed at any moment loses only the problems still in flight, and a rerun into the same
directory skips everything already recorded.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from evals import console
from evals.grading import Grader, grader_info
from reasoning.budget import Budget, Ledger
from reasoning.context import Context
from reasoning.controller import Controller, controller_name
from reasoning.outcome import Outcome
from reasoning.types import Generator, Problem, Verifier

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
RUN_CONFIG = "run.json"
TRACES = "traces"


class RunInterrupted(RuntimeError):
    """A run stopped by a failure; everything finished before it is on disk."""


def search_params(search: Controller) -> dict[str, Any]:
    """The controller's hyper-parameters, as recorded in every result (functions by name)."""
    params = asdict(search) if is_dataclass(search) else {}
    return {k: getattr(v, "__name__", v) if callable(v) else v for k, v in params.items()}


def search_description(search: Controller) -> dict[str, Any]:
    """The controller's config name and hyper-parameters: what a resumed run must match."""
    return {"name": controller_name(search), **search_params(search)}


def trace_filename(problem_id: str) -> str:
    """A file name for a problem id (MATH ids contain slashes)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "__", problem_id) + ".json"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval: honest at small n and near 0 or 1, unlike the normal one."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def read_results(path: Path) -> list[dict[str, Any]]:
    """Finished records; a torn last line (killed mid-write) is dropped and cut from the file."""
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    good_bytes = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                records.append(json.loads(raw))
                good_bytes += len(raw)
            except json.JSONDecodeError as exc:
                rest = f.read()
                if rest.strip():
                    raise ValueError(f"{path}:{lineno}: corrupt result line ({exc})") from exc
                break
    if good_bytes < path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return records


def summarize(records: Sequence[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    graded = [r for r in records if r.get("correct") is not None]
    correct = sum(1 for r in graded if r["correct"])
    totals = Ledger()
    for r in records:
        totals.add(Ledger.from_dict(r["ledger"]))
    n = len(graded)
    return {
        "accuracy": round(correct / n, 4) if n else None,
        "n": n,
        "correct": correct,
        "ci95": list(wilson_interval(correct, n)),
        "problems": len(records),
        "ungraded": len(records) - n,
        "stopped_by_budget": sum(1 for r in records if r.get("stopped_by")),
        # problems whose vote needed verifier scores it could not get (majority instead)
        "missing_scores": sum(1 for r in records if r.get("missing_scores")),
        "ledger": totals.to_dict(),
        "ledger_per_problem": {k: round(v / len(records), 2) for k, v in totals.to_dict().items()}
        if records
        else {},
        "grader": grader_info(),
        "config": config,
    }


class Runner:
    """Evaluates a controller over problems and keeps the run directory consistent."""

    def __init__(
        self,
        generator: Generator,
        search: Controller,
        out_dir: str | os.PathLike[str],
        *,
        verifier: Verifier | None = None,
        grader: Grader | None = None,
        budget: Budget | None = None,
        seed: int = 0,
        concurrency: int = 32,
        config: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.generator = generator
        self.search = search
        self.verifier = verifier
        self.grader = grader or Grader()
        self.budget = budget or Budget()
        self.seed = seed
        self.concurrency = concurrency
        self.out_dir = Path(out_dir)
        self.config = config or {}
        self.progress = progress
        self._lock = asyncio.Lock()

    def _check_same_run(self) -> None:
        """Refuse to mix results of different settings in one directory."""
        path = self.out_dir / RUN_CONFIG
        identity = {
            "search": search_description(self.search),
            "generator": getattr(self.generator, "name", type(self.generator).__name__),
            "verifier": getattr(self.verifier, "name", None),
            "budget": asdict(self.budget),
            "seed": self.seed,
        }
        if path.exists():
            previous = json.loads(path.read_text())
            if previous != identity:
                changed = sorted(k for k in identity if previous.get(k) != identity[k])
                raise ValueError(
                    f"{self.out_dir} holds a run with different settings ({', '.join(changed)}); "
                    "use another hydra.run.dir or delete the directory"
                )
        else:
            path.write_text(json.dumps(identity, indent=2, sort_keys=True))

    async def run(self, problems: Sequence[Problem]) -> dict[str, Any]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / TRACES).mkdir(exist_ok=True)
        self._check_same_run()
        results_path = self.out_dir / RESULTS
        records = read_results(results_path)
        done = {r["id"] for r in records}
        pending = [p for p in problems if p.id not in done]
        if pending:
            await self._start_generator()
        started = time.monotonic()
        bar = tqdm(
            total=len(problems),
            initial=len(problems) - len(pending),
            desc="problems",
            disable=not self.progress,
            dynamic_ncols=True,
            file=console.stderr(),  # the terminal, also while the engine's output goes to a log
        )
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(problem: Problem) -> None:
            async with semaphore:
                record = await self.solve_and_grade(problem)
            async with self._lock:
                self._append(results_path, record)
                records.append(record)
                graded = [r for r in records if r["correct"] is not None]
                if graded:
                    acc = sum(r["correct"] for r in graded) / len(graded)
                    bar.set_postfix(acc=f"{acc:.3f}", refresh=False)
                bar.update(1)

        try:
            async with asyncio.TaskGroup() as group:
                for problem in pending:
                    group.create_task(one(problem))
        except* Exception as failures:
            first = failures.exceptions[0]
            raise RunInterrupted(
                f"{type(first).__name__}: {first}\n{len(records)} finished problems are saved in "
                f"{results_path}; rerun the same command to resume"
            ) from first
        finally:
            bar.close()
        ids = {p.id for p in problems}
        summary = summarize([r for r in records if r["id"] in ids], self.config)
        summary["elapsed_s"] = round(time.monotonic() - started, 2)  # this invocation only
        (self.out_dir / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
        return summary

    async def _start_generator(self) -> None:
        """Start the engine before any problem's clock runs, so wall_s budgets mean search time."""
        start = getattr(self.generator, "start", None)
        if start is not None:
            await asyncio.to_thread(start)

    async def solve_and_grade(self, problem: Problem) -> dict[str, Any]:
        ctx = Context(
            problem,
            self.generator,
            verifier=self.verifier,
            judge=self.grader,
            budget=self.budget,
            seed=self.seed,
        )
        started = time.time()
        outcome = await self.search.run(problem, ctx)
        grade = await self.grader.grade(outcome.answer, problem.answer)
        record = {
            "id": problem.id,
            "answer": problem.answer,
            "prediction": outcome.answer,
            "correct": grade.correct,
            "grade_reason": grade.reason,
            "ledger": outcome.ledger.to_dict(),
            "stopped_by": outcome.stopped_by,
            "search": controller_name(self.search),
            "search_params": search_params(self.search),
            "seed": self.seed,
            "grader": grader_info(),
            "votes": outcome.details.get("votes", {}),
            "missing_scores": outcome.details.get("missing_scores"),
            "chains": len(outcome.chains),
            "finished_at": round(started + outcome.ledger.wall_s, 3),
        }
        self._write_trace(problem, outcome, record)
        return record

    def _write_trace(self, problem: Problem, outcome: Outcome, record: dict[str, Any]) -> None:
        trace = {
            "id": problem.id,
            "question": problem.question,
            "metadata": dict(problem.metadata),
            "gold": problem.answer,
            "prediction": outcome.answer,
            "correct": record["correct"],
            "selected": outcome.chain.id if outcome.chain else None,
            "chains": [
                {
                    "id": c.id,
                    "text": c.text,
                    "steps": len(c.steps),
                    "scores": list(c.scores),
                    "tokens": c.tokens,
                    "finish_reason": c.finish_reason,
                }
                for c in outcome.chains
            ],
            "ledger": record["ledger"],
            "details": outcome.details,
            "tree": outcome.tree.to_json(),
        }
        path = self.out_dir / TRACES / trace_filename(problem.id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(trace, indent=1, default=str))
        tmp.replace(path)

    @staticmethod
    def _append(path: Path, record: dict[str, Any]) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
