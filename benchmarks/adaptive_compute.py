"""Adaptive compute: what early stopping, online confidence, MCTS and the budget advisor save.

Every configuration runs through the real evaluation path (`evals.experiment.run_experiment`,
what `reason` runs after composing its config) into its own run directory under
`--out/runs/<dataset>-<problems>/<name>`, in one process: every run asks `generator_for` for the
same backend config, so the embedded SmolLM2 engine (the default config, in-process vLLM) starts
once. A run directory that already holds a result for every selected problem and a summary is not
run again (`--out DIR --keep` resumes). Then one leaderboard is built over all the run
directories (`evals.leaderboard.build.build_leaderboard`, trace viewers and audit off), and every
paired difference is the leaderboard's own (`evals.leaderboard.compare.compare_rows`: a paired
bootstrap over the problems both rows graded, 95% interval).

Sections (`--only adaptive,deepconf,mcts,advisor`; default all). A section whose controller is not
in this checkout prints `skipped: search=X not available` and the others go on.

adaptive (arith and MATH500): best_of_n n=N majority against adaptive_sc with each stop rule
(beta, window, doubling) at the same n. Per row: samples per problem (the ledger's `samples`),
generated tokens per problem, accuracy with its 95% CI, the difference against best-of-N with its
paired CI, the token ratio to best-of-N, problems that stopped early, and whether the issue's goal
holds (token ratio <= 0.5 and a difference whose CI contains 0).

deepconf (arith and MATH500): deepconf online against best_of_n n=N and against deepconf offline
(same n, warm-up `--warmup`, top_logprobs 20, confidence_window `--confidence-window`). The same
figures plus, from the traces' events: traces ended by the confidence watch per problem
(`sample_cut` events) and the mean token position at which they were ended, and traces aborted by
the consensus stop per problem (`early_stop` events' `aborted`).

mcts (arith, verifier=arith): mcts, beam, particle_filter and best_of_n aggregate=weighted under
the same per-problem budget `budget.generated_tokens=T`, each shaped to want more than T (n=N
samples or beams of up to max_tokens; mcts with `--simulations`), so the budget is what stops
them. Per row: accuracy, tokens per problem and their share of T (a row under 0.9 T did not use
its budget: flagged), verifier calls per problem, the difference against mcts.

advisor (arith): the board's arith rows are the sweep. For the 25th, 50th and 90th percentile of
their tokens per problem (numpy's linear interpolation, rounded up so that the row at the
percentile is within budget), `python -m evals.advise_cli BOARD --dataset arith --budget T
--json` picks a configuration; `search=auto search.advisor=BOARD search.budget_tokens=T` then runs
on the same problems with seed `--advisor-seed` (the engine keeps `backend.seed=--seed`, so it is
the same engine), and its accuracy is set against the board's figure for the picked row (and
whether it lies in that row's 95% CI).

Output: a settings block first, then each section's settings and table; the tables also go to
benchmarks/results/adaptive_compute.md and .json (`--smoke` marks both as a smoke run).

    python benchmarks/adaptive_compute.py [--only adaptive,deepconf,mcts,advisor] [--smoke]
        [--problems-arith 100] [--problems-math 50] [--n 16] [--max-tokens 512]
        [--warmup 4] [--confidence-window 64] [--mcts-budget 1024] [--simulations 64]
        [--seed 0] [--advisor-seed 1] [--out DIR] [--keep] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "3")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "results" / "adaptive_compute.md"
RESULTS_JSON = HERE / "results" / "adaptive_compute.json"

SECTIONS = ("adaptive", "deepconf", "mcts", "advisor")
STOPS = ("beta", "window", "doubling")
WINDOW = 5  # adaptive_sc's default window_size
TEMPERATURE, TOP_P = 0.8, 1.0  # every sampling controller's default (conf/search/*.yaml)
TOP_LOGPROBS = 20  # deepconf: the reference's top-k for token confidence
ADVISOR_PERCENTILES = (25, 50, 90)
BINDS = 0.9  # mcts section: a row that spent under this share of T did not use its budget

# Full sizes (the issue's) and --smoke's; an explicit flag overrides either.
FULL = {
    "problems_arith": 100,
    "problems_math": 50,
    "n": 16,
    "max_tokens": 512,
    "warmup": 4,
    "confidence_window": 64,
    "mcts_budget": 1024,
    "simulations": 64,
}
SMOKE = {
    "problems_arith": 6,
    "problems_math": 3,
    "n": 4,
    "max_tokens": 64,
    "warmup": 2,
    "confidence_window": 16,
    "mcts_budget": 192,
    "simulations": 8,
}


# --- arguments -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; sizes left out take FULL's values, or SMOKE's with --smoke."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: 6 arith, 3 math, n=4")
    parser.add_argument("--problems-arith", type=int, help="arith problems (levels 1-3)")
    parser.add_argument("--problems-math", type=int, help="MATH500 problems (0: none)")
    parser.add_argument("--n", type=int, help="samples (adaptive, deepconf) or beams/particles")
    parser.add_argument("--max-tokens", type=int, help="tokens per sample")
    parser.add_argument("--warmup", type=int, help="deepconf online: warm-up traces")
    parser.add_argument("--confidence-window", type=int, help="deepconf: tokens per group")
    parser.add_argument("--mcts-budget", type=int, help="mcts section: generated tokens T")
    parser.add_argument("--simulations", type=int, help="mcts: simulations (enough to bind)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--advisor-seed", type=int, default=1, help="the search=auto runs' seed")
    parser.add_argument("--out", help="run directories and the board (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the default temp --out")
    parser.add_argument("--data-dir", help="folder of math500.jsonl (else REASONING_DATA_DIR)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; valid: {', '.join(SECTIONS)}")
    for key in ("problems_arith", "n", "max_tokens", "mcts_budget", "simulations"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.problems_math < 0:
        parser.error("--problems-math must be >= 0")
    if not 1 <= args.warmup < args.n:
        parser.error(f"--warmup must be in 1..n-1 (n={args.n}): online needs traces after it")
    return args


# --- configurations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One configuration: a run directory, its `reason` overrides and the controller it needs."""

    name: str  # unique within its dataset: the run directory's name
    dataset: str  # arith | math500
    search: str  # the controller's config name (conf/search/<search>.yaml)
    overrides: tuple[str, ...]  # search and budget keys, as on the command line

    def label(self) -> str:
        return f"{self.dataset}/{self.name}"


