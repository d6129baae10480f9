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
import contextlib
import errno
import fnmatch
import hashlib
import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from evals import console
from evals.grading import Grader, grader_info
from reasoning.budget import Budget, Ledger
from reasoning.context import Context, Sampler
from reasoning.controller import Controller, controller_name
from reasoning.outcome import Outcome
from reasoning.types import Generator, Problem, Verifier

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
RUN_CONFIG = "run.json"
TRACES = "traces"
RUN_FORMAT = 2  # run.json's format: 2 = {"format", "fingerprint"}; 1 (no "format") = before it

# Keys of the composed config left out of the run's fingerprint (fnmatch patterns over dotted
# paths; `*` also matches dots). See `run_fingerprint` for the rule.
NOT_FINGERPRINTED = (
    # how the run is carried out, not what it computes
    "concurrency",
    "progress",
    "verbose",
    "retry_errors",
    "hydra",
    "hydra.*",
    "cache.mode",
    "cache.path",
    # which problems run; each problem's record is the same whichever others run with it
    "dataset.limit",
    "dataset.ids",
    "dataset.subjects",
    "dataset.levels",
    "dataset.arith.n",  # arith-L3-0004 is the same whatever n or levels (evals/arith.py)
    "dataset.arith.levels",
    # labels
    "model.name",
    "*backend.name",
    # engine memory, batching and transport: speed, not results
    "*gpu_memory_utilization",
    "*kv_cache_gib",
    "*max_num_seqs",
    "*enforce_eager",
    "*backend.block_size",
    "*batch_wait_ms",
    "verifier.batch_size",
    "verifier.base_url",
    "*backend.base_urls",
    "*backend.api_key",
    "*backend.max_concurrency",
    "*backend.max_retries",
    "*backend.timeout_s",
    "*backend.backoff_s",
)

# OSError numbers that mean the machine or the run directory is in trouble, not one problem.
RUN_LEVEL_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EIO", "EMFILE", "ENFILE", "ENOMEM")
    if hasattr(errno, name)
)
# Exception classes (by name, so that neither vllm nor openai need importing) that no other
# problem would survive either: vLLM's engine core died; the server refuses our key or model.
RUN_LEVEL_NAMES = frozenset(
    {"EngineDeadError", "AuthenticationError", "PermissionDeniedError", "NotFoundError"}
)
MAX_ERROR_CHARS = 2000  # of an exception's text in a record (a message may quote the input)
SLUG_CHARS = 120  # of a trace file name's readable part
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


class RunInterrupted(RuntimeError):
    """A run stopped by a failure; everything finished before it is on disk."""


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


def trace_filename(problem_id: str) -> str:
    """A file name for a problem id, distinct for distinct ids (MATH ids contain slashes).

    An id of letters, digits, `.`, `_` and `-` (at most SLUG_CHARS long) is its own name. Any
    other id gets a readable slug (unsafe runs become `__`, cut to SLUG_CHARS) plus `~` and a
    hash of the exact id: `test/algebra/1.json` -> `test__algebra__1.json~<12 hex>.json`.
    `~` never occurs in a plain name, so a hashed name cannot equal a plain one.
    """
    slug = _UNSAFE.sub("__", problem_id)[:SLUG_CHARS]
    if slug == problem_id and slug:
        return slug + ".json"
    digest = hashlib.sha256(problem_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slug}~{digest}.json"


def problem_hash(problem: Problem) -> str:
    """A short hash of what a problem's result depends on (question and gold answer)."""
    text = json.dumps([problem.question, problem.answer], default=str)  # ASCII: surrogates ok
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def json_line(record: Mapping[str, Any]) -> str:
    """One JSON line, valid UTF-8 even for a string holding a lone surrogate ("\\ud800").

    Non-ASCII text stays readable; a surrogate code point (never valid in UTF-8) is written as
    its JSON escape, which reads back as the same string (a surrogate *pair* reads back as the
    one character it encodes).
    """
    text = json.dumps(record, ensure_ascii=False, default=str)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


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


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a temporary file, fsynced, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


# --- faults ---------------------------------------------------------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the leaves of an exception group, and what each was raised from."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        if e.__cause__ is not None:
            todo.append(e.__cause__)


def is_run_level(exc: BaseException) -> bool:
    """Whether `exc` must stop the whole run rather than end one problem with an error.

    Run-level: anything that is not an `Exception` (KeyboardInterrupt, CancelledError,
    SystemExit); a backend that is down (`ConnectionError`, which the openai backend's
    `ServerUnavailableError` is); `MemoryError`; an `OSError` about the disk or the machine
    (no space, quota, read-only, I/O error, too many open files); vLLM's `EngineDeadError`;
    the server refusing our key or model (401/403/404). Also when any of these is inside an
    exception group or is the cause of the exception. Everything else is the problem's own.
    """
    for e in _causes(exc):
        if not isinstance(e, Exception) or isinstance(e, ConnectionError | MemoryError):
            return True
        if isinstance(e, RunInterrupted):
            return True
        if isinstance(e, OSError) and e.errno in RUN_LEVEL_ERRNOS:
            return True
        if RUN_LEVEL_NAMES & {c.__name__ for c in type(e).__mro__}:
            return True
    return False


