"""Search efficiency: engine utilization, prefix-cache reuse and accuracy per token, per controller.

One process, one model (SmolLM2-135M, eager, real vLLM engine), the same seeded `arith` problems
(levels 1-3) for every measurement:

1. Engine utilization. Each controller solves all problems at once (`asolve_many`, the toolkit's
   shared engine), then a raw `vllm.LLM.generate` batch in the same process runs the problems'
   rendered prompts with as many sequences as the controller sampled in all (the samples spread
   over the prompts) and max_tokens = the largest per-call cap the controller requested (its
   per-step cap, unless the budget clamped every call). The two alternate (toolkit, raw,
   toolkit, raw, ...), so drift on a shared machine hits both alike. Sample lengths differ, so the
   comparison is generated tokens per second; the ratio is toolkit over raw. That raw batch
   decodes long sequences with no stop string, an upper bound no step-level search can reach;
   so the accuracy runs at the utilization budget also replay each run's own requests (prompt,
   n, max_tokens, stop, temperature) as one raw batch: the same work with no search in between
   (--skip-replay turns it off).
2. Prefix-cache reuse. The controller's generator is wrapped in a recorder that logs, per problem
   in call order, each call's prompt and the engine's `cached_prompt_tokens`. The most the engine
   could reuse for a call is the longest common token prefix with any earlier prompt of the same
   problem's search, rounded down to whole KV blocks (the engine's block size, 32 tokens on CPU:
   vLLM caches whole blocks, and never the prompt's last token). The engine's prefix cache is
   reset before every run, so nothing leaks between controllers. Reported: sum(cached) /
   sum(reusable), and the same with each call's cached tokens capped at its bound (the engine
   also caches blocks of generated text, so a call can be served more than its prompt-prefix
   bound).
3. Accuracy vs generated tokens at per-problem token budgets (reasoning.Budget(generated_tokens=B)
   for every method): accuracy (Grader().grade against the gold answer), mean generated tokens
   and verifier calls per problem, and pass@N for best-of-N (any sample correct).

    .venv/bin/python benchmarks/search_efficiency.py [--problems 60] [--budgets 300,1200]
        [--methods greedy,best_of_n,best_of_n_weighted,beam,particle_filter,astar]
        [--skip-accuracy] [--skip-utilization] [--seed 0] [--out PATH]

Last line: prefix_cache_reuse_min=<min over beam, particle_filter and astar of the capped reuse
(utilization runs; with --skip-utilization, the accuracy runs at the largest budget)>.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "3")

METHODS = ("greedy", "best_of_n", "best_of_n_weighted", "beam", "particle_filter", "astar")
REUSE_TARGETS = ("beam", "particle_filter", "astar")  # the final line's minimum runs over these
BEST_OF_N = ("best_of_n", "best_of_n_weighted")  # pass@N is reported for these

# Small CPU settings, per method: (controller class path, its fields, verifier or None).
SETTINGS: dict[str, dict[str, Any]] = {
    "greedy": {"search": "Greedy", "fields": {"max_tokens": 256}, "verifier": None},
    "best_of_n": {
        "search": "BestOfN",
        "fields": {"n": 8, "max_tokens": 256, "aggregate": "majority"},
        "verifier": None,
    },
    "best_of_n_weighted": {
        "search": "BestOfN",
        "fields": {"n": 8, "max_tokens": 256, "aggregate": "weighted"},
        "verifier": "arith",
    },
    "beam": {
        "search": "Beam",
        "fields": {"n": 8, "width": 4, "max_step_tokens": 96},
        "verifier": "arith",
    },
    "particle_filter": {
        "search": "ParticleFilter",
        "fields": {"n": 8, "max_step_tokens": 96},
        "verifier": "arith",
    },
    "astar": {
        "search": "AStar",
        "fields": {"width": 4, "max_step_tokens": 96},
        "verifier": "arith",
    },
}


def build(method: str) -> tuple[Any, Any]:
    """The controller and the verifier (None, or the ArithStepChecker) of one method."""
    import search
    from verifiers.arith_checker import ArithStepChecker

    spec = SETTINGS[method]
    controller = getattr(search, spec["search"])(**spec["fields"])
    verifier = ArithStepChecker() if spec["verifier"] == "arith" else None
    return controller, verifier


# --- the recording generator --------------------------------------------------------------------


@dataclass
class Call:
    prompt: str
    max_tokens: int
    n: int
    sampling: Any = None  # the Sampling the Context sent (a replay sends the same request)
    prompt_tokens: int = 0  # as the engine counted them
    cached: int = 0  # the engine's cached_prompt_tokens
    outputs: list[tuple[str, int]] = field(default_factory=list)  # (text + stop string, tokens)


class Recorder:
    """A Generator that forwards to another and logs each call per problem, in call order.

    The Context renders a prompt and hands it straight to `complete`, so the prompt text tells
    which problem a call belongs to (prompts of different problems differ in the question).
    Prompts are tokenized afterwards, not here, to keep the measured runs free of that cost.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self._owner: dict[str, str] = {}
        self.calls: dict[str, list[Call]] = {}

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    def render(self, problem: Any, chain: Any = None) -> str:
        prompt = self.inner.render(problem, chain)
        self._owner[prompt] = problem.id
        return prompt

    async def complete(self, prompt: str, sampling: Any) -> list[Any]:
        call = Call(prompt, sampling.max_tokens, sampling.n, sampling)
        self.calls.setdefault(self._owner.get(prompt, "?"), []).append(call)
        completions = await self.inner.complete(prompt, sampling)
        if completions:
            call.prompt_tokens = completions[0].prompt_tokens
            call.cached = completions[0].cached_prompt_tokens
            call.outputs = [(c.text + (c.stop or ""), c.tokens) for c in completions]
        return completions

    def start(self) -> None:
        self.inner.start()

    def close(self) -> None:
        self.inner.close()

    def reset(self) -> None:
        self._owner.clear()
        self.calls = {}


