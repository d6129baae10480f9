"""Reading run directories: records, config and what is wrong with them, never fatally.

A leaderboard is built from many runs, some of them killed, resumed or damaged. Every fault is
collected as a located `RunError` (file and line) and the other runs are read as usual; a run
with fewer results than its dataset holds is kept and flagged `incomplete`, never hidden.
Nothing here writes to a run directory (unlike `evals.rundir.read_results`, which cuts a torn
last line so that a resume can append). The format itself (file names, run.json, the selection)
is `evals.rundir`'s.

Run directories are shared between people and copied around, so they are read as untrusted
input: regular files only (a FIFO or a link to a device is a located error, never a hang), each
of a bounded size (`evals.rundir.MAX_JSON_BYTES`, `MAX_LINE_BYTES` per results line), the
results streamed line by line, and of each record only what the leaderboard uses is kept
(`KEPT`; the first record whole, for what produced the run), so memory follows the number of
problems rather than the size of the file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from evals.rundir import (
    MAX_LINE_BYTES,
    RESULTS,
    RUN_CONFIG,
    SUMMARY,
    TRACES,
    done_of,
    flatten,
    iter_lines,
    open_regular,
    parse_json,
    read_bounded,
    read_json,
    run_fingerprint,
)

HYDRA_CONFIG = Path(".hydra") / "config.yaml"
# The run seed and the keys that only repeat it: runs differing in these are seeds of one row.
SEED_KEYS = ("seed", "*backend.seed")
# What every record of one run must agree on; a mismatch means two configs share one file.
RECORD_IDENTITY = ("search", "search_params", "seed", "grader.name", "grader.version")
_SKIP_DIRS = {TRACES, ".hydra", "__pycache__", ".git"}
# What the leaderboard reads of each record (the table, the matrix, the comparison, the audit);
# the rest of a record is dropped as it is read. The first record is kept whole (`Run.head`).
KEPT = ("id", "answer", "prediction", "correct", "grade_reason", "error", "problem_hash")
# The ledger's counters the table averages; only numbers are kept (`Costs`, same order).
LEDGER_KEPT = (
    "generated_tokens",
    "verifier_calls",
    "critical_path_tokens",
    "wall_s",
    "prompt_tokens",
    "cached_prompt_tokens",
)
MAX_HYDRA_CONFIG_BYTES = 4 * 2**20


@dataclass(frozen=True)
class RunError:
    """Something wrong in a run directory, located to its file (and line, when there is one)."""

    path: Path
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class Run:
    """One run directory as the leaderboard sees it."""

    path: Path
    records: list[dict[str, Any]]
    config: dict[str, Any]  # flat {dotted key: value}: the summary's config, run.json over it
    summary: dict[str, Any] | None
    expected: int | None  # problems the run should hold (its selection), None: unknown
    errors: list[RunError] = field(default_factory=list)
    usable: bool = True  # False: its records cannot be attributed to one config (left out)
    selection: dict[str, Any] | None = None  # run.json's; None: written before it was recorded
    head: dict[str, Any] | None = None  # the first readable record, whole (`records` are slim)

    @property
    def done(self) -> tuple[int, int | None]:
        """(k, N): k of the N selected problems have a record. N is run.json's selection, else
        the summary's count for a run written before the selection was recorded (None when
        neither says: killed before its summary, and no selection)."""
        progress = done_of(self.selection, self.records)
        if progress is not None:
            return progress
        if self.expected is None:
            return len(self.records), None
        return min(len(self.records), self.expected), self.expected

    @property
    def incomplete(self) -> bool:
        """No summary (killed before the end) or fewer records than its selection holds."""
        k, n = self.done
        return self.summary is None or (n is not None and k < n)

    @property
    def first(self) -> dict[str, Any] | None:
        """The first readable record, whole (what produced the run); else the first kept one."""
        if self.head is not None:
            return self.head
        return self.records[0] if self.records else None

    def _recorded(self, key: str) -> Any:
        """What the first record says about `key` (records carry model, dataset, verifier and
        budget since run.json records the selection; older ones do not)."""
        return self.first.get(key) if self.first else None

    @property
    def dataset(self) -> str:
        return str(
            self.config.get("dataset.name")
            or (self.selection or {}).get("dataset")
            or self._recorded("dataset")
            or "?"
        )

    @property
    def model(self) -> str:
        for key in ("model.name", "model.path", "generator.name", "backend.name"):
            if self.config.get(key):
                return str(self.config[key])
        return str(self._recorded("model") or "?")

    @property
    def search(self) -> str:
        if self._recorded("search"):
            return str(self._recorded("search"))
        return str(self.config.get("search.name") or self.config.get("search._target_") or "?")

    @property
    def search_params(self) -> dict[str, Any]:
        if isinstance(self._recorded("search_params"), dict):
            return dict(self._recorded("search_params"))
        return {
            k.removeprefix("search."): v
            for k, v in self.config.items()
            if k.startswith("search.") and k not in ("search.name", "search._target_")
        }

    @property
    def verifier(self) -> str:
        return str(self.config.get("verifier.name") or self._recorded("verifier") or "none")

    @property
    def budget(self) -> str:
        """The budget's limits (`generated_tokens=2000`), or `unlimited`."""
        budget = {k: v for k, v in self.config.items() if k.startswith("budget.")}
        if not budget and isinstance(self._recorded("budget"), dict):
            budget = flatten(self._recorded("budget"), "budget")
        limits = [
            f"{k.removeprefix('budget.')}={v}" for k, v in sorted(budget.items()) if v is not None
        ]
        return ", ".join(limits) or "unlimited"

    @property
    def seed(self) -> Any:
        if self.first and "seed" in self.first:
            return self.first["seed"]
        return self.config.get("seed")

    @property
    def grader(self) -> str:
        info = self._recorded("grader") or ((self.summary or {}).get("grader") or {})
        if not isinstance(info, dict) or not info.get("name"):
            return "?"
        return f"{info['name']} v{info.get('version', '?')}"

    @property
    def config_hash(self) -> str:
        """A hash of everything that defines the run's results except its seed (see SEED_KEYS):
        the same for the seeds of one configuration."""
        kept = {k: v for k, v in self.config.items() if not _is_seed(k)}
        kept["grader"] = self.grader  # scores of different graders are never one row
        kept.setdefault("search.name", self.search)
        kept.setdefault("search.params", self.search_params)
        text = json.dumps(kept, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _is_seed(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in SEED_KEYS)


def find_run_dirs(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[RunError]]:
    """Every run directory (one holding results.jsonl, run.json or summary.json) under `paths`,
    searched recursively (Hydra multirun sweeps nest them), each once, in path order."""
    found: dict[Path, None] = {}
    errors: list[RunError] = []
    markers = {RESULTS, RUN_CONFIG, SUMMARY}
    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            errors.append(RunError(root, "no such directory"))
            continue
        before = len(found)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            if markers & set(filenames):
                found.setdefault(Path(dirpath), None)
        if len(found) == before:
            errors.append(RunError(root, f"no run directory (nothing holds {RESULTS}) under it"))
    return sorted(found), errors


class Costs(NamedTuple):
    """The ledger's counters a record keeps (LEDGER_KEPT; None: absent or not a number): a
    tuple, a fraction of a dict's memory over many records."""

    generated_tokens: float | None = None
    verifier_calls: float | None = None
    critical_path_tokens: float | None = None
    wall_s: float | None = None
    prompt_tokens: float | None = None
    cached_prompt_tokens: float | None = None


_NO_COSTS = Costs()


def _slim(
    record: Mapping[str, Any], path: Path, lineno: int, errors: list[RunError]
) -> dict[str, Any]:
    """What the leaderboard keeps of a record: KEPT (None values dropped; short texts such as
    answers interned, they repeat) and the ledger's counters as `costs` (`Costs`)."""
    slim = {k: _scalar(k, record[k]) for k in KEPT if record.get(k) is not None}
    slim = {
        k: sys.intern(v) if isinstance(v, str) and len(v) <= 64 else v
        for k, v in slim.items()
        if v is not None
    }
    ledger = record.get("ledger")
    if isinstance(ledger, Mapping):
        numbers = [ledger.get(k) for k in LEDGER_KEPT]
        costs = Costs(
            *(
                v if isinstance(v, int | float) and not isinstance(v, bool) else None
                for v in numbers
            )
        )
        slim["costs"] = _NO_COSTS if costs == _NO_COSTS else costs
    else:
        shown = "missing" if ledger is None else f"a {type(ledger).__name__}, not an object"
        if "ledger" in record or ledger is not None:
            errors.append(
                RunError(path, f"problem {record['id']!r}: ledger {shown}; no costs", lineno)
            )
        slim["costs"] = _NO_COSTS
    slim["_line"] = lineno
    return slim


def _scalar(key: str, value: Any) -> Any:
    """A kept field as a string, number or bool: what the tables and pages handle. A list or an
    object where one of those belongs keeps only its truth (`correct`) or that it is there
    (`error`); elsewhere it is dropped."""
    if isinstance(value, str | int | float | bool):
        return value
    if key == "correct":
        return bool(value)
    if key == "error":
        return f"<{type(value).__name__}>"
    return None


def _read_records(
    path: Path, errors: list[RunError]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[RunError]]:
    """The readable lines, slim (`_slim`), streamed; a torn last line or a corrupt one is a
    located error, skipped. Also the first record whole, and a located error per record of
    another config than the first's (`_mixed`)."""
    if not path.exists() and not path.is_symlink():
        errors.append(RunError(path, "missing: no problem of this run finished"))
        return [], None, []
    records: list[dict[str, Any]] = []
    head: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    mixed: list[RunError] = []
    try:
        with open_regular(path) as f:
            for lineno, raw, _ in iter_lines(f, MAX_LINE_BYTES):
                if raw is None:
                    errors.append(
                        RunError(
                            path,
                            f"line longer than {MAX_LINE_BYTES // 2**20} MiB; line skipped",
                            lineno,
                        )
                    )
                    continue
                if not raw.strip():
                    continue
                try:
                    record = parse_json(raw)
                    ident = _identity(record) if isinstance(record, dict) else {}
                except RecursionError:
                    errors.append(RunError(path, "nested too deeply to read; line skipped", lineno))
                    continue
                except ValueError as exc:  # UnicodeDecodeError too
                    torn = not raw.endswith(b"\n")  # only the last line can lack one
                    what = "torn last line (the run was killed mid-write)" if torn else "not JSON"
                    errors.append(RunError(path, f"{what}: {exc}; line skipped", lineno))
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                    errors.append(RunError(path, "not a result record (no string `id`)", lineno))
                    continue
                if head is None:
                    head, first = dict(record, _line=lineno), ident
                elif ident != first:
                    mixed.append(_mixed(path, first or {}, ident, head["_line"], lineno))
                records.append(_slim(record, path, lineno, errors))
    except (OSError, ValueError) as exc:  # not a regular file, unreadable
        errors.append(RunError(path, f"unreadable ({exc})"))
    return records, head, mixed


def _identity(record: Mapping[str, Any]) -> dict[str, Any]:
    flat = flatten({k: record.get(k) for k in ("search", "search_params", "seed", "grader")})
    return {k: v for k, v in flat.items() if k in RECORD_IDENTITY or k.startswith("search_params")}


def _mixed(
    path: Path, first: Mapping[str, Any], ident: Mapping[str, Any], at: int, lineno: int
) -> RunError:
    """The located error of a record whose search, params, seed or grader differ from the
    first record's (at line `at`)."""
    diff = "; ".join(
        f"{k}: {first.get(k)!r} -> {ident.get(k)!r}"
        for k in sorted(set(first) | set(ident))
        if first.get(k) != ident.get(k)
    )
    return RunError(path, f"a different config than line {at} ({diff})", lineno)


def _read_json(path: Path, errors: list[RunError]) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # bad JSON, too deep, too large, not a regular file
        errors.append(RunError(path, f"unreadable ({exc})"))
        return None
    if not isinstance(data, dict):
        errors.append(RunError(path, "not a JSON object"))
        return None
    return data


def _hydra_config(run_dir: Path, errors: list[RunError]) -> dict[str, Any]:
    """The config Hydra wrote when the run started: what a killed run (no summary) has left."""
    path = run_dir / HYDRA_CONFIG
    if not path.exists():
        return {}
    try:
        import yaml
        from omegaconf import OmegaConf

        text = read_bounded(path, MAX_HYDRA_CONFIG_BYTES)
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(io.BytesIO(text))):
            raise ValueError("YAML aliases, which Hydra never writes")  # a "billion laughs"
        data = OmegaConf.to_container(OmegaConf.load(io.BytesIO(text)), resolve=True)
    except (OSError, ValueError) as exc:  # not a regular file, too large: say so
        errors.append(RunError(path, f"unreadable ({exc})"))
        return {}
    except Exception:  # an unresolvable interpolation: the keys that matter are in run.json
        return {}
    return data if isinstance(data, dict) else {}