def dataset_overrides(dataset: str, problems: int, math_path: Path | None = None) -> list[str]:
    """How `reason` selects the benchmark's problems: arith levels 1-3, or MATH500's first."""
    if dataset == "arith":
        return ["dataset=arith", f"dataset.arith.n={problems}", "dataset.arith.levels=[1,2,3]"]
    if dataset == "math500":
        path = [f"dataset.path={math_path}"] if math_path is not None else []
        return ["dataset=math500", f"dataset.limit={problems}", *path]
    raise ValueError(f"unknown dataset {dataset!r}")


def best_of_n(args: argparse.Namespace, dataset: str) -> Config:
    """best-of-N majority: the baseline of the adaptive and deepconf sections (one run dir)."""
    keys = ("search=best_of_n", f"search.n={args.n}", f"search.max_tokens={args.max_tokens}")
    return Config(f"bon{args.n}", dataset, "best_of_n", (*keys, "search.aggregate=majority"))


def adaptive_configs(args: argparse.Namespace, dataset: str) -> list[Config]:
    out = [best_of_n(args, dataset)]
    for stop in STOPS:
        keys: tuple[str, ...] = (f"search.n={args.n}", f"search.max_tokens={args.max_tokens}")
        if stop == "window" and args.n < WINDOW:  # the window cannot be wider than n
            keys = (*keys, f"search.window_size={args.n}")
        out.append(
            Config(
                f"asc-{stop}",
                dataset,
                "adaptive_sc",
                ("search=adaptive_sc", *keys, f"search.stop={stop}"),
            )
        )
    return out


def deepconf_configs(args: argparse.Namespace, dataset: str) -> list[Config]:
    out = [best_of_n(args, dataset)]
    for mode in ("online", "offline"):
        keys = (
            "search=deepconf",
            f"search.mode={mode}",
            f"search.n={args.n}",
            f"search.max_tokens={args.max_tokens}",
            f"search.warmup={args.warmup}",
            f"search.top_logprobs={TOP_LOGPROBS}",
            f"search.confidence_window={args.confidence_window}",
        )
        out.append(Config(f"deepconf-{mode}", dataset, "deepconf", keys))
    return out


def mcts_configs(args: argparse.Namespace) -> list[Config]:
    """The four equal-budget arms on arith, every one with the arith checker as its verifier."""
    t, n = args.mcts_budget, args.n
    budget = (f"budget.generated_tokens={t}", "verifier=arith")
    shapes = {
        "mcts": (
            "mcts",
            ("search=mcts", "search.width=4", f"search.simulations={args.simulations}"),
        ),
        "beam": ("beam", ("search=beam", f"search.n={n}", "search.width=4")),
        "pf": ("particle_filter", ("search=particle_filter", f"search.n={n}")),
        "bon-weighted": (
            "best_of_n",
            (
                "search=best_of_n",
                f"search.n={n}",
                f"search.max_tokens={args.max_tokens}",
                "search.aggregate=weighted",
            ),
        ),
    }
    return [Config(f"{k}-T{t}", "arith", s, (*keys, *budget)) for k, (s, keys) in shapes.items()]


def wanted_tokens(n: int, max_tokens: int) -> int:
    """What n whole samples of up to max_tokens may ask for: the shape binds when it exceeds T."""
    return n * max_tokens


def run_dir_of(out: Path, config: Config, problems: int) -> Path:
    """`out/runs/<dataset>-<problems>/<name>`: a different problem count never resumes into
    another's directory (the selection keys are not part of a run's fingerprint)."""
    return out / "runs" / f"{config.dataset}-{problems}" / config.name


