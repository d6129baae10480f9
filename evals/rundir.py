"""The run directory's format, in one place: file names, records, traces, run.json, identity.

The runner writes a run directory and the leaderboard and the trace viewer read it; all three
take the format from here, so a file name or a field changes in one module. What the format
is (docs/data-model.md, "The run directory"):

- `results.jsonl`: one record a problem, appended and fsynced as it finishes (`json_line`,
  `append_line`, `read_results`);
- `summary.json`: the run's totals, written at the end of each invocation;
- `traces/<trace_filename(id)>`: each problem's chains, details and search tree (`build_trace`);
- `run.json`: `{"format": 2, "fingerprint": {...}, "selection": {...}}`, the settings a resume
  must match (`run_fingerprint`) and the problems this invocation selected (`selection`), so
  a killed or partial run says "k of N" (`done_of`). Format 2 files written before the
  selection was recorded have no `selection` and still load and resume;
- `cache.sqlite` (the record/replay cache) and `engine.log` (vLLM's output).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from reasoning.cache import CACHE_FILE
from reasoning.outcome import Outcome
from reasoning.types import Problem

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
RUN_CONFIG = "run.json"
TRACES = "traces"
CACHE = CACHE_FILE  # cache.sqlite: the core's record/replay store names its own file
ENGINE_LOG = "engine.log"
# run.json's format: 2 = {"format", "fingerprint"} (+ "selection" since it was added; optional
# on read, so older format-2 directories resume); 1 (no "format") = before the fingerprint.
RUN_FORMAT = 2

# The keys that only select which problems run (each problem's record is the same whichever
# others run with it): not in the fingerprint, recorded in run.json's `selection` instead.
SELECTION_KEYS = (
    "dataset.limit",
    "dataset.ids",
    "dataset.subjects",
    "dataset.levels",
    "dataset.arith.n",  # arith-L3-0004 is the same whatever n or levels (evals/arith.py)
    "dataset.arith.levels",
)

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
    *SELECTION_KEYS,
    # search=auto's pick as the board showed it (row number, figures): a rebuilt board may
    # renumber or re-estimate them; the board and the picked configuration stay in
    "advised.row",
    "advised.accuracy",
    "advised.ci_low",
    "advised.ci_high",
    "advised.tokens_per_problem",
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
    "*backend.first_token_timeout_s",
    "*backend.stall_timeout_s",
    "*backend.deadline_s",
    "*backend.backoff_s",
)

SLUG_CHARS = 120  # of a trace file name's readable part
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_WHERE = "use another hydra.run.dir (or delete the directory)"


# What a reader takes from a run directory, which may be shared, copied or damaged: regular
# files only (a FIFO would block, a link to /dev/zero never ends), each of a bounded size.
MAX_JSON_BYTES = 256 * 2**20  # run.json, summary.json, one trace
MAX_LINE_BYTES = 16 * 2**20  # one line of results.jsonl (a record is a few KiB)
_READ_CHUNK = 2**20


class RunDirError(ValueError):
    """A run directory that cannot be resumed or read as it is (other settings, a corrupt
    results line, a file that is not a regular file): the message says which file and what to
    do. `reason` prints it alone, without a traceback."""


class UnsafeFileError(RunDirError):
    """A run-directory file that is not a regular file, or larger than a reader takes."""


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str]) -> Iterator[Any]:
    """`path` opened for binary reading, if it is a regular file (a link to one is fine).

    A FIFO, a device (a link to /dev/zero), a socket or a directory is refused with
    `UnsafeFileError` naming the path, without blocking: the file is opened non-blocking and
    checked on its descriptor, so it cannot be swapped between the check and the read.
    FileNotFoundError passes through.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise UnsafeFileError(f"{path}: a directory, not a file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFileError(f"{path}: not a regular file ({_kind(mode)}); not read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_JSON_BYTES) -> bytes:
    """A regular file's bytes (`open_regular`), refused (`UnsafeFileError`) past `limit`."""
    chunks: list[bytes] = []
    size = 0
    with open_regular(path) as f:
        # in chunks: read(limit + 1) would allocate the whole limit up front
        while size <= limit and (chunk := f.read(min(_READ_CHUNK, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        raise UnsafeFileError(f"{path}: larger than {limit // 2**20} MiB; not read")
    return data


# a \uD800-\uDFFF escape: JSON allows it alone, but such a string cannot be written as UTF-8
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json(data: bytes | str) -> Any:
    """`json.loads` for untrusted text: ValueError for an unpaired surrogate (JSON lets one
    through as an escape; every later write, to pandas, Arrow or a file, would then fail)."""
    value = json.loads(data)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise ValueError(f"an unpaired surrogate escape ({bad!a})") from None
    return value


def read_json(path: str | os.PathLike[str], limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file read with `read_bounded`; ValueError (located) for bad JSON, and for nesting
    too deep to parse (a RecursionError otherwise)."""
    data = read_bounded(path, limit)
    try:
        return parse_json(data)
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to read") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 ({exc})") from None


def iter_lines(f: Any, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, bytes, bytes consumed) for each line of a binary file, read as a stream.

    A line longer than `limit` is skipped without being held in memory: it comes as None.
    """
    lineno = 0
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield lineno, raw, len(raw)
            continue
        size = len(raw)
        while not raw.endswith(b"\n"):
            raw = f.readline(_READ_CHUNK)
            if not raw:
                break
            size += len(raw)
        yield lineno, None, size


# --- names and records ----------------------------------------------------------------------


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


def trace_path(run_dir: str | os.PathLike[str], problem_id: str) -> Path:
    """Where a problem's trace lives in a run directory."""
    return Path(run_dir) / TRACES / trace_filename(problem_id)


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


def read_results(path: Path) -> list[dict[str, Any]]:
    """Finished records; a torn last line (killed mid-write) is dropped and cut from the file."""
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    good_bytes = 0
    with open_regular(path) as f:
        for lineno, raw, _ in iter_lines(f):
            if raw is None:
                raise RunDirError(
                    f"{path}:{lineno}: a result line longer than {MAX_LINE_BYTES // 2**20} MiB"
                )
            try:
                records.append(parse_json(raw))
                good_bytes += len(raw)
            except (ValueError, RecursionError) as exc:
                what = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                if any(line is None or line.strip() for _, line, _ in iter_lines(f)):
                    raise RunDirError(f"{path}:{lineno}: corrupt result line ({what})") from None
                break
        size = os.fstat(f.fileno()).st_size
    if good_bytes < size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return records


def write_atomic(path: Path, text: str) -> None:
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


def append_line(path: Path, line: str) -> None:
    """Append one results line, on disk (fsynced) before the call returns."""
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def build_trace(
    problem: Problem, outcome: Outcome | None, record: Mapping[str, Any]
) -> dict[str, Any]:
    """A problem's trace file: its exact id, question, chains, details, tree and ledger."""
    out: dict[str, Any] = {
        "id": problem.id,
        "question": problem.question,
        "metadata": dict(problem.metadata),
        "gold": problem.answer,
        "prediction": record["prediction"],
        "correct": record["correct"],
    }
    if record.get("error"):
        out["error"] = record["error"]
        out["error_stage"] = record["error_stage"]
    if outcome is not None:
        out |= {
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
    out["ledger"] = record["ledger"]
    return out


def write_trace(run_dir: str | os.PathLike[str], trace_data: Mapping[str, Any]) -> None:
    """Write a trace (`build_trace`) under its problem's file name, whole or not at all."""
    # ensure_ascii: a lone surrogate in a question or chain is escaped, never unencodable
    # compact: an indent sends json through its pure-Python encoder, several times slower on
    # a search's tree (the viewer and `python -m json.tool` print it indented)
    text = json.dumps(trace_data, default=str, separators=(",", ":"))
    write_atomic(trace_path(run_dir, str(trace_data["id"])), text)


# --- run identity ---------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted key: leaf}; an empty mapping is a leaf."""
    out: dict[str, Any] = {}
    _flatten(value, prefix, out)
    return {k: v for k, v in out.items() if k}


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
    - which problems run (SELECTION_KEYS): `dataset.limit`, `dataset.ids`,
      `dataset.subjects`, `dataset.levels`, `dataset.arith.n` and `dataset.arith.levels` only
      select problems whose content does not depend on them (arith problem ids are stable
      across n and levels), and each record is checked against its problem's question and gold
      answer (`problem_hash`) on resume, so a selection can change between reruns: the summary
      then covers the problems of the current selection, which run.json records;
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


# --- the problem selection ------------------------------------------------------------------


def selection(problems: Sequence[Problem], config: Mapping[str, Any]) -> dict[str, Any]:
    """Which problems an invocation runs: the dataset's name, the selection keys as the config
    has them (SELECTION_KEYS that are set), how many problems, and their ids in order."""
    flat = flatten(config)
    return {
        "dataset": flat.get("dataset.name"),
        "keys": {k: flat[k] for k in SELECTION_KEYS if flat.get(k) is not None},
        "problems": len(problems),
        "ids": [p.id for p in problems],
    }


def done_of(
    run_selection: Mapping[str, Any] | None, records: Iterable[Mapping[str, Any]]
) -> tuple[int, int] | None:
    """(k, N): how many of the selected problems have a record, of how many selected; None
    when run.json holds no (readable) selection (written before it was recorded)."""
    if not isinstance(run_selection, Mapping):
        return None
    ids = run_selection.get("ids")
    total = run_selection.get("problems")
    if isinstance(ids, list):
        wanted = {str(i) for i in ids}
        done = len(wanted & {str(r.get("id")) for r in records})
        return done, len(wanted)
    if isinstance(total, int) and not isinstance(total, bool):
        return min(sum(1 for _ in records), total), total
    return None


# --- run.json -------------------------------------------------------------------------------


def open_run_file(
    run_dir: str | os.PathLike[str],
    fingerprint: Mapping[str, Any],
    run_selection: Mapping[str, Any] | None = None,
) -> None:
    """Check that `run_dir` holds this run (or none) and record this invocation's selection.

    A new directory gets run.json. An existing one must have been written with the same
    fingerprint (else ValueError naming every changed key), and by a toolkit that wrote one
    (results without run.json, or run.json of another format, cannot be checked: refused).
    The selection may change between reruns, so run.json's `selection` is this invocation's.
    A refusal is a `RunDirError` (a ValueError).
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_CONFIG
    if not path.exists():
        results = run_dir / RESULTS
        if results.exists() and _nonempty(results):
            raise RunDirError(
                f"{run_dir} holds results but no {RUN_CONFIG}, so they cannot be "
                f"checked against these settings; {_WHERE}"
            )
        _write_run_file(path, fingerprint, run_selection)
        return
    try:
        previous = read_json(path)
    except ValueError as exc:  # bad JSON, a FIFO, a device, a directory, too large
        raise RunDirError(f"{path} is unreadable ({exc}); {_WHERE}") from exc
    version = previous.get("format") if isinstance(previous, dict) else None
    if version != RUN_FORMAT or not isinstance(previous.get("fingerprint"), dict):
        older = version is None or (isinstance(version, int) and version < RUN_FORMAT)
        raise RunDirError(
            f"{run_dir} was written by {'an older' if older else 'another'} version "
            f"of the toolkit ({RUN_CONFIG} without a settings fingerprint), so resuming "
            f"it cannot be checked against these settings; {_WHERE}"
        )
    changes = fingerprint_changes(previous["fingerprint"], fingerprint)
    if changes:
        shown = "; ".join(changes[:12]) + (
            f"; and {len(changes) - 12} more" if len(changes) > 12 else ""
        )
        raise RunDirError(
            f"{run_dir} holds a run with different settings ({shown}); "
            f"set them back to resume, or {_WHERE}"
        )
    if run_selection is not None and previous.get("selection") != run_selection:
        _write_run_file(path, previous["fingerprint"], run_selection)


def _nonempty(path: Path) -> bool:
    """A results file that holds anything (anything but a regular file counts as holding)."""
    st = path.stat()
    return not stat.S_ISREG(st.st_mode) or st.st_size > 0


def _write_run_file(
    path: Path, fingerprint: Mapping[str, Any], run_selection: Mapping[str, Any] | None
) -> None:
    data: dict[str, Any] = {"format": RUN_FORMAT, "fingerprint": dict(fingerprint)}
    if run_selection is not None:
        data["selection"] = dict(run_selection)
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
