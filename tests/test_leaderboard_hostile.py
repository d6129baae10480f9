"""Run directories as untrusted input (issue 19, points 1, 2, 11, 12, 13).

Run directories are shared between people: whatever a record, a trace or a folder name says,
the leaderboard and the viewer write only under `--out`, delete nothing they did not write,
make every link and export safe for its format, read only regular files of bounded size, as a
stream, and turn every malformed record or trace into a located error while the other runs
stay in the table. `reason` itself refuses a FIFO or a device where its run directory's files
belong, and prints a refused resume as its message. The cases are also in the bad-input
corpus, `tests/data/bad_inputs/rundir.jsonl` (kind `rundir`, run here).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evals.leaderboard import build_leaderboard, read_run
from evals.leaderboard.build import viewer_folder
from evals.leaderboard.html import relative_href
from evals.leaderboard.table import FORMULA_START, csv_safe, markdown_text
from evals.rundir import RunDirError, UnsafeFileError, open_run_file, read_results
from evals.viewer import build_viewer
from tests.conftest import REPO, TEST_DATA
from tests.test_leaderboard import _bools, make_run

CORPUS = TEST_DATA / "bad_inputs" / "rundir.jsonl"
HANG_S = 60  # a read that blocks on a FIFO never returns: fail instead of hanging the suite
DEEP = 100_000  # nesting a JSON parser cannot follow


def _within(seconds: float, fn: Callable[[], Any]) -> Any:
    """fn(), failing the test if it has not returned after `seconds` (a FIFO blocks forever)."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds}s (blocked on a read?)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under `root` but `skip`: its kind, size and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == skip:
                continue
            st_ = path.lstat()
            if path.is_dir() and not path.is_symlink():  # its entries are listed themselves
                out[str(path)] = (oct(st_.st_mode), 0, 0)
            else:
                out[str(path)] = (oct(st_.st_mode), st_.st_size, st_.st_mtime_ns)
    return out


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def _write_records(run: Path, records: list[dict[str, Any]], tail: str = "") -> None:
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


# --- point 1: no path from data leaves --out; nothing deleted that was not written ---------------


def test_a_seed_that_climbs_out_never_leaves_out_nor_deletes(tmp_path: Path) -> None:
    runs = tmp_path / "shared" / "runs"
    run = make_run(runs, "evil", _bools("10"))
    _write_records(run, [dict(r, seed="../../../../victim") for r in _records(run)])
    out = tmp_path / "shared" / "board"
    victim = tmp_path / "victim" / "problems"
    victim.mkdir(parents=True)
    (victim / "mine.html").write_text("not the leaderboard's")
    before = _snapshot(tmp_path, out)

    board = build_leaderboard([runs], out, n_bootstrap=20, audit=False)

    assert _snapshot(tmp_path, out) == before  # nothing outside --out changed, nothing new
    assert (victim / "mine.html").read_text() == "not the leaderboard's"
    (folder,) = (out / "viewers").iterdir()
    assert folder.name == "row1-seed.._.._.._.._victim" and (folder / "index.html").is_file()
    assert len(board.table) == 1


@given(st.one_of(st.text(max_size=60), st.integers(), st.none(), st.lists(st.text(max_size=5))))
def test_a_viewer_folder_is_one_plain_name_whatever_the_seed(seed: Any) -> None:
    name = viewer_folder(3, seed)
    assert re.fullmatch(r"row3-seed[A-Za-z0-9._-]+", name) and "/" not in name
    assert Path("/out", "viewers", name).parent == Path("/out/viewers")


