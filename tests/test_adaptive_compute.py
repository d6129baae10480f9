"""benchmarks/adaptive_compute.py's pure parts, no engine: argument parsing, the configurations
(equal-token matching in the mcts section), reading run directories (resume, ledgers, aborts),
pairing through the leaderboard, the advisor's budgets and the tables."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from evals.leaderboard import build_leaderboard
from evals.rundir import trace_filename
from tests.conftest import REPO
from tests.test_leaderboard import _bools, make_run

SCRIPT = REPO / "benchmarks" / "adaptive_compute.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("adaptive_compute", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ac = load()


# --- arguments -------------------------------------------------------------------------------


def test_defaults_are_the_issue_sizes() -> None:
    args = ac.parse_args([])
    assert (args.problems_arith, args.problems_math, args.n) == (100, 50, 16)
    assert args.only == list(ac.SECTIONS)
    assert not args.smoke and args.out is None and not args.keep


def test_smoke_sizes_and_an_explicit_flag_wins_over_them() -> None:
    args = ac.parse_args(["--smoke"])
    assert (args.problems_arith, args.problems_math, args.n) == (6, 3, 4)
    # a mutation that applied the smoke sizes over the flags would give n=4 here
    args = ac.parse_args(["--smoke", "--n", "8", "--problems-math", "0"])
    assert (args.problems_arith, args.n, args.problems_math) == (6, 8, 0)


def test_only_selects_sections_and_refuses_unknown_ones(capsys: pytest.CaptureFixture) -> None:
    assert ac.parse_args(["--only", "mcts,advisor"]).only == ["mcts", "advisor"]
    with pytest.raises(SystemExit):
        ac.parse_args(["--only", "mcts,bogus"])
    assert "bogus" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--n", "4", "--warmup", "4"], ["--warmup", "0"], ["--n", "0"], ["--problems-math", "-1"]],
)
def test_bad_sizes_are_refused(argv: list[str]) -> None:
    # warmup == n leaves online no trace after the warm-up: refused (a `<=` mutation passes it)
    with pytest.raises(SystemExit):
        ac.parse_args(argv)


def test_warmup_just_under_n_is_accepted() -> None:
    assert ac.parse_args(["--n", "4", "--warmup", "3"]).warmup == 3


# --- configurations --------------------------------------------------------------------------


def test_dataset_overrides() -> None:
    assert ac.dataset_overrides("arith", 100) == [
        "dataset=arith",
        "dataset.arith.n=100",
        "dataset.arith.levels=[1,2,3]",
    ]
    assert ac.dataset_overrides("math500", 50, Path("/d/math500.jsonl")) == [
        "dataset=math500",
        "dataset.limit=50",
        "dataset.path=/d/math500.jsonl",
    ]
    with pytest.raises(ValueError):
        ac.dataset_overrides("gsm8k", 1)


def test_the_overrides_compose_with_the_real_config() -> None:
    from reasoning.build import build_search, compose_config

    args = ac.parse_args([])
    bon = ac.best_of_n(args, "arith")
    cfg = compose_config([*ac.dataset_overrides("arith", 100), *bon.overrides])
    assert list(cfg.dataset.arith.levels) == [1, 2, 3] and cfg.dataset.arith.n == 100
    search = build_search(cfg)
    assert (search.n, search.max_tokens, search.aggregate) == (16, 512, "majority")
    for config in ac.mcts_configs(args):
        if ac.available(config.search):  # the controllers of this checkout
            cfg = compose_config([*ac.dataset_overrides("arith", 100), *config.overrides])
            assert cfg.budget.generated_tokens == 1024
            assert cfg.verifier._target_.endswith("ArithStepChecker")
            build_search(cfg)


def test_adaptive_and_deepconf_share_the_best_of_n_baseline() -> None:
    args = ac.parse_args([])
    adaptive = ac.adaptive_configs(args, "arith")
    deepconf = ac.deepconf_configs(args, "arith")
    assert adaptive[0] == deepconf[0]  # one run directory serves both sections
    assert [c.name for c in adaptive] == ["bon16", "asc-beta", "asc-window", "asc-doubling"]
    for config, stop in zip(adaptive[1:], ac.STOPS, strict=True):
        assert config.overrides == (
            "search=adaptive_sc",
            "search.n=16",
            "search.max_tokens=512",
            f"search.stop={stop}",
        )
    online = deepconf[1].overrides
    assert "search.mode=online" in online and "search.warmup=4" in online
    assert "search.top_logprobs=20" in online and "search.confidence_window=64" in online
    assert deepconf[2].overrides == tuple(
        o.replace("online", "offline") for o in online
    )  # offline differs in its mode alone


def test_equal_token_matching_every_mcts_arm_has_the_same_budget_and_wants_more() -> None:
    small = ["--mcts-budget", "700", "--n", "2", "--warmup", "1", "--max-tokens", "400"]
    for argv in ([], ["--smoke"], small):
        args = ac.parse_args(argv)
        configs = ac.mcts_configs(args)
        assert [c.search for c in configs] == ["mcts", "beam", "particle_filter", "best_of_n"]
        for c in configs:
            budgets = [o for o in c.overrides if o.startswith("budget.")]
            assert budgets == [f"budget.generated_tokens={args.mcts_budget}"]
            assert "verifier=arith" in c.overrides and c.dataset == "arith"
        # best-of-N's shape must want more than T, or the budget would not be what stops it:
        # full 16 x 512 = 8192 > 1024; smoke 4 x 64 = 256 > 192; 2 x 400 = 800 > 700
        assert ac.wanted_tokens(args.n, args.max_tokens) > args.mcts_budget
    assert "search.aggregate=weighted" in configs[-1].overrides


def test_binds_at_ninety_percent_of_the_budget_inclusive() -> None:
    # 0.9 x 1000 = 900: a row at exactly 900 bound; 899.9 did not (`>` would flag 900)
    assert ac.binds(900.0, 1000)
    assert not ac.binds(899.9, 1000)
    assert ac.binds(1100.0, 1000)  # overshoot still bound


def test_run_dirs_are_per_dataset_and_problem_count(tmp_path: Path) -> None:
    config = ac.Config("bon16", "arith", "best_of_n", ())
    assert ac.run_dir_of(tmp_path, config, 100) == tmp_path / "runs" / "arith-100" / "bon16"
    assert ac.run_dir_of(tmp_path, config, 6) != ac.run_dir_of(tmp_path, config, 100)
    assert config.label() == "arith/bon16"


def test_available_reads_the_config_group(tmp_path: Path) -> None:
    (tmp_path / "conf" / "search").mkdir(parents=True)
    (tmp_path / "conf" / "search" / "mcts.yaml").write_text("_target_: x\n")
    assert ac.available("mcts", tmp_path) and not ac.available("deepconf", tmp_path)
    assert not ac.advisor_available(tmp_path)
    (tmp_path / "conf" / "search" / "auto.yaml").write_text("_target_: x\n")
    assert not ac.advisor_available(tmp_path)  # needs the CLI too
    (tmp_path / "evals").mkdir()
    (tmp_path / "evals" / "advise_cli.py").write_text("")
    assert ac.advisor_available(tmp_path)
    assert ac.available("best_of_n")  # the real checkout


def test_math500_is_found_from_the_flag_first(tmp_path: Path, monkeypatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "math500.jsonl").write_text("{}\n")
    monkeypatch.setenv("REASONING_DATA_DIR", str(b))
    assert ac.find_math500(str(a), tmp_path / "repo") == a / "math500.jsonl"
    assert ac.find_math500(None, tmp_path / "repo") == b / "math500.jsonl"
    monkeypatch.delenv("REASONING_DATA_DIR")
    assert ac.find_math500(None, tmp_path / "repo") is None
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "math500.jsonl").write_text("{}\n")
    assert ac.find_math500(None, tmp_path / "repo") == tmp_path / "shared/data/math500.jsonl"


# --- run directories -------------------------------------------------------------------------


def write_records(run: Path, records: list[dict], summary: bool = True) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if summary:
        (run / "summary.json").write_text("{}")


def test_a_complete_run_is_not_rerun_and_an_incomplete_one_is(tmp_path: Path) -> None:
    run = tmp_path / "r"
    write_records(run, [{"id": "a"}, {"id": "b"}, {"id": "c"}], summary=False)
    assert not ac.run_complete(run, 3)  # killed before its summary
    write_records(run, [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    assert ac.run_complete(run, 3)
    assert not ac.run_complete(run, 4)  # fewer results than selected
    write_records(run, [{"id": "a"}, {"id": "b"}, {"id": "c", "error": "boom"}])
    assert not ac.run_complete(run, 3)  # an error line is not a result
    write_records(run, [{"id": "a"}, {"id": "a"}, {"id": "b"}])
    assert not ac.run_complete(run, 3)  # distinct problems, not lines
    assert not ac.run_complete(tmp_path / "missing", 1)


def test_bench_skips_a_complete_run_without_an_engine(tmp_path: Path) -> None:
    args = ac.parse_args(["--smoke", "--out", str(tmp_path)])
    bench = ac.Bench(args, tmp_path)
    config = ac.best_of_n(args, "arith")
    write_records(bench.run_dir(config), [{"id": f"p{i}"} for i in range(6)])
    assert bench.run(config)  # would start an engine if it ran
    assert bench.status["arith/bon4"] == "complete (not rerun)"


def test_ledger_means_by_hand() -> None:
    records = [
        {"ledger": {"samples": 16, "generated_tokens": 1000, "verifier_calls": 0}},
        {"ledger": {"samples": 4, "generated_tokens": 200, "verifier_calls": 3}},
        {"ledger": {"samples": 7, "generated_tokens": 300}},  # no verifier calls recorded: 0
    ]
    # samples (16 + 4 + 7) / 3 = 9; tokens (1000 + 200 + 300) / 3 = 500; calls (0 + 3 + 0) / 3
    assert ac.ledger_means(records) == {"samples": 9.0, "tokens": 500.0, "verifier_calls": 1.0}
    assert all(math.isnan(v) for v in ac.ledger_means([]).values())


def test_early_stop_share() -> None:
    records = [{"events": {"early_stop": 1}}, {"events": {}}, {}, {"events": {"early_stop": 2}}]
    assert ac.early_stop_share(records) == 0.5  # 2 of 4 problems stopped early
    # the runner keys an event with a reason by kind and reason (evals.runner.event_counts)
    keyed = [{"events": {"early_stop:beta: P(majority) >= 0.95": 1}}, {"events": {"trim:x": 1}}]
    assert ac.early_stop_share(keyed) == 0.5


def test_abort_stats_by_hand() -> None:
    events = [
        [
            {"event": "sample_cut", "sample": 5, "tokens": 10, "reason": "confidence"},
            {"event": "sample_cut", "sample": 6, "tokens": 30, "reason": "confidence"},
            {"event": "early_stop", "after": 7, "aborted": 2, "aborted_tokens": 40},
        ],
        [{"event": "sample_cut", "sample": 4, "tokens": 20}, {"event": "trim", "tokens": 99}],
        [],
    ]
    stats = ac.abort_stats(events)
    # watch cuts: 3 over 3 problems = 1.0; their tokens (10 + 30 + 20) / 3 = 20; the stop
    # aborted 2 in-flight traces over 3 problems; the trim event counts for neither
    assert stats["watch_aborts_per_problem"] == 1.0
    assert stats["mean_abort_token"] == 20.0
    assert stats["stop_aborts_per_problem"] == pytest.approx(2 / 3)
    none = ac.abort_stats([[], []])
    assert none["watch_aborts_per_problem"] == 0.0 and math.isnan(none["mean_abort_token"])


def test_trace_events_are_read_from_the_traces(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    for pid, events in (("p0", [{"event": "early_stop", "aborted": 1}]), ("p1", None)):
        trace = {"id": pid, "details": {"events": events} if events else {}}
        (tmp_path / "traces" / trace_filename(pid)).write_text(json.dumps(trace))
    assert sorted(map(len, ac.trace_events(tmp_path))) == [0, 1]


# --- pairing through the leaderboard ---------------------------------------------------------


def board_of(tmp_path: Path):
    runs = tmp_path / "runs"
    a = make_run(runs, "a", _bools("11110"), n=16, tokens=1000)  # 4 of 5
    b = make_run(runs, "b", _bools("10100"), n=4, tokens=250)  # 2 of 5
    board = build_leaderboard([runs], tmp_path / "board", audit=False, viewer=False)
    return board, a, b


def test_pairing_finds_each_run_dirs_row_and_uses_the_leaderboards_comparison(
    tmp_path: Path,
) -> None:
    board, a, b = board_of(tmp_path)
    fa = ac.figures("A", ac.board_row(board.table, board.groups, a), a)
    fb = ac.figures("B", ac.board_row(board.table, board.groups, b), b)
    assert (fa.accuracy, fb.accuracy) == (0.8, 0.4)
    assert (fa.tokens, fb.tokens, fa.samples, fb.samples) == (1000.0, 250.0, 16.0, 4.0)
    assert fa.row != fb.row and fa.config_hash != fb.config_hash
    diff = ac.paired(board.table, board.groups, fa, fb)
    # per problem A - B: 0, 1, 0, 1, 0 -> mean 2/5 = +0.4 over the 5 common problems
    assert diff.value == pytest.approx(0.4) and diff.n == 5
    assert diff.low <= 0.4 <= diff.high
    same = ac.paired(board.table, board.groups, fa, fa)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0) and same.contains_zero
    assert ac.board_row(board.table, board.groups, tmp_path / "elsewhere") is None
    off = ac.figures("C", None, tmp_path / "elsewhere")
    assert off.row is None and ac.paired(board.table, board.groups, fa, off) is None


def test_goal_is_half_the_tokens_and_a_ci_containing_zero() -> None:
    inside = ac.Paired(-0.02, -0.1, 0.05, 100)
    edge = ac.Paired(0.03, 0.0, 0.06, 100)  # a CI starting at 0 contains it
    above = ac.Paired(0.08, 0.01, 0.15, 100)
    assert ac.meets_goal(0.5, inside)  # exactly half is allowed (`<` would refuse it)
    assert not ac.meets_goal(0.5001, inside)
    assert ac.meets_goal(0.3, edge)
    assert not ac.meets_goal(0.3, above)
    assert not ac.meets_goal(0.3, None)


# --- the advisor -----------------------------------------------------------------------------


def test_advisor_budgets_are_linear_percentiles_rounded_up() -> None:
    # sorted 100 200 300 400 1000 (positions 0..4): 25th at 1 -> 200; 50th at 2 -> 300;
    # 90th at 3.6 -> 400 + 0.6 x 600 = 760 (numpy's "nearest" would give 1000, "lower" 400)
    assert ac.advisor_budgets([1000, 100, 300, 200, 400]) == [200, 300, 760]
    # 10 20 35.5: 25th at 0.5 -> 15; 50th -> 20; 90th at 1.8 -> 20 + 0.8 x 15.5 = 32.4 -> 33
    # (rounded up, so the row at the percentile is within budget; round() would give 32)
    assert ac.advisor_budgets([10, 20, 35.5, math.nan]) == [15, 20, 33]
    assert ac.advisor_budgets([math.nan]) == []


def test_parse_advice_takes_a_list_or_an_object_of_picks() -> None:
    picks = [{"row": 3, "search": "best_of_n"}, {"row": 1, "search": "beam", "diff": 0.1}]
    assert ac.parse_advice(json.dumps(picks)) == picks
    assert ac.parse_advice(json.dumps({"picks": picks, "board": "x"})) == picks
    with pytest.raises(ValueError):
        ac.parse_advice('"row 3"')


def test_budget_overrides_give_the_picked_rows_budget() -> None:
    assert ac.budget_overrides("unlimited") == []
    assert ac.budget_overrides("generated_tokens=1024") == ["budget.generated_tokens=1024"]
    assert ac.budget_overrides("generated_tokens=1024, wall_s=5.0") == [
        "budget.generated_tokens=1024",
        "budget.wall_s=5.0",
    ]


def test_advisor_row_says_whether_the_rerun_lies_in_the_rows_ci() -> None:
    pick = {"row": 2, "search": "best_of_n", "search_params": {"n": 16}}
    picked = {"accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "tokens_per_problem": 800.0}
    row = ac.advisor_row(512, pick, picked, 0.6, 790.0)
    assert row["in the row's CI"] == "yes"  # the interval's ends are inside
    assert row["pick"] == 'row 2: best_of_n {"n": 16}'
    assert row["board accuracy [95% CI]"] == "0.500 [0.400, 0.600]"
    assert ac.advisor_row(512, pick, picked, 0.61, 790.0)["in the row's CI"] == "no"
    failed = ac.advisor_row(512, pick, picked, None, math.nan, "failed: x")
    assert failed["run accuracy"] == "failed: x" and failed["in the row's CI"] == "no"


# --- tables ----------------------------------------------------------------------------------


def test_markdown_table_escapes_pipes_and_fills_missing_cells() -> None:
    text = ac.markdown_table(["a", "b"], [{"a": "x|y", "b": 1}, {"a": None}])
    assert text == "| a | b |\n|---|---|\n| x\\|y | 1 |\n| - | - |"


def fig(label: str, tokens: float, **kw) -> object:
    base = dict(
        row=1, config_hash="h", accuracy=0.5, ci_low=0.4, ci_high=0.6, samples=16.0,
        verifier_calls=0.0, early_stop=0.0,
    )  # fmt: skip
    return ac.Figures(label=label, tokens=tokens, **{**base, **kw})


def test_adaptive_rows_ratio_and_goal() -> None:
    base = fig("arith/bon16", 1000.0)
    beta = fig("arith/asc-beta", 400.0, samples=5.5, early_stop=0.9)
    window = fig("arith/asc-window", 600.0)
    rows = ac.adaptive_rows(
        base, [(beta, ac.Paired(-0.01, -0.05, 0.03, 100)), (window, ac.Paired(0, -0.02, 0.02, 100))]
    )
    assert rows[0]["diff vs best-of-N [95% CI]"] == "(baseline)"
    # 400 / 1000 = 0.40 <= 0.5 with the CI over 0: met; 600 / 1000 = 0.60: not met
    assert (rows[1]["token ratio"], rows[1]["goal"]) == ("0.40", "met")
    assert (rows[2]["token ratio"], rows[2]["goal"]) == ("0.60", "not met")
    assert rows[1]["samples/problem"] == "5.50" and rows[1]["stopped early"] == "0.90"
    assert rows[1]["diff vs best-of-N [95% CI]"] == "-0.010 [-0.050, +0.030] (n=100)"


def test_deepconf_rows_carry_the_aborts() -> None:
    base = fig("arith/bon16", 1000.0)
    aborts = {"watch_aborts_per_problem": 3.25, "mean_abort_token": 41.0}
    online = fig("arith/deepconf-online", 500.0, aborts=aborts | {"stop_aborts_per_problem": 1})
    offline = fig("arith/deepconf-offline", 1000.0)
    diffs = {"online-bon": ac.Paired(0.1, 0.0, 0.2, 10), "online-offline": None}
    rows = ac.deepconf_rows(base, online, offline, diffs)
    assert [r["config"] for r in rows] == [base.label, online.label, offline.label]
    assert rows[1]["watch aborts/problem"] == "3.25" and rows[1]["mean abort token"] == "41.0"
    assert rows[1]["token ratio"] == "0.50" and rows[1]["diff vs offline [95% CI]"] == "-"
    assert ac.deepconf_rows(base, None, offline, {})[1]["config"] == offline.label


def test_mcts_rows_flag_a_budget_that_did_not_bind() -> None:
    mcts = fig("arith/mcts-T1000", 1000.0, verifier_calls=40.0)
    beam = fig("arith/beam-T1000", 850.0)
    rows = ac.mcts_rows([(mcts, None), (beam, ac.Paired(-0.1, -0.2, 0.0, 100))], 1000)
    assert rows[0]["tokens/T"] == "1.00" and rows[0]["diff vs mcts [95% CI]"] == "(reference)"
    assert rows[0]["verifier calls/problem"] == "40.0"
    assert rows[1]["tokens/T"] == "0.85 (did not bind)"  # 850 < 0.9 x 1000


# --- sections over hand-made run directories (no engine) -------------------------------------


def sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """best-of-16 and the three adaptive rules as if they had run on 10 arith problems."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the section printer's settings.py
    monkeypatch.setattr(ac, "available", lambda search, root=ac.ROOT: True)
    args = ac.parse_args(["--problems-arith", "10", "--problems-math", "0", "--out", str(tmp_path)])
    bench = ac.Bench(args, tmp_path)
    root = tmp_path / "runs" / "arith-10"
    make_run(root, "bon16", _bools("1111111110"), n=16, tokens=1000)  # 0.9
    make_run(root, "asc-beta", _bools("1111111110"), search="adaptive_sc", n=5, tokens=400)
    make_run(root, "asc-window", _bools("0000000000"), search="adaptive_sc", n=6, tokens=450)
    make_run(root, "asc-doubling", _bools("1111111111"), search="adaptive_sc", n=7, tokens=700)
    return bench, ac.build_board(bench)


