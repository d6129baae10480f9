"""The evaluation runner: many problems in flight, one JSONL line per finished problem, resume.

Every finished problem is on disk (flushed and fsynced) before the next one is counted, so a
run killed at any moment loses only the problems still in flight, and a rerun into the same
directory skips everything already recorded.

Faults are sorted in two kinds (`is_run_level`). A problem-level fault (a prompt longer than
the model's context, a grader crash, an input the tokenizer refuses, ...) ends that problem
alone: its line carries `error` (type, message and problem id) and `correct: null`, and every
other problem goes on. A run-level fault (the backend is down, the engine died, the disk is
full, Ctrl-C) stops the run with `RunInterrupted` (Ctrl-C and cancellation propagate as they
are); what finished is on disk and a rerun resumes. A rerun skips problems recorded with an
error too, unless `retry_errors` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from evals import console
from evals.faults import RunInterrupted, describe_error, is_run_level, root_type
from evals.grading import Grader, grader_info
from evals.intervals import wilson_interval
from evals.rundir import (
    RESULTS,
    SUMMARY,
    TRACES,
    RunDirError,
    append_line,
    build_trace,
    flatten,
    json_line,
    open_run_file,
    problem_hash,
    read_results,
    run_fingerprint,
    selection,
    write_atomic,
    write_trace,
)
from reasoning.budget import Budget, Ledger
from reasoning.context import Sampler
from reasoning.controller import Controller, controller_name
from reasoning.outcome import Outcome
from reasoning.solver import SolveParts, solve_problem
from reasoning.types import EventKind, Generator, Problem, Verifier

log = logging.getLogger(__name__)

# The run-directory names and the fault kinds this module used to define, kept importable from
# here for callers of the runner (their home is evals.rundir, evals.faults, evals.intervals).
__all__ = ["Runner", "event_counts", "search_description", "search_params", "summarize"]


# what `summarize` reads of a record: the run keeps only these of each finished problem
SUMMARIZED = (
    "id",
    "correct",
    "error",
    "error_type",
    "ledger",
    "stopped_by",
    "missing_scores",
    "events",
)


def _summarized(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in SUMMARIZED if k in record}


async def _landed(write: asyncio.Future[Any]) -> Any:
    """Wait for a disk write; cancelled meanwhile, wait for it to land first, then cancel."""
    try:
        return await asyncio.shield(write)
    except asyncio.CancelledError:
        await asyncio.wait([write])
        raise


def search_params(search: Controller) -> dict[str, Any]:
    """The settings of the built controller, as recorded in every result (functions by name):
    nothing it does not read. A nested settings object (the thread strategy of search=threads)
    is recorded as its own settings plus its `name`."""
    return _settings_record(search) if is_dataclass(search) else {}


def _settings_record(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value) and not isinstance(value, type):
            value = {
                "name": getattr(value, "name", type(value).__name__),
                **_settings_record(value),
            }
        elif callable(value):
            value = getattr(value, "__name__", value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def search_description(search: Controller) -> dict[str, Any]:
    """The controller's config name and hyper-parameters: what a resumed run must match."""
    return {"name": controller_name(search), **search_params(search)}


