"""Adaptive generation: what streaming, abort, thought trimming and HyPER cost on the real engine.

Four sections, chosen with `--only streaming,abort,trim,hyper` (default: all). Each prints a
`settings:` block first, then one line per number, and its results go into
benchmarks/results/adaptive_generation.json under the section's name (a run of some sections
keeps the others' results already in the file).

streaming (model smollm2-135m, the default config): the same best-of-N requests, streamed and
not, in one process on one engine, arms alternating over rounds (the order flips each round) so
that drift hits both alike. `streamed`: n concurrent `ctx.stream` calls per problem (n=1 each),
each consumed to its end; `batched`: one `ctx.generate(Sampling(n=...))` per problem. Every
problem is in flight at once in both arms; prompts, n, max_tokens, temperature and top_p
(best_of_n's defaults) are the same. Sample lengths differ between runs (sampling), so the
comparison is generated tokens (the ledgers') per wall second. Per arm: tokens, wall seconds,
tokens/s, the main process's CPU ms per generated token (streaming's own cost: one Delta per
engine step per sample), the generator calls and the ledgers' prompt and cached prompt tokens
(a call's prompt tokens are counted once per call: the batched arm's n samples share one
prefill, the streamed arm's n calls each prefill unless the prefix cache has the prompt);
per round the ratio; last `streaming_overhead_ratio=<streamed tokens/s
over batched tokens/s>` (goal >= 0.95).

abort (same engine): how many tokens the engine decodes for a streamed request after the caller
leaves the stream. A long "clock" request (a raw engine request with ignore_eos, so it cannot
end early) keeps the engine stepping, so the scheduler reports (VLLMGenerator.watch, fed by
vLLM's stat-logger hook once per engine step) go on after each abort. K streams start together
through `ctx.stream`; each is left (aborted) after a random number of delivered tokens (distinct
targets, at least 5 apart, so that two aborts rarely fall within one removal). Every report is
logged with its arrival time. For each abort, `steps_after_abort` counts the reports that
arrived after the abort call in which the scheduler still counted the request as running:
the reports up to, not including, the first one whose `running` is one lower than at the abort
call. Each engine step decodes at most one token per running request, so each such report is
at most one token decoded for the request that never reached the caller (decoded after the
abort call, or decoded before it but still in transit). Also `abort_ms`: the time from the abort
call to that report. What one report means: vLLM's engine core (vllm/v1/engine/core.py,
`EngineCore.step`) processes the aborts that arrived while a step executed right after that
step's forward pass and before its outputs are made (`_process_aborts_queue` before
`update_from_output`), and the step's scheduler stats are made after that: the step that was in
flight when the abort arrived has already decoded the request's token, but drops it and reports
the request as gone. So the tokens decoded after the abort call are at most
`steps_after_abort + 1` (the reports that still counted it, plus the step in flight; none when
the abort reaches the core between two steps), and `decoded_after_abort_bound` reports that.
Limits: (1) the removal is read from a count, so it is attributed to this abort only when no
other abort, and no natural finish, falls between the abort call and the drop; such aborts are
flagged `ambiguous` and left out of mean and max; (2) reports come once per engine step on this
setup (no batch queue: `async_scheduling` is printed in the settings); (3) it bounds, it does
not count: whether the in-flight step had the request's token in it is not observable here.
`seen_minus_delivered`: vLLM's output processor drops the outputs of a request it has aborted,
so `watch.generated_tokens` counts only what it saw before the abort; over the whole round, the
streams' share of it (the increase less the clock's one token per step) minus the tokens the
streams delivered is what the output processor had seen but the caller had not yet read when it
left (per aborted request). Tokens decoded after the abort are invisible to that counter; they
are bounded by `steps_after_abort` alone. `engine_step_ms`: the median time between consecutive
reports during the rounds (K+1 requests running). Lines: one per abort, then mean and max
steps_after_abort, the bound, abort_ms (and in engine steps), seen_minus_delivered per request,
engine_step_ms, and `abort_latency_steps_mean=<mean abort_ms / engine_step_ms>` (goal: under
about one engine step's worth).

trim (model smollm2-135m-think, the forced `<think>` block): best_of_n (n=4, max_tokens=256)
through `run_experiment` into temporary run dirs, on arith and on MATH500 problems, at one seed,
without trimming and with each trimmer: `budget` (max_think_tokens=64), `trimr` and `sdv` (their
defaults). Per arm: accuracy (graded / correct), generated tokens per problem, generator calls
per problem, wall seconds of the run, cuts by reason (the `trim:<reason>` events of the
traces), and the ratios of tokens and wall time to the untrimmed arm of the same dataset. The
model was not trained to think: it rarely writes the reflection cues (`Wait`, `Hmm`, ...) that
mark thought boundaries, so trimr and sdv fire seldom; the cuts are reported as measured. A
cut sample writes an answer of up to `answer_tokens` (256) after the cut, beyond the sample's
max_tokens, so a cut can cost tokens too. On CPU vLLM takes no per-request seeds (see
VLLMGenerator.per_request_seed): "the same seed" gives the same problems and controller
decisions where they do not depend on the samples, not the same samples.

hyper (model smollm2-135m): HyPER vs best-of-N vs particle filtering at equal generated tokens
on arith: `budget.generated_tokens` is the same for all three arms (default 1024 per problem);
HyPER n=4, round_tokens=32, phase over budget.generated_tokens (other keys default); best_of_n n=8,
max_tokens=128 (8 x 128 = the budget); particle_filter with verifier=arith (the rule-based step
checker), n=4, max_step_tokens=64. Per arm: accuracy, generated tokens, generator calls,
samples and verifier calls per problem, problems stopped by the budget, wall seconds; ratios
of tokens and wall time to best_of_n.

    .venv/bin/python benchmarks/adaptive_generation.py [--only streaming,abort,trim,hyper]
        [--problems 8] [--n 8] [--max-tokens 128] [--rounds 3] [--abort-k 8] [--abort-rounds 2]
        [--trim-datasets arith,math500] [--trim-arith 30] [--trim-math 20]
        [--hyper-problems 30] [--hyper-budget 1024] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "adaptive_generation.json"
SECTIONS = ("streaming", "abort", "trim", "hyper")
STORY_SUBJECTS = (
    "a cat who learns to count",
    "a lighthouse keeper and a storm",
    "a robot that grows a garden",
    "two rivers that meet",
    "a baker who never sleeps",
    "a map that redraws itself",
    "an old clock in a train station",
    "a fox who collects keys",
    "a city under the sea",
    "a violin found in an attic",
    "a comet that visits every hundred years",
    "a child who talks to birds",
)


def save(section: str, data: dict[str, Any]) -> None:
    """Merge one section's results into the JSON file (other sections' results stay)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] = {}
    if RESULTS.exists():
        with contextlib.suppress(ValueError):
            old = json.loads(RESULTS.read_text())
    old[section] = data
    RESULTS.write_text(json.dumps(old, indent=2, default=str) + "\n")