@dataclass
class Reuse:
    """Prefix-cache reuse of one run, summed over its calls."""

    calls: int = 0
    short_calls: int = 0  # prompts under one block: can never hit
    prompt_tokens: int = 0
    reusable: int = 0  # whole blocks shared with an earlier prompt of the same problem
    reusable_seq: int = 0  # ... with an earlier prompt or prompt + generated text
    cached: int = 0  # what the engine served from its cache
    cached_capped: int = 0  # per call min(cached, reusable)
    cached_capped_seq: int = 0  # per call min(cached, reusable_seq)
    length_mismatches: int = 0  # our tokenization vs the engine's prompt length

    def add(self, other: Reuse) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def ratio(self) -> float | None:
        return self.cached / self.reusable if self.reusable else None

    @property
    def capped_ratio(self) -> float | None:
        return self.cached_capped / self.reusable if self.reusable else None

    @property
    def seq_ratio(self) -> float | None:
        return self.cached_capped_seq / self.reusable_seq if self.reusable_seq else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "calls_under_one_block": self.short_calls,
            "prompt_tokens": self.prompt_tokens,
            "reusable_tokens": self.reusable,
            "reusable_tokens_with_outputs": self.reusable_seq,
            "cached_tokens": self.cached,
            "cached_tokens_capped": self.cached_capped,
            "reuse": self.ratio,
            "reuse_capped": self.capped_ratio,
            "reuse_with_outputs": self.seq_ratio,
            "tokenization_length_mismatches": self.length_mismatches,
        }


