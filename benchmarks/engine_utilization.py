"""Engine utilization: best-of-N through the toolkit vs the same requests as one raw vLLM batch.

Three engines live in this process on the same model, prompts, n, max_tokens and sampling
(temperature and top_p read from the toolkit's best_of_n controller), and the measurements
alternate round-robin (raw, toolkit, raw_vllm_block, raw, toolkit, ...) so that drift on a
shared machine hits every arm alike. Sample lengths differ between runs (sampling), so the
comparison is generated tokens per second.

- toolkit: `asolve_many(search="best_of_n")` on the toolkit's VLLMGenerator (one AsyncLLM).
- raw: one `vllm.LLM.generate` batch of the same prompts, on an engine built with every setting
  read back from the toolkit's started engine (block size, max_num_seqs, max_num_batched_tokens,
  prefix caching, eager, max_model_len, dtype, seed, KV cache space, ...); the settings block
  lists any vLLM config field in which it still differs from the toolkit's (expected: none).
- raw_async: the same requests straight into the toolkit's own AsyncLLM (one task per prompt,
  final outputs only): vLLM's async front end alone, the fair baseline for the toolkit's
  main-process CPU (a sync `LLM.generate` batch pays no event loop at all).
- raw_vllm_block: the raw batch again on an engine with the same settings except the block
  size, left to vLLM's default (128 tokens on CPU; the toolkit uses 32 there).

Each engine reserves its own KV cache (VLLM_CPU_KVCACHE_SPACE, 3 GiB here by default): the
three engines of the 135M model take about 14 GiB of host memory.

Output: a `settings:` block (model, engine settings, how each raw engine differs from the
toolkit's, problems, n, max_tokens, sampling, rounds, seed); one line per arm with generated
tokens, wall seconds, tokens/s and the main process's CPU ms per generated token (the engine
cores run in their own processes, so this is the toolkit's own CPU cost next to that of a raw
batch); then

- block_size_effect=<raw tokens/s at the toolkit's block size over raw_vllm_block tokens/s>:
  what the block-size setting alone does to raw vLLM throughput (above 1: the toolkit's block
  size is faster);
- main_process_cpu_ratio_vs_raw / _vs_raw_async: the toolkit's main-process CPU per token over
  each baseline's;
- engine_utilization_ratio=<toolkit tokens/s over raw tokens/s> (last line): the toolkit's own
  overhead, both engines on identical settings.

    .venv/bin/python benchmarks/engine_utilization.py [--problems 16] [--n 8] [--max-tokens 128]
        [--rounds 2] [--compile]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "3")

# fields that follow from the block size, left out of the default-block engine's diff
BLOCK_DERIVED = (
    "cache_config.user_specified_block_size",
    "cache_config.num_gpu_blocks",
    "cache_config.effective_attention_block_size",
    "cache_config.kv_cache_size_tokens",
    "cache_config.kv_cache_max_concurrency",
)


def measure(fn) -> tuple[int, float, float]:  # noqa: ANN001
    cpu0, t0 = time.process_time(), time.perf_counter()
    tokens = fn()
    return tokens, time.perf_counter() - t0, time.process_time() - cpu0


def diff_line(diff: dict[str, tuple[object, object]]) -> str:
    if not diff:
        return "none (in any plain field of the vLLM config)"
    return " ".join(f"{k}={b} (toolkit {a})" for k, (a, b) in diff.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="problems and engine seed")
    parser.add_argument("--compile", action="store_true", help="torch.compile (default: eager)")
    args = parser.parse_args()

    from settings import config_diff, engine_settings, engine_summary, print_settings
    from vllm import LLM, SamplingParams

    from evals.arith import generate_arith
    from reasoning import asolve_many
    from reasoning.backends.vllm_engine import VLLMGenerator
    from reasoning.build import build_search, compose_config
    from reasoning.loop import run_sync
    from reasoning.types import Sampling

    overrides = [f"search.n={args.n}", f"search.max_tokens={args.max_tokens}"]
    controller = build_search(compose_config(["search=best_of_n", *overrides]))
    problems = generate_arith(args.problems, levels=(1, 2, 3), seed=args.seed)
    gen = VLLMGenerator(
        args.model,
        system_prompt="short",
        max_model_len=2048,
        seed=args.seed,
        enforce_eager=not args.compile,
    )
    gen.start()
    run_sync(gen.complete(gen.render(problems[0]), Sampling(max_tokens=8)))  # warm-up
    prompts = [gen.render(p) for p in problems]

    # the raw engines: the toolkit engine's settings as it resolved them, the second one with
    # vLLM's default block size instead of the toolkit's
    same = engine_settings(gen)
    default_block = {k: v for k, v in same.items() if k != "block_size"}
    engines = {"raw": LLM(**same), "raw_vllm_block": LLM(**default_block)}
    for llm in engines.values():
        llm.generate(prompts[:1], SamplingParams(max_tokens=8), use_tqdm=False)  # warm-up
    params = SamplingParams(
        n=controller.n,
        temperature=controller.temperature,
        top_p=controller.top_p,
        max_tokens=controller.max_tokens,
    )

    print_settings(
        {
            "model": f"{args.model} ({gen.path})",
            "engine (toolkit and raw)": engine_summary(gen),
            "raw_engine_differs_in": diff_line(config_diff(gen, engines["raw"])),
            "raw_vllm_block_engine_differs_in": diff_line(
                config_diff(gen, engines["raw_vllm_block"], ignore=BLOCK_DERIVED)
            ),
            "problems": f"{args.problems} (arith levels 1-3, seed={args.seed})",
            "search": f"best_of_n n={controller.n} max_tokens={controller.max_tokens} "
            f"temperature={controller.temperature} top_p={controller.top_p}",
            "rounds": args.rounds,
            "seed": args.seed,
        }
    )

    def raw(llm: LLM):  # noqa: ANN202
        def run() -> int:
            outputs = llm.generate(prompts, params, use_tqdm=False)
            return sum(len(o.token_ids) for out in outputs for o in out.outputs)

        return run

    def ours() -> int:
        outcomes = run_sync(
            asolve_many(problems, search="best_of_n", generator=gen, overrides=overrides)
        )
        return sum(o.ledger.generated_tokens for o in outcomes)

    def raw_async() -> int:
        """The same requests straight into the toolkit's own AsyncLLM (one task each, final
        outputs only): what serving them costs vLLM's async front end, before the toolkit."""
        import asyncio
        import uuid

        from vllm.sampling_params import RequestOutputKind

        engine = gen._engine
        final = params.clone()
        final.output_kind = RequestOutputKind.FINAL_ONLY

        async def one(prompt: str) -> int:
            last = None
            async for out in engine.generate(prompt, final, request_id=uuid.uuid4().hex):
                last = out
            return sum(len(o.token_ids) for o in last.outputs) if last else 0

        async def all_of() -> int:
            return sum(await asyncio.gather(*(one(p) for p in prompts)))

        return run_sync(all_of())

    # the toolkit's one-time costs (composing the config, importing the controller and the
    # grader) are paid before the clock, as the raw engines' warm-up generate pays theirs
    run_sync(asolve_many(problems[:1], search="best_of_n", generator=gen, overrides=overrides))
    arms = {
        "raw": raw(engines["raw"]),
        "toolkit": ours,
        "raw_async": raw_async,
        "raw_vllm_block": raw(engines["raw_vllm_block"]),
    }
    totals = {name: [0, 0.0, 0.0] for name in arms}
    for _ in range(args.rounds):
        for name, fn in arms.items():
            for i, v in enumerate(measure(fn)):
                totals[name][i] += v
    tps = {}
    for name, (tokens, wall, cpu) in totals.items():
        tps[name] = tokens / wall
        block = engine_settings(engines.get(name, gen))["block_size"]  # raw_async: gen's
        print(
            f"{name:14s} block_size={block:<4d} tokens={tokens} wall_s={wall:.1f} "
            f"tokens/s={tps[name]:.1f} main-process CPU ms/token={1000 * cpu / tokens:.3f}"
        )
    gen.close()
    for llm in engines.values():
        llm.llm_engine.engine_core.shutdown()
    print(f"block_size_effect={tps['raw'] / tps['raw_vllm_block']:.3f}")
    cpu = {name: t[2] / t[0] for name, t in totals.items()}
    print(f"main_process_cpu_ratio_vs_raw={cpu['toolkit'] / cpu['raw']:.3f}")
    print(f"main_process_cpu_ratio_vs_raw_async={cpu['toolkit'] / cpu['raw_async']:.3f}")
    print(f"engine_utilization_ratio={tps['toolkit'] / tps['raw']:.3f}")


if __name__ == "__main__":
    main()