# --- 1. streaming overhead ---------------------------------------------------------------------


def streaming(args: argparse.Namespace) -> dict[str, Any]:
    from settings import engine_summary, print_settings

    from evals.arith import generate_arith
    from reasoning.build import build_search, compose_config, generator_for
    from reasoning.context import Context
    from reasoning.loop import run_sync
    from reasoning.types import Sampling

    cfg = compose_config([f"seed={args.seed}"])
    controller = build_search(compose_config(["search=best_of_n"]))
    gen = generator_for(cfg.backend)
    gen.start()
    problems = generate_arith(args.problems, levels=(1, 2, 3), seed=args.seed)
    run_sync(gen.complete(gen.render(problems[0]), Sampling(max_tokens=8)))  # warm-up
    sampling = Sampling(
        temperature=controller.temperature, top_p=controller.top_p, max_tokens=args.max_tokens
    )
    settings = print_settings(
        {
            "section": "streaming",
            "model": f"{cfg.model.name} ({gen.path})",
            "engine": engine_summary(gen),
            "problems": f"{args.problems} (arith levels 1-3, seed={args.seed}), all in flight",
            "requests": f"n={args.n} max_tokens={args.max_tokens} "
            f"temperature={sampling.temperature} top_p={sampling.top_p}",
            "streamed": "n concurrent ctx.stream calls per problem, each read to its end",
            "batched": "one ctx.generate(Sampling(n=n)) per problem",
            "rounds": f"{args.rounds} (arm order flips every round)",
            "seed": args.seed,
        }
    )

    prompt_counts = {"streamed": [0, 0, 0], "batched": [0, 0, 0]}  # calls, prompt, cached

    def ledgers(ctxs: list[Context]) -> tuple[int, list[int]]:
        calls = sum(c.ledger.generator_calls for c in ctxs)
        prompt = sum(c.ledger.prompt_tokens for c in ctxs)
        cached = sum(c.ledger.cached_prompt_tokens for c in ctxs)
        return sum(c.ledger.generated_tokens for c in ctxs), [calls, prompt, cached]

    async def streamed() -> tuple[int, list[int]]:
        ctxs = [Context(p, gen, seed=args.seed) for p in problems]

        async def one(ctx: Context) -> None:
            stream = ctx.stream(sampling)
            async with contextlib.aclosing(stream):
                async for _ in stream:
                    pass

        await asyncio.gather(*(one(c) for c in ctxs for _ in range(args.n)))
        return ledgers(ctxs)

    async def batched() -> tuple[int, list[int]]:
        ctxs = [Context(p, gen, seed=args.seed) for p in problems]
        many = Sampling(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            n=args.n,
        )
        await asyncio.gather(*(c.generate(many) for c in ctxs))
        return ledgers(ctxs)

    arms = {"streamed": streamed, "batched": batched}
    totals = {name: [0, 0.0, 0.0] for name in arms}
    per_round = []
    for r in range(args.rounds):
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        tps_round = {}
        for name in order:
            cpu0, t0 = time.process_time(), time.perf_counter()
            tokens, counts = run_sync(arms[name]())
            for i, v in enumerate(counts):
                prompt_counts[name][i] += v
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            for i, v in enumerate((tokens, wall, cpu)):
                totals[name][i] += v
            tps_round[name] = tokens / wall
        ratio = tps_round["streamed"] / tps_round["batched"]
        per_round.append({"order": order, "tokens_per_s": tps_round, "ratio": ratio})
        print(
            f"round {r}: order={','.join(order)} streamed tokens/s={tps_round['streamed']:.1f} "
            f"batched tokens/s={tps_round['batched']:.1f} ratio={ratio:.3f}",
            flush=True,
        )
    out: dict[str, Any] = {"settings": settings, "rounds": per_round, "arms": {}}
    for name, (tokens, wall, cpu) in totals.items():
        out["arms"][name] = {
            "tokens": tokens,
            "wall_s": round(wall, 2),
            "tokens_per_s": round(tokens / wall, 2),
            "main_cpu_ms_per_token": round(1000 * cpu / tokens, 4),
            "generator_calls": prompt_counts[name][0],
            "prompt_tokens": prompt_counts[name][1],
            "cached_prompt_tokens": prompt_counts[name][2],
        }
        calls, prompt, cached = prompt_counts[name]
        print(
            f"{name:9s} tokens={tokens} wall_s={wall:.1f} tokens/s={tokens / wall:.1f} "
            f"main-process CPU ms/token={1000 * cpu / tokens:.3f} generator_calls={calls} "
            f"prompt_tokens={prompt} cached_prompt_tokens={cached} "
            f"(prefilled {prompt - cached})"
        )
    ratio = out["arms"]["streamed"]["tokens_per_s"] / out["arms"]["batched"]["tokens_per_s"]
    cpu_ratio = (
        out["arms"]["streamed"]["main_cpu_ms_per_token"]
        / out["arms"]["batched"]["main_cpu_ms_per_token"]
    )
    out["main_cpu_per_token_ratio"] = round(cpu_ratio, 3)
    out["streaming_overhead_ratio"] = round(ratio, 3)
    print(f"main_cpu_per_token_ratio={cpu_ratio:.3f}  (streamed over batched)")
    print(f"streaming_overhead_ratio={ratio:.3f}  (goal >= 0.95)")
    return out


