"""Why a verifier-guided search picks what it picks: selection vs generation, and what the
verifier saw in the wrong picks.

For each step-level controller (same settings as search_efficiency.py) on the same seeded
`arith` problems: every finished node of every search tree is graded, so a wrong outcome is
either a generation miss (no correct answer anywhere in the tree) or a selection miss (one was
there, the verifier ranked another higher). Wrong picks are classed by their step scores: all
1.0 (every checkable claim true), some 0.0 (a false claim), or otherwise (nothing checkable:
0.5). A best-of-N pass counts blank-line steps per sample: the branching points a step-level
search has.

    .venv/bin/python benchmarks/search_diagnosis.py [--problems 60] [--budget 1200]
        [--methods beam,particle_filter,astar] [--examples 3]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
from typing import Any

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "3")

STEP_METHODS = ("beam", "particle_filter", "astar")


def score_class(scores: tuple[float, ...]) -> str:
    if not scores:
        return "unscored"
    if min(scores) == 1.0:
        return "all_true"
    if min(scores) == 0.0:
        return "false_claim"
    return "uncheckable"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--problems", type=int, default=60)
    parser.add_argument("--budget", type=int, default=1200, help="generated tokens per problem")
    parser.add_argument("--methods", default=",".join(STEP_METHODS))
    parser.add_argument("--examples", type=int, default=3, help="wrong all-true picks to print")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := [m for m in methods if m not in STEP_METHODS]:
        parser.error(f"unknown methods {unknown}; valid: {list(STEP_METHODS)}")

    # this directory is on sys.path when run as a script
    from search_efficiency import SETTINGS, build
    from settings import engine_summary, print_settings

    import search
    from evals.arith import generate_arith
    from evals.grading import Grader
    from reasoning import Budget, asolve_many
    from reasoning.backends.vllm_engine import VLLMGenerator
    from reasoning.loop import run_sync
    from reasoning.steps import split_steps

    problems = generate_arith(args.problems, levels=(1, 2, 3), seed=args.seed)
    gen = VLLMGenerator(
        args.model, system_prompt="short", max_model_len=2048, seed=args.seed, enforce_eager=True
    )
    gen.start()
    grader = Grader()
    print_settings(
        {
            "model": f"{args.model} ({gen.path})",
            "engine": engine_summary(gen),
            "problems": f"{len(problems)} (arith levels 1-3, seed={args.seed})",
            "budget": f"{args.budget} generated tokens per problem",
            **{
                f"method {m}": f"{SETTINGS[m]['search']}("
                + " ".join(f"{k}={v}" for k, v in SETTINGS[m]["fields"].items())
                + f") verifier={SETTINGS[m]['verifier'] or 'none'}"
                for m in methods
            },
            "best_of_8 pass": "BestOfN(n=8 max_tokens=256), no budget",
            "seed": args.seed,
            "examples": args.examples,
        }
    )

    def correct(answer: str | None, gold: str) -> bool:
        return run_sync(grader.grade(answer, gold)).correct is True

    report: dict[str, Any] = {"problems": len(problems), "budget": args.budget}
    for method in methods:
        controller, verifier = build(method)
        outcomes = run_sync(
            asolve_many(
                problems,
                search=controller,
                verifier=verifier,
                generator=gen,
                budget=Budget(generated_tokens=args.budget),
                seed=args.seed,
            )
        )
        stats: collections.Counter[str] = collections.Counter()
        wrong_picks: collections.Counter[str] = collections.Counter()
        shown = 0
        for problem, out in zip(problems, outcomes, strict=True):
            graph = out.tree.graph
            in_tree = False
            for node, data in graph.nodes(data=True):
                if not data.get("finished"):
                    continue
                path = out.tree.path(node)[1:]
                text = "\n\n".join(graph.nodes[x].get("step", "") for x in path)
                if correct(grader.extract(text), problem.answer):
                    in_tree = True
                    break
            ok = correct(out.answer, problem.answer)
            stats["correct"] += ok
            stats["correct_in_tree"] += in_tree
            stats["selection_miss"] += in_tree and not ok
            stats["generation_miss"] += not in_tree and not ok
            if not ok:
                kind = score_class(out.chain.scores) if out.chain is not None else "no_pick"
                wrong_picks[kind] += 1
                if kind == "all_true" and shown < args.examples and out.chain is not None:
                    shown += 1
                    print(
                        f"--- {method} {problem.id}: {problem.question} gold={problem.answer} "
                        f"picked={out.answer} step scores={list(out.chain.scores)}\n"
                        f"{out.chain.text[:300]}\n"
                    )
        report[method] = {"outcomes": dict(stats), "wrong_picks_by_step_scores": dict(wrong_picks)}
        print(method, json.dumps(report[method]), flush=True)

    samples = run_sync(
        asolve_many(problems, search=search.BestOfN(n=8, max_tokens=256), generator=gen)
    )
    steps = [len(split_steps(c.text)) for o in samples for c in o.chains]
    hist = collections.Counter(min(k, 5) for k in steps)
    report["best_of_8_steps_per_sample"] = {
        "samples": len(steps),
        "mean": round(statistics.mean(steps), 2),
        "histogram_1_to_5plus": [hist[k] for k in range(1, 6)],
    }
    print("best_of_8_steps_per_sample", json.dumps(report["best_of_8_steps_per_sample"]))
    gen.close()


if __name__ == "__main__":
    main()