def event_counts(events: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many of each adaptive-generation event (trim cuts by reason, forks, ...) a problem
    had, keyed by its `EventKind` (`kind:reason` where it gives a reason); the events
    themselves are in its trace (`details.events`)."""
    counts: Counter[str] = Counter()
    for e in events:
        kind = EventKind(e["event"])
        counts[f"{kind.value}:{e['reason']}" if e.get("reason") else kind.value] += 1
    return dict(counts)


def summarize(records: Sequence[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    errors = [r for r in records if r.get("error")]
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
        # finished but not gradable (e.g. grading timed out); errors are counted apart
        "ungraded": len(records) - n - len(errors),
        # problems that failed on their own (their line's `error`), neither right nor wrong
        "errors": len(errors),
        "errors_by_type": dict(Counter(r.get("error_type") or "?" for r in errors)),
        "stopped_by_budget": sum(1 for r in records if r.get("stopped_by")),
        # problems whose vote needed verifier scores it could not get (majority instead)
        "missing_scores": sum(1 for r in records if r.get("missing_scores")),
        "events": dict(sum((Counter(r.get("events") or {}) for r in records), Counter())),
        "ledger": totals.to_dict(),
        "ledger_per_problem": {k: round(v / len(records), 2) for k, v in totals.to_dict().items()}
        if records
        else {},
        "grader": grader_info(),
        "config": config,
    }


class Runner:
    """Evaluates a controller over problems and keeps the run directory consistent.

    `retry_errors`: rerun the problems recorded with an error (their old lines are dropped);
    None reads `retry_errors` from `config` (default false).
    """

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
        retry_errors: bool | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        self.generator = generator
        self.sampler = sampler  # a thought trimmer wrapping every sample (docs/thought-trimming.md)
        self._shared_fields: dict[str, Any] | None = None
        self._writer: ThreadPoolExecutor | None = None  # disk work of the run in progress
        self.search = search
        self.verifier = verifier
        self.grader = grader or Grader()
        self.budget = budget or Budget()
        self.seed = seed
        self.concurrency = concurrency
        self.out_dir = Path(out_dir)
        self.config = config or {}
        self.progress = progress
        if retry_errors is None:
            retry_errors = self.config.get("retry_errors") is True
        self.retry_errors = retry_errors

    @property
    def parts(self) -> SolveParts:
        """What the core's solve path (`reasoning.solver`) needs; the grader judges answers."""
        return SolveParts(
            generator=self.generator,
            search=self.search,
            verifier=self.verifier,
            judge=self.grader,
            budget=self.budget,
            sampler=self.sampler,
        )

    async def _on_writer(self, fn: Any, *args: Any) -> Any:
        """`fn(*args)` on the run's writer thread: disk work off the event loop, done in the
        order it was asked for (so problems that finish in order are recorded in order)."""
        if self._writer is None:  # outside `run`
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    def _run_fields(self) -> dict[str, Any]:
        """The fields every record of this run shares, worked out once (flattening the config
        and walking the controller's settings per problem was a share of each record's cost)."""
        if self._shared_fields is None:
            self._shared_fields = {
                "search": controller_name(self.search),
                "search_params": search_params(self.search),
                "seed": self.seed,
                "grader": grader_info(),
                **self.provenance(),
            }
        return self._shared_fields

    def provenance(self) -> dict[str, Any]:
        """What produced every record, so a results file alone says it: the model, the dataset,
        the verifier and the budget (the controller, seed and grader have their own fields)."""
        flat = flatten(self.config)
        model = next(
            (flat[k] for k in ("model.name", "model.path") if flat.get(k)),
            getattr(self.generator, "name", type(self.generator).__name__),
        )
        return {
            "model": model,
            "dataset": flat.get("dataset.name"),
            "verifier": None
            if self.verifier is None
            else getattr(self.verifier, "name", type(self.verifier).__name__),
            "budget": asdict(self.budget),
            # search=auto: which board row the controller was picked from (evals/auto.py)
            **({"advised": self.config["advised"]} if self.config.get("advised") else {}),
        }

    def fingerprint(self) -> dict[str, Any]:
        """This run's identity (`run_fingerprint` of the config and the runner's objects)."""
        derived: dict[str, Any] = {
            "search": search_description(self.search),
            "verifier": {"name": getattr(self.verifier, "name", None)},
            "budget": asdict(self.budget),
            "seed": self.seed,
        }
        if "backend" not in self.config:  # else model.path and backend say which model runs
            name = getattr(self.generator, "name", type(self.generator).__name__)
            derived["generator"] = {"name": name}
        return run_fingerprint(self.config, derived)

    def _check_same_run(self, problems: Sequence[Problem] = ()) -> None:
        """Refuse to mix results of different settings in one directory (see run_fingerprint);
        record which problems this invocation selected (run.json's `selection`)."""
        open_run_file(self.out_dir, self.fingerprint(), selection(problems, self.config))

    def _check_same_problems(
        self, records: list[dict[str, Any]], problems: Sequence[Problem]
    ) -> None:
        """Refuse records made for a different question or gold answer under the same id."""
        by_id = {p.id: p for p in problems}
        changed = [
            r["id"]
            for r in records
            if r.get("problem_hash") is not None
            and r["id"] in by_id
            and r["problem_hash"] != problem_hash(by_id[r["id"]])
        ]
        if changed:
            raise RunDirError(
                f"{self.out_dir / RESULTS} holds results for {len(changed)} problem(s) whose "
                f"question or gold answer has changed since (first: {changed[0]!r}); "
                "use another hydra.run.dir (or delete the directory)"
            )

    def _drop_errors(self, path: Path, records: list[dict[str, Any]], ids: set[str]) -> None:
        """With retry_errors: forget the error lines of these problems, so they run again."""
        keep = [r for r in records if not (r.get("error") and r.get("id") in ids)]
        if len(keep) < len(records):
            write_atomic(path, "".join(json_line(r) for r in keep))
            records[:] = keep

    async def run(self, problems: Sequence[Problem]) -> dict[str, Any]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / TRACES).mkdir(exist_ok=True)
        self._check_same_run(problems)
        results_path = self.out_dir / RESULTS
        records = read_results(results_path)
        self._check_same_problems(records, problems)
        ids = {p.id for p in problems}
        if self.retry_errors:
            self._drop_errors(results_path, records, ids)
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

        tally: Counter[str] = Counter()  # over the problems of this selection, for the progress bar

        def count(record: dict[str, Any]) -> None:
            if record.get("error"):
                tally["err"] += 1
            elif record.get("correct") is not None:
                tally["graded"] += 1
                tally["correct"] += bool(record["correct"])
            postfix = {}
            if tally["graded"]:
                postfix["acc"] = f"{tally['correct'] / tally['graded']:.3f}"
            if tally["err"]:
                postfix["err"] = str(tally["err"])
            bar.set_postfix(postfix, refresh=False)

        todo = iter(pending)  # shared by the workers: each problem is taken once, in order
        writes = asyncio.Semaphore(self.concurrency)  # lines waiting for the disk

        async def worker() -> None:
            # `concurrency` workers instead of one task per problem: memory follows the
            # problems in flight, not the size of the run
            for problem in todo:
                record = await self.solve_and_grade(problem)
                line = self._line(problem, record)
                # written and fsynced off the event loop by one writer thread (lines land in
                # the order they finished): the next problem starts while the disk syncs, and
                # a finished line lands even when the run is cancelled meanwhile
                await writes.acquire()  # a disk slower than the search holds the workers back
                write = loop.run_in_executor(writer, self._append, results_path, line)
                group.create_task(landed(write, record))

        async def landed(write: asyncio.Future[None], record: dict[str, Any]) -> None:
            try:
                await _landed(write)
            finally:
                writes.release()
            records.append(_summarized(record))
            count(record)
            bar.update(1)

        for record in records:
            if record["id"] in ids:
                count(record)
        records[:] = [_summarized(r) for r in records]
        loop = asyncio.get_running_loop()
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="results-writer")
        self._writer = writer
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrency, len(pending))):
                    group.create_task(worker())
        except* Exception as failures:
            first = failures.exceptions[0]
            raise RunInterrupted(
                f"{describe_error(first)}\n{len(records)} finished problems are saved in "
                f"{results_path}; rerun the same command to resume"
            ) from first
        finally:
            writer.shutdown(wait=True)
            self._writer = None
            bar.close()
        summary = summarize([r for r in records if r["id"] in ids], self.config)
        summary["selected"] = len(problems)  # the problems of this invocation's selection
        summary["elapsed_s"] = round(time.monotonic() - started, 2)  # this invocation only
        write_atomic(self.out_dir / SUMMARY, json.dumps(summary, indent=2, default=str))
        if summary["errors"]:
            log.warning(
                "%d problem(s) failed and are recorded with their error in %s; "
                "retry_errors=true reruns them",
                summary["errors"],
                results_path,
            )
        return summary

    async def _start_generator(self) -> None:
        """Start the engine before any problem's clock runs, so wall_s budgets mean search time."""
        start = getattr(self.generator, "start", None)
        if start is not None:
            await asyncio.to_thread(start)

    async def solve_and_grade(self, problem: Problem) -> dict[str, Any]:
        """The problem's record; a problem-level fault becomes a record with its `error`.

        Run-level faults (`is_run_level`) propagate.
        """
        outcome: Outcome | None = None
        spent: Ledger | None = None
        record: dict[str, Any] | None = None
        started = time.time()
        stage = "solve"
        try:
            solved = await solve_problem(problem, self.parts, seed=self.seed)
            outcome, spent = solved.outcome, solved.ledger
            if solved.error is not None:
                raise solved.error
            assert outcome is not None
            stage = "grade"
            grade = await self.grader.grade(outcome.answer, problem.answer, problem)
            record = self._record(problem, started, outcome, grade.correct, grade.reason)
            stage = "trace"
            await self._on_writer(self._write_trace, problem, outcome, record)
            return record
        except Exception as exc:
            if is_run_level(exc):
                raise
            return self._failed(problem, exc, stage, started, spent, outcome, record)

    def _record(
        self,
        problem: Problem,
        started: float,
        outcome: Outcome | None,
        correct: bool | None,
        grade_reason: str | None,
        ledger: Ledger | None = None,
    ) -> dict[str, Any]:
        ledger = outcome.ledger if outcome is not None else (ledger or Ledger())
        details = outcome.details if outcome is not None else {}
        return {
            "id": problem.id,
            "answer": problem.answer,
            "prediction": outcome.answer if outcome is not None else None,
            "correct": correct,
            "grade_reason": grade_reason,
            "error": None,
            "error_type": None,
            "error_stage": None,
            "ledger": ledger.to_dict(),
            "stopped_by": outcome.stopped_by if outcome is not None else None,
            **self._run_fields(),
            "votes": details.get("votes", {}),
            "missing_scores": details.get("missing_scores"),
            "events": event_counts(details.get("events") or ()),
            "chains": len(outcome.chains) if outcome is not None else 0,
            "finished_at": round(started + ledger.wall_s, 3),
            "problem_hash": problem_hash(problem),
        }

    def _failed(
        self,
        problem: Problem,
        exc: Exception,
        stage: str,
        started: float,
        spent: Ledger | None = None,
        outcome: Outcome | None = None,
        record: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The record of a problem that failed at `stage`: what it spent, `error`, no grade."""
        ledger = None
        if outcome is None and spent is not None:  # what the failed search spent
            ledger = spent
        elif outcome is None and record is not None:
            ledger = Ledger.from_dict(record.get("ledger") or {})
        failed = self._record(problem, started, outcome, None, None, ledger)
        if record is not None:  # graded before the trace or the line failed: keep the verdict
            failed["grade_reason"] = record.get("grade_reason")
            if isinstance(record.get("prediction"), str):
                failed["prediction"] = record["prediction"]
        failed["error"] = f"problem {problem.id}: {describe_error(exc)}"
        failed["error_type"] = root_type(exc)
        failed["error_stage"] = stage
        failed["finished_at"] = round(time.time(), 3)
        log.warning("%s (recorded; the run goes on)", failed["error"][:500])
        try:
            self._write_trace(problem, outcome, failed)
        except Exception as trace_exc:
            if is_run_level(trace_exc):
                raise
            log.warning("problem %s: its trace could not be written either", problem.id)
        return failed

    def _line(self, problem: Problem, record: dict[str, Any]) -> str:
        """The record as a results line; a record that cannot be written becomes an error."""
        try:
            return json_line(record)
        except Exception as exc:
            if is_run_level(exc):
                raise
            failed = self._failed(problem, exc, "record", time.time(), record=record)
            return json_line(failed)

    def _write_trace(
        self, problem: Problem, outcome: Outcome | None, record: dict[str, Any]
    ) -> None:
        write_trace(self.out_dir, build_trace(problem, outcome, record))

    @staticmethod
    def _append(path: Path, line: str) -> None:
        append_line(path, line)
