"""Verifier throughput: PRM steps scored per second, batched vs one request per chain.

One in-process pooling engine on a tiny random-init Qwen2 PRM (tests/tiny_models.py, built in
a temp dir) scores the same chains two ways, alternating rounds so that drift on a shared
machine hits both alike:

- batched: every chain's score() call is in flight at once (as when many particles or problems
  are scored together); the micro-batcher hands the engine big batches.
- single: the same calls awaited one after another (one chain per engine request; a second
  PoolingPRM on the same engine with batch_wait_ms=0, so the timer adds no latency).

    .venv/bin/python benchmarks/verifier_throughput.py [--chains 128] [--max-steps 8]

Last line: prm_batched_over_single=<batched steps/s over single steps/s>.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.tiny_models


def make_chains(n: int, max_steps: int) -> list[tuple[object, object]]:
    """`n` chains over 8 problems, 1..max_steps steps of ~25 tokens each."""
    from reasoning.types import Chain, Problem

    problems = [Problem(id=f"p{i}", question=f"What is {i} * 7 + {i + 3}?") for i in range(8)]
    out = []
    for i in range(n):
        steps = tuple(
            f"Step {k + 1}: {i} + {k} = {i + k}, so {i} * {k} = {i * k} and we carry on."
            for k in range(1 + i % max_steps)
        )
        out.append((problems[i % len(problems)], Chain(steps=steps)))
    return out


async def batched(prm, pairs) -> int:  # noqa: ANN001
    results = await asyncio.gather(*(prm.score(p, [c]) for p, c in pairs))
    return sum(len(r[0]) for r in results)


async def single(prm, pairs) -> int:  # noqa: ANN001
    steps = 0
    for p, c in pairs:
        steps += len((await prm.score(p, [c]))[0])
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    # "auto" would run the float32 tiny checkpoint in float16, ~4x slower than bf16 on CPU
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()

    from settings import engine_summary, print_settings

    from tests.tiny_models import build_tiny_prm
    from verifiers.prm import PoolingPRM

    with tempfile.TemporaryDirectory(prefix="tiny-prm-") as tmp:
        path = str(build_tiny_prm(Path(tmp) / "prm"))
        common = dict(max_model_len=2048, dtype=args.dtype)
        prm = PoolingPRM(path, batch_size=args.batch_size, **common)
        one_by_one = PoolingPRM(path, batch_wait_ms=0, **common)  # same engine
        t0 = time.perf_counter()
        prm.start()
        start_s = time.perf_counter() - t0
        pairs = make_chains(args.chains, args.max_steps)
        print_settings(
            {
                "model": "tiny random-init Qwen2 PRM (tests/tiny_models.py)",
                "engine": engine_summary(prm),
                "chains": f"{len(pairs)} over 8 problems, 1-{args.max_steps} steps each",
                "batched": f"batch_size={prm.batch_size} batch_wait_ms={prm.batch_wait_ms}",
                "single": f"batch_wait_ms={one_by_one.batch_wait_ms}, one chain per request",
                "rounds": args.rounds,
            }
        )
        print(f"engine start: {start_s:.1f} s")

        async def run() -> dict[str, list[float]]:
            await batched(prm, pairs[:8])  # warm-up
            totals = {"batched": [0.0, 0.0], "single": [0.0, 0.0]}
            for _ in range(args.rounds):
                for name, fn, verifier in (
                    ("batched", batched, prm),
                    ("single", single, one_by_one),
                ):
                    start = time.perf_counter()
                    steps = await fn(verifier, pairs)
                    totals[name][0] += steps
                    totals[name][1] += time.perf_counter() - start
            sizes = prm.batch_sizes
            print(
                f"engine batches (batched mode): {len(sizes)}, mean size "
                f"{sum(sizes) / max(1, len(sizes)):.1f}"
            )
            return totals

        totals = asyncio.run(run())
        prm.close()

    rate = {name: steps / secs for name, (steps, secs) in totals.items()}
    print(f"chains: {len(pairs)}, steps per pass: {int(totals['batched'][0]) // args.rounds}")
    print(f"prm batched: {rate['batched']:.1f} steps/s")
    print(f"prm single:  {rate['single']:.1f} steps/s")
    print(f"arith checker: {arith_checker_rate():.0f} steps/s (distinct steps, no cache hits)")
    print(f"prm_batched_over_single={rate['batched'] / rate['single']:.2f}")


def arith_checker_rate(seconds: float = 2.0) -> float:
    """Steps per second of the rule-based checker on the step table's texts, made distinct so
    its per-text cache never answers."""
    import json

    from verifiers.arith_checker import ArithStepChecker

    table = Path(__file__).resolve().parent.parent / "tests" / "data" / "arith_steps.jsonl"
    texts = [json.loads(line)["step"] for line in table.read_text().splitlines() if line.strip()]
    checker = ArithStepChecker()
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        for text in texts:
            checker.check_step(f"{text}\n(step {i})")
            i += 1
        done += len(texts)
    return done / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