# --- 2. abort latency ------------------------------------------------------------------------


def abort(args: argparse.Namespace) -> dict[str, Any]:
    from settings import engine_summary, print_settings
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    from reasoning.build import compose_config, generator_for
    from reasoning.context import Context
    from reasoning.loop import run_sync
    from reasoning.types import Problem, Sampling

    cfg = compose_config([f"seed={args.seed}"])
    gen = generator_for(cfg.backend)
    gen.start()
    watch = gen.watch
    history: list[tuple[float, int, int, int]] = []  # (time, steps, running, generated_tokens)
    stock_record = watch.record

    def record(scheduler_stats: Any, iteration_stats: Any) -> None:
        stock_record(scheduler_stats, iteration_stats)
        history.append((time.perf_counter(), watch.steps, watch.running, watch.generated_tokens))

    watch.record = record  # type: ignore[method-assign]
    rng = random.Random(args.seed)
    max_tokens = 400
    clock_prompt = gen.render(Problem("clock", "Write a very long story about a journey."))
    clock_tokens = cfg.model.max_model_len - len(gen.tokenize(clock_prompt)) - 8
    settings = print_settings(
        {
            "section": "abort",
            "model": f"{cfg.model.name} ({gen.path})",
            "engine": engine_summary(gen),
            "clock": f"one raw engine request, ignore_eos, max_tokens={clock_tokens}, "
            "temperature=0",
            "streams": f"K={args.abort_k} per round via ctx.stream, temperature=0.8, "
            f"max_tokens={max_tokens}, story prompts",
            "abort_after": "a random number of delivered tokens per stream (distinct, "
            "at least 5 apart, 8..~140)",
            "rounds": args.abort_rounds,
            "async_scheduling": gen._engine.vllm_config.scheduler_config.async_scheduling,
            "max_concurrent_batches": gen._engine.vllm_config.max_concurrent_batches,
            "seed": args.seed,
        }
    )

    async def one_round(round_no: int) -> dict[str, Any]:
        engine = gen._engine
        params = SamplingParams(
            temperature=0,
            max_tokens=clock_tokens,
            ignore_eos=True,
            output_kind=RequestOutputKind.DELTA,
        )
        clock_id = f"clock-{round_no}-{time.time_ns()}"
        clock_gen = engine.generate(clock_prompt, params, request_id=clock_id)
        clock_done = asyncio.Event()

        async def run_clock() -> None:
            async for _ in clock_gen:
                pass
            clock_done.set()

        clock = asyncio.ensure_future(run_clock())
        while watch.running < 1 or len(history) < 3:  # the clock decodes
            await asyncio.sleep(0.005)
        start_index = len(history)
        start_gen = watch.generated_tokens
        targets = [t + rng.randrange(0, 3) for t in rng.sample(range(8, 8 + 16 * 8, 8), 16)]
        targets = sorted(targets[: args.abort_k])
        rng.shuffle(targets)
        marks: list[dict[str, Any]] = []

        async def one(k: int, target: int) -> None:
            subject = STORY_SUBJECTS[k % len(STORY_SUBJECTS)]
            problem = Problem(f"story-{k}", f"Write a long story about {subject}.")
            ctx = Context(problem, gen, seed=args.seed + k)
            stream = ctx.stream(Sampling(temperature=0.8, max_tokens=max_tokens))
            delivered = 0
            finished = None
            mark: dict[str, Any] = {"stream": k, "target": target}
            async with contextlib.aclosing(stream):
                async for delta in stream:
                    delivered += delta.tokens
                    if delta.finish_reason is not None:
                        finished = delta.finish_reason
                        break
                    if delivered >= target:
                        mark.update(
                            index=len(history),
                            t=time.perf_counter(),
                            running=watch.running,
                            steps=watch.steps,
                        )
                        break  # leaving the loop aborts the request
            mark["closed_t"] = time.perf_counter()
            mark["delivered"] = delivered
            mark["metered"] = ctx.ledger.generated_tokens
            mark["finished"] = finished
            marks.append(mark)

        await asyncio.gather(*(one(k, t) for k, t in enumerate(targets)))
        deadline = time.monotonic() + 10
        while watch.running > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        end_index = len(history)
        end_gen = history[end_index - 1][3] if end_index > start_index else start_gen
        clock_survived = not clock_done.is_set()
        clock.cancel()
        with contextlib.suppress(BaseException):
            await clock
        with contextlib.suppress(Exception):
            await engine.abort(clock_id)
        while watch.running > 0:
            await asyncio.sleep(0.01)

        window = history[start_index:end_index]
        gaps = [b[0] - a[0] for a, b in zip(window, window[1:], strict=False)]
        aborted = [m for m in marks if "index" in m]
        mark_indices = sorted(m["index"] for m in aborted)
        for m in aborted:
            drop = None
            for j in range(m["index"], len(history)):
                if history[j][2] < m["running"]:
                    drop = j
                    break
            m["steps_after_abort"] = None if drop is None else drop - m["index"]
            m["abort_ms"] = None if drop is None else 1000 * (history[drop][0] - m["t"])
            others = [i for i in mark_indices if m["index"] < i <= (drop or m["index"])]
            m["ambiguous"] = bool(others) or drop is None
        natural = [m for m in marks if m["finished"] is not None]
        delivered_all = sum(m["delivered"] for m in marks)
        # the streams' share of what the output processor saw: all generated tokens in the
        # window, less the clock's one token per step
        stream_seen = (end_gen - start_gen) - len(window)
        return {
            "marks": marks,
            "natural_finishes": len(natural),
            "clock_survived": clock_survived,
            "step_gaps_s": gaps,
            "stream_seen": stream_seen,
            "delivered": delivered_all,
            "aborted": len(aborted),
        }

    rounds = []
    for r in range(args.abort_rounds):
        rounds.append(run_sync(one_round(r)))
    watch.record = stock_record  # type: ignore[method-assign]

    good, ambiguous = [], []
    for r, res in enumerate(rounds):
        for m in sorted(res["marks"], key=lambda m: m.get("t", 1e18)):
            if "index" not in m:
                print(
                    f"round {r} stream {m['stream']}: finished on its own ({m['finished']}) "
                    f"after {m['delivered']} tokens, before its abort target {m['target']}"
                )
                continue
            (ambiguous if m["ambiguous"] else good).append(m)
            print(
                f"round {r} stream {m['stream']}: target={m['target']} delivered={m['delivered']} "
                f"metered={m['metered']} running_at_abort={m['running']} "
                f"steps_after_abort={m['steps_after_abort']} "
                f"abort_ms={m['abort_ms'] if m['abort_ms'] is None else round(m['abort_ms'], 1)}"
                + (
                    "  [ambiguous: another abort or finish fell in the window]"
                    if m["ambiguous"]
                    else ""
                )
            )
        print(
            f"round {r}: clock_ran_throughout={res['clock_survived']} "
            f"streams_seen_by_output_processor={res['stream_seen']} "
            f"delivered={res['delivered']} aborted={res['aborted']}"
        )
    steps = [m["steps_after_abort"] for m in good]
    ms = [m["abort_ms"] for m in good]
    gaps = [g for res in rounds for g in res["step_gaps_s"]]
    step_ms = 1000 * statistics.median(gaps) if gaps else float("nan")
    aborted_total = sum(res["aborted"] for res in rounds)
    seen_minus = sum(res["stream_seen"] - res["delivered"] for res in rounds)
    metered_ok = all(m["metered"] == m["delivered"] for res in rounds for m in res["marks"])
    out: dict[str, Any] = {
        "settings": settings,
        "aborts": aborted_total,
        "unambiguous": len(good),
        "ambiguous": len(ambiguous),
        "natural_finishes": sum(res["natural_finishes"] for res in rounds),
        "steps_after_abort": steps,
        "steps_after_abort_mean": round(statistics.mean(steps), 3) if steps else None,
        "steps_after_abort_max": max(steps) if steps else None,
        "decoded_after_abort_bound_mean": round(statistics.mean(steps) + 1, 3) if steps else None,
        "decoded_after_abort_bound_max": max(steps) + 1 if steps else None,
        "abort_ms_mean": round(statistics.mean(ms), 2) if ms else None,
        "abort_ms_max": round(max(ms), 2) if ms else None,
        "engine_step_ms_median": round(step_ms, 2),
        "seen_minus_delivered_total": seen_minus,
        "seen_minus_delivered_per_abort": round(seen_minus / aborted_total, 3)
        if aborted_total
        else None,
        "ledger_equals_delivered": metered_ok,
        "rounds": [{k: v for k, v in res.items() if k != "step_gaps_s"} for res in rounds],
    }
    print(
        f"aborts={aborted_total} unambiguous={len(good)} ambiguous={len(ambiguous)} "
        f"natural_finishes={out['natural_finishes']}"
    )
    print(f"engine_step_ms_median={step_ms:.2f}  ({args.abort_k}+1 requests running)")
    if steps:
        print(
            f"steps_after_abort mean={out['steps_after_abort_mean']} "
            f"max={out['steps_after_abort_max']}"
            "  (reports after the abort call that still counted the request as running)"
        )
        print(
            f"decoded_after_abort_bound mean={out['decoded_after_abort_bound_mean']} "
            f"max={out['decoded_after_abort_bound_max']}  (steps_after_abort + the step in "
            "flight, whose token vLLM drops: tokens decoded after the abort call, at most)"
        )
        print(
            f"abort_ms mean={out['abort_ms_mean']} max={out['abort_ms_max']}  "
            f"(= {out['abort_ms_mean'] / step_ms:.2f} engine steps on average)"
        )
    print(
        f"seen_minus_delivered={seen_minus} tokens over {aborted_total} aborts "
        f"({out['seen_minus_delivered_per_abort']} per abort; seen by vLLM's output processor, "
        "never read by the caller)"
    )
    print(f"ledger_equals_delivered={metered_ok}")
    latency_steps = out["abort_ms_mean"] / step_ms if ms else None
    out["abort_latency_steps_mean"] = None if latency_steps is None else round(latency_steps, 3)
    print(
        f"abort_latency_steps_mean={out['abort_latency_steps_mean']}  (mean abort_ms over "
        "engine_step_ms; goal: about one engine step or less)"
    )
    return out


