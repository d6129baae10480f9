"""The budget advisor (evals/leaderboard/advisor.py, `reason-advise`) and `search=auto`
(evals/auto.py), on a board built from hand-made run directories whose per-problem
correctness is known, so the frontier, its order and the paired intervals are hand-checked.

The board (dataset arith unless said; 20 problems; correct = the first k problems):

    row  model         search     params  tokens  correct  accuracy
     1   big           best_of_n  n=4      100     20/20    1.00
     2   smollm2-135m  beam                300      6/20    0.30   dominated (row 4, row 5)
     3   smollm2-135m  best_of_n  n=2       10     20/20    1.00   incomplete (20 of 25)
     4   smollm2-135m  best_of_n  n=4      200     12/20    0.60
     5   smollm2-135m  best_of_n  n=6      300     17/20    0.85
     6   smollm2-135m  best_of_n  n=8      400     18/20    0.90
     7   smollm2-135m  best_of_n  n=16     800     20/20    1.00
     8   smollm2-135m  greedy               50      8/20    0.40
     9   smollm2-135m  greedy (countdown)   50      2/2     1.00   incomplete (2 of 3)
    10   smollm2-135m  greedy (math500)     50      1/2     0.50

Rows are numbered by dataset, model, search, verifier, tokens (evals/leaderboard/table.py).
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from evals.advise_cli import main as advise_main
from evals.grading import grader_info
from evals.leaderboard import build_leaderboard
from evals.leaderboard.advisor import (
    AdvisorError,
    Pick,
    advise,
    advise_board,
    picks_json,
    read_board,
)
from reasoning.build import ConfigError, build_search, compose_config, resolve_search
from search import BestOfN

MODEL = "smollm2-135m"  # conf/model/smollm2-135m.yaml's name: what search=auto asks the board
N = 20


def write_run(
    root: Path,
    name: str,
    k: int,
    *,
    search: str,
    params: dict[str, Any],
    tokens: int,
    model: str = MODEL,
    dataset: str = "arith",
    n: int = N,
    selected: int | None = None,
) -> Path:
    """A finished run as `reason` writes it: the first `k` of `n` problems correct, each
    spending `tokens`; `selected` > n makes it incomplete (its summary counts more problems)."""
    run = root / name
    run.mkdir(parents=True)
    config = {
        "dataset": {"name": dataset},
        "model": {"name": model, "path": f"embedded:{model}"},
        "search": {"name": search, **params},
        "verifier": {"name": "none"},
        "seed": 0,
    }
    fingerprint = {
        "dataset.name": dataset,
        "model.path": f"embedded:{model}",
        "search.name": search,
        **{f"search.{key}": value for key, value in params.items()},
        "verifier.name": "none",
        "seed": 0,
    }
    lines = []
    for i in range(n):
        record = {
            "id": f"{dataset}-{i:04d}",
            "answer": str(i),
            "prediction": str(i) if i < k else "x",
            "correct": i < k,
            "error": None,
            "ledger": {"generated_tokens": tokens, "verifier_calls": 0, "wall_s": 0.25},
            "search": search,
            "search_params": params,
            "seed": 0,
            "grader": grader_info(),
            "problem_hash": f"h{i}",
        }
        lines.append(json.dumps(record) + "\n")
    (run / "results.jsonl").write_text("".join(lines))
    (run / "run.json").write_text(json.dumps({"format": 2, "fingerprint": fingerprint}))
    summary = {"accuracy": k / n, "problems": selected or n, "config": config}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def bon(n: int) -> dict[str, Any]:
    return {"n": n, "aggregate": "majority"}


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("advisor")
    runs = root / "runs"
    write_run(runs, "big-bon4", 20, search="best_of_n", params=bon(4), tokens=100, model="big")
    write_run(runs, "beam", 6, search="beam", params={"width": 4}, tokens=300)
    write_run(runs, "bon2", 20, search="best_of_n", params=bon(2), tokens=10, selected=25)
    write_run(runs, "bon4", 12, search="best_of_n", params=bon(4), tokens=200)
    write_run(runs, "bon6", 17, search="best_of_n", params=bon(6), tokens=300)
    write_run(runs, "bon8", 18, search="best_of_n", params=bon(8), tokens=400)
    write_run(runs, "bon16", 20, search="best_of_n", params=bon(16), tokens=800)
    write_run(runs, "greedy", 8, search="greedy", params={"max_tokens": 512}, tokens=50)
    greedy = {"max_tokens": 512}
    write_run(runs, "m500", 1, search="greedy", params=greedy, tokens=50, dataset="math500", n=2)
    write_run(
        runs, "cd", 2, search="greedy", params=greedy, tokens=50, dataset="countdown", n=2,
        selected=3,
    )  # fmt: skip
    out = root / "board"
    built = build_leaderboard([runs], out, audit=False, viewer=False)
    # the table the docstring draws: a wrong row number here would make every test below lie
    rows = built.table.set_index("row")
    assert list(rows["search"]) == ["best_of_n", "beam"] + ["best_of_n"] * 5 + ["greedy"] * 3
    assert list(rows["tokens_per_problem"]) == [100, 300, 10, 200, 300, 400, 800, 50, 50, 50]
    assert list(rows["incomplete"]) == [False, False, True] + [False] * 5 + [True, False]
    return out


def tiny(board: Path, budget: float, **kwargs: Any) -> Any:
    (advice,) = advise_board(board, dataset="arith", model=MODEL, budget=budget, **kwargs)
    return advice


# --- the frontier within the budget -----------------------------------------------------------


def test_the_frontier_within_the_budget_best_first(board: Path) -> None:
    advice = tiny(board, 400)
    # within 400 (complete): rows 2 (300), 4 (200), 5 (300), 6 (400, exactly at it), 8 (50);
    # row 2 (0.30 at 300) is dominated by row 4 (0.60 at 200); the rest each buy accuracy
    assert advice.within == 5
    assert [p.row for p in advice.picks] == [6, 5, 4, 8]
    assert [p.accuracy for p in advice.picks] == pytest.approx([0.9, 0.85, 0.6, 0.4])
    assert [p.tokens_per_problem for p in advice.picks] == [400, 300, 200, 50]
    assert advice.left_out == ["row 3 (incomplete)"]  # 10 tokens and 1.00: would win, if kept
    best = advice.best
    assert (best.search, best.search_params, best.params) == ("best_of_n", bon(8), "n=8")
    assert best.ci_low <= 0.9 <= best.ci_high and best.wall_s_per_problem == 0.25


def test_a_row_exactly_at_the_budget_is_in_and_a_hair_below_it_is_out(board: Path) -> None:
    # `<` for `<=` would lose row 6 (400 tokens) at a budget of 400
    assert tiny(board, 400).best.row == 6
    assert tiny(board, 399.9).best.row == 5  # row 6 is out: row 5 (0.85 at 300) leads
    assert [p.row for p in tiny(board, 800).picks] == [7, 6, 5, 4, 8]
    assert [p.row for p in tiny(board, 50).picks] == [8]  # greedy alone, exactly at 50


def test_the_best_is_the_most_accurate_not_the_cheapest(board: Path) -> None:
    # picking by tokens would put greedy (row 8, 50 tokens) first
    picks = tiny(board, 1000).picks
    assert picks[0].row == 7 and picks[-1].row == 8
    assert [p.accuracy for p in picks] == sorted((p.accuracy for p in picks), reverse=True)


def test_equal_accuracy_the_cheaper_ranks_first_and_both_stay() -> None:
    """pareto_mask keeps exact ties; the order breaks them by tokens, then row."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "row": [1, 2, 3],
            "dataset": ["d"] * 3,
            "model": ["m"] * 3,
            "search": ["a", "b", "c"],
            "params": [""] * 3,
            "verifier": ["none"] * 3,
            "accuracy": [0.5, 0.5, 0.5],
            "ci_low": [0.4] * 3,
            "ci_high": [0.6] * 3,
            "tokens_per_problem": [30.0, 20.0, 20.0],
            "verifier_calls_per_problem": [0.0] * 3,
            "wall_s_per_problem": [1.0] * 3,
            "config_hash": ["h1", "h2", "h3"],
            "incomplete": [False] * 3,
            "search_params": ["{}"] * 3,
        }
    )
    advice = advise(table, {}, dataset="d", model="m", budget=30)
    # row 1 (0.5 at 30) is dominated by rows 2 and 3 (0.5 at 20), which tie: both kept
    assert [p.row for p in advice.picks] == [2, 3]
    assert advice.picks[1].diff is None  # no runs given: shown, not compared


