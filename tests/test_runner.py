"""The evaluation runner: per-problem records, resume, faults, summary (scripted generator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from evals.experiment import format_summary
from evals.faults import RunInterrupted
from evals.grading import Grade, Grader
from evals.intervals import wilson_interval
from evals.rundir import (
    RESULTS,
    RUN_CONFIG,
    done_of,
    read_results,
    run_fingerprint,
    trace_filename,
)
from evals.runner import Runner
from reasoning import Problem
from reasoning.budget import Budget
from reasoning.build import compose_config
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
    with pytest.raises(ValueError, match=r"different settings \(search.n: 2 -> 4\)"):
        await other.run(PROBLEMS[:1])


def _config(*overrides: str) -> dict[str, Any]:
    """The composed config `reason` would run with these overrides, as the runner gets it."""
    return OmegaConf.to_container(compose_config(overrides), resolve=True)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("dataset.arith.seed=1", "dataset.arith.seed: 0 -> 1"),
        ("dataset.path=/data/other.jsonl", 'dataset.path: null -> "/data/other.jsonl"'),
        ("dataset=math500", 'dataset.name: "arith" -> "math500"'),
        ("model.path=/models/other", "model.path"),
        ("model.system_prompt=steps", 'model.system_prompt: "short" -> "steps"'),
        ("model.max_model_len=1024", "model.max_model_len: 2048 -> 1024"),
        ("backend=openai", "backend._target_"),
        ("search.temperature=0.5", "search.temperature: 0.8 -> 0.5"),
        ("search.max_tokens=64", "search.max_tokens"),
        ("judge.strict=true", "judge.strict: false -> true"),
        ("seed=3", "seed: 0 -> 3"),
        ("budget.generated_tokens=100", "budget.generated_tokens: null -> 100"),
        ("+search.brand_new_key=1", "search.brand_new_key: <absent> -> 1"),
    ],
)
async def test_resume_refuses_a_config_that_changes_results(
    tmp_path: Path, override: str, key: str
) -> None:
    await _runner(tmp_path, ScriptedGenerator(_answer_twice), config=_config()).run(PROBLEMS[:1])
    other = _runner(tmp_path, ScriptedGenerator(_answer_twice), config=_config(override))
    with pytest.raises(ValueError, match="different settings") as refused:
        await other.run(PROBLEMS[:1])
    assert key in str(refused.value)
    assert "hydra.run.dir" in str(refused.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["concurrency=3", "progress=false", "verbose=true"],
        ["cache.mode=record", "cache.path=/tmp/x.sqlite"],
        ["dataset.limit=1", "dataset.ids=[test/algebra/0.json]"],
        ["dataset.arith.n=5", "dataset.arith.levels=[1,2]"],
        ["model.name=renamed", "backend.kv_cache_gib=1", "backend.max_num_seqs=8"],
        ["backend.gpu_memory_utilization=0.5", "backend.enforce_eager=true"],
        ["retry_errors=true"],
    ],
    ids=lambda o: " ".join(o),
)
async def test_resume_accepts_keys_that_do_not_change_results(
    tmp_path: Path, overrides: list[str]
) -> None:
    await _runner(tmp_path, ScriptedGenerator(_answer_twice), config=_config()).run(PROBLEMS[:2])
    again = ScriptedGenerator(_answer_twice)
    summary = await _runner(tmp_path, again, config=_config(*overrides)).run(PROBLEMS[:3])
    assert len(again.calls) == 1 and summary["problems"] == 3  # only the new problem ran


def test_fingerprint_leaves_out_plumbing_and_selection_only() -> None:
    fp = run_fingerprint(_config("backend=openai"))
    for kept in ("backend._target_", "backend.served_model", "backend.tokenizer", "model.path"):
        assert kept in fp
    for left_out in (
        "backend.base_urls",
        "backend.api_key",
        "backend.timeout_s",
        "concurrency",
        "dataset.limit",
        "cache.mode",
    ):
        assert left_out not in fp
    assert run_fingerprint({"a": {"b": [1, 2], "c": {}}}) == {"a.b": [1, 2], "a.c": {}}


async def test_a_selection_can_grow_between_resumes(tmp_path: Path) -> None:
    first = _runner(tmp_path, ScriptedGenerator(_answer_twice), config=_config("dataset.limit=2"))
    assert (await first.run(PROBLEMS[:2]))["problems"] == 2
    gen = ScriptedGenerator(_answer_twice)
    summary = await _runner(tmp_path, gen, config=_config()).run(PROBLEMS)
    assert len(gen.calls) == 4 and summary["problems"] == 6  # the summary covers the selection
    summary = await _runner(tmp_path, gen, config=_config()).run(PROBLEMS[4:])
    assert summary["problems"] == 2


async def test_a_changed_problem_under_the_same_id_is_refused(tmp_path: Path) -> None:
    await _runner(tmp_path, ScriptedGenerator(_answer_twice)).run(PROBLEMS[:2])
    changed = [PROBLEMS[0], Problem(PROBLEMS[1].id, "What is 7 + 7?", "14")]
    with pytest.raises(ValueError, match="question or gold answer has changed.*algebra/1"):
        await _runner(tmp_path, ScriptedGenerator(_answer_twice)).run(changed)


async def test_a_run_dir_of_the_previous_version_is_refused_clearly(tmp_path: Path) -> None:
    old = {"search": {"name": "best_of_n", "n": 2}, "generator": "scripted", "seed": 0}
    (tmp_path / RUN_CONFIG).write_text(json.dumps(old))
    (tmp_path / RESULTS).write_text('{"id": "test/algebra/0.json"}\n')
    with pytest.raises(ValueError, match="older version.*cannot be checked.*hydra.run.dir"):
        await _runner(tmp_path, ScriptedGenerator(_answer_twice)).run(PROBLEMS[:1])


async def test_results_without_run_json_are_refused(tmp_path: Path) -> None:
    (tmp_path / RESULTS).write_text('{"id": "test/algebra/0.json"}\n')
    with pytest.raises(ValueError, match="no run.json"):
        await _runner(tmp_path, ScriptedGenerator(_answer_twice)).run(PROBLEMS[:1])


def test_trace_names_are_distinct_readable_and_short() -> None:
    ids = ["a/b", "a?b", "a__b", "a b", "a/b/", "A/b", "", ".", "..", "x" * 500, "x" * 501]
    ids += ["\ud800", "\udc80", "ζ", "test/algebra/1.json", trace_filename("a/b")[:-5]]
    names = [trace_filename(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert trace_filename("arith-L1-0003") == "arith-L1-0003.json"  # safe ids stay as they are
    assert trace_filename("a/b").startswith("a__b~") and trace_filename("a?b").startswith("a__b~")
    assert trace_filename("test/algebra/1.json").startswith("test__algebra__1.json~")
    for name in names:
        assert len(name.encode()) <= 200 and "/" not in name and name.endswith(".json")
    assert trace_filename("").startswith("~")  # never the bare ".json"


async def test_ids_that_slug_alike_keep_their_own_traces(tmp_path: Path) -> None:
    problems = [Problem(i, "What is 1 + 1?", "2") for i in ("a/b", "a?b", "a__b")]
    await _runner(tmp_path, ScriptedGenerator(_answer_twice)).run(problems)
    traces = sorted((tmp_path / "traces").glob("*.json"))
    assert len(traces) == 3
    assert sorted(json.loads(t.read_text())["id"] for t in traces) == ["a/b", "a?b", "a__b"]


class _TimeoutGrader(Grader):
    async def grade(
        self, prediction: str | None, gold: str | None, problem: Problem | None = None
    ) -> Grade:
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


# --- run.json's selection and what every record says produced it ---------------------------


async def test_run_json_records_the_selection_and_records_what_produced_them(
    tmp_path: Path,
) -> None:
    config = _config("dataset.limit=3", "budget.generated_tokens=500")
    budget = Budget(generated_tokens=500)  # the budget that acts: the runner's, built from it
    runner = _runner(tmp_path, ScriptedGenerator(_answer_twice), config=config, budget=budget)
    summary = await runner.run(PROBLEMS[:3])
    run_json = json.loads((tmp_path / RUN_CONFIG).read_text())
    assert run_json["format"] == 2 and isinstance(run_json["fingerprint"], dict)
    arith = config["dataset"]["arith"]
    assert run_json["selection"] == {
        "dataset": "arith",
        "keys": {
            "dataset.limit": 3,
            "dataset.arith.n": arith["n"],
            "dataset.arith.levels": arith["levels"],
        },
        "problems": 3,
        "ids": [p.id for p in PROBLEMS[:3]],
    }
    assert summary["selected"] == 3 and summary["problems"] == 3
    for r in read_results(tmp_path / RESULTS):
        assert r["dataset"] == "arith" and r["model"] == config["model"]["name"]
        assert r["verifier"] is None
        assert r["budget"]["generated_tokens"] == 500 and r["budget"]["samples"] is None


async def test_a_killed_run_says_k_of_n_from_run_json(tmp_path: Path) -> None:
    dying = ScriptedGenerator(_answer_twice, fail_on=lambda prompt: "What is 4 +" in prompt)
    with pytest.raises(RunInterrupted):
        await Runner(dying, BestOfN(n=2), tmp_path, progress=False, concurrency=1).run(PROBLEMS)
    run_json = json.loads((tmp_path / RUN_CONFIG).read_text())
    records = read_results(tmp_path / RESULTS)
    assert done_of(run_json["selection"], records) == (len(records), 6)
    assert len(records) < 6


async def test_a_rerun_records_its_own_selection(tmp_path: Path) -> None:
    await _runner(tmp_path, ScriptedGenerator(_answer_twice), config=_config()).run(PROBLEMS)
    gen = ScriptedGenerator(_answer_twice)
    config = _config("dataset.limit=2")
    summary = await _runner(tmp_path, gen, config=config).run(PROBLEMS[:2])
    selection = json.loads((tmp_path / RUN_CONFIG).read_text())["selection"]
    assert selection["problems"] == 2 and selection["keys"]["dataset.limit"] == 2
    assert gen.calls == [] and summary["selected"] == 2  # nothing ran again


async def test_a_run_json_without_selection_still_resumes_and_gains_one(tmp_path: Path) -> None:
    first = _runner(tmp_path, ScriptedGenerator(_answer_twice), config=_config())
    await first.run(PROBLEMS[:2])
    path = tmp_path / RUN_CONFIG
    old = json.loads(path.read_text())
    path.write_text(json.dumps({"format": 2, "fingerprint": old["fingerprint"]}))  # older writer
    gen = ScriptedGenerator(_answer_twice)
    summary = await _runner(tmp_path, gen, config=_config()).run(PROBLEMS[:4])
    assert len(gen.calls) == 2 and summary["problems"] == 4  # two resumed, two ran
    again = json.loads(path.read_text())
    assert again["fingerprint"] == old["fingerprint"] and again["selection"]["problems"] == 4


def test_done_of_counts_selected_ids_only() -> None:
    records = [{"id": "a"}, {"id": "b"}, {"id": "z"}]  # z: from an earlier, larger selection
    assert done_of({"ids": ["a", "b", "c"], "problems": 3}, records) == (2, 3)
    assert done_of({"problems": 2}, records) == (2, 2)  # ids not recorded: count, capped
    assert done_of(None, records) is None and done_of({}, records) is None


def test_the_summary_says_k_of_n_when_partial() -> None:
    ledger = {
        k: 0
        for k in (
            "generated_tokens",
            "prompt_tokens",
            "cached_prompt_tokens",
            "generator_calls",
            "samples",
            "verifier_calls",
        )
    }
    summary = {"accuracy": 0.5, "ci95": [0.1, 0.9], "n": 2, "problems": 2, "elapsed_s": 1}
    summary |= {"ledger": {**ledger, "wall_s": 0.0}}
    assert "done" not in format_summary(summary | {"selected": 2})
    assert "(done 2/5 selected)" in format_summary(summary | {"selected": 5})


async def test_a_slow_disk_does_not_stall_the_problems_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a results line is written and fsynced off the event loop: while problem 0's line waits on
    # the disk, problem 1 (concurrency 1, so it starts only after 0 finished) already calls the
    # generator. Written on the loop, problem 1 could not start before the write returned, and
    # the write waits for problem 1's call: it would time out instead.
    import threading

    second_called = threading.Event()
    waited: list[bool] = []
    real_append = Runner._append

    def slow_append(path: Path, line: str) -> None:
        if not waited:
            waited.append(second_called.wait(timeout=10))
        real_append(path, line)

    def answer(prompt: str, sampling: object) -> str:
        if "What is 1 +" in prompt:
            second_called.set()
        return _answer_twice(prompt, sampling)

    monkeypatch.setattr(Runner, "_append", staticmethod(slow_append))
    gen = ScriptedGenerator(answer)
    summary = await Runner(gen, BestOfN(n=2), tmp_path, progress=False, concurrency=1).run(
        PROBLEMS[:3]
    )
    assert waited == [True] and summary["problems"] == 3
    assert [r["id"] for r in read_results(tmp_path / RESULTS)] == [p.id for p in PROBLEMS[:3]]


async def test_the_grader_version_is_read_once_not_per_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    from evals.grading import grader_info

    first = grader_info()
    reads: list[str] = []
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: reads.append(name) or real(name)
    )
    await _runner(tmp_path, ScriptedGenerator(_answer_twice)).run(PROBLEMS[:3])
    assert reads == [] and read_results(tmp_path / RESULTS)[0]["grader"] == first


async def test_tasks_follow_the_problems_in_flight_not_the_size_of_the_run(
    tmp_path: Path,
) -> None:
    # one task per problem, all created up front, held a coroutine for every problem of the
    # run; `concurrency` workers (plus the short tasks that land each finished line) do not
    import asyncio

    alive: list[int] = []

    def answer(prompt: str, sampling: object) -> str:
        alive.append(len(asyncio.all_tasks()))
        return "so \\boxed{2}"

    problems = [Problem(f"p{i}", f"What is {i} + 0?", str(i)) for i in range(200)]
    summary = await Runner(
        ScriptedGenerator(answer), BestOfN(n=1), tmp_path, progress=False, concurrency=4
    ).run(problems)
    assert summary["problems"] == 200 and len(alive) == 200
    assert max(alive) <= 4 + 4 + 2, max(alive)  # workers, lines landing, the test's own task