# --- 3 and 4: runs through run_experiment ----------------------------------------------------


def run_arm(overrides: list[str]) -> dict[str, Any]:
    from evals.experiment import run_experiment
    from reasoning.build import compose_config

    cfg = compose_config([*overrides, "progress=false"])
    with tempfile.TemporaryDirectory(prefix="adaptive-") as tmp:
        t0 = time.perf_counter()
        summary = run_experiment(cfg, tmp)
        wall = time.perf_counter() - t0
        records = [json.loads(x) for x in (Path(tmp) / "results.jsonl").read_text().splitlines()]
        saved = 0
        cont = 0
        for f in (Path(tmp) / "traces").glob("*.json"):
            events = json.loads(f.read_text()).get("details", {}).get("events") or []
            for e in events:
                if e.get("event") == "trim":
                    saved += int(e.get("tokens_saved") or 0)
                    cont += int(e.get("continuation_tokens") or 0)
    per = summary["ledger_per_problem"]
    return {
        "accuracy": summary["accuracy"],
        "correct": summary["correct"],
        "graded": summary["n"],
        "problems": summary["problems"],
        "errors": summary["errors"],
        "stopped_by_budget": summary["stopped_by_budget"],
        "generated_tokens_per_problem": per.get("generated_tokens"),
        "generator_calls_per_problem": per.get("generator_calls"),
        "samples_per_problem": per.get("samples"),
        "verifier_calls_per_problem": per.get("verifier_calls"),
        "wall_s": round(wall, 2),
        "elapsed_s": summary["elapsed_s"],
        "events": summary["events"],
        "tokens_saved_upper_bound": saved,
        "continuation_tokens": cont,
        "records": len(records),
    }


