"""Benchmark loaders: one entry point, `load_problems`, for local JSONL, the hub, and the
generated sets (`arith`, `countdown`).

Local files come first because evaluation machines are often offline and because a fixed file
makes scores reproducible; the Hugging Face hub is only the fallback, and its `datasets` package
is imported lazily so that this module needs nothing beyond the standard library. Every way in
ends in the same `Problem` shape: string answers, string ids, and metadata without the text.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evals.arith import generate_arith
from evals.countdown import generate_countdown
from reasoning.types import Problem

log = logging.getLogger(__name__)

DATA_DIR_ENV = "REASONING_DATA_DIR"

# The datasets generated in-process (no files, no network), each from its own options block
# (`dataset.arith`, `dataset.countdown`); the generator's keyword arguments are its options.
GENERATORS: dict[str, Callable[..., list[Problem]]] = {
    "arith": generate_arith,
    "countdown": generate_countdown,
}

# Fields that are never copied into metadata: the problem, its answers and its worked solution.
_TEXT_FIELDS = frozenset({"problem", "question", "answer", "answer_raw", "solution"})
_QUESTION_FALLBACKS = ("problem", "question")
_ID_FALLBACKS = ("id",)
_MAX_LISTED = 10
_LEVEL_RE = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a benchmark lives and how its rows map onto `Problem`.

    Hub copies name their fields differently, so the mapping is explicit; when a named field is
    absent the loader still tries the common names (`problem`/`question`, `id`).
    `metadata_fields=None` keeps every field that is not question, answer or solution text.
    `integer_answers` canonicalises contest answers: 27.0, "027" and 27 all become "27".
    """

    name: str
    hub_id: str | None = None
    split: str | None = None
    question_field: str = "problem"
    answer_field: str = "answer"
    id_field: str | None = "id"
    metadata_fields: tuple[str, ...] | None = None
    local_file: str | None = None
    integer_answers: bool = False
    description: str = ""


DATASETS: dict[str, DatasetSpec] = {
    "math500": DatasetSpec(
        name="math500",
        hub_id="HuggingFaceH4/MATH-500",
        split="test",
        id_field="unique_id",
        local_file="math500.jsonl",
        description="500 MATH test problems (PRM800K split); LaTeX answers",
    ),
    "aime24": DatasetSpec(
        name="aime24",
        hub_id="HuggingFaceH4/aime_2024",
        split="train",
        local_file="aime24.jsonl",
        integer_answers=True,
        description="AIME 2024 I and II, 30 problems; integer answers 0-999",
    ),
    "aime25": DatasetSpec(
        name="aime25",
        hub_id="math-ai/aime25",
        split="test",
        local_file="aime25.jsonl",
        integer_answers=True,
        description="AIME 2025 I and II, 30 problems; no copy in shared/data",
    ),
    "amc23": DatasetSpec(
        name="amc23",
        hub_id="math-ai/amc23",
        split="test",
        local_file="amc23.jsonl",
        integer_answers=True,
        description="40 AMC 12 2023 problems rewritten to integer answers",
    ),
    "arith": DatasetSpec(
        name="arith",
        description="built-in seeded arithmetic in 5 levels (evals.arith); no files, no network",
    ),
    "countdown": DatasetSpec(
        name="countdown",
        description="APR's Countdown, seeded (evals.countdown); graded by an expression checker",
    ),
}


# --- row conversion ----------------------------------------------------------------------------


def _answer_to_str(value: Any, *, integer: bool) -> str:
    """Gold answers as strings; integral numbers lose their ".0" (and, for contests, zeros)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"answer must be a string or a number, got {type(value).__name__}")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"answer is not a finite number: {value!r}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    text = value.strip()
    if not text:
        raise ValueError("answer is empty")
    if integer:
        try:
            number = float(text)
        except ValueError:
            return text
        if number.is_integer():
            return str(int(number))
    return text


def _normalise_level(value: Any) -> Any:
    """MATH levels appear as 3, 3.0 or "Level 3"; filters need one form, the int."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _LEVEL_RE.match(value)
        if match:
            return int(match.group(1))
    return value


def _first_present(row: Mapping[str, Any], names: Iterable[str | None]) -> str | None:
    for name in names:
        if name is not None and row.get(name) is not None:
            return name
    return None


