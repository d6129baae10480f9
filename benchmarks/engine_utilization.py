"""Engine utilization: best-of-N through the toolkit vs the same requests as one raw vLLM batch.

Both engines live in this process on the same model, prompts, n and max_tokens, and the two
measurements alternate (raw, toolkit, raw, toolkit, ...) so that drift on a shared machine
hits both alike. Sample lengths differ between runs (sampling), so the comparison is generated
tokens per second. The toolkit's own CPU cost is the main process's CPU time per generated
token (the engine cores run in their own processes), next to the same figure for the raw batch.

    .venv/bin/python benchmarks/engine_utilization.py [--problems 16] [--n 8] [--max-tokens 128]

Last line: engine_utilization_ratio=<toolkit tokens/s over raw tokens/s>.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "3")


def measure(fn) -> tuple[int, float, float]:  # noqa: ANN001
    cpu0, t0 = time.process_time(), time.perf_counter()
    tokens = fn()
    return tokens, time.perf_counter() - t0, time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile (default: eager)")
    args = parser.parse_args()

    from vllm import LLM, SamplingParams

    from evals.arith import generate_arith
    from reasoning import asolve_many
    from reasoning.backends.vllm_engine import VLLMGenerator
    from reasoning.loop import run_sync
    from reasoning.types import Sampling

    eager = not args.compile
    problems = generate_arith(args.problems, levels=(1, 2, 3), seed=0)
    gen = VLLMGenerator(
        args.model, system_prompt="short", max_model_len=2048, seed=0, enforce_eager=eager
    )
    gen.start()
    run_sync(gen.complete(gen.render(problems[0]), Sampling(max_tokens=8)))  # warm-up
    prompts = [gen.render(p) for p in problems]
    llm = LLM(
        model=gen.path, max_model_len=2048, enable_prefix_caching=True, seed=0, enforce_eager=eager
    )
    llm.generate(prompts[:1], SamplingParams(max_tokens=8), use_tqdm=False)  # warm-up
    params = SamplingParams(n=args.n, temperature=0.8, top_p=1.0, max_tokens=args.max_tokens)

    def raw() -> int:
        outputs = llm.generate(prompts, params, use_tqdm=False)
        return sum(len(o.token_ids) for out in outputs for o in out.outputs)

    def ours() -> int:
        outcomes = run_sync(
            asolve_many(
                problems,
                search="best_of_n",
                generator=gen,
                overrides=[f"search.n={args.n}", f"search.max_tokens={args.max_tokens}"],
            )
        )
        return sum(o.ledger.generated_tokens for o in outcomes)

    totals = {"raw": [0, 0.0, 0.0], "toolkit": [0, 0.0, 0.0]}
    for _ in range(args.rounds):
        for name, fn in (("raw", raw), ("toolkit", ours)):
            for i, v in enumerate(measure(fn)):
                totals[name][i] += v
    print(
        f"problems={args.problems} n={args.n} max_tokens={args.max_tokens} "
        f"rounds={args.rounds} model={args.model} eager={eager}"
    )
    tps = {}
    for name, (tokens, wall, cpu) in totals.items():
        tps[name] = tokens / wall
        print(
            f"{name:8s} tokens={tokens} wall_s={wall:.1f} tokens/s={tps[name]:.1f} "
            f"main-process CPU ms/token={1000 * cpu / tokens:.3f}"
        )
    gen.close()
    print(f"engine_utilization_ratio={tps['toolkit'] / tps['raw']:.3f}")


if __name__ == "__main__":
    main()