def available(search: str, root: Path = ROOT) -> bool:
    """Whether this checkout has the controller (its config group file)."""
    return (root / "conf" / "search" / f"{search}.yaml").is_file()


def advisor_available(root: Path = ROOT) -> bool:
    return available("auto", root) and (root / "evals" / "advise_cli.py").is_file()


def find_math500(data_dir: str | None, root: Path = ROOT) -> Path | None:
    """math500.jsonl from --data-dir, REASONING_DATA_DIR or the shared folder beside the
    checkout (as tests/conftest.py finds it); None when none has it."""
    for folder in (data_dir, os.environ.get("REASONING_DATA_DIR"), root.parent / "shared" / "data"):
        if folder and (Path(folder) / "math500.jsonl").is_file():
            return (Path(folder) / "math500.jsonl").resolve()
    return None


# --- reading run directories -----------------------------------------------------------------


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "results.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_complete(run_dir: Path, expected: int) -> bool:
    """A summary and a result for `expected` distinct problems, none of them an error: such a
    run is not run again (an error line reruns, with retry_errors left to the config)."""
    records = read_records(run_dir)
    if not (run_dir / "summary.json").is_file():
        return False
    ok = {r["id"] for r in records if not r.get("error")}
    return len(ok) >= expected


def ledger_means(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean samples, generated tokens and verifier calls per problem (the records' ledgers)."""
    keys = {"samples": "samples", "tokens": "generated_tokens", "verifier_calls": "verifier_calls"}
    if not records:
        return {k: math.nan for k in keys}
    return {
        k: sum(float((r.get("ledger") or {}).get(key) or 0) for r in records) / len(records)
        for k, key in keys.items()
    }


def early_stop_share(records: Sequence[Mapping[str, Any]]) -> float:
    """The share of problems whose record counts an `early_stop` event."""
    if not records:
        return math.nan
    return sum(1 for r in records if any(_is_early_stop(k) for k in r.get("events") or {})) / len(
        records
    )


def _is_early_stop(key: str) -> bool:
    """A result line's event count key: `early_stop`, or `early_stop:<reason>` (the runner keys
    an event that gives a reason by kind and reason)."""
    return key == "early_stop" or key.startswith("early_stop:")


def abort_stats(events_per_problem: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, float]:
    """From each problem's trace events: traces ended by a watch (`sample_cut`) per problem and
    the mean token at which they ended; traces aborted by a stop (`early_stop`'s `aborted`) per
    problem. NaN mean when nothing was cut."""
    problems = len(events_per_problem)
    cuts = [
        float(e.get("tokens") or 0)
        for events in events_per_problem
        for e in events
        if e.get("event") == "sample_cut"
    ]
    stopped = sum(
        int(e.get("aborted") or 0)
        for events in events_per_problem
        for e in events
        if e.get("event") == "early_stop"
    )
    return {
        "watch_aborts_per_problem": len(cuts) / problems if problems else math.nan,
        "mean_abort_token": sum(cuts) / len(cuts) if cuts else math.nan,
        "stop_aborts_per_problem": stopped / problems if problems else math.nan,
    }


def trace_events(run_dir: Path) -> list[list[dict[str, Any]]]:
    """Every trace's `details.events` (the runner writes them into traces/<id>.json)."""
    out = []
    for path in sorted((run_dir / "traces").glob("*.json")):
        details = json.loads(path.read_text()).get("details") or {}
        out.append(list(details.get("events") or []))
    return out


# --- the leaderboard -------------------------------------------------------------------------


@dataclass
class Figures:
    """One configuration's row on the board plus what the run directory adds."""

    label: str
    row: int | None
    config_hash: str | None
    accuracy: float
    ci_low: float
    ci_high: float
    tokens: float
    samples: float
    verifier_calls: float
    early_stop: float
    budget: str = ""
    aborts: dict[str, float] = field(default_factory=dict)


def board_row(table: Any, groups: Mapping[str, Sequence[Any]], run_dir: Path) -> Any | None:
    """The board's row whose runs include `run_dir` (None: the run is not on the board)."""
    target = run_dir.resolve()
    for config_hash, runs in groups.items():
        if any(Path(run.path).resolve() == target for run in runs):
            hit = table[table["config_hash"] == config_hash]
            return hit.iloc[0] if len(hit) else None
    return None


def figures(label: str, row: Any | None, run_dir: Path) -> Figures:
    records = read_records(run_dir)
    means = ledger_means(records)
    get = (lambda k: float(row[k])) if row is not None else (lambda k: math.nan)
    return Figures(
        label=label,
        row=int(row["row"]) if row is not None else None,
        config_hash=str(row["config_hash"]) if row is not None else None,
        accuracy=get("accuracy"),
        ci_low=get("ci_low"),
        ci_high=get("ci_high"),
        tokens=get("tokens_per_problem") if row is not None else means["tokens"],
        samples=means["samples"],
        verifier_calls=get("verifier_calls_per_problem"),
        early_stop=early_stop_share(records),
        budget=str(row["budget"]) if row is not None else "",
        aborts=abort_stats(trace_events(run_dir)),
    )


@dataclass(frozen=True)
class Paired:
    """A - B on the problems both graded, with its 95% paired bootstrap interval."""

    value: float
    low: float
    high: float
    n: int

    @property
    def contains_zero(self) -> bool:
        return self.low <= 0 <= self.high


def paired(
    table: Any, groups: Mapping[str, Sequence[Any]], a: Figures, b: Figures
) -> Paired | None:
    """The leaderboard's paired comparison of two rows (`compare_rows`); None when either is off
    the board. The same row against itself is exactly 0."""
    from evals.leaderboard.compare import compare_rows

    if a.config_hash is None or b.config_hash is None:
        return None
    result = compare_rows(table, groups, a.config_hash, b.config_hash).result
    d = result.difference
    return Paired(d.value, d.low, d.high, result.n)


def meets_goal(token_ratio: float, diff: Paired | None) -> bool:
    """The issue's goal for an adaptive row: at most half the tokens of best-of-N and an accuracy
    difference whose 95% CI contains 0."""
    return diff is not None and token_ratio <= 0.5 and diff.contains_zero


def binds(tokens: float, budget: int, share: float = BINDS) -> bool:
    """Whether a row spent its equal-token budget (at least `share` of T per problem)."""
    return tokens >= share * budget


def advisor_budgets(
    tokens: Iterable[float], percentiles: Sequence[int] = ADVISOR_PERCENTILES
) -> list[int]:
    """Budgets at the given percentiles of the rows' tokens per problem (numpy's linear
    interpolation), rounded up: a row exactly at a percentile stays within that budget."""
    import numpy as np

    values = [t for t in tokens if t == t]  # NaN rows (nothing ran) are left out
    if not values:
        return []
    return [math.ceil(float(v)) for v in np.percentile(values, list(percentiles))]


def parse_advice(text: str) -> list[dict[str, Any]]:
    """The picks of `reason-advise --json`, best first: a list, or an object holding one under
    `picks` (or `frontier`)."""
    data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("picks", data.get("frontier", []))
    if not isinstance(data, list):
        raise ValueError("reason-advise --json: expected a list of picks")
    return [p for p in data if isinstance(p, dict)]


def budget_overrides(budget: str) -> list[str]:
    """A board row's budget column (`generated_tokens=1024, wall_s=5` or `unlimited`) as the
    overrides that give a run the same budget."""
    if not budget or budget.strip() == "unlimited":
        return []
    return [f"budget.{part.strip()}" for part in budget.split(",") if "=" in part]


def in_interval(value: float, low: float, high: float) -> bool:
    return low <= value <= high


# --- tables ----------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}"


def fmt_acc(f: Figures) -> str:
    if f.accuracy != f.accuracy:
        return "-"
    return f"{f.accuracy:.3f} [{f.ci_low:.3f}, {f.ci_high:.3f}]"


def fmt_diff(d: Paired | None) -> str:
    if d is None:
        return "-"
    return f"{d.value:+.3f} [{d.low:+.3f}, {d.high:+.3f}] (n={d.n})"


def settings_lines(settings: Mapping[str, Any]) -> list[str]:
    """`- key: value` per setting; a nested dict as `k=v` pairs, as print_settings prints it."""

    def text(value: Any) -> str:
        if isinstance(value, Mapping):
            return " ".join(f"{k}={v}" for k, v in value.items())
        return str(value)

    return [f"- {k}: {text(v)}" for k, v in settings.items()]


def markdown_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of `rows` over `columns` (a missing cell is `-`; `|` is escaped)."""

    def cell(value: Any) -> str:
        return str("-" if value is None else value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


ADAPTIVE_COLUMNS = (
    "config", "row", "samples/problem", "tokens/problem", "accuracy [95% CI]",
    "diff vs best-of-N [95% CI]", "token ratio", "stopped early", "goal",
)  # fmt: skip
DEEPCONF_COLUMNS = (
    "config", "row", "samples/problem", "tokens/problem", "accuracy [95% CI]",
    "diff vs best-of-N [95% CI]", "diff vs offline [95% CI]", "token ratio",
    "watch aborts/problem", "mean abort token", "stop aborts/problem",
)  # fmt: skip
MCTS_COLUMNS = (
    "config", "row", "accuracy [95% CI]", "tokens/problem", "tokens/T", "verifier calls/problem",
    "diff vs mcts [95% CI]",
)  # fmt: skip
ADVISOR_COLUMNS = (
    "budget T", "pick", "board accuracy [95% CI]", "board tokens/problem", "run accuracy",
    "run tokens/problem", "in the row's CI",
)  # fmt: skip


def ratio(a: float, b: float) -> float:
    return a / b if b and b == b and a == a else math.nan


def adaptive_rows(
    base: Figures, arms: Sequence[tuple[Figures, Paired | None]]
) -> list[dict[str, Any]]:
    """The adaptive table: best-of-N first, then each rule with its difference and ratio."""
    rows = [_common(base) | {"diff vs best-of-N [95% CI]": "(baseline)", "token ratio": "1.00"}]
    for f, diff in arms:
        r = ratio(f.tokens, base.tokens)
        rows.append(
            _common(f)
            | {
                "diff vs best-of-N [95% CI]": fmt_diff(diff),
                "token ratio": fmt(r, 2),
                "stopped early": fmt(f.early_stop, 2),
                "goal": "met" if meets_goal(r, diff) else "not met",
            }
        )
    return rows


def deepconf_rows(
    base: Figures,
    online: Figures | None,
    offline: Figures | None,
    diffs: Mapping[str, Paired | None],
) -> list[dict[str, Any]]:
    """The deepconf table: best-of-N, online (against both), offline (against best-of-N)."""
    rows = [_common(base) | {"diff vs best-of-N [95% CI]": "(baseline)", "token ratio": "1.00"}]
    for name, f in (("online", online), ("offline", offline)):
        if f is None:
            continue
        rows.append(
            _common(f)
            | {
                "diff vs best-of-N [95% CI]": fmt_diff(diffs.get(f"{name}-bon")),
                "diff vs offline [95% CI]": fmt_diff(diffs.get("online-offline"))
                if name == "online"
                else "(itself)",
                "token ratio": fmt(ratio(f.tokens, base.tokens), 2),
                "watch aborts/problem": fmt(f.aborts.get("watch_aborts_per_problem"), 2),
                "mean abort token": fmt(f.aborts.get("mean_abort_token"), 1),
                "stop aborts/problem": fmt(f.aborts.get("stop_aborts_per_problem"), 2),
            }
        )
    return rows


def mcts_rows(
    arms: Sequence[tuple[Figures, Paired | None]], budget: int, reference: str = "mcts"
) -> list[dict[str, Any]]:
    """The equal-budget table; a row that spent under BINDS x T is flagged `(did not bind)`."""
    rows = []
    for f, diff in arms:
        share = ratio(f.tokens, float(budget))
        flag = "" if binds(f.tokens, budget) else " (did not bind)"
        is_ref = f.label.split("/")[-1].startswith(reference + "-")
        rows.append(
            {
                "config": f.label,
                "row": f.row,
                "accuracy [95% CI]": fmt_acc(f),
                "tokens/problem": fmt(f.tokens),
                "tokens/T": fmt(share, 2) + flag,
                "verifier calls/problem": fmt(f.verifier_calls, 1),
                "diff vs mcts [95% CI]": "(reference)" if is_ref else fmt_diff(diff),
            }
        )
    return rows


def _common(f: Figures) -> dict[str, Any]:
    return {
        "config": f.label,
        "row": f.row,
        "samples/problem": fmt(f.samples, 2),
        "tokens/problem": fmt(f.tokens),
        "accuracy [95% CI]": fmt_acc(f),
    }


def figures_json(f: Figures) -> dict[str, Any]:
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and v != v else v

    return {k: clean(v) for k, v in f.__dict__.items() if k != "aborts"} | {
        "aborts": {k: clean(v) for k, v in f.aborts.items()}
    }


def paired_json(d: Paired | None) -> dict[str, Any] | None:
    return None if d is None else {"diff": d.value, "low": d.low, "high": d.high, "n": d.n}


# --- running ---------------------------------------------------------------------------------


class Bench:
    """The run: its arguments, where runs go, the engine's settings, what each section found."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.math_path = find_math500(args.data_dir)
        self.report: dict[str, Any] = {}
        self.markdown: list[str] = []
        self.status: dict[str, str] = {}  # label -> ran | resumed | complete | failed: ...

    def problems(self, dataset: str) -> int:
        return self.args.problems_arith if dataset == "arith" else self.args.problems_math

    def datasets(self) -> list[str]:
        out = ["arith"]
        if self.args.problems_math and self.math_path is not None:
            out.append("math500")
        return out

    def base_overrides(self, dataset: str) -> list[str]:
        return [
            *dataset_overrides(dataset, self.problems(dataset), self.math_path),
            f"seed={self.args.seed}",
            "progress=false",
        ]

    def run_dir(self, config: Config) -> Path:
        return run_dir_of(self.out, config, self.problems(config.dataset))

    def run(self, config: Config, extra: Sequence[str] = (), run_dir: Path | None = None) -> bool:
        """Run one configuration unless its run directory is complete; False when it failed."""
        from evals.experiment import run_experiment
        from reasoning.build import compose_config

        target = run_dir or self.run_dir(config)
        label = config.label()
        if run_complete(target, self.problems(config.dataset)):
            self.status.setdefault(label, "complete (not rerun)")
            return True
        overrides = [*self.base_overrides(config.dataset), *config.overrides, *extra]
        print(f"--- {label}: {' '.join(config.overrides + tuple(extra))}", flush=True)
        t0 = time.perf_counter()
        try:
            run_experiment(compose_config(overrides), target)
        except Exception as exc:  # one configuration's fault is reported, the others go on
            self.status[label] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            print(f"    {self.status[label]}", flush=True)
            return False
        self.status[label] = f"ran ({time.perf_counter() - t0:.0f} s)"
        return True

    def emit(self, section: str, title: str, settings: Mapping[str, Any], table: str) -> None:
        from settings import print_settings

        print(f"=== {section}: {title} ===", flush=True)
        print_settings(dict(settings))
        print(table + "\n", flush=True)
        lines = [f"## {section}: {title}", "", "Settings:", ""]
        lines += settings_lines(settings)
        self.markdown += [*lines, "", table, ""]


def section_settings(bench: Bench, configs: Sequence[Config], **extra: Any) -> dict[str, Any]:
    args = bench.args
    return {
        "model": "smollm2-135m (embedded SmolLM2-135M-Instruct), in-process vLLM engine",
        "seed": args.seed,
        "temperature": TEMPERATURE,
        "top_p": TOP_P,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "problems": ", ".join(
            f"{d} {bench.problems(d)}" + (" (levels 1-3)" if d == "arith" else "")
            for d in sorted({c.dataset for c in configs})
        ),
        **extra,
        "configs": "; ".join(f"{c.label()}: {' '.join(c.overrides)}" for c in configs),
    }


def missing_note(configs: Sequence[Config]) -> str:
    """`skipped: search=X not available` for each controller this checkout lacks."""
    names = sorted({c.search for c in configs if not available(c.search)})
    return "; ".join(f"skipped: search={name} not available" for name in names)


def section_configs(args: argparse.Namespace, section: str, dataset: str) -> list[Config]:
    if section == "adaptive":
        return adaptive_configs(args, dataset)
    if section == "deepconf":
        return deepconf_configs(args, dataset)
    return mcts_configs(args) if dataset == "arith" else []


def run_sections(bench: Bench) -> list[Config]:
    """Run every configuration of the selected sections whose controller is here (each run dir
    once: best-of-N is the baseline of two sections)."""
    configs = [
        c
        for section in ("adaptive", "deepconf", "mcts")
        if section in bench.args.only
        for dataset in bench.datasets()
        for c in section_configs(bench.args, section, dataset)
        if available(c.search)
    ]
    unique = list({c.label(): c for c in configs}.values())
    for config in unique:
        bench.run(config)
    return unique


def build_board(bench: Bench) -> Any:
    from evals.leaderboard.build import build_leaderboard

    runs = bench.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    return build_leaderboard([runs], bench.out / "board", audit=False, viewer=False)


class Section:
    """One section's figures over one dataset: available configurations only, by name."""

    def __init__(self, bench: Bench, board: Any, configs: Sequence[Config]) -> None:
        self.bench, self.board = bench, board
        self.configs = [c for c in configs if available(c.search)]
        self.note = missing_note(configs)
        self.figs: dict[str, Figures] = {}
        for c in self.configs:
            run_dir = bench.run_dir(c)
            self.figs[c.name] = figures(
                c.label(), board_row(board.table, board.groups, run_dir), run_dir
            )

    def get(self, name: str) -> Figures | None:
        return self.figs.get(name)

    def paired(self, a: Figures | None, b: Figures | None) -> Paired | None:
        if a is None or b is None:
            return None
        return paired(self.board.table, self.board.groups, a, b)

    def emit(
        self,
        section: str,
        title: str,
        columns: Sequence[str],
        rows: list[dict[str, Any]],
        **extra: Any,
    ) -> None:
        table = markdown_table(columns, rows)
        if self.note:
            table += f"\n\n{self.note}"
        self.bench.emit(section, title, section_settings(self.bench, self.configs, **extra), table)


def tabulate_adaptive(bench: Bench, board: Any) -> None:
    args, out = bench.args, {}
    for dataset in bench.datasets():
        sec = Section(bench, board, adaptive_configs(args, dataset))
        base = sec.get(f"bon{args.n}")
        assert base is not None  # best_of_n is always here
        arms = [f for name, f in sec.figs.items() if name.startswith("asc-")]
        pairs = [(f, sec.paired(f, base)) for f in arms]
        goal = "token ratio <= 0.5 and the diff's 95% CI contains 0"
        sec.emit("adaptive", dataset, ADAPTIVE_COLUMNS, adaptive_rows(base, pairs), goal=goal)
        out[dataset] = {
            "rows": [figures_json(f) for f in sec.figs.values()],
            "diff_vs_best_of_n": {f.label: paired_json(d) for f, d in pairs},
            "goal_met": {f.label: meets_goal(ratio(f.tokens, base.tokens), d) for f, d in pairs},
            "skipped": sec.note or None,
        }
    bench.report["adaptive"] = out


def tabulate_deepconf(bench: Bench, board: Any) -> None:
    args, out = bench.args, {}
    why = (
        f"warmup={args.warmup} (a few finished traces set the threshold at n={args.n}); "
        f"top_logprobs={TOP_LOGPROBS} (the reference's k); confidence_window="
        f"{args.confidence_window} (SmolLM2's traces here run tens to a few hundred tokens, "
        f"under max_tokens={args.max_tokens}: the paper's 2048 would make each trace one group, "
        "so the online watch could not end a trace before its end)"
    )
    for dataset in bench.datasets():
        sec = Section(bench, board, deepconf_configs(args, dataset))
        base = sec.get(f"bon{args.n}")
        assert base is not None
        online, offline = sec.get("deepconf-online"), sec.get("deepconf-offline")
        diffs = {
            "online-bon": sec.paired(online, base),
            "offline-bon": sec.paired(offline, base),
            "online-offline": sec.paired(online, offline),
        }
        rows = deepconf_rows(base, online, offline, diffs)
        sec.emit("deepconf", dataset, DEEPCONF_COLUMNS, rows, deepconf=why)
        out[dataset] = {
            "rows": [figures_json(f) for f in sec.figs.values()],
            "diffs": {k: paired_json(d) for k, d in diffs.items()},
            "skipped": sec.note or None,
        }
    bench.report["deepconf"] = out


def tabulate_mcts(bench: Bench, board: Any) -> None:
    args, t = bench.args, bench.args.mcts_budget
    sec = Section(bench, board, mcts_configs(args))
    ref = sec.get(f"mcts-T{t}")
    pairs = [(f, sec.paired(f, ref)) for f in sec.figs.values()]
    shapes = (
        f"best_of_n weighted wants n x max_tokens = {wanted_tokens(args.n, args.max_tokens)} "
        f"tokens; beam n={args.n} width=4 and particle_filter n={args.n} take up to 40 steps of "
        f"up to 512 tokens; mcts width=4 simulations={args.simulations}"
    )
    sec.emit(
        "mcts",
        "equal generated tokens, arith",
        MCTS_COLUMNS,
        mcts_rows(pairs, t),
        budget=f"budget.generated_tokens={t} per problem, every arm",
        verifier="arith (the rule-based step checker)",
        shapes=shapes,
        binds=f"a row that spent under {BINDS} x T per problem is flagged (did not bind)",
    )
    bench.report["mcts"] = {
        "budget": t,
        "rows": [figures_json(f) for f in sec.figs.values()],
        "diff_vs_mcts": {f.label: paired_json(d) for f, d in pairs},
        "bound": {f.label: binds(f.tokens, t) for f in sec.figs.values()},
        "skipped": sec.note or None,
    }


def advise(board_dir: Path, budget: int) -> tuple[list[dict[str, Any]], str]:
    """`reason-advise BOARD --dataset arith --budget T --verifier none --json` in a subprocess:
    its picks, or none and its refusal. `--verifier none`: the rows a run without a verifier
    can reproduce, which are the ones `search=auto` chooses from for the reruns below."""
    command = [
        sys.executable, "-m", "evals.advise_cli", str(board_dir),
        "--dataset", "arith", "--budget", str(budget), "--verifier", "none", "--json",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return [], (done.stderr or done.stdout).strip()[-500:]
    return parse_advice(done.stdout), ""


def pick_text(pick: Mapping[str, Any]) -> str:
    """`row 3: best_of_n {"n": 16, ...}`: a pick of reason-advise, in one cell."""
    params = json.dumps(pick.get("search_params") or {}, sort_keys=True)
    return f"row {pick.get('row')}: {pick.get('search')} {params}"


def advisor_row(
    budget: int,
    pick: Mapping[str, Any],
    picked: Mapping[str, Any],
    accuracy: float | None,
    tokens: float,
    status: str = "-",
) -> dict[str, Any]:
    """One line of the advisor table: the board's figure for the picked row against the rerun."""
    lo, hi = float(picked["ci_low"]), float(picked["ci_high"])
    inside = accuracy is not None and in_interval(accuracy, lo, hi)
    return {
        "budget T": budget,
        "pick": pick_text(pick),
        "board accuracy [95% CI]": f"{float(picked['accuracy']):.3f} [{lo:.3f}, {hi:.3f}]",
        "board tokens/problem": fmt(float(picked["tokens_per_problem"])),
        "run accuracy": fmt(accuracy, 3) if accuracy is not None else status,
        "run tokens/problem": fmt(tokens),
        "in the row's CI": "yes" if inside else "no",
    }


def tabulate_advisor(bench: Bench, board: Any) -> None:
    args = bench.args
    table = board.table
    arith = table[table["dataset"] == "arith"]
    budgets = advisor_budgets(list(arith["tokens_per_problem"]))
    line = ""
    if not advisor_available():
        line = "skipped: search=auto not available"
    elif not budgets:
        line = "skipped: no arith rows on the board (run the other sections into the same --out)"
    if line:
        print(f"=== advisor ===\n{line}\n", flush=True)
        bench.markdown += ["## advisor", "", line, ""]
        bench.report["advisor"] = {"skipped": line}
        return
    board_dir = bench.out / "board"
    rows: list[dict[str, Any]] = []
    report: list[dict[str, Any]] = []
    for t in budgets:
        picks, refusal = advise(board_dir, t)
        if not picks:
            rows.append({"budget T": t, "pick": f"refused: {refusal[:200]}"})
            report.append({"budget": t, "pick": None, "refusal": refusal})
            continue
        pick = picks[0]
        picked = table[table["row"] == int(pick["row"])].iloc[0]
        auto = Config(f"auto-T{t}-seed{args.advisor_seed}", "arith", "auto", ("search=auto",))
        extra = [
            f"search.advisor={board_dir.resolve()}",
            f"search.budget_tokens={t}",
            f"seed={args.advisor_seed}",
            f"backend.seed={args.seed}",  # the same engine: the run's seed differs, not its
            *budget_overrides(str(picked["budget"])),  # the picked row's own budget
        ]
        run_dir = bench.out / "advisor-runs" / f"arith-{args.problems_arith}" / auto.name
        bench.run(auto, extra, run_dir)
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        acc = summary.get("accuracy")
        records = read_records(run_dir)
        tokens = ledger_means(records)["tokens"]
        advised = (records[0].get("advised") or {}) if records else {}
        if advised and int(advised.get("row", -1)) != int(pick["row"]):
            raise RuntimeError(
                f"search=auto picked row {advised.get('row')} but reason-advise ranks row "
                f"{pick['row']} first for budget {t}: the two disagree"
            )
        row = advisor_row(t, pick, picked, acc, tokens, bench.status.get(auto.label(), "-"))
        rows.append(row)
        report.append(
            {
                "budget": t,
                "pick": pick,
                "run_dir": str(run_dir),
                "run_accuracy": acc,
                "run_ci95": summary.get("ci95"),
                "run_tokens_per_problem": tokens,
                "in_row_ci": row["in the row's CI"] == "yes",
            }
        )
    pct = list(ADVISOR_PERCENTILES)
    settings = section_settings(
        bench,
        [],
        problems=f"arith {args.problems_arith} (levels 1-3)",
        sweep=f"the board's {len(arith)} arith rows ({board_dir})",
        budgets=f"percentiles {pct} of their tokens/problem, rounded up: {budgets}",
        auto=f"search=auto, same problems, seed={args.advisor_seed} (engine seed {args.seed})",
    )
    settings.pop("configs", None)
    bench.emit("advisor", "picks and their reruns", settings, markdown_table(ADVISOR_COLUMNS, rows))
    bench.report["advisor"] = {"budgets": budgets, "picks": report}


def write_results(bench: Bench, settings: Mapping[str, Any]) -> None:
    smoke = bench.args.smoke
    head = ["# Adaptive compute (benchmarks/adaptive_compute.py)", ""]
    if smoke:
        head += ["**SMOKE RUN** (--smoke: a handful of problems, n small): it shows that every "
                 "part runs, not the issue's figures.", ""]  # fmt: skip
    head += ["Settings:", "", *settings_lines(settings), ""]
    RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_MD.write_text("\n".join(head + bench.markdown) + "\n")
    data = {"smoke": smoke, "settings": dict(settings), "status": bench.status, **bench.report}
    RESULTS_JSON.write_text(json.dumps(data, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from settings import engine_summary, print_settings

    from reasoning.build import close_generators, compose_config, generator_for

    temp = args.out is None
    out = Path(args.out or tempfile.mkdtemp(prefix="adaptive-compute-")).resolve()
    bench = Bench(args, out)
    started = time.perf_counter()
    try:
        gen = generator_for(compose_config([f"seed={args.seed}"]).backend)
        gen.start()  # once: every run below asks for the same backend config
        settings = print_settings(
            {
                "smoke": args.smoke,
                "model": f"smollm2-135m ({gen.path})",
                "engine": engine_summary(gen),
                "sections": ",".join(args.only),
                "problems": f"arith {args.problems_arith} (levels 1-3, dataset seed 0), "
                + (
                    f"math500 first {args.problems_math} ({bench.math_path})"
                    if "math500" in bench.datasets()
                    else "math500: none (no data found or --problems-math 0)"
                ),
                "n": args.n,
                "max_tokens": args.max_tokens,
                "temperature": TEMPERATURE,
                "top_p": TOP_P,
                "seed": args.seed,
                "advisor_seed": args.advisor_seed,
                "out": f"{out}" + (" (temporary)" if temp and not args.keep else ""),
                "available": " ".join(
                    f"{s}={available(s)}" for s in ("adaptive_sc", "deepconf", "mcts", "auto")
                ),
            }
        )
        run_sections(bench)
        board = build_board(bench)
        if "adaptive" in args.only:
            tabulate_adaptive(bench, board)
        if "deepconf" in args.only:
            tabulate_deepconf(bench, board)
        if "mcts" in args.only:
            tabulate_mcts(bench, board)
        if "advisor" in args.only:
            tabulate_advisor(bench, board)
        bench.report["wall_s"] = round(time.perf_counter() - started, 1)
        write_results(bench, settings)
        wall = bench.report["wall_s"]
        print(f"wrote {RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.name} ({wall} s)")
        for label, status in bench.status.items():
            print(f"  {label}: {status}")
    finally:
        close_generators()
        if temp and not args.keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