def test_adaptive_section_pairs_each_rule_with_best_of_n(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    bench, board = sweep(tmp_path, monkeypatch)
    ac.tabulate_adaptive(bench, board)
    report = bench.report["adaptive"]["arith"]
    diffs = report["diff_vs_best_of_n"]
    # beta solved the same problems: exactly 0 [0, 0]; ratio 400 / 1000 = 0.4: goal met.
    assert diffs["arith/asc-beta"] == {"diff": 0.0, "low": 0.0, "high": 0.0, "n": 10}
    # window: 0 - 0.9 = -0.9, every resample negative: CI excludes 0 though ratio 0.45 <= 0.5;
    # doubling: +0.1 (one problem) with a CI containing 0, but ratio 0.7 > 0.5.
    assert diffs["arith/asc-window"]["diff"] == pytest.approx(-0.9)
    assert diffs["arith/asc-window"]["high"] < 0
    assert diffs["arith/asc-doubling"]["low"] <= 0 <= diffs["arith/asc-doubling"]["high"]
    assert report["goal_met"] == {
        "arith/asc-beta": True,
        "arith/asc-window": False,
        "arith/asc-doubling": False,
    }
    assert [r["samples"] for r in report["rows"]] == [16.0, 5.0, 6.0, 7.0]
    printed = capsys.readouterr().out
    assert "=== adaptive: arith ===" in printed and "| arith/asc-beta |" in printed
    assert any("| arith/asc-beta |" in line for line in bench.markdown)


def test_advisor_section_reruns_each_pick_and_checks_the_rows_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench, board = sweep(tmp_path, monkeypatch)
    monkeypatch.setattr(ac, "advisor_available", lambda root=ac.ROOT: True)
    beta = ac.board_row(board.table, board.groups, tmp_path / "runs/arith-10/asc-beta")
    asked: list[int] = []

    def advise(board_dir: Path, budget: int) -> tuple[list[dict], str]:
        assert board_dir == tmp_path / "board"
        asked.append(budget)
        if budget > 900:
            return [], "no row within budget"
        return [{"row": int(beta["row"]), "search": "adaptive_sc", "search_params": {}}], ""

    runs: list[tuple[str, list[str], Path]] = []

    def run(self, config, extra=(), run_dir=None) -> bool:
        runs.append((config.label(), list(extra), run_dir))
        write_records(run_dir, [{"id": "p", "ledger": {"generated_tokens": 380}}])
        (run_dir / "summary.json").write_text(json.dumps({"accuracy": 0.9, "ci95": [0.6, 1]}))
        return True

    monkeypatch.setattr(ac, "advise", advise)
    monkeypatch.setattr(ac.Bench, "run", run)
    ac.tabulate_advisor(bench, board)
    # tokens 400 450 700 1000: 25th at 0.75 -> 437.5 -> 438; 50th at 1.5 -> 575;
    # 90th at 2.7 -> 700 + 0.7 x 300 = 910
    assert asked == [438, 575, 910]
    report = bench.report["advisor"]
    assert report["budgets"] == [438, 575, 910]
    assert [p["pick"] is None for p in report["picks"]] == [False, False, True]
    assert report["picks"][2]["refusal"] == "no row within budget"
    label, extra, run_dir = runs[0]
    assert label == "arith/auto-T438-seed1"
    assert extra == [
        f"search.advisor={(tmp_path / 'board').resolve()}",
        "search.budget_tokens=438",
        "seed=1",
        "backend.seed=0",
    ]  # the beta row ran unlimited: no budget override
    assert run_dir == tmp_path / "advisor-runs" / "arith-10" / "auto-T438-seed1"
    # 0.9 against the beta row's 0.9 [CI around it]: inside
    assert report["picks"][0]["run_accuracy"] == 0.9 and report["picks"][0]["in_row_ci"]
    assert report["picks"][0]["run_tokens_per_problem"] == 380.0


def test_advisor_section_skips_without_rows(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ac, "advisor_available", lambda root=ac.ROOT: True)
    bench = ac.Bench(ac.parse_args(["--out", str(tmp_path)]), tmp_path)
    ac.tabulate_advisor(bench, ac.build_board(bench))
    assert bench.report["advisor"]["skipped"].startswith("skipped: no arith rows")
    monkeypatch.setattr(ac, "advisor_available", lambda root=ac.ROOT: False)
    ac.tabulate_advisor(bench, ac.build_board(bench))
    assert bench.report["advisor"] == {"skipped": "skipped: search=auto not available"}


def test_settings_lines_flatten_a_nested_block() -> None:
    assert ac.settings_lines({"n": 16, "engine": {"dtype": "bf16", "seed": 0}}) == [
        "- n: 16",
        "- engine: dtype=bf16 seed=0",
    ]