def read_run(run_dir: str | os.PathLike[str]) -> Run:
    """One run directory; whatever is wrong with it is in `Run.errors`, located."""
    run_dir = Path(run_dir)
    errors: list[RunError] = []
    records, head, mixed = _read_records(run_dir / RESULTS, errors)
    summary = _read_json(run_dir / SUMMARY, errors)
    if summary is None and not _present(run_dir / SUMMARY):
        errors.append(
            RunError(run_dir / SUMMARY, "missing: the run did not finish; flagged incomplete")
        )
    run_json = _read_json(run_dir / RUN_CONFIG, errors)
    base = (summary or {}).get("config") or _hydra_config(run_dir, errors)
    config = run_fingerprint(base) if isinstance(base, dict) else {}
    config |= {k: v for k, v in flatten(base).items() if k in ("model.name",)}
    if run_json is None and not _present(run_dir / RUN_CONFIG):
        errors.append(
            RunError(run_dir / RUN_CONFIG, "missing: the config is read from the summary alone")
        )
    if run_json is not None:
        fingerprint = run_json.get("fingerprint")
        if isinstance(fingerprint, dict):
            config |= fingerprint
        else:
            errors.append(RunError(run_dir / RUN_CONFIG, "no settings fingerprint"))
    if mixed:
        mixed.append(
            RunError(run_dir / RESULTS, "records of different configs; run left out of the table")
        )
    seen: dict[str, int] = {}
    for r in records:
        if r["id"] in seen:
            errors.append(
                RunError(
                    run_dir / RESULTS,
                    f"problem {r['id']!r} again (first at line {seen[r['id']]}); last one kept",
                    r["_line"],
                )
            )
        seen[r["id"]] = r["_line"]
    records = list({r["id"]: r for r in records}.values())
    run_selection = (run_json or {}).get("selection")
    run_selection = run_selection if isinstance(run_selection, dict) else None
    expected = (summary or {}).get("selected", (summary or {}).get("problems"))
    run = Run(
        path=run_dir,
        records=records,
        config=config,
        summary=summary,
        expected=expected if isinstance(expected, int) else None,
        errors=errors + mixed,
        usable=not mixed,
        selection=run_selection,
        head=head,
    )
    done, selected = run.done
    if selected is not None:
        run.expected = selected
    if summary is not None and run.incomplete:
        run.errors.append(
            RunError(
                run_dir / RESULTS,
                f"{done} of {selected} problems recorded; flagged incomplete",
            )
        )
    return run


def _present(path: Path) -> bool:
    """Something is there under that name (a dangling link too): not "missing"."""
    return path.exists() or path.is_symlink()


def read_runs(
    paths: Iterable[str | os.PathLike[str]],
) -> tuple[list[Run], list[RunError]]:
    """Every run under `paths` and every located error; a bad run never stops the others."""
    dirs, errors = find_run_dirs(paths)
    runs = []
    for d in dirs:
        try:
            run = read_run(d)
        except (OSError, ValueError, RecursionError) as exc:  # unreadable: this run only
            errors.append(RunError(d, f"unreadable ({exc})"))
            continue
        runs.append(run)
        errors.extend(run.errors)
    return runs, errors