def _one_line(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:  # a broken __str__ must not hide the error
        text = "<unprintable>"
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + f"... [{len(text) - MAX_ERROR_CHARS} chars cut]"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def describe_error(exc: BaseException) -> str:
    """`Type: message`, with what it was raised from (vLLM wraps errors in an empty
    EngineGenerateError) and the leaves of an exception group."""
    parts = []
    for e in _causes(exc):
        if isinstance(e, BaseExceptionGroup) and e.exceptions:
            continue
        parts.append(_one_line(e))
    return " <- ".join(parts) or _one_line(exc)


def _root_type(exc: BaseException) -> str:
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    return type(leaf).__name__


# --- run identity ---------------------------------------------------------------------------


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def _ignored(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in NOT_FINGERPRINTED)


def run_fingerprint(
    config: Mapping[str, Any], derived: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The settings a resumed run must match, as {dotted key: value}.

    The rule: every key of the composed config is in, except those (NOT_FINGERPRINTED) that
    cannot change any problem's record:
    - how the run is carried out: `concurrency`, `progress`, `verbose`, `retry_errors`,
      `cache.mode`/`cache.path` (a replay gives the recorded results), Hydra's keys;
    - which problems run: `dataset.limit`, `dataset.ids`, `dataset.subjects`,
      `dataset.levels`, `dataset.arith.n` and `dataset.arith.levels` only select problems
      whose content does not depend on them (arith problem ids are stable across n and
      levels), and each record is checked against its problem's question and gold answer
      (`problem_hash`) on resume, so a selection can change between reruns: the summary then
      covers the problems of the current selection;
    - labels (`model.name`, `backend.name`) and engine or transport plumbing (memory
      fractions, KV cache size, batch sizes of the engine, eager mode, server URLs, API key,
      retries, timeouts of the HTTP client).
    Everything else, including keys added later, is in: the dataset (name, path, data_dir,
    arith seed), the model (path, max_model_len, dtype, system prompt), the backend and its
    sampling-related keys (seeds, tokenizer, served model), search, verifier, judge, budget
    and seed. Missing something costs a refused resume; leaving something out wrongly would
    mix two configurations in one results.jsonl.

    `derived` (what the runner was given: controller, budget, seed, verifier) is merged
    under the same keys, so a runner without a config is fingerprinted too.
    """
    flat: dict[str, Any] = {}
    _flatten(dict(derived or {}), "", flat)
    _flatten(dict(config), "", flat)
    flat = {k: v for k, v in flat.items() if k and not _ignored(k)}
    return json.loads(json.dumps(flat, default=str, sort_keys=True))  # as run.json reads back


def fingerprint_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """`key: old -> new` for every key whose value differs (`<absent>` for a missing key)."""
    missing = object()
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b:
            shown = ["<absent>" if v is missing else json.dumps(v, default=str) for v in (a, b)]
            changes.append(f"{key}: {shown[0]} -> {shown[1]}")
    return changes


def event_counts(events: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many of each adaptive-generation event (trim cuts by reason, forks, ...) a problem
    had; the events themselves are in its trace (`details.events`)."""
    return dict(
        Counter(
            f"{e.get('event')}:{e['reason']}" if e.get("reason") else str(e.get("event"))
            for e in events
        )
    )


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
        self._lock = asyncio.Lock()

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

    def _check_same_run(self) -> None:
        """Refuse to mix results of different settings in one directory (see run_fingerprint)."""
        path = self.out_dir / RUN_CONFIG
        fingerprint = self.fingerprint()
        where = "use another hydra.run.dir (or delete the directory)"
        if not path.exists():
            results = self.out_dir / RESULTS
            if results.exists() and results.stat().st_size:
                raise ValueError(
                    f"{self.out_dir} holds results but no {RUN_CONFIG}, so they cannot be "
                    f"checked against these settings; {where}"
                )
            _write_atomic(
                path,
                json.dumps({"format": RUN_FORMAT, "fingerprint": fingerprint}, indent=2) + "\n",
            )
            return
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is unreadable ({exc}); {where}") from exc
        version = previous.get("format") if isinstance(previous, dict) else None
        if version != RUN_FORMAT or not isinstance(previous.get("fingerprint"), dict):
            older = version is None or (isinstance(version, int) and version < RUN_FORMAT)
            raise ValueError(
                f"{self.out_dir} was written by {'an older' if older else 'another'} version "
                f"of the toolkit ({RUN_CONFIG} without a settings fingerprint), so resuming "
                f"it cannot be checked against these settings; {where}"
            )
        changes = fingerprint_changes(previous["fingerprint"], fingerprint)
        if changes:
            shown = "; ".join(changes[:12]) + (
                f"; and {len(changes) - 12} more" if len(changes) > 12 else ""
            )
            raise ValueError(
                f"{self.out_dir} holds a run with different settings ({shown}); "
                f"set them back to resume, or {where}"
            )

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
            raise ValueError(
                f"{self.out_dir / RESULTS} holds results for {len(changed)} problem(s) whose "
                f"question or gold answer has changed since (first: {changed[0]!r}); "
                "use another hydra.run.dir (or delete the directory)"
            )

    def _drop_errors(self, path: Path, records: list[dict[str, Any]], ids: set[str]) -> None:
        """With retry_errors: forget the error lines of these problems, so they run again."""
        keep = [r for r in records if not (r.get("error") and r.get("id") in ids)]
        if len(keep) < len(records):
            _write_atomic(path, "".join(json_line(r) for r in keep))
            records[:] = keep

    async def run(self, problems: Sequence[Problem]) -> dict[str, Any]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / TRACES).mkdir(exist_ok=True)
        self._check_same_run()
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
        semaphore = asyncio.Semaphore(self.concurrency)

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

        async def one(problem: Problem) -> None:
            async with semaphore:
                record = await self.solve_and_grade(problem)
            line = self._line(problem, record)
            async with self._lock:
                self._append(results_path, line)
                records.append(record)
                count(record)
                bar.update(1)

        for record in records:
            if record["id"] in ids:
                count(record)
        try:
            async with asyncio.TaskGroup() as group:
                for problem in pending:
                    group.create_task(one(problem))
        except* Exception as failures:
            first = failures.exceptions[0]
            raise RunInterrupted(
                f"{describe_error(first)}\n{len(records)} finished problems are saved in "
                f"{results_path}; rerun the same command to resume"
            ) from first
        finally:
            bar.close()
        summary = summarize([r for r in records if r["id"] in ids], self.config)
        summary["elapsed_s"] = round(time.monotonic() - started, 2)  # this invocation only
        _write_atomic(self.out_dir / SUMMARY, json.dumps(summary, indent=2, default=str))
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
        ctx: Context | None = None
        outcome: Outcome | None = None
        record: dict[str, Any] | None = None
        started = time.time()
        stage = "solve"
        try:
            ctx = Context(
                problem,
                self.generator,
                verifier=self.verifier,
                judge=self.grader,
                budget=self.budget,
                seed=self.seed,
                sampler=self.sampler,
            )
            outcome = await self.search.run(problem, ctx)
            ctx.settle(outcome)
            stage = "grade"
            grade = await self.grader.grade(outcome.answer, problem.answer, problem)
            record = self._record(problem, started, outcome, grade.correct, grade.reason)
            stage = "trace"
            self._write_trace(problem, outcome, record)
            return record
        except Exception as exc:
            if is_run_level(exc):
                raise
            return self._failed(problem, exc, stage, started, ctx, outcome, record)

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
            "search": controller_name(self.search),
            "search_params": search_params(self.search),
            "seed": self.seed,
            "grader": grader_info(),
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
        ctx: Context | None = None,
        outcome: Outcome | None = None,
        record: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The record of a problem that failed at `stage`: what it spent, `error`, no grade."""
        ledger = None
        if outcome is None and ctx is not None:
            ctx.tick()
            ctx.settle()
            ledger = ctx.ledger
        elif outcome is None and record is not None:
            ledger = Ledger.from_dict(record.get("ledger") or {})
        failed = self._record(problem, started, outcome, None, None, ledger)
        if record is not None:  # graded before the trace or the line failed: keep the verdict
            failed["grade_reason"] = record.get("grade_reason")
            if isinstance(record.get("prediction"), str):
                failed["prediction"] = record["prediction"]
        failed["error"] = f"problem {problem.id}: {describe_error(exc)}"
        failed["error_type"] = _root_type(exc)
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
        trace: dict[str, Any] = {
            "id": problem.id,
            "question": problem.question,
            "metadata": dict(problem.metadata),
            "gold": problem.answer,
            "prediction": record["prediction"],
            "correct": record["correct"],
        }
        if record.get("error"):
            trace["error"] = record["error"]
            trace["error_stage"] = record["error_stage"]
        if outcome is not None:
            trace |= {
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
                "details": outcome.details,
                "tree": outcome.tree.to_json(),
            }
        trace["ledger"] = record["ledger"]
        path = self.out_dir / TRACES / trace_filename(problem.id)
        # ensure_ascii: a lone surrogate in a question or chain is escaped, never unencodable
        _write_atomic(path, json.dumps(trace, indent=1, default=str))

    @staticmethod
    def _append(path: Path, line: str) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
