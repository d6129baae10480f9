"""The evaluation runner: per-problem records, resume, faults, summary (scripted generator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.grading import Grade, Grader
from evals.runner import (
    RESULTS,
    RunInterrupted,
    Runner,
    read_results,
    trace_filename,
    wilson_interval,
)
from reasoning import Problem
from search import BestOfN
from tests.fakes import ScriptedGenerator

PROBLEMS = [Problem(f"test/algebra/{i}.json", f"What is {i} + {i}?", str(2 * i)) for i in range(6)]


def _answer_twice(prompt: str, sampling: object) -> str:
    i = int(prompt.split("What is ")[1].split(" +")[0])
    return f"so \\boxed{{{2 * i if i % 3 else 99}}}"


def _runner(tmp_path: Path, gen: ScriptedGenerator, **kw: object) -> Runner:
    return Runner(gen, BestOfN(n=2), tmp_path, progress=False, concurrency=2, **kw)  # type: ignore[arg-type]


async def test_records_summary_and_traces(tmp_path: Path) -> None:
    summary = await _runner(tmp_path, ScriptedGenerator(_answer_twice)).run(PROBLEMS)
    records = read_results(tmp_path / RESULTS)
    assert len(records) == 6
    by_id = {r["id"]: r for r in records}
    assert by_id["test/algebra/1.json"]["correct"] is True
    assert by_id["test/algebra/3.json"]["prediction"] == "99"
    assert by_id["test/algebra/3.json"]["correct"] is False
    for r in records:
        assert {
            "id",
            "answer",
            "prediction",
            "correct",
            "ledger",
            "search",
            "seed",
            "grader",
        } <= set(r)
        assert r["ledger"]["samples"] == 2 and r["search"] == "best_of_n"
        trace = json.loads((tmp_path / "traces" / trace_filename(r["id"])).read_text())
        assert len(trace["chains"]) == 2 and trace["tree"]["nodes"]
    assert summary["n"] == 6 and summary["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert summary["ci95"] == list(wilson_interval(4, 6))
    assert summary["ledger"]["samples"] == 12
    assert json.loads((tmp_path / "summary.json").read_text())["n"] == 6


async def test_backend_dying_mid_run_keeps_finished_problems_and_rerun_resumes(
    tmp_path: Path,
) -> None:
    dying = ScriptedGenerator(_answer_twice, fail_on=lambda prompt: "What is 4 +" in prompt)
    with pytest.raises(RunInterrupted, match="finished problems are saved.*rerun"):
        await Runner(dying, BestOfN(n=2), tmp_path, progress=False, concurrency=1).run(PROBLEMS)
    kept = read_results(tmp_path / RESULTS)
    kept_ids = [r["id"] for r in kept]
    assert kept_ids[:4] == [p.id for p in PROBLEMS[:4]] and PROBLEMS[4].id not in kept_ids

    healthy = ScriptedGenerator(_answer_twice)
    summary = await Runner(healthy, BestOfN(n=2), tmp_path, progress=False).run(PROBLEMS)
    assert len(healthy.calls) == 6 - len(kept)  # only the unfinished problems ran again
    assert summary["problems"] == 6
    assert read_results(tmp_path / RESULTS)[: len(kept)] == kept


async def test_torn_last_line_is_dropped_and_redone(tmp_path: Path) -> None:
    await _runner(tmp_path, ScriptedGenerator(_answer_twice)).run(PROBLEMS[:2])
    with (tmp_path / RESULTS).open("a") as f:
        f.write('{"id": "test/algebra/2.json", "answ')  # killed mid-write
    gen = ScriptedGenerator(_answer_twice)
    await _runner(tmp_path, gen).run(PROBLEMS[:3])
    assert len(gen.calls) == 1
    assert [r["id"] for r in read_results(tmp_path / RESULTS)] == [p.id for p in PROBLEMS[:3]]


def test_corrupt_line_in_the_middle_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / RESULTS
    path.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    with pytest.raises(ValueError, match=r"results.jsonl:2"):
        read_results(path)


async def test_rerun_with_other_settings_is_refused(tmp_path: Path) -> None:
    await _runner(tmp_path, ScriptedGenerator(_answer_twice)).run(PROBLEMS[:1])
    other = Runner(ScriptedGenerator(), BestOfN(n=4), tmp_path, progress=False)
    with pytest.raises(ValueError, match="different settings.*search"):
        await other.run(PROBLEMS[:1])


class _TimeoutGrader(Grader):
    async def grade(self, prediction: str | None, gold: str | None) -> Grade:
        return Grade(None, "grading timed out after 5.0s")


async def test_ungraded_problems_are_recorded_with_the_reason(tmp_path: Path) -> None:
    runner = _runner(tmp_path, ScriptedGenerator(_answer_twice), grader=_TimeoutGrader())
    summary = await runner.run(PROBLEMS[:2])
    records = read_results(tmp_path / RESULTS)
    assert [r["correct"] for r in records] == [None, None]
    assert all("timed out" in r["grade_reason"] for r in records)
    assert summary["n"] == 0 and summary["ungraded"] == 2 and summary["accuracy"] is None


def test_wilson_interval_is_sane() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo < 0.2
