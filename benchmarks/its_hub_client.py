"""its_hub's own client and algorithms against the overhead benchmark's stub: one JSON line.

Run with its_hub's venv python (`python -m venv /work/venvs/its_hub && pip install
'its_hub[lm]' backoff`), not the toolkit's: this file imports nothing of the toolkit. It drives
its_hub's self-consistency, beam search or particle filtering (budget 8, as the toolkit's n=8)
through its `OpenAICompatibleLanguageModel` against the stub's chat endpoint, over the same
arith problems, as many at once as the toolkit's runner (`concurrency`), with a process reward
model of its own that scores instantly (its_hub's abstract PRM interface), and prints its
process CPU: start-up (imports, building the client and algorithm) and the run apart, and peak
resident memory. Tokens and calls are counted by the stub. An algorithm this its_hub lacks
gives {"skipped": why} instead of a crash.

    /work/venvs/its_hub/bin/python benchmarks/its_hub_client.py --algorithm beam_search \\
        --url http://127.0.0.1:PORT/v1 --model smollm2-135m --problems problems.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
import zlib
from typing import Any

STEP_TOKEN = "\n\n"  # the toolkit's step delimiter
STOP_TOKEN = "boxed"  # a step that boxes the answer ends the path
MAX_STEPS = 40  # the toolkit's beam / particle filter max_steps
MAX_TOKENS = 512  # the toolkit's best_of_n max_tokens
TEMPERATURE = 0.8
CONCURRENCY = 32  # the toolkit runner's problems in flight
MAX_CONCURRENCY = 64  # the toolkit's requests in flight per server


def _score(text: str) -> float:
    """The instant verifier's score, on the path's text: free and deterministic in [0.3, 0.9]."""
    return 0.3 + 0.6 * (zlib.crc32(text.encode()) & 0xFFFF) / 0xFFFF


def build(algorithm: str) -> Any:
    """its_hub's algorithm by name, or a string saying why it cannot run."""
    try:
        from its_hub.api import AbstractProcessRewardModel
        from its_hub.core.algorithms.beam_search import BeamSearch
        from its_hub.core.algorithms.particle_gibbs import ParticleFiltering
        from its_hub.core.algorithms.self_consistency import (
            SelfConsistency,
            create_regex_projection_function,
        )
        from its_hub.core.lms.step_generation import StepGeneration
    except ImportError as exc:
        return f"its_hub cannot import {algorithm}: {exc}"

    class InstantPRM(AbstractProcessRewardModel):
        """Scores every partial path at no cost (one score per path, as its_hub asks)."""

        def score(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
            return [_score(s) for s in steps]

        async def ascore(self, prompt_or_messages: Any, steps: list[str]) -> list[float]:
            return self.score(prompt_or_messages, steps)

    sg = StepGeneration(
        max_steps=MAX_STEPS, step_token=STEP_TOKEN, stop_token=STOP_TOKEN, temperature=TEMPERATURE
    )
    if algorithm == "self_consistency":
        return SelfConsistency(create_regex_projection_function(r"\\boxed\{([^}]+)\}"))
    if algorithm == "beam_search":
        return BeamSearch(sg, InstantPRM(), beam_width=4)  # the toolkit's beam width
    if algorithm == "particle_filtering":
        return ParticleFiltering(sg, InstantPRM())
    return f"its_hub has no {algorithm!r} here"


async def run(algorithm: Any, lm: Any, questions: list[str], budget: int) -> list[str]:
    """Every problem, `CONCURRENCY` at once; the errors raised."""
    gate = asyncio.Semaphore(CONCURRENCY)
    errors: list[str] = []

    async def one(question: str) -> None:
        async with gate:
            try:
                await algorithm.ainfer(lm, question, budget)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])

    await asyncio.gather(*(one(q) for q in questions))
    close = getattr(lm, "close", None)
    if close is not None:
        await close()
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--problems", required=True, help="a JSON list of questions")
    parser.add_argument("--budget", type=int, default=8)
    args = parser.parse_args()
    algorithm = build(args.algorithm)
    if isinstance(algorithm, str):
        print(json.dumps({"skipped": algorithm}))
        return 0
    from its_hub.core.lms.openai_lm import OpenAICompatibleLanguageModel

    lm = OpenAICompatibleLanguageModel(
        endpoint=args.url,
        api_key="EMPTY",
        model_name=args.model,
        max_tokens=MAX_TOKENS if args.algorithm == "self_consistency" else None,
        temperature=TEMPERATURE,
        max_concurrency=MAX_CONCURRENCY,
    )
    with open(args.problems, encoding="utf-8") as f:
        questions = json.load(f)
    startup = time.process_time()
    t0 = time.process_time()
    errors = asyncio.run(run(algorithm, lm, questions, args.budget))
    print(
        json.dumps(
            {
                "problems": len(questions),
                "errors": len(errors),
                "first_error": errors[0] if errors else None,
                "startup_cpu_s": startup,
                "cpu_s": time.process_time() - t0,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