def trim(args: argparse.Namespace) -> dict[str, Any]:
    from settings import engine_summary, print_settings

    from reasoning.build import close_generators, compose_config, generator_for

    close_generators()  # the default model's engine, if an earlier section started one
    base = [
        "model=smollm2-135m-think",
        "search=best_of_n",
        "search.n=4",
        "search.max_tokens=256",
        f"seed={args.seed}",
    ]
    math_path = str((ROOT.parent / "shared" / "data" / "math500.jsonl").resolve())
    datasets = {
        "arith": ["dataset=arith", f"dataset.arith.n={args.trim_arith}"],
        "math500": [
            "dataset=math500",
            f"dataset.path={math_path}",
            f"dataset.limit={args.trim_math}",
        ],
    }
    arms = {
        "none": [],
        "budget": ["+trim=budget", "trim.max_think_tokens=64"],
        "trimr": ["+trim=trimr"],
        "sdv": ["+trim=sdv"],
    }
    gen = generator_for(compose_config(base).backend)
    gen.start()
    settings = print_settings(
        {
            "section": "trim",
            "model": f"smollm2-135m-think ({gen.path}), forced <think> block",
            "engine": engine_summary(gen),
            "search": "best_of_n n=4 max_tokens=256 temperature=0.8 aggregate=majority",
            "datasets": " ".join(
                f"{d}({' '.join(o[1:])})" for d, o in datasets.items() if d in args.trim_datasets
            ),
            "arms": "; ".join(f"{a}: {' '.join(o) or 'no trimming'}" for a, o in arms.items()),
            "seed": args.seed,
            "note": "SmolLM2 rarely writes reflection cues, so trimr/sdv fire seldom; cuts "
            "are reported as measured (nothing tuned to make them fire)",
        }
    )
    out: dict[str, Any] = {"settings": settings}
    for ds in args.trim_datasets:
        res: dict[str, Any] = {}
        for arm, extra in arms.items():
            r = run_arm([*base, *datasets[ds], *extra])
            res[arm] = r
            cuts = {k: v for k, v in r["events"].items() if k.startswith("trim")}
            other = {k: v for k, v in r["events"].items() if not k.startswith("trim")}
            print(
                f"{ds:8s} {arm:7s} accuracy={r['accuracy']} ({r['correct']}/{r['graded']}) "
                f"tokens/problem={r['generated_tokens_per_problem']} "
                f"calls/problem={r['generator_calls_per_problem']} wall_s={r['wall_s']} "
                f"cuts={sum(cuts.values())} {cuts or ''} "
                f"{('other_events=' + str(other)) if other else ''} errors={r['errors']}",
                flush=True,
            )
        ref = res["none"]
        for arm, r in res.items():
            if arm == "none":
                continue
            tok = r["generated_tokens_per_problem"] / ref["generated_tokens_per_problem"]
            wall = r["wall_s"] / ref["wall_s"]
            acc = (r["accuracy"] or 0) - (ref["accuracy"] or 0)
            r["tokens_ratio_vs_none"] = round(tok, 3)
            r["wall_ratio_vs_none"] = round(wall, 3)
            r["accuracy_minus_none"] = round(acc, 4)
            print(
                f"{ds:8s} {arm:7s} tokens_ratio_vs_none={tok:.3f} wall_ratio_vs_none={wall:.3f} "
                f"accuracy_minus_none={acc:+.3f} continuation_tokens={r['continuation_tokens']} "
                f"tokens_saved_upper_bound={r['tokens_saved_upper_bound']}"
            )
        out[ds] = res
    close_generators()
    return out


