"""One evaluation run from a composed config: what `reason` does after Hydra parses the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from evals import console
from evals.datasets import GENERATORS, DatasetUnavailableError, load_problems
from evals.runner import Runner, search_params
from evals.validation import validate_config
from reasoning.build import (
    ConfigError,
    build_budget,
    build_generator,
    build_judge,
    build_sampler,
    build_search,
    build_verifier,
    check_verifier,
    resolve_search,
)
from reasoning.controller import Controller, controller_name
from reasoning.loop import background_loop
from reasoning.types import Problem, Verifier


def load_from_config(cfg: DictConfig) -> list[Problem]:
    d = cfg.dataset
    # the options block of a generated dataset (dataset.arith, dataset.countdown)
    generated = {k: OmegaConf.to_container(d[k], resolve=True) for k in GENERATORS if d.get(k)}
    return load_problems(
        d.name,
        path=d.get("path"),
        data_dir=d.get("data_dir"),
        limit=d.get("limit"),
        ids=list(d.ids) if d.get("ids") else None,
        subjects=list(d.subjects) if d.get("subjects") else None,
        levels=list(d.levels) if d.get("levels") else None,
        **generated,  # type: ignore[arg-type]
    )


def run_experiment(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Validate everything cheap first, then start the engine and run.

    In order: the top-level keys (evals/validation.py), the data (a bad file names its line),
    the search keys (search/settings.py), budget, verifier, judge. All of it fails before the
    generator and the Runner exist, so a bad value leaves the run directory as it was.
    """
    validate_config(cfg, out_dir)
    cfg = resolve_search(cfg)  # search=auto: the advisor's pick, recorded under `advised`
    try:
        problems = load_from_config(cfg)
    except (ValueError, OSError, DatasetUnavailableError) as exc:
        raise ConfigError(str(exc)) from exc
    search = build_search(cfg)
    budget = build_budget(cfg)
    verifier = build_verifier(cfg, out_dir)  # cache.mode wraps it (reasoning/cache/)
    check_verifier(search, verifier)
    judge = build_judge(cfg)
    sampler = build_sampler(cfg)
    print(what_runs(cfg, search, verifier, len(problems), out_dir), file=console.stdout())
    generator = build_generator(cfg, out_dir)
    runner = Runner(
        generator,
        search,
        out_dir,
        verifier=verifier,
        grader=judge,
        budget=budget,
        seed=cfg.seed,
        concurrency=cfg.concurrency,
        config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        progress=cfg.progress,
        sampler=sampler,
    )
    future = asyncio.run_coroutine_threadsafe(runner.run(problems), background_loop())
    try:
        return future.result()
    except BaseException:
        # SIGTERM or Ctrl-C (evals/cli.py): stop the problems in flight before the engine goes
        future.cancel()
        raise


def what_runs(
    cfg: DictConfig,
    search: Controller,
    verifier: Verifier | None,
    n_problems: int,
    out_dir: str | Path,
) -> str:
    """Two lines before a run starts: search, model, verifier, dataset size; the run directory."""
    params = search_params(search)
    knobs = ", ".join(f"{k}={params[k]}" for k in ("n", "aggregate") if k in params)
    parts = [f"{controller_name(search)}" + (f" ({knobs})" if knobs else "")]
    trim = OmegaConf.select(cfg, "trim._target_", default=None)
    if trim is not None:
        parts[0] += f" + trim {str(trim).rsplit('.', 1)[-1]}"
    parts.append(f"model {OmegaConf.select(cfg, 'model.name', default='?')}")
    if verifier is not None:
        parts.append(f"verifier {getattr(verifier, 'name', type(verifier).__name__)}")
    parts.append(f"{cfg.dataset.name}: {n_problems} problems")
    lines = [f"run       {'  |  '.join(parts)}"]
    advised = OmegaConf.select(cfg, "advised", default=None)
    if advised is not None:  # search=auto
        lines.append(
            f"advised   row {advised.row} of {advised.board}: accuracy {advised.accuracy:.3f}, "
            f"{advised.tokens_per_problem:.1f} tokens/problem (budget {advised.budget_tokens:g})"
        )
    return "\n".join([*lines, f"run dir   {out_dir}"])


def format_summary(summary: dict[str, Any]) -> str:
    """The few lines a person wants at the end of a run."""
    led = summary["ledger"]
    acc = summary["accuracy"]
    lo, hi = summary["ci95"]
    acc_text = "n/a (nothing graded)" if acc is None else f"{acc:.3f}  (95% CI {lo:.3f}-{hi:.3f})"
    problems = f"on n={summary['n']} graded of {summary['problems']} problems"
    selected = summary.get("selected")
    if isinstance(selected, int) and summary["problems"] < selected:
        problems += f" (done {summary['problems']}/{selected} selected)"
    apart = [
        f"{summary[key]} {label}"
        for key, label in (
            ("errors", "failed with an error (see `error` in results.jsonl)"),
            ("ungraded", "ungradable"),
            ("missing_scores", "voted without their verifier scores"),
        )
        if summary.get(key)
    ]
    return "\n".join(
        [
            f"accuracy  {acc_text}  {problems}" + (f"; {', '.join(apart)}" if apart else ""),
            f"ledger    generated_tokens={led['generated_tokens']}  "
            f"prompt_tokens={led['prompt_tokens']}  "
            f"cached_prompt_tokens={led['cached_prompt_tokens']}  "
            f"critical_path_tokens={led.get('critical_path_tokens', 0)}",
            f"          generator_calls={led['generator_calls']}  samples={led['samples']}  "
            f"verifier_calls={led['verifier_calls']}  "
            f"wall_s={led['wall_s']} (summed over problems; elapsed {summary['elapsed_s']}s)",
        ]
    )
