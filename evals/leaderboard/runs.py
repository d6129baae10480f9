"""Reading run directories: records, config and what is wrong with them, never fatally.

A leaderboard is built from many runs, some of them killed, resumed or damaged. Every fault is
collected as a located `RunError` (file and line) and the other runs are read as usual; a run
with fewer results than its dataset holds is kept and flagged `incomplete`, never hidden.
Nothing here writes to a run directory (unlike `evals.rundir.read_results`, which cuts a torn
last line so that a resume can append). The format itself (file names, run.json, the selection)
is `evals.rundir`'s.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.rundir import (
    RESULTS,
    RUN_CONFIG,
    SUMMARY,
    TRACES,
    done_of,
    flatten,
    run_fingerprint,
)

HYDRA_CONFIG = Path(".hydra") / "config.yaml"
# The run seed and the keys that only repeat it: runs differing in these are seeds of one row.
SEED_KEYS = ("seed", "*backend.seed")
# What every record of one run must agree on; a mismatch means two configs share one file.
RECORD_IDENTITY = ("search", "search_params", "seed", "grader.name", "grader.version")
_SKIP_DIRS = {TRACES, ".hydra", "__pycache__", ".git"}


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

    def _recorded(self, key: str) -> Any:
        """What the first record says about `key` (records carry model, dataset, verifier and
        budget since run.json records the selection; older ones do not)."""
        return self.records[0].get(key) if self.records else None

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
        if self.records and self.records[0].get("search"):
            return str(self.records[0]["search"])
        return str(self.config.get("search.name") or self.config.get("search._target_") or "?")

    @property
    def search_params(self) -> dict[str, Any]:
        if self.records and isinstance(self.records[0].get("search_params"), dict):
            return dict(self.records[0]["search_params"])
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
        if self.records and "seed" in self.records[0]:
            return self.records[0]["seed"]
        return self.config.get("seed")

    @property
    def grader(self) -> str:
        info = (self.records[0].get("grader") if self.records else None) or (
            (self.summary or {}).get("grader") or {}
        )
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


def _read_records(path: Path, errors: list[RunError]) -> list[dict[str, Any]]:
    """The readable lines; a torn last line or a corrupt one is a located error, skipped."""
    if not path.exists():
        errors.append(RunError(path, "missing: no problem of this run finished"))
        return []
    records: list[dict[str, Any]] = []
    data = path.read_bytes()
    lines = data.split(b"\n")
    last = len(lines) if lines[-1].strip() else len(lines) - 1
    for lineno, raw in enumerate(lines[:last], 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            torn = lineno == last and not data.endswith(b"\n")
            what = "torn last line (the run was killed mid-write)" if torn else "not JSON"
            errors.append(RunError(path, f"{what}: {exc}; line skipped", lineno))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            errors.append(RunError(path, "not a result record (no string `id`)", lineno))
            continue
        record["_line"] = lineno
        records.append(record)
    return records


def _identity(record: Mapping[str, Any]) -> dict[str, Any]:
    flat = flatten({k: record.get(k) for k in ("search", "search_params", "seed", "grader")})
    return {k: v for k, v in flat.items() if k in RECORD_IDENTITY or k.startswith("search_params")}


def _check_one_config(path: Path, records: Sequence[dict[str, Any]]) -> list[RunError]:
    """A located error per record whose search, params, seed or grader differ from line 1's."""
    if not records:
        return []
    first = _identity(records[0])
    errors = []
    for record in records[1:]:
        ident = _identity(record)
        if ident != first:
            diff = "; ".join(
                f"{k}: {first.get(k)!r} -> {ident.get(k)!r}"
                for k in sorted(set(first) | set(ident))
                if first.get(k) != ident.get(k)
            )
            where = f"line {records[0]['_line']}"
            errors.append(
                RunError(path, f"a different config than {where} ({diff})", record["_line"])
            )
    return errors


def _read_json(path: Path, errors: list[RunError]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        errors.append(RunError(path, f"unreadable ({exc})"))
        return None
    if not isinstance(data, dict):
        errors.append(RunError(path, "not a JSON object"))
        return None
    return data


def _hydra_config(run_dir: Path) -> dict[str, Any]:
    """The config Hydra wrote when the run started: what a killed run (no summary) has left."""
    path = run_dir / HYDRA_CONFIG
    if not path.exists():
        return {}
    try:
        from omegaconf import OmegaConf

        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception:  # an unresolvable interpolation: the keys that matter are in run.json
        return {}
    return data if isinstance(data, dict) else {}


def read_run(run_dir: str | os.PathLike[str]) -> Run:
    """One run directory; whatever is wrong with it is in `Run.errors`, located."""
    run_dir = Path(run_dir)
    errors: list[RunError] = []
    records = _read_records(run_dir / RESULTS, errors)
    summary = _read_json(run_dir / SUMMARY, errors)
    if summary is None and not (run_dir / SUMMARY).exists():
        errors.append(
            RunError(run_dir / SUMMARY, "missing: the run did not finish; flagged incomplete")
        )
    run_json = _read_json(run_dir / RUN_CONFIG, errors)
    base = (summary or {}).get("config") or _hydra_config(run_dir)
    config = run_fingerprint(base) if isinstance(base, dict) else {}
    config |= {k: v for k, v in flatten(base).items() if k in ("model.name",)}
    if run_json is None and not (run_dir / RUN_CONFIG).exists():
        errors.append(
            RunError(run_dir / RUN_CONFIG, "missing: the config is read from the summary alone")
        )
    if run_json is not None:
        fingerprint = run_json.get("fingerprint")
        if isinstance(fingerprint, dict):
            config |= fingerprint
        else:
            errors.append(RunError(run_dir / RUN_CONFIG, "no settings fingerprint"))
    mixed = _check_one_config(run_dir / RESULTS, records)
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


def read_runs(
    paths: Iterable[str | os.PathLike[str]],
) -> tuple[list[Run], list[RunError]]:
    """Every run under `paths` and every located error; a bad run never stops the others."""
    dirs, errors = find_run_dirs(paths)
    runs = []
    for d in dirs:
        try:
            run = read_run(d)
        except OSError as exc:  # unreadable directory or file: this run only
            errors.append(RunError(d, f"unreadable ({exc})"))
            continue
        runs.append(run)
        errors.extend(run.errors)
    return runs, errors
