"""Dataset loading: local files, env var, filters, a fake hub, and errors that name the place."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evals.datasets import (
    DATA_DIR_ENV,
    DATASETS,
    DatasetSpec,
    DatasetUnavailableError,
    load_jsonl,
    load_problems,
)
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
SHARED = SHARED_DATA
needs_shared = pytest.mark.skipif(
    not (SHARED / "math500.jsonl").is_file(), reason=f"no benchmark files in {SHARED}"
)


@pytest.fixture(autouse=True)
def _no_env_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests state their data dir explicitly; a developer's env var must not leak in."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[tuple[str, str | None]]]:
    """Installs a stand-in `datasets` module; returns a function that sets its rows or error."""
    calls: list[tuple[str, str | None]] = []

    def install(rows: list[dict[str, Any]] | None = None, error: Exception | None = None):
        def load_dataset(hub_id: str, split: str | None = None) -> list[dict[str, Any]]:
            calls.append((hub_id, split))
            if error is not None:
                raise error
            return list(rows or [])

        module = types.ModuleType("datasets")
        module.load_dataset = load_dataset  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "datasets", module)
        return calls

    return install


def write_jsonl(path: Path, rows: list[Any], raw_lines: dict[int, str] | None = None) -> Path:
    """Rows as JSONL; `raw_lines` replaces given 1-based lines verbatim (for broken input)."""
    lines = [json.dumps(r) if not isinstance(r, str) else r for r in rows]
    for lineno, text in (raw_lines or {}).items():
        lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- registry and imports ----------------------------------------------------------------------


def test_registry() -> None:
    assert set(DATASETS) == {"math500", "aime24", "aime25", "amc23", "arith", "countdown"}
    assert DATASETS["math500"].hub_id == "HuggingFaceH4/MATH-500"
    assert DATASETS["math500"].split == "test" and DATASETS["math500"].id_field == "unique_id"
    assert (DATASETS["aime24"].hub_id, DATASETS["aime24"].split) == (
        "HuggingFaceH4/aime_2024",
        "train",
    )
    assert (DATASETS["aime25"].hub_id, DATASETS["aime25"].split) == ("math-ai/aime25", "test")
    assert (DATASETS["amc23"].hub_id, DATASETS["amc23"].split) == ("math-ai/amc23", "test")
    assert DATASETS["aime25"].local_file == "aime25.jsonl"
    assert all(isinstance(s, DatasetSpec) and s.name == n for n, s in DATASETS.items())


def test_loading_local_data_imports_no_heavy_library() -> None:
    """Hub support must not cost an import: `datasets` is loaded only when the hub is used."""
    code = (
        "import sys, evals.datasets, evals.arith\n"
        "evals.arith.generate_arith(3)\n"
        "heavy = {'datasets', 'hydra', 'torch', 'vllm', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- local shared files ------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize(
    ("name", "count", "pid", "answer", "snippet"),
    [
        (
            "math500",
            500,
            "test/precalculus/807.json",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
            "(0,3)",
        ),
        ("aime24", 30, "2024-I-1", "204", "Aya goes for a $9$-kilometer-long walk"),
        ("amc23", 40, "2023-12A-1", "27", "Cities $A$ and $B$ are $45$ miles apart"),
    ],
)
def test_shared_files(name: str, count: int, pid: str, answer: str, snippet: str) -> None:
    problems = load_problems(name, data_dir=str(SHARED))
    assert len(problems) == count
    assert len({p.id for p in problems}) == count
    assert all(isinstance(p.answer, str) and p.answer for p in problems)
    first = problems[0]
    assert (first.id, first.answer) == (pid, answer)
    assert snippet in first.question
    for p in problems:
        assert not {"problem", "question", "answer", "solution", "answer_raw"} & set(p.metadata)
        assert p.metadata["dataset"] == name and p.metadata["source"]


@needs_shared
def test_math500_metadata() -> None:
    problems = load_problems("math500", data_dir=str(SHARED))
    meta = problems[0].metadata
    assert meta["subject"] == "Precalculus" and meta["level"] == 2 and meta["idx"] == 0
    assert {type(p.metadata["level"]) for p in problems} == {int}


@needs_shared
def test_env_var_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(SHARED))
    assert len(load_problems("aime24")) == 30


@needs_shared
def test_data_dir_argument_beats_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(SHARED))
    write_jsonl(tmp_path / "aime24.jsonl", [{"id": "mine", "problem": "1+1?", "answer": 2}])
    assert [p.id for p in load_problems("aime24", data_dir=str(tmp_path))] == ["mine"]


# --- filters -----------------------------------------------------------------------------------


@needs_shared
def test_filters_levels_and_subjects() -> None:
    d = str(SHARED)
    assert len(load_problems("math500", data_dir=d, levels=[1])) == 43
    assert len(load_problems("math500", data_dir=d, levels=[1, 2])) == 43 + 90
    assert len(load_problems("math500", data_dir=d, subjects=["Algebra"])) == 124
    assert len(load_problems("math500", data_dir=d, subjects=["algebra"])) == 124  # any case
    both = load_problems("math500", data_dir=d, subjects=["Geometry", "Algebra"], levels=[5])
    assert both and all(p.metadata["level"] == 5 for p in both)
    assert {p.metadata["subject"] for p in both} == {"Geometry", "Algebra"}
    assert len(load_problems("math500", data_dir=d, levels=[], subjects=[])) == 500  # [] = unset


@needs_shared
def test_filters_ids_keep_dataset_order_then_limit() -> None:
    d = str(SHARED)
    everything = load_problems("math500", data_dir=d)
    wanted = [everything[9].id, everything[2].id, everything[5].id]
    picked = load_problems("math500", data_dir=d, ids=wanted)
    assert [p.id for p in picked] == [everything[i].id for i in (2, 5, 9)]
    assert [p.id for p in load_problems("math500", data_dir=d, ids=wanted, limit=2)] == [
        everything[2].id,
        everything[5].id,
    ]
    assert load_problems("math500", data_dir=d, limit=3) == everything[:3]
    assert load_problems("math500", data_dir=d, limit=0) == []
    level5 = [p for p in everything if p.metadata["level"] == 5]
    assert load_problems("math500", data_dir=d, levels=[5], limit=4) == level5[:4]


@needs_shared
def test_filter_errors() -> None:
    d = str(SHARED)
    with pytest.raises(ValueError, match=r"unknown subjects \['Astrology'\].*Prealgebra"):
        load_problems("math500", data_dir=d, subjects=["Astrology"])
    with pytest.raises(ValueError, match=r"levels \[7\]"):
        load_problems("math500", data_dir=d, levels=[7])
    with pytest.raises(ValueError, match="no 'level' metadata"):
        load_problems("aime24", data_dir=d, levels=[1])
    with pytest.raises(ValueError, match="limit"):
        load_problems("aime24", data_dir=d, limit=-1)


@needs_shared
def test_unknown_ids_are_listed_up_to_ten() -> None:
    missing = [f"nope-{i:02d}" for i in range(12)]
    with pytest.raises(ValueError) as err:
        load_problems("aime24", data_dir=str(SHARED), ids=["2024-I-1", *missing])
    message = str(err.value)
    assert "aime24" in message and "12 id(s) not found" in message
    assert all(m in message for m in missing[:10]) and "nope-10" not in message
    assert "and 2 more" in message and "2024-I-1" not in message


# --- custom files ------------------------------------------------------------------------------


def test_custom_path_with_defaults(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"problem": "What is 1+1?", "answer": 2, "subject": "Arithmetic", "level": "Level 1"},
            "",
            {"question": "Half of 1?", "answer": 0.5, "solution": "1/2", "tag": "x"},
            {"id": "named", "problem": "Big?", "answer": 27.0},
        ],
    )
    problems = load_problems("aime25", path=str(path))
    assert [p.id for p in problems] == ["aime25-1", "aime25-3", "named"]
    assert [p.answer for p in problems] == ["2", "0.5", "27"]
    assert problems[1].question == "Half of 1?"
    assert problems[0].metadata["level"] == 1 and problems[0].metadata["subject"] == "Arithmetic"
    assert problems[1].metadata == {"tag": "x", "source": str(path), "dataset": "aime25"}
    # A path needs no registered name, and the filters still apply.
    assert [p.id for p in load_problems("mine", path=str(path), levels=[1])] == ["mine-1"]


def test_contest_answers_are_canonical(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "aime.jsonl",
        [{"id": str(i), "problem": "?", "answer": a} for i, a in enumerate(["025", 73, 27.0, "7"])],
    )
    assert [p.answer for p in load_problems("aime24", path=str(path))] == ["25", "73", "27", "7"]
    # MATH answers are LaTeX strings and stay untouched.
    assert [p.answer for p in load_problems("math500", path=str(path))] == ["025", "73", "27", "7"]


def test_arith_through_load_problems(tmp_path: Path) -> None:
    problems = load_problems("arith", data_dir=str(tmp_path), arith={"n": 9, "levels": [1, 2, 3]})
    assert len(problems) == 9 and problems[0].id == "arith-L1-0000"
    assert [
        p.id for p in load_problems("arith", arith={"n": 9, "levels": [1, 2, 3]}, levels=[2])
    ] == [
        "arith-L2-0000",
        "arith-L2-0001",
        "arith-L2-0002",
    ]
    assert len(load_problems("arith")) == 20
    with pytest.raises(ValueError, match=r"unknown options \['size'\]"):
        load_problems("arith", arith={"size": 3})


# --- errors ------------------------------------------------------------------------------------


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'math5000'") as err:
        load_problems("math5000")
    assert all(name in str(err.value) for name in DATASETS)


@pytest.mark.parametrize(
    ("rows", "raw", "line", "what"),
    [
        (
            [{"problem": "a", "answer": "1"}] * 2 + [{}],
            {3: '{"problem": "x", "answer": '},
            3,
            "invalid JSON",
        ),
        ([{"problem": "a", "answer": "1"}, {"problem": "b"}], None, 2, "missing the answer field"),
        ([{"answer": "1"}], None, 1, "missing the question field"),
        ([{"problem": "  ", "answer": "1"}], None, 1, "non-empty string"),
        ([{"problem": "a", "answer": None}], None, 1, "missing the answer field"),
        ([{"problem": "a", "answer": [1]}], None, 1, "string or a number"),
        ([{"problem": "a", "answer": "1"}, [1, 2]], None, 2, "expected a JSON object"),
    ],
)
def test_malformed_rows_name_file_and_line(
    tmp_path: Path, rows: list[Any], raw: dict[int, str] | None, line: int, what: str
) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl", [dict(r) if isinstance(r, dict) else r for r in rows], raw
    )
    with pytest.raises(ValueError) as err:
        load_problems("math500", path=str(path))
    assert f"{path}, line {line}:" in str(err.value) and what in str(err.value)


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n\n\n{"problem": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 4: missing the answer field"):
        load_jsonl(path)


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    rows = [{"id": "a", "problem": "p", "answer": "1"}, {"id": "b", "problem": "q", "answer": "2"}]
    path = write_jsonl(tmp_path / "dup.jsonl", [*rows, {"id": "a", "problem": "r", "answer": "3"}])
    with pytest.raises(ValueError, match=r"dup\.jsonl: duplicate id 'a' on line 1 and line 3"):
        load_problems("math500", path=str(path))


def test_missing_and_empty_files_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_problems("amc23", path=str(missing))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{empty} has no problems"):
        load_problems("amc23", path=str(empty))
    with pytest.raises(ValueError, match="is a directory"):
        load_problems("amc23", path=str(tmp_path))


# --- the hub (faked: tests never touch the network) -----------------------------------------


def test_local_dir_without_file_and_no_network(
    tmp_path: Path, fake_hub: Callable[..., Any]
) -> None:
    calls = fake_hub(error=ConnectionError("offline"))
    with pytest.raises(DatasetUnavailableError) as err:
        load_problems("aime25", data_dir=str(tmp_path))
    message = str(err.value)
    assert calls == [("math-ai/aime25", "test")]
    assert str(tmp_path) in message and "aime25.jsonl" in message and "offline" in message
    assert "dataset.path" in message and DATA_DIR_ENV in message


def test_no_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(
        DatasetUnavailableError, match=f"'datasets' package.*dataset.path.*{DATA_DIR_ENV}"
    ):
        load_problems("amc23")


def test_hub_rows_are_mapped(monkeypatch: pytest.MonkeyPatch, fake_hub: Callable[..., Any]) -> None:
    calls = fake_hub(
        [
            {"problem": "P1", "solution": "S", "answer": "\\frac{1}{2}", "subject": "Algebra",
             "level": 3, "unique_id": "test/algebra/1.json"},
            {"problem": "P2", "solution": "S", "answer": "4", "subject": "Geometry",
             "level": 5, "unique_id": "test/geometry/2.json"},
        ]
    )  # fmt: skip
    problems = load_problems("math500", levels=[3])
    assert calls == [("HuggingFaceH4/MATH-500", "test")]
    assert [(p.id, p.question, p.answer) for p in problems] == [
        ("test/algebra/1.json", "P1", "\\frac{1}{2}")
    ]
    assert problems[0].metadata == {
        "subject": "Algebra",
        "level": 3,
        "source": "HuggingFaceH4/MATH-500",
        "dataset": "math500",
    }


def test_hub_contest_copies(fake_hub: Callable[..., Any], tmp_path: Path) -> None:
    fake_hub(
        [{"id": 0, "question": "Q", "answer": 27.0, "url": "u"}, {"question": "R", "answer": -1.0}]
    )
    # The folder lacks amc23.jsonl, so the loader falls back to the (fake) hub.
    problems = load_problems("amc23", data_dir=str(tmp_path))
    assert [(p.id, p.question, p.answer) for p in problems] == [
        ("amc23-0", "Q", "27"),
        ("amc23-2", "R", "-1"),
    ]
    assert problems[0].metadata["url"] == "u" and problems[0].metadata["source"] == "math-ai/amc23"


def test_hub_bad_row_names_the_row(fake_hub: Callable[..., Any]) -> None:
    fake_hub([{"problem": "P", "answer": "1"}, {"problem": "Q"}])
    with pytest.raises(
        ValueError, match=r"HuggingFaceH4/aime_2024\[train\], row 2: missing the answer"
    ):
        load_problems("aime24")


def test_arith_has_no_hub(fake_hub: Callable[..., Any]) -> None:
    calls = fake_hub(error=AssertionError("must not be called"))
    assert len(load_problems("arith", arith={"n": 3})) == 3
    assert calls == []