# --- the paired comparison --------------------------------------------------------------------


def test_the_best_against_each_frontier_row_on_common_problems(board: Path) -> None:
    advice = tiny(board, 400)
    best, bon6, bon4, greedy = advice.picks
    assert best.diff is None and best.significant is None
    # row 6 - row 5: problem 17 alone (row 6 solves 18, row 5 17): diff 1/20 = 0.05. The
    # bootstrap draws 20 problems: no draw of problem 17 has probability 0.95**20 = 0.358 >
    # 0.025, so the 2.5th percentile is exactly 0 (CI contains 0: not significant); P(at most
    # 2 draws) = 0.925 < 0.975 <= P(at most 3) = 0.984, so the 97.5th percentile is 3/20
    assert (bon6.diff, bon6.diff_low, bon6.diff_high) == pytest.approx((0.05, 0.0, 0.15))
    assert bon6.n_common == 20 and bon6.significant is False  # `<` for `<=` would flip it
    # row 6 - row 4: problems 12..17, diff 6/20 = 0.3; no draw of any of the six has
    # probability 0.7**20 = 0.0008 and at most one 0.0076, both < 0.025: the low end > 0
    assert bon4.diff == pytest.approx(0.3) and bon4.diff_low > 0 and bon4.significant is True
    # row 6 - row 8: problems 8..17, diff 0.5
    assert greedy.diff == pytest.approx(0.5) and greedy.significant is True
    text = advice.text()
    assert (
        "row 6 is not significantly better than row 5 (diff +0.050, CI +0.000..+0.150, 20 "
        "problems); row 5 costs 75% of row 6's tokens"  # 300 / 400
    ) in text
    assert "row 6 is significantly better than row 8 (diff +0.500" in text
    assert "row 8 costs 12% of row 6's tokens" in text  # 50 / 400 = 12.5%, shown as 12%