class BlockTrie:
    """Token sequences cut into whole blocks, as vLLM's prefix cache keys them."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.nodes: dict[tuple[int, tuple[int, ...]], int] = {}  # (parent, block) -> node

    def longest(self, ids: list[int]) -> int:
        """Tokens of `ids` (whole blocks, never its last token) found in the trie."""
        node, hit, b = 0, 0, self.block
        while hit < (len(ids) - 1) // b:
            node = self.nodes.get((node, tuple(ids[hit * b : (hit + 1) * b])), -1)
            if node < 0:
                break
            hit += 1
        return hit * b

    def insert(self, ids: list[int]) -> None:
        node, b = 0, self.block
        for j in range(len(ids) // b):
            key = (node, tuple(ids[j * b : (j + 1) * b]))
            node = self.nodes.setdefault(key, len(self.nodes) + 1)


def reuse_of(calls: dict[str, list[Call]], tokenizer: Any, block: int) -> Reuse:
    """Cached vs reusable prompt tokens, per problem in call order.

    The bound of a call is what earlier calls of the same problem put in the cache: their
    prompts (exact), and with outputs also their prompt + generated text, whose KV the engine
    caches too (retokenized text + stop string: an estimate, cut to the tokens the engine
    computed, i.e. all but the last sampled one).
    """
    out = Reuse()

    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    for records in calls.values():
        prompts, sequences = BlockTrie(block), BlockTrie(block)
        for call in records:
            ids = encode(call.prompt)
            out.calls += 1
            out.prompt_tokens += len(ids)
            out.short_calls += len(ids) < block
            out.length_mismatches += call.prompt_tokens != len(ids)
            reusable = prompts.longest(ids)
            reusable_seq = max(reusable, sequences.longest(ids))
            out.reusable += reusable
            out.reusable_seq += reusable_seq
            out.cached += call.cached
            out.cached_capped += min(call.cached, reusable)
            out.cached_capped_seq += min(call.cached, reusable_seq)
            prompts.insert(ids)
            sequences.insert(ids)
            for text, tokens in call.outputs:
                if len(ids) + tokens - 1 >= block:
                    sequences.insert(encode(call.prompt + text)[: len(ids) + tokens - 1])
    return out


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_reuse_table(rows: dict[str, dict[str, Any]], block: int) -> None:
    """Markdown table of prefix-cache reuse per method (rows: Reuse.to_dict())."""
    print(
        f"| method | calls | calls < {block} tok | prompt tok | cached tok | reusable tok "
        "| reuse | reuse (capped) | reusable incl. outputs | reuse incl. outputs (capped) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method, pc in rows.items():
        print(
            f"| {method} | {pc['calls']} | {pc['calls_under_one_block']} | {pc['prompt_tokens']} "
            f"| {pc['cached_tokens']} | {pc['reusable_tokens']} | {fmt(pc['reuse'])} "
            f"| {fmt(pc['reuse_capped'])} | {pc['reusable_tokens_with_outputs']} "
            f"| {fmt(pc['reuse_with_outputs'])} |"
        )


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--problems", type=int, default=60)
    parser.add_argument("--budgets", default="300,1200", help="generated tokens per problem")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list")
    parser.add_argument(
        "--util-budget",
        type=int,
        default=None,
        help="token budget per problem of the utilization runs (default: the largest budget)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="utilization rounds")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument(
        "--skip-replay",
        action="store_true",
        help="accuracy runs: skip replaying each run's own requests as one raw vLLM batch",
    )
    parser.add_argument("--skip-utilization", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/search_efficiency.json")
    args = parser.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; valid: {list(METHODS)}")
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    if not budgets or min(budgets) < 1:
        parser.error("--budgets needs positive integers")
    util_budget = args.util_budget or max(budgets)

    from settings import engine_settings, engine_summary, print_settings

    from evals.arith import generate_arith
    from evals.grading import Grader
    from reasoning import Budget, asolve_many
    from reasoning.backends.vllm_engine import VLLMGenerator
    from reasoning.loop import run_sync
    from reasoning.types import Sampling

    problems = generate_arith(args.problems, levels=(1, 2, 3), seed=args.seed)
    gen = VLLMGenerator(
        args.model, system_prompt="short", max_model_len=2048, seed=args.seed, enforce_eager=True
    )
    gen.start()
    run_sync(gen.complete(gen.render(problems[0]), Sampling(max_tokens=8)))  # warm-up
    block = gen.block_size
    recorder = Recorder(gen)
    grader = Grader()

    lengths = [len(gen.tokenizer.encode(gen.render(p), add_special_tokens=False)) for p in problems]
    head_lengths = f"{min(lengths)}-{max(lengths)}"
    run_settings = print_settings(
        {
            "model": f"{args.model} ({gen.path})",
            "engine (toolkit and raw)": engine_summary(gen),
            "problems": f"{len(problems)} (arith levels 1-3, seed={args.seed})",
            "budgets": budgets,
            "utilization_budget": util_budget,
            "utilization_rounds": args.rounds,
            "replay": not args.skip_replay,
            "seed": args.seed,
            "methods": methods,
        },
        end_block=False,
    )
    for m in methods:
        spec = SETTINGS[m]
        fields_ = " ".join(f"{k}={v}" for k, v in spec["fields"].items())
        print(f"  {m:19s} {spec['search']}({fields_}) verifier={spec['verifier'] or 'none'}")
    print(
        "  note: Budget(generated_tokens=B) clamps each call to what is left, so best_of_n's "
        "8 samples get at most ceil(B/8) tokens each; greedy takes one sample (<= 256 tokens)."
    )
    print(
        f"  note: prefix caching works in whole {block}-token blocks here; prompts under "
        f"{block} tokens can never hit (the problems' own prompts: {head_lengths} tokens).\n"
        "  reusable = per call, the longest common token prefix with an EARLIER prompt of the "
        f"same problem's search, in whole {block}-token blocks (at most the prompt length - 1).\n"
        "  reuse = sum(cached) / sum(reusable); it can pass 1 because the engine also caches "
        "blocks of generated text. capped = each call's cached tokens capped at its bound (the\n"
        "  fraction of shared blocks the engine served). 'incl. outputs' also counts earlier "
        "prompts + their generated text (retokenized: an estimate). n/a: nothing reusable."
    )

    def solve(method: str, budget: int) -> tuple[list[Any], float, Reuse]:
        """All problems at once through the recorder, prefix cache reset first."""
        controller, verifier = build(method)
        run_sync(gen._engine.reset_prefix_cache())
        recorder.reset()
        t0 = time.perf_counter()
        outcomes = run_sync(
            asolve_many(
                problems,
                search=controller,
                verifier=verifier,
                generator=recorder,
                budget=Budget(generated_tokens=budget),
                seed=args.seed,
            )
        )
        wall = time.perf_counter() - t0
        return outcomes, wall, reuse_of(recorder.calls, gen.tokenizer, block)

    results: dict[str, Any] = {
        "args": vars(args),
        "settings": {**run_settings, "method_settings": {m: SETTINGS[m] for m in methods}},
        "block_size": block,
        "utilization": {},
        "accuracy": [],
    }
    reuse_for_line: dict[str, float | None] = {}

    prompts = [gen.render(p) for p in problems]
    raw_llm: list[Any] = []

    def raw_engine() -> Any:
        """The baseline: a plain vllm.LLM in this process, built once, with the same settings."""
        if not raw_llm:
            from vllm import LLM, SamplingParams

            # every setting of the toolkit's engine (block size included), read back from it
            raw_llm.append(LLM(**engine_settings(gen)))
            raw_llm[0].generate(prompts[:1], SamplingParams(max_tokens=8), use_tqdm=False)
        return raw_llm[0]

    def replay(calls: dict[str, list[Call]]) -> tuple[int, float]:
        """Every request the search made (prompt, n, max_tokens, stop, temperature) as one raw
        batch: the engine's best case for the same work, with no search in between."""
        from vllm import SamplingParams

        llm = raw_engine()
        llm.reset_prefix_cache()
        flat = [c for records in calls.values() for c in records]
        params = [
            SamplingParams(
                n=c.n,
                temperature=c.sampling.temperature,
                top_p=c.sampling.top_p,
                max_tokens=c.max_tokens,
                stop=list(c.sampling.stop) or None,
                logprobs=c.sampling.logprobs,
            )
            for c in flat
        ]
        t0 = time.perf_counter()
        outputs = llm.generate([c.prompt for c in flat], params, use_tqdm=False)
        wall = time.perf_counter() - t0
        return sum(len(o.token_ids) for out in outputs for o in out.outputs), wall

    # 1 + 2: utilization and prefix-cache reuse ------------------------------------------------
    if not args.skip_utilization:
        from vllm import SamplingParams

        llm = raw_engine()

        def raw(samples: int, max_tokens: int, temperature: float) -> tuple[int, float]:
            per, extra = divmod(samples, len(prompts))
            pairs = [(p, per + (i < extra)) for i, p in enumerate(prompts)]
            pairs = [(p, n) for p, n in pairs if n > 0]
            params = [
                SamplingParams(n=n, temperature=temperature, top_p=1.0, max_tokens=max_tokens)
                for _, n in pairs
            ]
            t0 = time.perf_counter()
            outputs = llm.generate([p for p, _ in pairs], params, use_tqdm=False)
            wall = time.perf_counter() - t0
            return sum(len(o.token_ids) for out in outputs for o in out.outputs), wall

        print(f"\n## Engine utilization and prefix-cache reuse (budget {util_budget}/problem)\n")
        for method in methods:
            totals = {"toolkit": [0, 0.0], "raw": [0, 0.0]}
            samples_total, cap, reuse = 0, 0, Reuse()
            for _ in range(args.rounds):
                outcomes, wall, reuse_round = solve(method, util_budget)
                tokens = sum(o.ledger.generated_tokens for o in outcomes)
                samples = sum(o.ledger.samples for o in outcomes)
                cap = max(c.max_tokens for calls in recorder.calls.values() for c in calls)
                controller, _ = build(method)
                temperature = float(controller.temperature)  # the policy's, in every controller
                raw_tokens, raw_wall = raw(samples, cap, temperature)
                totals["toolkit"][0] += tokens
                totals["toolkit"][1] += wall
                totals["raw"][0] += raw_tokens
                totals["raw"][1] += raw_wall
                samples_total += samples
                reuse.add(reuse_round)
            tps = {k: t / w if w else 0.0 for k, (t, w) in totals.items()}
            ratio = tps["toolkit"] / tps["raw"] if tps["raw"] else float("nan")
            reuse_for_line[method] = reuse.capped_ratio
            results["utilization"][method] = {
                "sequences": samples_total,
                "raw_max_tokens": cap,
                "toolkit_tokens": totals["toolkit"][0],
                "toolkit_wall_s": round(totals["toolkit"][1], 2),
                "toolkit_tokens_per_s": round(tps["toolkit"], 1),
                "raw_tokens": totals["raw"][0],
                "raw_wall_s": round(totals["raw"][1], 2),
                "raw_tokens_per_s": round(tps["raw"], 1),
                "utilization_ratio": round(ratio, 3),
                "prefix_cache": reuse.to_dict(),
            }
            print(
                f"{method:19s} seqs={samples_total} max_tokens={cap} "
                f"toolkit {totals['toolkit'][0]} tok/{totals['toolkit'][1]:.1f}s "
                f"= {tps['toolkit']:.1f} tok/s | raw {totals['raw'][0]} tok/"
                f"{totals['raw'][1]:.1f}s = {tps['raw']:.1f} tok/s | ratio {ratio:.3f} | "
                f"cache {reuse.cached} tok, prompt-bound {reuse.reusable}, with outputs "
                f"{reuse.reusable_seq} ({reuse.short_calls}/{reuse.calls} calls under {block} "
                "tokens)",
                flush=True,
            )
        print("\n| method | sequences | max_tokens | toolkit tok/s | raw tok/s | utilization |")
        print("|---|---:|---:|---:|---:|---:|")
        for method, row in results["utilization"].items():
            print(
                f"| {method} | {row['sequences']} | {row['raw_max_tokens']} "
                f"| {row['toolkit_tokens_per_s']:.1f} | {row['raw_tokens_per_s']:.1f} "
                f"| {row['utilization_ratio']:.3f} |"
            )
        print()
        print_reuse_table(
            {m: row["prefix_cache"] for m, row in results["utilization"].items()}, block
        )

    # 3: accuracy vs generated tokens -----------------------------------------------------------
    if not args.skip_accuracy:
        golds = [p.answer for p in problems]

        async def grade_all(outcomes: list[Any], with_samples: bool) -> tuple[list[bool], Any]:
            correct = [
                (await grader.grade(o.answer, g)).correct is True
                for o, g in zip(outcomes, golds, strict=True)
            ]
            if not with_samples:
                return correct, None
            any_ok = []
            for o, g in zip(outcomes, golds, strict=True):
                ok = False
                for chain in o.chains:
                    if (await grader.grade(grader.extract(chain.text), g)).correct is True:
                        ok = True
                        break
                any_ok.append(ok)
            return correct, any_ok

        print(f"\n## Accuracy vs generated tokens ({len(problems)} problems)\n", flush=True)
        for budget in budgets:
            for method in methods:
                outcomes, wall, reuse = solve(method, budget)
                replayed = None
                if budget == util_budget and not args.skip_replay:
                    replayed = replay(recorder.calls)
                correct, any_ok = run_sync(grade_all(outcomes, method in BEST_OF_N))
                n = len(outcomes)
                row = {
                    "method": method,
                    "budget": budget,
                    "accuracy": sum(correct) / n,
                    "generated_tokens_per_problem": sum(o.ledger.generated_tokens for o in outcomes)
                    / n,
                    "verifier_calls_per_problem": sum(o.ledger.verifier_calls for o in outcomes)
                    / n,
                    "samples_per_problem": sum(o.ledger.samples for o in outcomes) / n,
                    "pass_at_n": sum(any_ok) / n if any_ok is not None else None,
                    "stopped_by_budget": sum(o.stopped_by is not None for o in outcomes),
                    "wall_s": round(wall, 1),
                    "prefix_cache": reuse.to_dict(),
                }
                if replayed is not None:
                    tokens = sum(o.ledger.generated_tokens for o in outcomes)
                    row["replay"] = {
                        "toolkit_tokens_per_s": round(tokens / wall, 1),
                        "raw_tokens": replayed[0],
                        "raw_wall_s": round(replayed[1], 2),
                        "raw_tokens_per_s": round(replayed[0] / replayed[1], 1),
                        "utilization_vs_same_requests": round(
                            (tokens / wall) / (replayed[0] / replayed[1]), 3
                        ),
                    }
                results["accuracy"].append(row)
                print(
                    f"{method:19s} B={budget:<5d} acc={row['accuracy']:.3f} "
                    f"tokens/problem={row['generated_tokens_per_problem']:.0f} "
                    f"verifier/problem={row['verifier_calls_per_problem']:.1f} "
                    f"wall={wall:.0f}s"
                    + (
                        f" | same requests as one raw batch: {row['replay']['raw_tokens_per_s']}"
                        f" tok/s, utilization {row['replay']['utilization_vs_same_requests']}"
                        if "replay" in row
                        else ""
                    ),
                    flush=True,
                )
        print(
            "\n| method | budget | accuracy | gen tokens/problem | verifier calls/problem "
            "| samples/problem | pass@N | stopped by budget | cache reuse |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in results["accuracy"]:
            pass_n = (
                f"{row['pass_at_n']:.3f} (N={row['samples_per_problem']:.1f})"
                if row["pass_at_n"] is not None
                else "-"
            )
            print(
                f"| {row['method']} | {row['budget']} | {row['accuracy']:.3f} "
                f"| {row['generated_tokens_per_problem']:.1f} "
                f"| {row['verifier_calls_per_problem']:.1f} | {row['samples_per_problem']:.1f} "
                f"| {pass_n} | {row['stopped_by_budget']}/{len(problems)} "
                f"| {fmt(row['prefix_cache']['reuse_capped'])} |"
            )
        replays = [r for r in results["accuracy"] if "replay" in r]
        if replays:
            print(
                f"\nUtilization vs the same requests (budget {util_budget}): each run's own calls "
                "(prompt, n, max_tokens, stop) replayed as one raw vLLM batch\n"
            )
            print("| method | toolkit tok/s | raw tok/s, same requests | utilization |")
            print("|---|---:|---:|---:|")
            for r in replays:
                rp = r["replay"]
                print(
                    f"| {r['method']} | {rp['toolkit_tokens_per_s']} | {rp['raw_tokens_per_s']} "
                    f"| {rp['utilization_vs_same_requests']:.3f} |"
                )
        print(f"\nPrefix-cache reuse of the accuracy runs at budget {max(budgets)}:\n")
        print_reuse_table(
            {
                row["method"]: row["prefix_cache"]
                for row in results["accuracy"]
                if row["budget"] == max(budgets)
            },
            block,
        )
        if not reuse_for_line:  # no utilization runs: take reuse from the largest budget
            for row in results["accuracy"]:
                if row["budget"] == max(budgets):
                    reuse_for_line[row["method"]] = row["prefix_cache"]["reuse_capped"]

    gen.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    targets = [v for m, v in reuse_for_line.items() if m in REUSE_TARGETS and v is not None]
    print(f"prefix_cache_reuse_min={min(targets) if targets else math.nan:.3f}")


if __name__ == "__main__":
    main()