def _row_to_problem(
    spec: DatasetSpec, row: Any, *, default_id: str, where: str, source: str
) -> Problem:
    """One `Problem` from one raw row; `where` ("file, line 3") prefixes every error."""
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    q_field = _first_present(row, (spec.question_field, *_QUESTION_FALLBACKS))
    if q_field is None:
        raise ValueError(f"{where}: missing the question field ('{spec.question_field}')")
    question = row[q_field]
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{where}: field '{q_field}' must be a non-empty string")
    if row.get(spec.answer_field) is None:
        raise ValueError(f"{where}: missing the answer field ('{spec.answer_field}')")
    try:
        answer = _answer_to_str(row[spec.answer_field], integer=spec.integer_answers)
    except ValueError as exc:
        raise ValueError(f"{where}: field '{spec.answer_field}': {exc}") from None

    id_field = _first_present(row, (spec.id_field, *_ID_FALLBACKS))
    if id_field is None:
        pid = default_id
    else:
        raw_id = row[id_field]
        # Bare numbers ("7") mean nothing in a results table; qualify them with the dataset.
        pid = f"{spec.name}-{raw_id}" if isinstance(raw_id, int) else str(raw_id).strip()
        if not pid:
            raise ValueError(f"{where}: field '{id_field}' is empty")

    skip = _TEXT_FIELDS | {q_field, spec.answer_field, spec.id_field, *_ID_FALLBACKS}
    keys = row.keys() if spec.metadata_fields is None else spec.metadata_fields
    metadata: dict[str, Any] = {k: row[k] for k in keys if k in row and k not in skip}
    if "level" in metadata:
        metadata["level"] = _normalise_level(metadata["level"])
    metadata.setdefault("source", source)
    metadata["dataset"] = spec.name
    return Problem(id=pid, question=question, answer=answer, metadata=metadata)


def _check_unique(problems: list[Problem], places: list[str], origin: str) -> None:
    first: dict[str, str] = {}
    for problem, place in zip(problems, places, strict=True):
        if problem.id in first:
            raise ValueError(
                f"{origin}: duplicate id {problem.id!r} on {first[problem.id]} and {place}"
            )
        first[problem.id] = place


# --- sources -----------------------------------------------------------------------------------