def hyper(args: argparse.Namespace) -> dict[str, Any]:
    from settings import engine_summary, print_settings

    from reasoning.build import close_generators, compose_config, generator_for

    close_generators()  # the thinking model's engine, if the trim section started one
    b = args.hyper_budget
    base = [
        "dataset=arith",
        f"dataset.arith.n={args.hyper_problems}",
        f"budget.generated_tokens={b}",
        f"seed={args.seed}",
    ]
    arms = {
        "hyper": ["search=hyper", "search.n=4", "search.round_tokens=32"],
        "best_of_n": ["search=best_of_n", "search.n=8", "search.max_tokens=128"],
        "particle_filter": [
            "search=particle_filter",
            "verifier=arith",
            "search.n=4",
            "search.max_step_tokens=64",
        ],
    }
    gen = generator_for(compose_config(base).backend)
    gen.start()
    settings = print_settings(
        {
            "section": "hyper",
            "model": f"smollm2-135m ({gen.path})",
            "engine": engine_summary(gen),
            "dataset": f"arith n={args.hyper_problems} (default levels [1], seed 0)",
            "budget": f"generated_tokens={b} per problem, every arm",
            "arms": "; ".join(f"{a}: {' '.join(o)}" for a, o in arms.items()),
            "seed": args.seed,
        }
    )
    out: dict[str, Any] = {"settings": settings}
    for arm, extra in arms.items():
        r = run_arm([*base, *extra])
        out[arm] = r
        print(
            f"{arm:15s} accuracy={r['accuracy']} ({r['correct']}/{r['graded']}) "
            f"tokens/problem={r['generated_tokens_per_problem']} "
            f"generator_calls/problem={r['generator_calls_per_problem']} "
            f"samples/problem={r['samples_per_problem']} "
            f"verifier_calls/problem={r['verifier_calls_per_problem']} "
            f"stopped_by_budget={r['stopped_by_budget']} wall_s={r['wall_s']} "
            f"errors={r['errors']}",
            flush=True,
        )
    ref = out["best_of_n"]
    for arm in ("hyper", "particle_filter"):
        r = out[arm]
        tok = r["generated_tokens_per_problem"] / ref["generated_tokens_per_problem"]
        wall = r["wall_s"] / ref["wall_s"]
        acc = (r["accuracy"] or 0) - (ref["accuracy"] or 0)
        r["tokens_ratio_vs_best_of_n"] = round(tok, 3)
        r["wall_ratio_vs_best_of_n"] = round(wall, 3)
        r["accuracy_minus_best_of_n"] = round(acc, 4)
        print(
            f"{arm:15s} tokens_ratio_vs_best_of_n={tok:.3f} wall_ratio_vs_best_of_n={wall:.3f} "
            f"accuracy_minus_best_of_n={acc:+.3f}"
        )
    close_generators()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--problems", type=int, default=8, help="streaming: problems")
    parser.add_argument("--n", type=int, default=8, help="streaming: samples per problem")
    parser.add_argument("--max-tokens", type=int, default=128, help="streaming: per sample")
    parser.add_argument("--rounds", type=int, default=3, help="streaming: rounds of both arms")
    parser.add_argument("--abort-k", type=int, default=8, help="abort: streams per round")
    parser.add_argument("--abort-rounds", type=int, default=2)
    parser.add_argument("--trim-datasets", default="arith,math500")
    parser.add_argument("--trim-arith", type=int, default=30)
    parser.add_argument("--trim-math", type=int, default=20)
    parser.add_argument("--hyper-problems", type=int, default=30)
    parser.add_argument("--hyper-budget", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.trim_datasets = [d for d in args.trim_datasets.split(",") if d]
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    runs = {"streaming": streaming, "abort": abort, "trim": trim, "hyper": hyper}
    for name in SECTIONS:
        if name not in only:
            continue
        print(f"=== {name} ===", flush=True)
        t0 = time.perf_counter()
        data = runs[name](args)
        data["section_wall_s"] = round(time.perf_counter() - t0, 1)
        if name == "trim":  # a run of one dataset keeps the other's results in the file
            old = {}
            if RESULTS.exists():
                with contextlib.suppress(ValueError):
                    old = json.loads(RESULTS.read_text()).get("trim", {})
            data = {**old, **data}
        save(name, data)
        print(
            f"wrote {RESULTS.relative_to(ROOT)} [{name}] ({data['section_wall_s']} s)\n", flush=True
        )
    from reasoning.build import close_generators

    close_generators()


if __name__ == "__main__":
    main()
