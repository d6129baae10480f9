"""The leaderboard (evals/leaderboard): golden tests on small run directories written by hand,
and one built from real Runner runs (scripted generator, no engine)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from evals.grading import grader_info
from evals.leaderboard import build_leaderboard, read_run, read_runs
from evals.leaderboard.compare import compare_rows, find_row
from evals.leaderboard.frontier import equal_compute, interpolate, pareto_mask
from evals.leaderboard.stats import bootstrap_accuracy, paired_bootstrap
from evals.leaderboard.table import build_table, group_runs
from evals.rundir import RUN_CONFIG, trace_filename
from tests.conftest import REPO

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(
    root: Path,
    name: str,
    correct: list[bool | None],
    *,
    search: str = "best_of_n",
    n: int = 4,
    seed: int = 0,
    dataset: str = "arith",
    verifier: str = "none",
    tokens: int = 100,
    expected: int | None = None,
    summary: bool = True,
    ids: list[str] | None = None,
    texts: list[str] | None = None,
    extra_ledger: dict[str, Any] | None = None,
) -> Path:
    """A run directory as `reason` writes it: results.jsonl, summary.json, run.json, traces/,
    .hydra/config.yaml.

    Problem i has gold answer str(i); a correct result predicts it, a wrong one predicts
    i + 1, and the selected chain's text boxes the prediction (unless `texts` says otherwise).
    """
    run = root / name
    (run / "traces").mkdir(parents=True)
    ids = ids or [f"{dataset}-{i:04d}" for i in range(len(correct))]
    config = {
        "dataset": {"name": dataset, "limit": len(correct)},
        "model": {"name": "tiny", "path": "embedded:tiny"},
        "search": {"n": n},
        "verifier": {"name": verifier},
        "budget": {"generated_tokens": None},
        "seed": seed,
        "backend": {"seed": seed},
        "concurrency": 8,
    }
    fingerprint = {
        "dataset.name": dataset,
        "model.path": "embedded:tiny",
        "search.name": search,
        "search.n": n,
        "verifier.name": verifier,
        "budget.generated_tokens": None,
        "seed": seed,
        "backend.seed": seed,
    }
    lines = []
    for i, (pid, ok) in enumerate(zip(ids, correct, strict=True)):
        prediction = str(i) if ok else str(i + 1)
        record = {
            "id": pid,
            "answer": str(i),
            "prediction": prediction,
            "correct": ok,
            "grade_reason": None if ok is not None else "grading timed out after 5s",
            "error": None,
            "ledger": {
                "generated_tokens": tokens,
                "prompt_tokens": 50,
                "cached_prompt_tokens": 25,
                "generator_calls": 1,
                "samples": n,
                "verifier_calls": 2 if verifier != "none" else 0,
                "wall_s": 0.5,
                **(extra_ledger or {}),
            },
            "search": search,
            "search_params": {"n": n, "aggregate": "majority"},
            "seed": seed,
            "grader": grader_info(),
            "problem_hash": f"h{i}",
        }
        lines.append(json.dumps(record))
        text = texts[i] if texts else f"The answer is \\boxed{{{prediction}}}."
        trace = {"id": pid, "selected": "c1", "chains": [{"id": "c0", "text": "x"}]}
        trace["chains"].append({"id": "c1", "text": text})
        (run / "traces" / trace_filename(pid)).write_text(json.dumps(trace))
    (run / "results.jsonl").write_text("".join(line + "\n" for line in lines))
    (run / "run.json").write_text(json.dumps({"format": 2, "fingerprint": fingerprint}))
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))  # written at the start
    if summary:
        graded = [c for c in correct if c is not None]
        (run / "summary.json").write_text(
            json.dumps(
                {
                    "accuracy": sum(graded) / len(graded) if graded else None,
                    "problems": expected if expected is not None else len(correct),
                    "config": config,
                }
            )
        )
    return run


def _bools(pattern: str) -> list[bool | None]:
    """`1101?` -> [True, True, False, True, None]."""
    return [None if c == "?" else c == "1" for c in pattern]


# --- statistics -------------------------------------------------------------------------------


def test_bootstrap_interval_matches_an_index_resampling_reference() -> None:
    correct = np.array(_bools("1101101110" * 3), dtype=float)  # 21 of 30
    est = bootstrap_accuracy(correct, n_bootstrap=2000, seed=7)
    assert est.value == pytest.approx(0.7)
    assert est.low < 0.7 < est.high
    # an independent percentile bootstrap (index resampling, another generator stream)
    rng = np.random.default_rng(12345)
    ref = correct[rng.integers(0, 30, size=(20000, 30))].mean(axis=1)
    lo, hi = np.percentile(ref, [2.5, 97.5])
    assert est.low == pytest.approx(lo, abs=0.034) and est.high == pytest.approx(hi, abs=0.034)
    # normal approximation, for scale: 0.7 +- 1.96 * sqrt(0.21 / 30) = [0.536, 0.864]
    assert 0.49 < est.low < 0.58 and 0.82 < est.high < 0.9
    # deterministic for a seed
    assert bootstrap_accuracy(correct, n_bootstrap=2000, seed=7) == est


def test_all_correct_and_all_wrong_have_degenerate_intervals() -> None:
    ones = bootstrap_accuracy(np.ones((3, 12)))
    assert (ones.value, ones.low, ones.high) == (1.0, 1.0, 1.0)
    zeros = bootstrap_accuracy(np.zeros((1, 12)))
    assert (zeros.value, zeros.low, zeros.high) == (0.0, 0.0, 0.0)
    assert math.isnan(bootstrap_accuracy(np.full((1, 3), np.nan)).value)


def test_seed_bootstrap_is_wider_when_seeds_disagree() -> None:
    # two seeds: one solves everything, one nothing. Resampling seeds shows that spread.
    m = np.vstack([np.ones(40), np.zeros(40)])
    est = bootstrap_accuracy(m, n_bootstrap=2000, seed=0)
    assert est.value == 0.5
    assert est.low == 0.0 and est.high == 1.0  # a replicate may draw the same seed twice
    # the same cells as one seed of 80 problems: problem resampling only, much narrower
    flat = bootstrap_accuracy(m.reshape(1, -1), n_bootstrap=2000, seed=0)
    assert 0.35 < flat.low < 0.5 < flat.high < 0.65


def test_paired_difference_of_identical_rows_is_exactly_zero() -> None:
    a = pd.Series([1.0, 0.0, 1.0, 1.0, 0.0], index=list("abcde"))
    diff = paired_bootstrap(a, a.copy())
    assert (diff.difference.value, diff.difference.low, diff.difference.high) == (0.0, 0.0, 0.0)
    assert diff.only_a == diff.only_b == [] and diff.n == 5


def test_paired_difference_on_common_problems_by_hand() -> None:
    a = pd.Series([1, 1, 1, 0, 1, 0], index=["p1", "p2", "p3", "p4", "p5", "only-a"], dtype=float)
    b = pd.Series([1, 0, 0, 1, 1, 1], index=["p1", "p2", "p3", "p4", "p5", "only-b"], dtype=float)
    diff = paired_bootstrap(a, b, n_bootstrap=3000, seed=1)
    # common p1..p5: A 4/5, B 3/5; differences 0, 1, 1, -1, 0 -> mean 0.2
    assert diff.n == 5
    assert diff.difference.value == pytest.approx(0.2)
    assert (diff.accuracy_a, diff.accuracy_b) == pytest.approx((0.8, 0.6))
    assert diff.only_a == ["p2", "p3"] and diff.only_b == ["p4"]
    assert -1 <= diff.difference.low < 0.2 < diff.difference.high <= 1


# --- frontier ---------------------------------------------------------------------------------


def test_pareto_points_by_hand() -> None:
    x = [100, 200, 300, 50, 300]
    y = [0.5, 0.4, 0.7, 0.2, 0.6]
    # (200, .4) is beaten by (100, .5); (300, .6) by (300, .7); the rest are optimal
    assert pareto_mask(x, y).tolist() == [True, False, True, True, False]


def test_interpolation_by_hand_never_extrapolates() -> None:
    xs, ys = [100, 300, 700], [0.5, 0.7, 0.9]
    assert interpolate(xs, ys, 100) == (0.5, False)
    assert interpolate(xs, ys, 200) == (pytest.approx(0.6), True)
    assert interpolate(xs, ys, 600) == (pytest.approx(0.85), True)
    value, interpolated = interpolate(xs, ys, 800)
    assert math.isnan(value) and not interpolated
    assert math.isnan(interpolate(xs, ys, 50)[0])


def test_equal_compute_table_from_rows(tmp_path: Path) -> None:
    make_run(tmp_path, "bon1", _bools("1000"), n=1, tokens=100)
    make_run(tmp_path, "bon4", _bools("1110"), n=4, tokens=400)
    make_run(tmp_path, "beam", _bools("1100"), search="beam", verifier="prm", tokens=250)
    runs, errors = read_runs([tmp_path])
    assert errors == []
    table = build_table(group_runs(runs), n_bootstrap=200)
    long = equal_compute(table)
    got = {
        (r.controller, r.tokens_per_problem): (r.accuracy, r.interpolated)
        for r in long.itertuples()
    }
    assert got[("best_of_n", 100.0)] == (0.25, False)
    assert got[("best_of_n", 400.0)] == (0.75, False)
    # 250 tokens: 0.25 + (250 - 100) / 300 * 0.5 = 0.5, interpolated
    assert got[("best_of_n", 250.0)] == (pytest.approx(0.5), True)
    assert got[("beam + prm", 250.0)] == (0.5, False)
    assert math.isnan(got[("beam + prm", 100.0)][0])  # one point: nothing to interpolate


# --- reading runs and the table ---------------------------------------------------------------


def test_rows_pool_seeds_and_separate_configs(tmp_path: Path) -> None:
    make_run(tmp_path / "sweep", "0-seed=0", _bools("1111100000"), seed=0, tokens=100)
    make_run(tmp_path / "sweep", "1-seed=1", _bools("1111111100"), seed=1, tokens=300)
    make_run(tmp_path / "sweep", "2-n=8", _bools("1111111111"), n=8, tokens=800)
    runs, errors = read_runs([tmp_path])
    assert errors == [] and len(runs) == 3
    table = build_table(group_runs(runs), n_bootstrap=500)
    assert len(table) == 2
    pooled = table[table["seeds"] == 2].iloc[0]
    assert pooled["accuracy"] == pytest.approx(13 / 20) and pooled["n"] == 20
    assert pooled["ci_low"] < 0.65 < pooled["ci_high"]
    assert pooled["tokens_per_problem"] == 200  # (10 * 100 + 10 * 300) / 20
    assert pooled["cache_hit_rate"] == 0.5 and pooled["wall_s_per_problem"] == 0.5
    assert math.isnan(pooled["critical_path_tokens_per_problem"])  # not recorded
    assert pooled["params"] == "n=4" and pooled["grader"].startswith("reasoning-grader v")
    best = table[table["seeds"] == 1].iloc[0]
    assert (best["accuracy"], best["ci_low"], best["ci_high"]) == (1.0, 1.0, 1.0)
    assert best["params"] == "n=8" and best["config_hash"] != pooled["config_hash"]
    assert list(table["row"]) == [1, 2] and not table["incomplete"].any()


def test_critical_path_tokens_where_recorded(tmp_path: Path) -> None:
    make_run(tmp_path, "r", _bools("10"), extra_ledger={"critical_path_tokens": 30})
    runs, _ = read_runs([tmp_path])
    table = build_table(group_runs(runs), n_bootstrap=50)
    assert table.loc[0, "critical_path_tokens_per_problem"] == 30


def test_ungraded_results_are_left_out_of_accuracy(tmp_path: Path) -> None:
    make_run(tmp_path, "r", _bools("11?0"))
    runs, _ = read_runs([tmp_path])
    row = build_table(group_runs(runs), n_bootstrap=50).iloc[0]
    assert row["accuracy"] == pytest.approx(2 / 3) and row["n"] == 3 and row["ungraded"] == 1


def test_incomplete_runs_are_flagged_not_hidden(tmp_path: Path) -> None:
    make_run(tmp_path, "short", _bools("110100"), expected=10)
    make_run(tmp_path, "killed", _bools("11"), seed=3, n=2, summary=False)
    make_run(tmp_path, "whole", _bools("1100"), n=8)
    runs, errors = read_runs([tmp_path])
    by_name = {run.path.name: run for run in runs}
    assert by_name["short"].incomplete and by_name["killed"].incomplete
    assert not by_name["whole"].incomplete
    messages = [str(e) for e in errors]
    assert any("short/results.jsonl: 6 of 10 problems recorded" in m for m in messages)
    assert any("killed/summary.json: missing" in m for m in messages)
    table = build_table(group_runs(runs), n_bootstrap=50)
    assert len(table) == 3
    assert dict(zip(table["params"], table["incomplete"], strict=True)) == {
        "n=4": True,
        "n=2": True,
        "n=8": False,
    }
    # written before run.json held the selection: N is the summary's count, unknown if killed
    assert dict(zip(table["params"], table["done"], strict=True)) == {
        "n=4": "6/10",
        "n=2": "2/?",
        "n=8": "4/4",
    }


def _select(run: Path, ids: list[str], **keys: Any) -> None:
    """Give a run's run.json the selection the runner records today (make_run writes it the
    older way, without one)."""
    path = run / RUN_CONFIG
    data = json.loads(path.read_text())
    data["selection"] = {"dataset": "arith", "keys": keys, "problems": len(ids), "ids": ids}
    path.write_text(json.dumps(data))


def test_a_partial_run_shows_k_of_n_from_its_selection(tmp_path: Path) -> None:
    ids = [f"arith-{i:04d}" for i in range(10)]
    # a rerun with a larger selection killed after 3: the summary is the earlier, whole one
    stale = make_run(tmp_path, "stale", _bools("110"), ids=ids[:3], tokens=50)
    _select(stale, ids, **{"dataset.limit": 10})
    whole = make_run(tmp_path, "whole", _bools("1101"), n=8, ids=ids[:4])
    _select(whole, ids[:4], **{"dataset.limit": 4})
    runs, errors = read_runs([tmp_path])
    by_name = {run.path.name: run for run in runs}
    assert by_name["stale"].done == (3, 10) and by_name["stale"].incomplete
    assert by_name["whole"].done == (4, 4) and not by_name["whole"].incomplete
    assert any("stale/results.jsonl: 3 of 10 problems recorded" in str(e) for e in errors)
    board = build_leaderboard([tmp_path], tmp_path / "board", n_bootstrap=50, audit=False)
    table = board.table
    assert dict(zip(table["params"], table["done"], strict=True)) == {"n=4": "3/10", "n=8": "4/4"}
    assert dict(zip(table["params"], table["incomplete"], strict=True)) == {
        "n=4": True,
        "n=8": False,
    }
    assert "| 3/10 |" in (tmp_path / "board" / "leaderboard.md").read_text()
    assert set(pd.read_csv(tmp_path / "board" / "leaderboard.csv")["done"]) == {"3/10", "4/4"}
    # the partial row is no point of the frontier: its accuracy is over 3 of 10 problems
    assert set(board.equal_compute["tokens_per_problem"]) == {100}


def test_a_results_file_alone_says_what_produced_it(tmp_path: Path) -> None:
    run = make_run(tmp_path, "bare", _bools("11"), summary=False)
    (run / RUN_CONFIG).unlink()
    (run / ".hydra" / "config.yaml").unlink()
    lines = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    provenance = {
        "model": "tiny-recorded",
        "dataset": "arith-recorded",
        "verifier": "prm-recorded",
        "budget": {"generated_tokens": 300, "samples": None},
    }
    (run / "results.jsonl").write_text("".join(json.dumps(r | provenance) + "\n" for r in lines))
    found = read_run(run)
    assert (found.model, found.dataset, found.verifier) == (
        "tiny-recorded",
        "arith-recorded",
        "prm-recorded",
    )
    assert found.budget == "generated_tokens=300"


def test_bad_run_directories_give_located_errors_and_the_good_runs_stay(tmp_path: Path) -> None:
    make_run(tmp_path, "good", _bools("1101"))
    torn = make_run(tmp_path, "torn", _bools("111"), n=2)
    with (torn / "results.jsonl").open("a") as f:
        f.write('{"id": "arith-0003", "answ')  # killed mid-write
    corrupt = make_run(tmp_path, "corrupt", _bools("1111"), n=3)
    lines = (corrupt / "results.jsonl").read_text().splitlines()
    lines[1] = "not json at all"
    (corrupt / "results.jsonl").write_text("\n".join(lines) + "\n")
    make_run(tmp_path, "nosummary", _bools("10"), n=5, summary=False)
    mixed = make_run(tmp_path, "mixed", _bools("101"), n=6)
    lines = (mixed / "results.jsonl").read_text().splitlines()
    third = json.loads(lines[2])
    third["search_params"]["n"] = 16
    lines[2] = json.dumps(third)
    (mixed / "results.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "missing").mkdir()

    runs, errors = read_runs([tmp_path, tmp_path / "nowhere"])
    messages = [str(e) for e in errors]

    def located(fragment: str) -> list[str]:
        return [m for m in messages if fragment in m]

    assert located(f"{torn}/results.jsonl:4: torn last line")
    assert located(f"{corrupt}/results.jsonl:2: not JSON")
    assert located(f"{tmp_path / 'nosummary'}/summary.json: missing")
    assert located(f"{mixed}/results.jsonl:3: a different config than line 1")
    assert located("search_params.n: 6 -> 16")
    assert located(f"{tmp_path / 'nowhere'}: no such directory")
    # the readable lines are kept; the damaged runs are flagged, the mixed one left out
    by_name = {run.path.name: run for run in runs}
    assert len(by_name["torn"].records) == 3 and not by_name["torn"].incomplete
    assert len(by_name["corrupt"].records) == 3 and by_name["corrupt"].incomplete
    assert not by_name["mixed"].usable
    table = build_table(group_runs(runs), n_bootstrap=50)
    assert sorted(table["params"]) == ["n=2", "n=3", "n=4", "n=5"]
    good = table[table["params"] == "n=4"].iloc[0]
    assert good["accuracy"] == 0.75 and not good["incomplete"]
    # nothing was written into the run directories
    assert (torn / "results.jsonl").read_text().endswith('"answ')


def test_read_run_never_modifies_and_reads_trace_names(tmp_path: Path) -> None:
    ids = ["test/algebra/1.json", "test/algebra/2.json"]
    run = make_run(tmp_path, "math", _bools("10"), ids=ids, dataset="math500")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    got = read_run(run)
    assert [r["id"] for r in got.records] == ids and got.dataset == "math500"
    assert got.model == "tiny" and got.search == "best_of_n" and got.budget == "unlimited"
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


# --- the whole leaderboard --------------------------------------------------------------------


def _sweep(root: Path) -> Path:
    sweep = root / "multirun" / "2026-01-05" / "10-00-00"
    make_run(sweep, "0-search=greedy", _bools("1100000000"), search="greedy", n=1, tokens=40)
    make_run(sweep, "1-search.n=4", _bools("1111000000"), n=4, tokens=160)
    make_run(sweep, "2-search.n=8", _bools("1111110000"), n=8, tokens=320)
    make_run(sweep, "3-search.n=16", _bools("1111100000"), n=16, tokens=640)
    ids = [f"test/p/{i}.json" for i in range(10)]
    make_run(root / "other", "beam", _bools("11111"), search="beam", verifier="prm",
             tokens=200, dataset="math500", ids=ids[:5])  # fmt: skip
    return sweep


def test_build_leaderboard_writes_every_file(tmp_path: Path) -> None:
    _sweep(tmp_path / "runs")
    out = tmp_path / "board"
    board = build_leaderboard([tmp_path / "runs"], out, n_bootstrap=300, compare=["1", "2"])
    names = {p.name for p in board.files}
    assert {
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.html",
        "equal-compute.md",
        "equal-compute.csv",
        "frontier-arith.png",
        "frontier-arith.svg",
        "frontier-math500.png",
        "frontier-math500.svg",
        "compare.md",
        "audit.md",
        "audit.csv",
    } == names
    assert all(p.exists() for p in board.files)
    png = (out / "frontier-arith.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    svg = (out / "frontier-arith.svg").read_text()
    assert "<svg" in svg and "Pareto frontier" in svg and "best_of_n" in svg

    csv = pd.read_csv(out / "leaderboard.csv")
    assert len(csv) == 5 and list(csv["row"]) == [1, 2, 3, 4, 5]
    arith = csv[csv["dataset"] == "arith"].set_index("tokens_per_problem")
    assert arith.loc[40, "search"] == "greedy" and arith.loc[40, "accuracy"] == 0.2
    assert arith.loc[320, "accuracy"] == 0.6 and arith.loc[320, "params"] == "n=8"
    md = (out / "leaderboard.md").read_text()
    assert md.startswith("# Leaderboard") and "| beam | " in md and "| 0.600 |" in md

    # rows sort by dataset, model, controller, tokens: row 1 is best_of_n n=4 (160 tokens,
    # 4/10), row 2 n=8 (320 tokens, 6/10), row 4 greedy
    assert list(csv["search"]) == ["best_of_n"] * 3 + ["greedy", "beam"]
    comparison = board.comparison
    assert comparison is not None and comparison.result.n == 10
    assert comparison.result.difference.value == pytest.approx(-0.2)
    assert comparison.result.only_b == ["arith-0004", "arith-0005"]
    assert "only row 2 solved (2): arith-0004, arith-0005" in (out / "compare.md").read_text()

    eq = pd.read_csv(out / "equal-compute.csv")
    interp = eq[(eq["controller"] == "best_of_n") & (eq["tokens_per_problem"] == 40)]
    assert interp["accuracy"].isna().all()  # below its first point: never extrapolated

    assert board.audit is not None and board.audit.empty
    assert board.audit_counts == {
        "checked": 45,
        "agree": 45,
        "disagree": 0,
        "undecided": 0,
        "skipped": 0,
    }


def test_html_is_offline_sortable_filterable_with_a_linked_matrix(tmp_path: Path) -> None:
    _sweep(tmp_path / "runs")
    out = tmp_path / "board"
    build_leaderboard([tmp_path / "runs"], out, n_bootstrap=100, audit=False)
    page = (out / "leaderboard.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    # sorting and filtering are driven in headless Chromium: tests/test_leaderboard_browser.py
    board = page.split('<table class="board"', 1)[1].split("</table>", 1)[0]
    assert board.count("<tr") == 6  # header + 5 rows
    assert '<td class="text">greedy</td>' in board
    assert page.count('<table class="matrix"') == 2
    # every mark links to its page in the run's trace viewer, relative to the page, and the
    # page is there; the viewer shows that problem
    links = [
        part.split('"', 1)[0] for part in page.split('<a href="')[1:] if "/problems/" in part[:200]
    ]
    assert len(links) == 45
    assert all(link.startswith("viewers/row") for link in links)
    assert all((out / link).is_file() for link in links)
    name = trace_filename("test/p/3.json")
    assert "~" in name and any(
        link.endswith(name.removesuffix(".json") + ".html") for link in links
    )
    # without viewers, the marks link to the trace files themselves
    plain = tmp_path / "plain"
    build_leaderboard([tmp_path / "runs"], plain, n_bootstrap=100, audit=False, viewer=False)
    text = (plain / "leaderboard.html").read_text()
    assert f"other/beam/traces/{name}" in text and "viewers/" not in text


def test_grader_audit_lists_disagreements_and_never_changes_scores(tmp_path: Path) -> None:
    texts = [
        "The answer is \\boxed{0}.",  # right, both agree
        "I think 2... \\boxed{5}",  # recorded right, but the chain says 5 for gold 1
        "so \\boxed{3}",  # recorded wrong, the chain's answer is 3 for gold 2
    ]
    make_run(tmp_path / "runs", "r", _bools("110"), texts=texts)
    board = build_leaderboard([tmp_path / "runs"], tmp_path / "board", n_bootstrap=50)
    assert board.table.loc[0, "accuracy"] == pytest.approx(2 / 3)  # unchanged by the audit
    assert board.audit is not None
    rows = board.audit.set_index("id")
    assert sorted(rows.index) == ["arith-0001"]  # id 2 is wrong (3 vs gold 2) for both
    assert rows.loc["arith-0001", "grader"] and not rows.loc["arith-0001", "math_verify"]
    assert rows.loc["arith-0001", "source"] == "chain" and rows.loc["arith-0001", "row"] == 1
    assert board.audit_counts["disagree"] == 1 and board.audit_counts["agree"] == 2
    md = (tmp_path / "board" / "audit.md").read_text()
    assert "| arith-0001 | 1 | 1 | right |" in md and "| wrong |" in md


def test_compare_refuses_unknown_rows_before_writing(tmp_path: Path) -> None:
    make_run(tmp_path / "runs", "r", _bools("10"))
    with pytest.raises(ValueError, match="no row matches '9'"):
        build_leaderboard([tmp_path / "runs"], tmp_path / "board", compare=["1", "9"])
    assert not (tmp_path / "board").exists()
    runs, _ = read_runs([tmp_path / "runs"])
    groups = group_runs(runs)
    table = build_table(groups, n_bootstrap=50)
    prefix = table.loc[0, "config_hash"][:6]
    assert find_row(table, prefix)["row"] == 1
    same = compare_rows(table, groups, "1", prefix)
    assert same.result.difference.value == 0 and same.result.difference.high == 0


# --- the command ------------------------------------------------------------------------------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evals.leaderboard.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_help() -> None:
    done = _cli("--help")
    assert done.returncode == 0
    for text in ("RUN_DIR", "--out", "--compare", "--bootstrap", "--seed", "leaderboard.html"):
        assert text in done.stdout


def test_cli_builds_a_leaderboard_and_reports_bad_runs(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "runs")
    make_run(sweep, "4-killed", _bools("1"), n=32, summary=False)
    out = tmp_path / "board"
    done = _cli(tmp_path / "runs", "--out", out, "--bootstrap", "200", "--compare", "1", "2")
    assert done.returncode == 0, done.stderr
    assert f"wrote     {out / 'leaderboard.html'}" in done.stdout
    assert "read      6 run(s) into 6 row(s); 1 incomplete (flagged)" in done.stdout
    # the killed run (100 tokens) sorts first among best_of_n
    assert (
        "row 1 (best_of_n n=32; incomplete, done 1/?) - row 2 (best_of_n n=4) on 1 common problems"
        in done.stdout
    )
    assert f"problem   {sweep / '4-killed' / 'summary.json'}: missing" in done.stderr
    assert (out / "frontier-arith.svg").stat().st_size > 0
    # the incomplete run (100 tokens) is in the table but not among the frontier's points
    assert 100 in set(pd.read_csv(out / "leaderboard.csv")["tokens_per_problem"])
    assert 100 not in set(pd.read_csv(out / "equal-compute.csv")["tokens_per_problem"])


def test_cli_exit_codes_without_runs_and_with_a_bad_row(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = _cli(tmp_path / "empty", "--out", tmp_path / "board", "--no-audit")
    assert done.returncode == 1 and "no run could be read" in done.stderr
    assert "no run directory" in done.stderr
    make_run(tmp_path / "runs", "r", _bools("1"))
    bad = _cli(tmp_path / "runs", "--out", tmp_path / "b2", "--compare", "1", "zz")
    assert bad.returncode == 2 and "no row matches 'zz'" in bad.stderr
    assert _cli(tmp_path / "runs").returncode == 2  # --out is required


# --- runs written by the real Runner (scripted generator, no engine) ------------------------


def test_leaderboard_of_runs_written_by_the_runner(tmp_path: Path) -> None:
    import asyncio

    from evals.runner import Runner
    from reasoning import Problem
    from search import BestOfN
    from tests.fakes import ScriptedGenerator

    problems = [Problem(f"toy/{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(6)]

    def answer(prompt: str, sampling: object) -> str:
        i = int(prompt.split("What is ")[1].split(" +")[0])
        return f"so \\boxed{{{2 * i if i % 3 else 99}}}"  # wrong for 0 and 3

    config = {"dataset": {"name": "toy"}, "model": {"name": "scripted"}}
    for n in (1, 2):
        runner = Runner(
            ScriptedGenerator(answer), BestOfN(n=n), tmp_path / "runs" / f"n{n}",
            config=config, progress=False,
        )  # fmt: skip
        asyncio.run(runner.run(problems))
    board = build_leaderboard([tmp_path / "runs"], tmp_path / "board", n_bootstrap=200)
    assert board.errors == []
    table = board.table
    assert list(table["params"]) == ["n=1", "n=2"] and set(table["dataset"]) == {"toy"}
    assert list(table["accuracy"]) == pytest.approx([4 / 6, 4 / 6])
    assert not table["incomplete"].any() and (table["n"] == 6).all()
    assert list(table["done"]) == ["6/6", "6/6"]
    # one token per word: "so \\boxed{..}" is 2 tokens a sample, n samples a problem
    assert list(table["tokens_per_problem"]) == [2.0, 4.0]
    assert board.audit_counts["checked"] == 12 and board.audit_counts["disagree"] == 0
    page = (tmp_path / "board" / "leaderboard.html").read_text()
    links = [p.split('"', 1)[0] for p in page.split('<a href="')[1:]]
    assert len(links) == 12 and all((tmp_path / "board" / link).is_file() for link in links)


def test_a_killed_runner_run_is_a_row_that_says_k_of_n(tmp_path: Path) -> None:
    import asyncio

    from evals.faults import RunInterrupted
    from evals.runner import Runner
    from reasoning import Problem
    from search import BestOfN
    from tests.fakes import ScriptedGenerator

    problems = [Problem(f"toy/{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(6)]
    dying = ScriptedGenerator(
        lambda prompt, sampling: "\\boxed{0}", fail_on=lambda prompt: "What is 3 +" in prompt
    )
    config = {"dataset": {"name": "toy", "limit": 6}, "model": {"name": "scripted"}}
    runner = Runner(
        dying, BestOfN(n=1), tmp_path / "runs" / "killed", config=config, progress=False,
        concurrency=1,
    )  # fmt: skip
    with pytest.raises(RunInterrupted):
        asyncio.run(runner.run(problems))
    board = build_leaderboard([tmp_path / "runs"], tmp_path / "board", n_bootstrap=50)
    (row,) = board.table.to_dict("records")
    recorded = len((tmp_path / "runs" / "killed" / "results.jsonl").read_text().splitlines())
    assert recorded < 6 and row["done"] == f"{recorded}/6" and row["incomplete"]
    assert (row["dataset"], row["model"]) == ("toy", "scripted")


def test_readers_take_the_run_directory_format_from_its_owner() -> None:
    """The leaderboard and the viewer read run directories through evals.rundir, never by
    importing the runner (which would make the run loop their contract)."""
    import ast

    readers = sorted((REPO / "evals" / "leaderboard").glob("*.py"))
    readers += sorted((REPO / "evals" / "viewer").glob("*.py"))
    assert readers
    for path in readers:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "evals.runner" not in imported, path
    uses = (REPO / "evals" / "leaderboard" / "runs.py").read_text(encoding="utf-8")
    assert "from evals.rundir import" in uses