def load_jsonl(path: str | os.PathLike[str], spec: DatasetSpec | None = None) -> list[Problem]:
    """Problems from a JSONL file; errors name the file and the 1-based line.

    Rows need `problem` (or `question`) and `answer`; a missing `id` becomes `<name>-<line>`.
    Blank lines are skipped.
    """
    spec = spec or DatasetSpec(name="custom")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"dataset file {path} is a directory; pass the .jsonl file inside it")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file not found: {path}")
    problems: list[Problem] = []
    places: list[str] = []
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}, line {lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{where}: not valid UTF-8 ({exc.reason})") from None
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: invalid JSON ({exc.msg}, column {exc.colno})") from None
            problems.append(
                _row_to_problem(
                    spec, row, default_id=f"{spec.name}-{lineno}", where=where, source=path
                )
            )
            places.append(f"line {lineno}")
    if not problems:
        raise ValueError(f"dataset file {path} has no problems (it is empty or all blank)")
    _check_unique(problems, places, path)
    return problems


class DatasetUnavailableError(RuntimeError):
    """Neither a local file nor the hub could provide the dataset."""


def _load_hub(spec: DatasetSpec, looked_in: str | None) -> list[Problem]:
    """The hub copy via `datasets.load_dataset`; any failure says how to point at local files."""
    hint = (
        f"set dataset.path to a JSONL file, or {DATA_DIR_ENV} (or data_dir) to a folder "
        f"containing {spec.local_file}"
        if spec.local_file
        else "set dataset.path to a JSONL file"
    )
    searched = f"{spec.local_file} not found in {looked_in}; " if looked_in else ""
    if spec.hub_id is None:
        raise DatasetUnavailableError(f"{spec.name}: {searched}no hub copy is known; {hint}")
    try:
        import datasets as hf_datasets  # lazy: heavy, and absent on minimal installs
    except ImportError as exc:
        raise DatasetUnavailableError(
            f"{spec.name}: {searched}the hub copy {spec.hub_id} needs the 'datasets' package "
            f"({exc}); {hint}"
        ) from exc
    try:
        rows = hf_datasets.load_dataset(spec.hub_id, split=spec.split)
    except Exception as exc:  # network, auth and cache errors all end the same way
        raise DatasetUnavailableError(
            f"{spec.name}: {searched}could not load {spec.hub_id} (split {spec.split}) from the "
            f"hub ({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    origin = f"{spec.hub_id}[{spec.split}]"
    problems: list[Problem] = []
    places: list[str] = []
    for i, row in enumerate(rows, start=1):
        problems.append(
            _row_to_problem(
                spec,
                dict(row),
                default_id=f"{spec.name}-{i}",
                where=f"{origin}, row {i}",
                source=spec.hub_id,
            )
        )
        places.append(f"row {i}")
    if not problems:
        raise DatasetUnavailableError(f"{spec.name}: {origin} is empty; {hint}")
    _check_unique(problems, places, origin)
    return problems


def _generate(name: str, options: Mapping[str, Any] | None) -> list[Problem]:
    """A generated dataset from its options block; an unknown option is named, not ignored."""
    generate = GENERATORS[name]
    valid = sorted(inspect.signature(generate).parameters)
    kwargs = dict(options or {})
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"{name}: unknown options {unknown}; valid: {valid}")
    return generate(**kwargs)


def _resolve(
    spec: DatasetSpec,
    path: str | None,
    data_dir: str | None,
    options: Mapping[str, Any] | None,
) -> list[Problem]:
    if path is not None:
        return load_jsonl(os.path.expanduser(path), spec)
    if spec.name in GENERATORS:
        return _generate(spec.name, options)
    folder = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if folder is not None and spec.local_file is not None:
        folder = os.path.expanduser(folder)
        candidate = os.path.join(folder, spec.local_file)
        if os.path.isfile(candidate):
            return load_jsonl(candidate, spec)
        log.warning("%s: %s not found; trying the hub (%s)", spec.name, candidate, spec.hub_id)
    return _load_hub(spec, folder)


# --- filters -----------------------------------------------------------------------------------


def _listing(items: list[Any]) -> str:
    shown = ", ".join(repr(x) for x in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _filter(
    name: str,
    problems: list[Problem],
    subjects: list[str] | None,
    levels: list[int] | None,
    ids: list[str] | None,
    limit: int | None,
) -> list[Problem]:
    """Subjects, then levels, then ids, then the first `limit`; dataset order is kept.

    An empty list means no filter, as `None` does: configs often write `[]` for "unset".
    """
    if subjects:
        subjects = [str(s) for s in subjects]
        have = sorted({str(p.metadata["subject"]) for p in problems if "subject" in p.metadata})
        if not have:
            raise ValueError(f"{name}: problems have no 'subject' metadata to filter on")
        wanted = {s.casefold() for s in subjects}
        unknown = sorted(s for s in subjects if s.casefold() not in {h.casefold() for h in have})
        if unknown:
            raise ValueError(f"{name}: unknown subjects {unknown}; available: {have}")
        problems = [p for p in problems if str(p.metadata.get("subject", "")).casefold() in wanted]
    if levels:
        levels = [_normalise_level(lv) for lv in levels]
        have_levels = sorted({p.metadata["level"] for p in problems if "level" in p.metadata})
        if not have_levels:
            raise ValueError(f"{name}: problems have no 'level' metadata to filter on")
        unknown_levels = sorted(set(levels) - set(have_levels))
        if unknown_levels:
            raise ValueError(
                f"{name}: no problems with levels {unknown_levels}; available: {have_levels}"
            )
        wanted_levels = set(levels)
        problems = [p for p in problems if p.metadata.get("level") in wanted_levels]
    if ids:
        ids = [str(i) for i in ids]
        present = {p.id for p in problems}
        missing = [i for i in dict.fromkeys(ids) if i not in present]
        if missing:
            scope = " after the subject/level filters" if subjects or levels else ""
            raise ValueError(f"{name}: {len(missing)} id(s) not found{scope}: {_listing(missing)}")
        wanted_ids = set(ids)
        problems = [p for p in problems if p.id in wanted_ids]
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"{name}: limit must be a non-negative integer, got {limit!r}")
        problems = problems[:limit]
    return problems


def load_problems(
    name: str,
    *,
    path: str | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    ids: list[str] | None = None,
    subjects: list[str] | None = None,
    levels: list[int] | None = None,
    arith: dict[str, Any] | None = None,
    countdown: dict[str, Any] | None = None,
) -> list[Problem]:
    """The problems of benchmark `name`, filtered.

    Source: `path` (a JSONL file) if given; else `<data_dir or $REASONING_DATA_DIR>/<local
    file>` if it exists; else the hub. The generated sets ignore `data_dir`: `arith` is made
    from the `arith` options (n, levels, seed), `countdown` from the `countdown` options (n,
    numbers, seed, max_number, min_target, max_target). Filters run in the order subjects,
    levels, ids, limit, and never reorder: the result is in dataset order.
    """
    spec = DATASETS.get(name)
    if spec is None:
        if path is None:
            raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
        spec = DatasetSpec(name=name)  # a user's own file: the name only labels ids
    options = {"arith": arith, "countdown": countdown}.get(name)
    problems = _resolve(spec, path, data_dir, options)
    return _filter(name, problems, subjects, levels, ids, limit)
