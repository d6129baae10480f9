"""Parallel reasoning threads on the real engine: what forking buys in wall time, and what
Hogwild!-style rounds cost in re-prefill.

Two sections, chosen with `--only speedup,hogwild` (default: both). Each prints a `settings:`
line, one line per number, and its results go into benchmarks/results/threads.json under the
section's name.

speedup (model smollm2-135m, the default config): per round, the same generated tokens two ways
in one process on one engine: `parallel`, K threads of up to T tokens forked from one shared
prompt through the thread machinery (`search.threads.runtime.Rollout.fork`, all in flight
together), and `sequential`, one rollout of up to K*T tokens. The prompt asks for a long story,
at temperature 0.8, so most samples run to their cap; lengths still differ (EOS), so the arms
are compared per token: `measured_speedup` = the parallel arm's tokens at the sequential arm's
seconds per token, over the parallel arm's wall time; `promised_speedup` = the parallel arm's
tokens over its critical-path tokens (its longest thread: what the papers' token latency
promises); `efficiency` = measured / promised (goal >= 0.8), which is about the ratio of
`ms_per_token_sequential` (one decode step of one sequence) to `ms_per_step_parallel` (one step
of K sequences). The arms alternate and the order flips each round, so drift hits both. One
line per K and the summed rounds.

hogwild (same engine): the hogwild policy on arith problems for each round size delta; per
delta: rounds per rollout, generated tokens, prompt tokens and re-prefill tokens (prompt tokens
the prefix cache did not serve) per round, re-prefill tokens per round over delta, and the
prefix-cache hit rate of the shared part of the views (the prompt and the committed history),
from the policy's per-round records.

    .venv/bin/python benchmarks/threads.py [--only speedup,hogwild] [--k 2,4,8] [--tokens 128]
        [--rounds 3] [--deltas 8,16,32,64] [--problems 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.datasets import load_problems  # noqa: E402
from evals.grading import Grader  # noqa: E402
from reasoning.build import compose_config, generator_for  # noqa: E402
from reasoning.context import Context  # noqa: E402
from reasoning.loop import run_sync  # noqa: E402
from reasoning.types import Problem, Sampling  # noqa: E402
from search.threads.hogwild import Hogwild  # noqa: E402
from search.threads.runtime import Branch, Rollout  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "threads.json"
STORY = Problem("story", "Write a very long story about a cat who learns to count to one hundred.")


async def _parallel(generator: Any, k: int, tokens: int) -> dict[str, float]:
    ctx = Context(STORY, generator, judge=Grader())
    head = ctx.render(None)
    # not the rollout's sample: the threads are counted as the calls they are
    rollout = Rollout.start(ctx, head, k * tokens, new_samples=False, policy="benchmark")
    sampling = Sampling(temperature=0.8, max_tokens=tokens)
    branches = [Branch(str(i + 1), head) for i in range(k)]
    started = time.perf_counter()
    await rollout.fork(branches, sampling)
    wall = time.perf_counter() - started
    return {
        "tokens": ctx.ledger.generated_tokens,
        "critical": ctx.tree.critical_path_tokens(),
        "wall_s": wall,
    }


async def _sequential(generator: Any, total: int) -> dict[str, float]:
    ctx = Context(STORY, generator, judge=Grader())
    rollout = Rollout.start(ctx, ctx.render(None), total)
    started = time.perf_counter()
    await rollout.decode(Sampling(temperature=0.8, max_tokens=total))
    wall = time.perf_counter() - started
    return {"tokens": ctx.ledger.generated_tokens, "wall_s": wall}


def speedup(generator: Any, ks: list[int], tokens: int, rounds: int) -> dict[str, Any]:
    print(f"settings: model=smollm2-135m K={ks} T={tokens} rounds={rounds} temperature=0.8")
    out: dict[str, Any] = {"k": {}, "tokens_per_thread": tokens, "rounds": rounds}
    run_sync(_sequential(generator, 16))  # warm-up: compile, caches
    for k in ks:
        par = {"tokens": 0.0, "critical": 0.0, "wall_s": 0.0}
        seq = {"tokens": 0.0, "wall_s": 0.0}
        for r in range(rounds):
            arms = ["parallel", "sequential"] if r % 2 == 0 else ["sequential", "parallel"]
            for arm in arms:
                if arm == "parallel":
                    got = run_sync(_parallel(generator, k, tokens))
                    for key in par:
                        par[key] += got[key]
                else:
                    got = run_sync(_sequential(generator, k * tokens))
                    for key in seq:
                        seq[key] += got[key]
        seconds_per_token = seq["wall_s"] / max(1.0, seq["tokens"])
        measured = par["tokens"] * seconds_per_token / par["wall_s"]
        promised = par["tokens"] / max(1.0, par["critical"])
        row = {
            "parallel_tokens": par["tokens"],
            "parallel_critical_path_tokens": par["critical"],
            "parallel_wall_s": round(par["wall_s"], 3),
            "sequential_tokens": seq["tokens"],
            "sequential_wall_s": round(seq["wall_s"], 3),
            "measured_speedup": round(measured, 3),
            "promised_speedup": round(promised, 3),
            "efficiency": round(measured / promised, 3),
            # why efficiency falls short: a decode step of K sequences costs more than one of a
            # single sequence on CPU (the parallel arm's steps are its critical-path tokens)
            "ms_per_step_parallel": round(1000 * par["wall_s"] / max(1.0, par["critical"]), 1),
            "ms_per_token_sequential": round(1000 * seconds_per_token, 1),
        }
        out["k"][str(k)] = row
        print(f"K={k} " + " ".join(f"{key}={value}" for key, value in row.items()))
    return out


async def _hogwild(generator: Any, problems: list[Problem], delta: int) -> list[dict[str, Any]]:
    # the short rules: the paper-style prompt (~1,800 tokens) and 256 tokens overflow the
    # embedded model's 2048-token context; the measured re-prefill is the work in progress
    policy = Hogwild(round_tokens=delta, max_thread_tokens=128, rules_style="short")
    sampling = Sampling(temperature=0.6, top_p=0.95, max_tokens=256)

    async def one(problem: Problem) -> dict[str, Any]:
        ctx = Context(problem, generator, judge=Grader())
        result = await policy.rollout(ctx, sampling, "r0")
        return {"details": result.details, "generated": ctx.ledger.generated_tokens}

    return list(await asyncio.gather(*(one(p) for p in problems)))


def hogwild(generator: Any, deltas: list[int], n_problems: int) -> dict[str, Any]:
    problems = load_problems("arith", arith={"n": n_problems, "levels": [3]})
    print(
        f"settings: model=smollm2-135m deltas={deltas} problems={n_problems} workers=2 "
        "max_thread_tokens=128"
    )
    out: dict[str, Any] = {}
    for delta in deltas:
        runs = run_sync(_hogwild(generator, problems, delta))
        rounds = [r for run in runs for r in run["details"]["rounds"]]
        prefill = [r["reprefill_tokens"] for r in rounds]
        hits = [
            r["shared_cache_hit_rate"] for r in rounds if r.get("shared_cache_hit_rate") is not None
        ]
        row = {
            "rounds_per_rollout": round(len(rounds) / len(runs), 2),
            "generated_tokens_per_rollout": round(
                sum(run["generated"] for run in runs) / len(runs), 1
            ),
            "prompt_tokens_per_round": round(
                statistics.mean(r["prompt_tokens"] for r in rounds), 1
            ),
            "reprefill_tokens_per_round": round(statistics.mean(prefill), 1),
            "reprefill_per_round_over_delta": round(statistics.mean(prefill) / delta, 2),
            "shared_prefix_hit_rate": round(statistics.mean(hits), 3) if hits else None,
        }
        out[str(delta)] = row
        print(f"delta={delta} " + " ".join(f"{key}={value}" for key, value in row.items()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="speedup,hogwild")
    parser.add_argument("--k", default="2,4,8")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deltas", default="8,16,32,64")
    parser.add_argument("--problems", type=int, default=4)
    args = parser.parse_args()
    sections = args.only.split(",")
    generator = generator_for(compose_config([]).backend)
    generator.start()  # type: ignore[attr-defined]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    try:
        if "speedup" in sections:
            ks = [int(k) for k in args.k.split(",")]
            results["speedup"] = speedup(generator, ks, args.tokens, args.rounds)
        if "hogwild" in sections:
            deltas = [int(d) for d in args.deltas.split(",")]
            results["hogwild"] = hogwild(generator, deltas, args.problems)
    finally:
        generator.close()  # type: ignore[attr-defined]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
