"""Engine utilization: best-of-N through the toolkit vs the same requests as one raw vLLM batch.

Both run in this process on the same model, prompts, n and max_tokens. Sample lengths differ
from run to run (sampling), so the comparison is generated tokens per second, not seconds.
The toolkit's own CPU cost is the main process's CPU time per generated token (the engine
core runs in its own process, so this is renderer + Context + controller + detokenizing
frontend) next to the same figure for the raw batch.

    .venv/bin/python benchmarks/engine_utilization.py [--problems 16] [--n 8] [--max-tokens 128]

Last line: engine_utilization_ratio=<toolkit tokens/s over raw tokens/s>.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")


def raw_batch(path: str, prompts: list[str], n: int, max_tokens: int) -> dict:
    from vllm import LLM, SamplingParams

    llm = LLM(model=path, max_model_len=2048, enable_prefix_caching=True, seed=0)
    params = SamplingParams(n=n, temperature=0.8, top_p=1.0, max_tokens=max_tokens)
    llm.generate(prompts[:1], SamplingParams(max_tokens=8), use_tqdm=False)  # warm-up
    cpu0, t0 = time.process_time(), time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    tokens = sum(len(o.token_ids) for out in outputs for o in out.outputs)
    return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu}


def toolkit(path: str, problems: list, n: int, max_tokens: int) -> dict:
    from reasoning import asolve_many
    from reasoning.backends.vllm_engine import VLLMGenerator
    from reasoning.loop import run_sync
    from reasoning.types import Sampling

    gen = VLLMGenerator(path, system_prompt="short", max_model_len=2048, seed=0)
    gen.start()
    run_sync(gen.complete(gen.render(problems[0]), Sampling(max_tokens=8)))  # warm-up
    cpu0, t0 = time.process_time(), time.perf_counter()
    outcomes = run_sync(
        asolve_many(
            problems,
            search="best_of_n",
            generator=gen,
            overrides=[f"search.n={n}", f"search.max_tokens={max_tokens}"],
        )
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    tokens = sum(o.ledger.generated_tokens for o in outcomes)
    prompts = [gen.render(p) for p in problems]
    gen.close()
    return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu, "prompts": prompts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    from evals.arith import generate_arith
    from reasoning.models import resolve_model_path

    path = resolve_model_path(args.model)
    problems = generate_arith(args.problems, levels=(1, 2, 3), seed=0)
    ours = toolkit(path, problems, args.n, args.max_tokens)
    raw = raw_batch(path, ours["prompts"], args.n, args.max_tokens)
    ours_tps = ours["tokens"] / ours["wall_s"]
    raw_tps = raw["tokens"] / raw["wall_s"]
    print(f"problems={args.problems} n={args.n} max_tokens={args.max_tokens} model={args.model}")
    print(f"toolkit  tokens={ours['tokens']} wall_s={ours['wall_s']:.1f} tokens/s={ours_tps:.1f}")
    print(f"raw vllm tokens={raw['tokens']} wall_s={raw['wall_s']:.1f} tokens/s={raw_tps:.1f}")
    print(
        "main-process CPU ms per generated token: "
        f"toolkit={1000 * ours['cpu_s'] / ours['tokens']:.3f} "
        f"raw={1000 * raw['cpu_s'] / raw['tokens']:.3f}"
    )
    print(f"engine_utilization_ratio={ours_tps / raw_tps:.3f}")


if __name__ == "__main__":
    main()