def test_the_viewer_deletes_no_page_it_did_not_write(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run", _bools("1"))
    out = tmp_path / "pages"
    (out / "problems").mkdir(parents=True)
    (out / "problems" / "someone-elses.html").write_text("keep me")
    build_viewer(run, out)
    assert (out / "problems" / "someone-elses.html").read_text() == "keep me"
    assert (out / "problems" / "arith-0000.html").is_file()


def test_a_link_planted_in_out_is_not_written_through(tmp_path: Path) -> None:
    make_run(tmp_path / "runs", "run", _bools("1"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "board"
    (out / "viewers").mkdir(parents=True)
    (out / "viewers" / "row1-seed0").symlink_to(elsewhere, target_is_directory=True)
    board = build_leaderboard([tmp_path / "runs"], out, n_bootstrap=20, audit=False)
    assert list(elsewhere.iterdir()) == []
    assert any("leads out of" in str(e) for e in board.errors)
    assert len(board.table) == 1


# --- point 2: every link and export safe for its format -----------------------------------------


def _hrefs(page: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', page)


def test_a_run_folder_named_like_a_url_scheme_is_a_relative_link(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = make_run(runs, "javascript:alert(9)", _bools("10"))
    for trace in (run / "traces").iterdir():
        trace.unlink()
    board = build_leaderboard([runs], runs, n_bootstrap=20, audit=False, viewer=False)
    page = (runs / "leaderboard.html").read_text()
    links = _hrefs(page)
    assert len(links) == 2 and board.errors == []
    for link in links:
        assert urlparse(link).scheme == "" and urlparse(link).netloc == ""
        assert not link.lower().startswith("javascript:")
        assert unquote(link).startswith("javascript:alert(9)/traces/")


def test_names_from_runs_are_inert_in_csv_and_markdown(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = make_run(runs, "run", _bools("10"))
    summary = json.loads((run / "summary.json").read_text())
    name = '=HYPERLINK("http://evil","x")<img src=x onerror=alert(1)>|[a](javascript:x)'
    summary["config"]["model"]["name"] = name
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "board"
    build_leaderboard([runs], out, n_bootstrap=20, audit=False)
    with (out / "leaderboard.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["model"] == "'" + name  # text to a spreadsheet, never a formula
    md = (out / "leaderboard.md").read_text()
    assert "<img" not in md and not re.search(r"(?<!\\)\]\(", md)  # no link
    assert "&lt;img src=x onerror=alert(1)&gt;\\|\\[a\\](javascript:x)" in md
    html = (out / "leaderboard.html").read_text()
    assert "<img" not in html and "&lt;img" in html


@given(st.text())
def test_a_csv_cell_is_never_a_formula(text: str) -> None:
    cell = csv_safe(text)
    if cell.startswith(FORMULA_START):
        float(cell)  # only a number may start like a formula
    assert cell in (text, "'" + text)


@given(st.text())
def test_markdown_text_carries_no_markup(text: str) -> None:
    shown = markdown_text(text)
    assert "<" not in shown and ">" not in shown and "\n" not in shown and "\r" not in shown
    # every [, ], |, ` and \ is escaped by a backslash: none starts a link, a cell or a span
    assert re.fullmatch(r"(?:[^\\\[\]|`]|\\[\\\[\]|`])*", shown.replace("&", "")), shown


@given(st.lists(st.text(min_size=1, max_size=12).filter(lambda t: "/" not in t and "\0" not in t
                                                        and t not in (".", "..")), min_size=1,
                max_size=3))  # fmt: skip
def test_a_relative_href_has_no_scheme_and_names_its_path(parts: list[str]) -> None:
    base = Path("/srv/board")
    target = base.joinpath(*parts)
    href = relative_href(target, base)
    parsed = urlparse(href)
    assert (parsed.scheme, parsed.netloc, parsed.query, parsed.fragment) == ("", "", "", "")
    assert unquote(href) == "/".join(parts)


# --- point 11: a malformed record or trace is a located error -----------------------------------

BAD_TRACES = {
    "node_without_id": {"id": "arith-0000", "tree": {"nodes": [{"status": "root"}]}},
    "edge_without_target": {
        "id": "arith-0000",
        "tree": {"nodes": [{"id": "root"}], "edges": [{"source": "root"}]},
    },
    "nodes_a_string": {"id": "arith-0000", "tree": {"nodes": "str"}},
    "tree_a_list": {"id": "arith-0000", "tree": [1, 2]},
    "chains_not_objects": {"id": "arith-0000", "chains": ["x"], "selected": "x"},
    "events_a_string": {"id": "arith-0000", "details": {"events": "boom"}},
    "ledger_a_string": {"id": "arith-0000", "ledger": "str"},
    "id_a_list": {"id": [1, 2]},
}


@pytest.mark.parametrize("case", sorted(BAD_TRACES))
def test_a_malformed_trace_is_its_own_located_error(tmp_path: Path, case: str) -> None:
    runs = tmp_path / "runs"
    make_run(runs, "good", _bools("11"), n=2)
    bad = make_run(runs, "bad", _bools("10"))
    (bad / "traces" / "arith-0000.json").write_text(json.dumps(BAD_TRACES[case]))
    board = build_leaderboard([runs], tmp_path / "board", n_bootstrap=20, audit=False)
    messages = [str(e) for e in board.errors]
    assert any(m.startswith(f"{bad}/traces/arith-0000.json: trace not shown") for m in messages)
    assert len(board.table) == 2  # both runs are rows: the bad trace costs only its page
    assert (
        tmp_path / "board" / "viewers" / "row2-seed0" / "problems" / "arith-0001.html"
    ).is_file()


def test_a_trace_nested_too_deeply_is_a_located_error(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    bad = make_run(runs, "bad", _bools("10"))
    (bad / "traces" / "arith-0000.json").write_text("[" * DEEP + "]" * DEEP)
    board = build_leaderboard([runs], tmp_path / "board", n_bootstrap=20)
    assert any(
        str(e).startswith(f"{bad}/traces/arith-0000.json: trace not shown") for e in board.errors
    )
    assert len(board.table) == 1


@pytest.mark.parametrize(
    ("ledger", "said"),
    [
        ("str", "ledger a str, not an object"),
        (None, "ledger missing"),
        ([1], "ledger a list, not an object"),
    ],
)
def test_a_malformed_ledger_is_a_located_error_and_the_rest_counts(
    tmp_path: Path, ledger: Any, said: str
) -> None:
    run = make_run(tmp_path, "run", _bools("11"), tokens=100)
    records = _records(run)
    records[1]["ledger"] = ledger
    _write_records(run, records)
    got = read_run(run)
    assert [str(e) for e in got.errors if said in str(e)] == [
        f"{run}/results.jsonl:2: problem 'arith-0001': {said}; no costs"
    ]
    board = build_leaderboard([tmp_path], tmp_path / "board", n_bootstrap=20, audit=False)
    row = board.table.iloc[0]
    assert row["accuracy"] == 1.0 and row["tokens_per_problem"] == 100.0


def test_a_record_nested_too_deeply_is_a_located_error(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run", _bools("11"))
    _write_records(run, _records(run), tail="[" * DEEP + "]" * DEEP + "\n")
    got = read_run(run)
    assert f"{run}/results.jsonl:3: nested too deeply to read; line skipped" in map(str, got.errors)
    assert len(got.records) == 2


def test_an_unpaired_surrogate_is_a_located_error_and_the_board_is_built(tmp_path: Path) -> None:
    """JSON lets "\\ud800" through as an escape, but no later write (pandas, Arrow, a page) can
    encode it: the line is skipped, named, and the board still builds."""
    run = make_run(tmp_path, "run", _bools("11"))
    _write_records(run, _records(run), tail='{"id": "\\ud800", "correct": true}\n')
    got = read_run(run)
    assert any(
        str(e).startswith(f"{run}/results.jsonl:3: not JSON: an unpaired surrogate")
        for e in got.errors
    ), got.errors
    assert len(got.records) == 2
    board = build_leaderboard([tmp_path], tmp_path / "board", n_bootstrap=10, audit=False)
    assert board is not None
    paired = '{"id": "\\ud83d\\ude00", "correct": true}\n'  # a surrogate pair is one character
    _write_records(run, _records(run), tail=paired)
    assert [r["id"] for r in read_run(run).records][-1] == "\U0001f600"


# --- point 12: regular files only, bounded, streamed --------------------------------------------


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _folder(path: Path) -> None:
    path.mkdir()


HOSTILE_FILES = {"fifo": _fifo, "dev_zero": _zero, "folder": _folder}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("kind", sorted(HOSTILE_FILES))
@pytest.mark.parametrize("name", ["results.jsonl", "run.json", "summary.json", "trace"])
def test_the_leaderboard_reads_only_regular_files(tmp_path: Path, kind: str, name: str) -> None:
    runs = tmp_path / "runs"
    make_run(runs, "good", _bools("11"), n=2)
    bad = make_run(runs, "bad", _bools("10"))
    target = bad / "traces" / "arith-0000.json" if name == "trace" else bad / name
    target.unlink()
    HOSTILE_FILES[kind](target)
    audit = name == "trace"  # the audit reads the traces too
    board = _within(
        HANG_S,
        lambda: build_leaderboard([runs], tmp_path / "board", n_bootstrap=20, audit=audit),
    )
    located = [str(e) for e in board.errors if str(e).startswith(str(target))]
    assert any("not a regular file" in m for m in located), located
    assert _has_run(board, "good")


def _has_run(board: Any, name: str) -> bool:
    return any(Path(p).name == name for dirs in board.table["run_dirs"] for p in dirs.split())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("kind", sorted(HOSTILE_FILES))
def test_reason_refuses_a_results_file_or_run_file_that_is_not_regular(
    tmp_path: Path, kind: str
) -> None:
    for name in ("results.jsonl", "run.json"):
        run = tmp_path / f"{kind}-{name}"
        run.mkdir()
        HOSTILE_FILES[kind](run / name)
        with pytest.raises(RunDirError, match=re.escape(str(run / name))):
            _within(HANG_S, lambda run=run, name=name: _reason_reads(run, name))


def _reason_reads(run: Path, name: str) -> None:
    if name == "results.jsonl":
        (run / "run.json").write_text(json.dumps({"format": 2, "fingerprint": {}}))
        open_run_file(run, {})  # run.json fine: the results are read next
        read_results(run / name)
    else:
        open_run_file(run, {})


def test_a_line_past_the_bound_is_skipped_as_a_located_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("evals.leaderboard.runs.MAX_LINE_BYTES", 4096)
    run = make_run(tmp_path, "run", _bools("111"))
    records = _records(run)
    records[1]["votes"] = {"x": "y" * 10_000}
    _write_records(run, records)
    got = read_run(run)
    assert f"{run}/results.jsonl:2: line longer than" in " ".join(map(str, got.errors))
    assert [r["id"] for r in got.records] == ["arith-0000", "arith-0002"]


def test_a_json_file_past_the_bound_is_refused(tmp_path: Path) -> None:
    from evals.rundir import read_bounded

    path = tmp_path / "big.json"
    path.write_bytes(b" " * 2000)
    with pytest.raises(UnsafeFileError, match="larger than"):
        read_bounded(path, 1000)


def test_reading_keeps_what_the_board_uses_not_the_file(tmp_path: Path) -> None:
    """Records are streamed and kept slim: reading a results file of records with large
    fields the leaderboard does not use costs far less than the file's size (whole-file
    reading and whole records took several times its size)."""
    run = make_run(tmp_path, "run", [True] * 2000)
    records = _records(run)
    junk = "z" * 3000
    _write_records(run, [dict(r, votes={"a": junk}, chains_text=[junk]) for r in records])
    size = (run / "results.jsonl").stat().st_size
    tracemalloc.start()
    try:
        got = read_run(run)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(got.records) == 2000 and got.search == "best_of_n"
    assert peak < size / 2, (peak, size)


# --- point 13: one clear line, not a traceback ---------------------------------------------------


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


REASON = "import sys; from evals.cli import main; sys.argv[0] = 'reason'; main()"
# `reason` with a generator that needs no engine (the refusal comes before any call)
REASON_FAKE = (
    "import sys, evals.experiment as ex; from tests.fakes import ScriptedGenerator; "
    "ex.build_generator = lambda cfg, out_dir: ScriptedGenerator(); "
    "from evals.cli import main; sys.argv[0] = 'reason'; main()"
)


def test_a_refused_resume_prints_its_message_not_a_traceback(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": 2, "fingerprint": {"seed": 99}}))
    out = _python(REASON_FAKE, "dataset=arith", "dataset.limit=1", f"hydra.run.dir={run}")
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert f"{run} holds a run with different settings" in text, text
    # the message as every config error prints it (Hydra's compact form), no stack frames
    assert "Traceback" not in text and 'File "' not in text, out.stderr
    assert len(out.stderr.strip().splitlines()) <= 4, out.stderr


@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_a_run_dir_inside_a_file_is_one_line(tmp_path: Path, key: str) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    args = [f"{key}={file}/run"] + (["-m", "seed=1,2"] if "sweep" in key else [])
    out = _python(REASON, *args)
    assert out.returncode != 0
    assert out.stderr.strip() == (
        f"reason: error: {key}={file}/run: {file} is a file, not a folder; name another folder"
    )
    assert file.read_text() == "mine"


def test_leaderboard_out_naming_a_file_is_one_line(tmp_path: Path) -> None:
    make_run(tmp_path / "runs", "run", _bools("1"))
    file = tmp_path / "board.txt"
    file.write_text("mine")
    code = "import sys; from evals.leaderboard.cli import main; sys.exit(main())"
    for out_dir in (file, file / "sub"):
        out = _python(code, str(tmp_path / "runs"), "--out", str(out_dir), "--no-audit")
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip() == (
            f"reason-leaderboard: error: --out {out_dir}: {file} is a file, not a folder"
        )
    assert file.read_text() == "mine"


def test_viewer_out_naming_a_file_is_one_line(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run", _bools("1"))
    file = tmp_path / "pages.txt"
    file.write_text("mine")
    out = _python("import sys; from evals.viewer.__main__ import main; sys.exit(main())",
                  str(run), "--out", str(file))  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1


# --- the corpus -----------------------------------------------------------------------------------


def _corpus() -> list[Any]:
    cases = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            case = json.loads(line)
            cases.append(pytest.param(case, id=case["case"]))
    return cases


def _make(run: Path, spec: dict[str, Any]) -> None:
    """One corpus case's changes to a good run directory."""
    for rel, text in (spec.get("files") or {}).items():
        path = run / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() or path.is_symlink():
            path.unlink()
        path.write_text(text)
    for rel, kind in (spec.get("special") or {}).items():
        path = run / rel
        if path.is_file() or path.is_symlink():
            path.unlink()
        HOSTILE_FILES[kind](path)
    for rel in spec.get("remove") or []:
        (run / rel).unlink()
    if spec.get("deep"):
        deep = spec["deep"]
        text = "[" * deep["depth"] + "]" * deep["depth"] + "\n"
        with (run / deep["path"]).open("a" if deep.get("append") else "w") as f:
            f.write(text)
    if spec.get("records"):
        records = _records(run)
        for i, changes in spec["records"].items():
            records[int(i)].update(changes)
        _write_records(run, records)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("case", _corpus())
def test_bad_run_directory(case: dict[str, Any], tmp_path: Path) -> None:
    assert case["kind"] == "rundir"
    runs = tmp_path / "shared" / "runs"
    make_run(runs, "good", _bools("11"), n=2)
    bad = make_run(runs, case.get("folder", "bad"), _bools("10"))
    _make(bad, case)
    out = tmp_path / "shared" / "board"
    before = _snapshot(tmp_path, out)
    board = _within(HANG_S, lambda: build_leaderboard([runs], out, n_bootstrap=20))
    assert _snapshot(tmp_path, out) == before
    messages = "\n".join(str(e) for e in board.errors).replace(str(bad), "<run>")
    for expected in case["expect"]["error_contains"]:
        assert expected in messages, messages
    assert _has_run(board, "good")
    for page in out.glob("*.html"):
        for link in _hrefs(page.read_text()):
            assert urlparse(link).scheme == "", link


# --- the general rule, as a property --------------------------------------------------------------

NASTY_TEXT = st.sampled_from(
    [
        "../../../../victim",
        "javascript:alert(9)",
        '=HYPERLINK("http://x","y")',
        "<script>alert(1)</script>",
        "a|b\nc",
        "\ud800",
        "",
        "x" * 300,
    ]
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | NASTY_TEXT | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _record(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {"id": draw(NASTY_TEXT | st.text(max_size=10))}
    for key in ("correct", "answer", "prediction", "ledger", "seed", "search", "search_params",
                "grader", "error", "model", "dataset", "budget"):  # fmt: skip
        if draw(st.booleans()):
            record[key] = draw(JSONISH)
    return record


_LINE = st.one_of(
    _record().map(json.dumps),
    JSONISH.map(json.dumps),
    st.just("[" * 5000),
    st.just('{"id": "torn'),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)
_FILE = st.one_of(
    st.lists(_LINE, max_size=6).map(lambda lines: ("text", "\n".join(lines))),
    JSONISH.map(lambda v: ("text", json.dumps(v, default=str))),
    st.sampled_from([("special", "fifo"), ("special", "dev_zero"), ("special", "folder")]),
)
_TRACE = st.one_of(
    st.fixed_dictionaries(
        {"id": NASTY_TEXT},
        optional={
            "tree": JSONISH,
            "chains": JSONISH,
            "selected": JSONISH,
            "details": JSONISH,
            "ledger": JSONISH,
            "question": NASTY_TEXT,
        },
    ).map(lambda v: ("text", json.dumps(v))),
    _FILE,
)
_RUN = st.fixed_dictionaries(
    {"name": NASTY_TEXT.filter(lambda t: t not in ("", "\ud800") and "/" not in t[:1])},
    optional={
        "results.jsonl": _FILE,
        "run.json": _FILE,
        "summary.json": _FILE,
        "traces": st.dictionaries(NASTY_TEXT | st.just("a"), _TRACE, max_size=2),
    },
)


def _plant(root: Path, i: int, spec: dict[str, Any]) -> None:
    name = spec["name"].replace("/", "_").replace("\n", "_").replace("\ud800", "_")[:100]
    run = root / f"{i}-{name.replace('.', '_')}"
    run.mkdir(parents=True)
    files = {k: v for k, v in spec.items() if k not in ("name", "traces")}
    if "traces" in spec:
        (run / "traces").mkdir()
        for j, (tname, content) in enumerate(spec["traces"].items()):
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", tname)[:50]
            files[f"traces/{j}-{safe}.json"] = content
    if not files:
        files["results.jsonl"] = ("text", "")
    for rel, (how, content) in files.items():
        path = run / rel
        if how == "special":
            HOSTILE_FILES[content](path)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_RUN, min_size=1, max_size=3))
def test_the_leaderboard_survives_any_run_directory(runs: list[dict[str, Any]]) -> None:
    """Whatever the run directories hold, the leaderboard returns (never raises, never
    blocks) and every file it writes is under --out; nothing else changes."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, spec in enumerate(runs):
            _plant(root / "shared" / "runs", i, spec)
        out = root / "shared" / "board"
        before = _snapshot(root, out)
        board = _within(
            HANG_S,
            lambda: build_leaderboard([root / "shared" / "runs"], out, n_bootstrap=10, audit=False),
        )
        assert _snapshot(root, out) == before
        assert all(out in p.parents for p in board.files)
        for page in out.rglob("*.html"):
            for link in _hrefs(page.read_text(errors="replace")):
                assert urlparse(link).scheme == "", link