def test_a_significant_worse_difference_is_called_worse() -> None:
    p = Pick(1, "d", "m", "s", "", {}, "none", 0.5, 0.4, 0.6, 10, 0, 1, "h", -0.2, -0.3, -0.1, 9)
    q = Pick(2, "d", "m", "s", "", {}, "none", 0.5, 0.4, 0.6, 20, 0, 1, "h", None, None, None)
    from evals.leaderboard.advisor import Advice

    advice = Advice("b", "d", "m", 20, [q, p], 2)
    assert p.significant is True
    assert advice.sentence(p).startswith("row 2 is significantly worse than row 1 (diff -0.200")


def test_rows_whose_runs_are_gone_are_shown_not_compared(board: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "board"
    shutil.copytree(board, copy)
    table = read_board(copy)
    table.loc[table["row"] == 5, "run_dirs"] = str(tmp_path / "gone")
    table.to_csv(copy / "leaderboard.csv", index=False)
    advice = tiny(copy, 400)
    assert [p.row for p in advice.picks] == [6, 5, 4, 8] and advice.unreadable == ["5"]
    assert advice.picks[1].diff is None and advice.picks[2].diff == pytest.approx(0.3)
    assert "row 6 against row 5: not compared (runs not readable)" in advice.text()


# --- models and refusals ----------------------------------------------------------------------


def test_without_a_model_each_model_gets_its_own_frontier(board: Path) -> None:
    advice = advise_board(board, dataset="arith", budget=400)
    assert [a.model for a in advice] == ["big", MODEL]
    assert [p.row for p in advice[0].picks] == [1]
    assert [p.row for p in advice[1].picks] == [6, 5, 4, 8]
    # at 60 tokens big has nothing (its row spends 100): left out, the other model answers
    (only,) = advise_board(board, dataset="arith", budget=60)
    assert only.model == MODEL and [p.row for p in only.picks] == [8]


def test_refusals_name_the_board_what_was_asked_and_what_it_has(board: Path) -> None:
    has = "arith (big, smollm2-135m); countdown (smollm2-135m); math500 (smollm2-135m)"
    with pytest.raises(AdvisorError) as no_dataset:
        advise_board(board, dataset="gsm8k", budget=400)
    assert str(no_dataset.value) == f"{board} has no row for dataset 'gsm8k'; it has: {has}"
    with pytest.raises(AdvisorError) as no_model:
        advise_board(board, dataset="arith", model="huge", budget=400)
    assert str(no_model.value) == (
        f"{board} has no row for dataset 'arith', model 'huge'; it has: {has}"
    )
    with pytest.raises(AdvisorError) as too_small:
        tiny(board, 49.9)
    # the cheapest complete row is greedy at 50 (row 3, 10 tokens, is incomplete)
    assert str(too_small.value) == (
        f"no row of {board} for dataset 'arith', model '{MODEL}' is within 49.9 "
        "tokens/problem: the cheapest, row 8 (greedy), spends 50.0; raise the budget to at "
        "least that"
    )
    with pytest.raises(AdvisorError, match=r"only incomplete rows .*\(row 9 \(incomplete\)\)"):
        advise_board(board, dataset="countdown", budget=400)
    with pytest.raises(AdvisorError, match="no leaderboard at .*leaderboard.csv"):
        advise_board(board / "nope", dataset="arith", budget=400)
    with pytest.raises(AdvisorError, match="budget must be a number of tokens > 0"):
        advise_board(board, dataset="arith", budget=0)


# --- reason-advise ----------------------------------------------------------------------------


def test_cli_prints_the_frontier(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = advise_main([str(board), "--dataset", "arith", "--model", MODEL, "--budget", "400"])
    out = capsys.readouterr().out
    assert code == 0
    assert "frontier  4 of 5 complete row(s) within the budget; left out: row 3 (incomplete)" in out
    lines = out.splitlines()
    ranked = [line.split()[:3] for line in lines[3:7]]
    assert ranked == [["1", "6", "best_of_n"], ["2", "5", "best_of_n"], ["3", "4", "best_of_n"],
                      ["4", "8", "greedy"]]  # fmt: skip
    assert "0.900" in lines[3] and "400.0" in lines[3] and "0.25" in lines[3]
    assert "row 6 is not significantly better than row 5" in out


def test_cli_json_is_a_list_of_picks(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(board), "--dataset", "arith", "--model", MODEL, "--budget", "400", "--json"]
    assert advise_main(args) == 0
    picks = json.loads(capsys.readouterr().out)
    assert [p["row"] for p in picks] == [6, 5, 4, 8]
    common = {"row", "search", "search_params", "accuracy", "ci_low", "ci_high"}
    common |= {"tokens_per_problem", "best"}
    assert all(common <= set(p) for p in picks)
    assert picks[0]["best"] is True and "diff" not in picks[0]
    assert picks[0]["search_params"] == bon(8) and picks[0]["tokens_per_problem"] == 400
    assert {"diff", "diff_low", "diff_high", "significant"} <= set(picks[1])
    assert picks[1]["significant"] is False and picks[2]["significant"] is True
    assert picks[1]["diff"] == pytest.approx(0.05)
    assert picks_json([]) == []


def test_cli_refuses_with_exit_2(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert advise_main([str(board), "--dataset", "gsm8k", "--budget", "400"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"reason-advise: error: {board} has no row for dataset 'gsm8k'")
    assert advise_main([str(board), "--dataset", "arith", "--budget", "5"]) == 2
    assert "the cheapest, row 8 (greedy), spends 50.0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        advise_main([str(board), "--dataset", "arith", "--budget", "-1"])
    assert bad.value.code == 2


# --- search=auto ------------------------------------------------------------------------------


def advised_hash(board: Path, row: int) -> str:
    table = read_board(board)
    return str(table.loc[table["row"] == row, "config_hash"].iloc[0])


def auto(board: Path, *overrides: str) -> Any:
    return compose_config(["search=auto", f"search.advisor={board}", *overrides])


def test_search_auto_resolves_to_the_best_row_within_the_budget(board: Path) -> None:
    cfg = auto(board, "budget.generated_tokens=400")
    resolved = resolve_search(cfg)
    assert resolved.search._target_ == "search.best_of_n.BestOfN"
    assert OmegaConf.to_container(resolved.search) == {
        "_target_": "search.best_of_n.BestOfN",
        **bon(8),
    }
    advised = OmegaConf.to_container(resolved.advised)
    assert advised["row"] == 6 and advised["board"] == str(board)
    assert advised["search"] == "best_of_n" and advised["search_params"] == bon(8)
    assert advised["budget_tokens"] == 400 and advised["tokens_per_problem"] == 400
    assert advised["accuracy"] == pytest.approx(0.9)
    assert cfg.search._target_ == "evals.auto.Auto"  # the given config is left as it was
    built = build_search(cfg)  # build_search resolves too: the API's and the server's path
    assert isinstance(built, BestOfN) and built.n == 8 and built.aggregate == "majority"
    assert resolve_search(resolved) is resolved  # a resolved config stays as it is


def test_search_budget_tokens_wins_over_the_run_budget(board: Path) -> None:
    cfg = auto(board, "search.budget_tokens=300", "budget.generated_tokens=400")
    built = build_search(cfg)
    assert isinstance(built, BestOfN) and built.n == 6  # row 5: 0.85 at 300


def test_search_auto_refuses_clearly(board: Path) -> None:
    with pytest.raises(ConfigError, match=r"search=auto needs search.advisor=BOARD_DIR"):
        build_search(compose_config(["search=auto", "budget.generated_tokens=400"]))
    with pytest.raises(ConfigError, match=r"search=auto needs a budget: search.budget_tokens"):
        build_search(auto(board))
    with pytest.raises(ConfigError, match=r"search.budget_tokens"):
        build_search(auto(board, "search.budget_tokens=-3"))
    with pytest.raises(ConfigError) as small:
        build_search(auto(board, "budget.generated_tokens=20"))
    assert str(small.value).startswith(f"search=auto: no row of {board} for dataset 'arith'")
    assert "the cheapest, row 8 (greedy), spends 50.0" in str(small.value)
    with pytest.raises(ConfigError, match=r"has no row for dataset 'arith', model 'other'"):
        build_search(auto(board, "budget.generated_tokens=400", "model.name=other"))
    # the board's rows ran without a verifier: a run with one is not offered them
    with pytest.raises(ConfigError, match=r"model 'smollm2-135m', verifier 'arith'"):
        build_search(auto(board, "budget.generated_tokens=400", "verifier=arith"))
    with pytest.raises(ConfigError, match=r"no leaderboard at"):
        build_search(auto(board / "missing", "budget.generated_tokens=400"))


def test_auto_itself_never_runs() -> None:
    from evals.auto import Auto

    with pytest.raises(ConfigError, match="resolved to the advisor's pick"):
        asyncio.run(Auto(advisor="b").run(None, None))


def test_search_node_rebuilds_a_nested_strategy() -> None:
    from evals.auto import search_node

    node = search_node("threads", {"n": 2, "strategy": {"name": "hogwild", "workers": 2}})
    assert node["_target_"] == "search.threads.Threads" and node["n"] == 2
    assert node["strategy"]["_target_"].endswith("Hogwild") and "name" not in node["strategy"]
    with pytest.raises(ConfigError, match="search=nope, which has no conf/search/nope.yaml"):
        search_node("nope", {}, row=4)


def test_an_auto_run_records_the_pick_and_is_a_row_of_its_own(board: Path, tmp_path: Path) -> None:
    """Run the pick (scripted generator, no engine): the result lines carry the picked
    controller's name and params and `advised`; the summary's config too; on a board built
    with the original runs, the auto run is its own row next to the one it was picked from."""
    from evals.experiment import what_runs
    from evals.runner import Runner
    from reasoning import Problem
    from tests.fakes import ScriptedGenerator

    resolved = resolve_search(auto(board, "budget.generated_tokens=400"))
    search = build_search(resolved)
    config = OmegaConf.to_container(resolved, resolve=True)
    problems = [Problem(f"arith-{i:04d}", f"What is {i} + 0?", str(i)) for i in range(3)]
    out = tmp_path / "auto-run"
    runner = Runner(
        ScriptedGenerator(lambda prompt, sampling: "\\boxed{1}"), search, out,
        config=config, progress=False,
    )  # fmt: skip
    summary = asyncio.run(runner.run(problems))
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["search"] for r in records} == {"best_of_n"}
    assert all(r["search_params"]["n"] == 8 for r in records)
    assert all(r["advised"]["row"] == 6 and r["advised"]["board"] == str(board) for r in records)
    assert summary["config"]["advised"]["search_params"] == bon(8)
    fingerprint = json.loads((out / "run.json").read_text())["fingerprint"]
    # the picked configuration is part of the run's identity; the board's figures for it are
    # not (a rebuilt board renumbers and re-estimates: a resume is not refused for that)
    assert fingerprint["advised.config_hash"] == advised_hash(board, 6)
    assert fingerprint["advised.board"] == str(board)
    assert not {"advised.row", "advised.accuracy", "advised.tokens_per_problem"} & set(fingerprint)
    assert "advised   row 6 of" in what_runs(resolved, search, None, 3, out)
    both = build_leaderboard(
        [board.parent / "runs" / "bon8", out], tmp_path / "b2", audit=False, viewer=False
    )
    assert list(both.table["search"]) == ["best_of_n", "best_of_n"]
    assert both.table["config_hash"].nunique() == 2 and list(both.table["seeds"]) == [1, 1]
    assert not math.isnan(both.table["accuracy"].iloc[0])


def test_the_api_resolves_search_auto(board: Path) -> None:
    from reasoning.api import _Session
    from tests.fakes import ScriptedGenerator

    overrides = [f"search.advisor={board}", "budget.generated_tokens=400"]
    session = _Session(
        "auto", MODEL, "vllm", "none", None, ScriptedGenerator(), None, overrides
    )  # fmt: skip
    assert isinstance(session.search, BestOfN) and session.search.n == 8
    assert session.budget.generated_tokens == 400


def test_help_search_lists_auto_keys() -> None:
    from evals.settings_doc import help_search

    text = help_search("auto")
    assert "`advisor`" in text and "`budget_tokens`" in text


def test_trimming_is_checked_against_the_pick(board: Path) -> None:
    from reasoning.build import build_sampler

    cfg = resolve_search(auto(board, "budget.generated_tokens=400", "+trim=budget"))
    assert build_sampler(cfg) is not None  # the pick, best_of_n, samples through the Context
