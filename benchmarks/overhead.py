"""The toolkit's own cost per token: every controller with the engine made free.

Each controller runs the real `Runner` (votes, grading, traces, results on disk) over
`benchmarks/instant.py`'s InstantGenerator, whose calls cost a slice of a pre-tokenized script
(256-token samples of ~22-token steps, token ids and logprobs on every completion, one token per
streamed delta). Whatever CPU the process spends is then the toolkit's: the instant generator's
own share is measured around its calls and taken out. Every controller runs in a fresh child
process, so start-up and peak memory are its own.

Per controller it reports: the toolkit's CPU per 1k generated tokens and per generator call, the
generated tokens/s one process sustains (tokens over toolkit CPU), peak resident memory, and the
start-up CPU (imports, config, tokenizer) before the first problem. `--memory` adds a long greedy
run (10,000 problems by default) next to one tenth of it: peak memory must follow the problems in
flight, not the problems done. `--http` adds the HTTP arm (benchmarks/overhead_http.py): the
toolkit over a local OpenAI-compatible stub next to a minimal `openai` client and its_hub's.

    python benchmarks/overhead.py                      # every controller, 100 problems each
    python benchmarks/overhead.py --only best_of_n,beam --problems 200 --profile /tmp/prof
    python benchmarks/overhead.py --memory [--memory-problems 10000]
    python benchmarks/overhead.py --http [--its-hub-python /work/venvs/its_hub/bin/python]

Prints a Markdown table with the goals and writes OUT.md and OUT.json
(default benchmarks/results/overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_OUT = REPO / "benchmarks" / "results" / "overhead"
THINK = ["model=smollm2-135m-think"]
PLAIN = ["model=smollm2-135m"]
BEST_OF_8 = ["search=best_of_n", "search.n=8"]

# name -> (overrides, needs the instant verifier, streams its samples)
CONTROLLERS: dict[str, tuple[list[str], bool, bool]] = {
    "greedy": (["search=greedy"], False, False),
    "best_of_n": (BEST_OF_8, False, False),
    "best_of_n_prm": ([*BEST_OF_8, "search.aggregate=weighted"], True, False),
    "beam": (["search=beam"], True, False),
    "dvts": (["search=dvts"], True, False),
    "astar": (["search=astar"], True, False),
    "particle_filter": (["search=particle_filter"], True, False),
    "particle_gibbs": (["search=particle_gibbs"], True, False),
    "mcts": (["search=mcts"], True, False),
    "hyper": (["search=hyper", "budget.generated_tokens=4096"], False, True),
    "trim_budget": ([*BEST_OF_8, "+trim=budget", "trim.max_think_tokens=160"], False, True),
    "trim_trimr": ([*BEST_OF_8, "+trim=trimr"], False, True),
    "trim_sdv": ([*BEST_OF_8, "+trim=sdv"], False, True),
    "threads_threadweaver": (["search=threads", "search/strategy=threadweaver"], False, True),
    "threads_apr": (["search=threads", "search/strategy=apr"], False, True),
    "threads_fork_join": (["search=threads", "search/strategy=fork_join"], False, True),
    "threads_hogwild": (["search=threads", "search/strategy=hogwild"], False, True),
    "adaptive_sc": (["search=adaptive_sc"], False, True),
    "deepconf": (["search=deepconf", "search.n=64", "search.warmup=8"], False, True),
}
THINKING = {"trim_budget", "trim_trimr", "trim_sdv"}

GOALS = {
    "tokens_per_s": 100_000,  # best-of-N and every step-level controller
    "tokens_per_s_streamed": 50_000,  # streaming controllers
    "startup_cpu_s": 1.5,
}


# --- the child: one controller, one process ---------------------------------------------------


class Metered:
    """The instant generator with its calls written down, so that its own CPU can be measured
    apart by replaying them after the run (timing every delta in place would add its own cost)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.log: list[tuple[str, Any, Any, int]] = []  # (kind, prompt, sampling, deltas read)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def complete(self, prompt: Any, sampling: Any) -> Any:
        self.log.append(("complete", prompt, sampling, 0))
        return await self.inner.complete(prompt, sampling)

    async def stream(self, prompt: Any, sampling: Any) -> Any:
        read = 0
        try:
            async for delta in self.inner.stream(prompt, sampling):
                read += 1
                yield delta
        finally:
            self.log.append(("stream", prompt, sampling, read))

    def replay_cpu(self) -> float:
        """CPU seconds the generator alone takes for the same calls, deltas and all."""

        async def replay() -> None:
            for kind, prompt, sampling, read in self.log:
                if kind == "complete":
                    await self.inner.complete(prompt, sampling)
                    continue
                deltas = self.inner.stream(prompt, sampling)
                for _ in range(read):
                    await deltas.__anext__()
                await deltas.aclose()

        started = time.process_time()
        asyncio.run(replay())
        return time.process_time() - started


def _as_streaming(metered: Metered) -> Any:
    """`Metered` seen as the StreamingGenerator protocol (isinstance checks read the class)."""
    from reasoning.types import StreamingGenerator

    cls = type(
        "MeteredInstant",
        (Metered,),
        {
            "render": lambda self, *a, **k: self.inner.render(*a, **k),
            "tokenize": lambda self, text: self.inner.tokenize(text),
            "detokenize": lambda self, ids: self.inner.detokenize(ids),
            "chat": lambda self, messages: self.inner.chat(messages),
        },
    )
    wrapped = cls.__new__(cls)
    wrapped.__dict__.update(metered.__dict__)
    assert isinstance(wrapped, StreamingGenerator)
    return wrapped


def run_child(name: str, problems: int, profile: str | None) -> dict[str, Any]:
    """One controller over `problems` arith problems; the figures as a dict."""
    from benchmarks.instant import InstantGenerator, instant_runner
    from evals.experiment import load_from_config
    from reasoning.build import (
        compose_config,
    )

    overrides, needs_verifier, streamed = CONTROLLERS[name]
    model = THINK if name in THINKING else PLAIN
    cfg = compose_config(
        [*model, *overrides, "dataset=arith", f"dataset.arith.n={problems}", "progress=false"]
    )
    generator = _as_streaming(
        Metered(
            InstantGenerator(
                system_prompt=str(cfg.model.system_prompt),
                thinking=cfg.model.get("thinking"),
            )
        )
    )
    runner = instant_runner(cfg, generator, f"overhead-{name}", needs_verifier)
    startup = time.process_time()  # the process's CPU since it started: imports, config
    todo = load_from_config(cfg)
    data = time.process_time() - startup  # generating the arith problems: not the toolkit's
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not wall: waits cost nothing
        profiler.enable()
    t0, w0 = time.process_time(), time.perf_counter()
    summary = asyncio.run(runner.run(todo))
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    # grading runs in worker processes: stopped and reaped here, their CPU is the children's
    from evals import verify_workers

    verify_workers.shutdown()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    led = summary["ledger"]
    tokens, calls = int(led["generated_tokens"]), int(led["generator_calls"])
    generator_cpu = generator.replay_cpu()
    toolkit = cpu - generator_cpu
    return {
        "arm": "in_process",
        "controller": name,
        "streamed": streamed,
        "problems": summary["problems"],
        "errors": summary["errors"],
        "tokens": tokens,
        "calls": calls,
        "tokens_per_call": tokens / calls if calls else None,
        "cpu_s": cpu,
        "generator_cpu_s": generator_cpu,
        "toolkit_cpu_s": toolkit,
        "grading_workers_cpu_s": children.ru_utime + children.ru_stime,
        "wall_s": wall,
        "cpu_ms_per_1k_tokens": 1000 * toolkit / tokens * 1000 if tokens else None,
        "cpu_us_per_token": 1e6 * toolkit / tokens if tokens else None,
        "cpu_ms_per_call": 1000 * toolkit / calls if calls else None,
        "tokens_per_s": tokens / toolkit if toolkit > 0 else None,
        "startup_cpu_s": startup,
        "data_cpu_s": data,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --- the parent -------------------------------------------------------------------------------


def child(name: str, problems: int, profile_dir: Path | None) -> dict[str, Any]:
    """Run one controller in a fresh process; its JSON line back."""
    argv = [sys.executable, __file__, "--child", name, "--problems", str(problems)]
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--profile", str(profile_dir / f"{name}.prof")]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {
            "arm": "in_process",
            "controller": name,
            "error": (done.stderr or done.stdout)[-1500:],
        }
    return json.loads(lines[-1])


def goal_of(row: dict[str, Any]) -> int:
    return GOALS["tokens_per_s_streamed"] if row.get("streamed") else GOALS["tokens_per_s"]


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| controller | problems | tokens | tokens/call | toolkit CPU s | ms CPU / 1k tok | "
        "us CPU / call | tokens/s (one process) | goal | start-up CPU s | peak RSS MB |"
    )
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['controller']} | error: {r['error'].splitlines()[-1][:120]} |")
            continue
        tps = r["tokens_per_s"]
        mark = "ok" if tps and tps >= goal_of(r) else "below"
        out.append(
            f"| {r['controller']}{' (streamed)' if r['streamed'] else ''} | {r['problems']} | "
            f"{r['tokens']} | {r['tokens_per_call']:.1f} | {r['toolkit_cpu_s']:.2f} | "
            f"{r['cpu_ms_per_1k_tokens']:.2f} | {1000 * r['cpu_ms_per_call']:.0f} | "
            f"{tps:,.0f} | {goal_of(r):,} {mark} | {r['startup_cpu_s']:.2f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=100, help="arith problems per controller")
    parser.add_argument(
        "--only", default="", help="comma-separated controllers (default: all of them)"
    )
    parser.add_argument("--profile", default=None, help="write cProfile .prof files here")
    parser.add_argument("--memory", action="store_true", help="add the long greedy memory run")
    parser.add_argument("--memory-problems", type=int, default=10_000)
    parser.add_argument("--http", action="store_true", help="add the HTTP arm")
    parser.add_argument("--its-hub-python", default=None, help="its_hub's venv python (HTTP)")
    parser.add_argument("--rounds", type=int, default=3, help="HTTP: alternating rounds (median)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="OUT.md and OUT.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(args.child, args.problems, args.profile)))
        return 0
    names = [n for n in args.only.split(",") if n] or list(CONTROLLERS)
    unknown = sorted(set(names) - set(CONTROLLERS))
    if unknown:
        parser.error(f"unknown controllers {unknown}; known: {sorted(CONTROLLERS)}")
    profile_dir = Path(args.profile) if args.profile else None
    rows = []
    for name in names:
        row = child(name, args.problems, profile_dir)
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    report = {"settings": vars(args), "in_process": rows}
    command = "python benchmarks/overhead.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = [
        "# The toolkit's own cost per token, the engine made free",
        "",
        f"Reproduce: `{command.strip()}`. CPU is the child process's own, less the instant",
        "generator's replayed calls; start-up is before the first problem (data generation apart).",
        "",
        "## In-process, instant generator",
        "",
        table(rows),
    ]
    if args.memory:
        sizes = (args.memory_problems // 10, args.memory_problems)
        memory = [child("greedy", n, None) for n in sizes]
        report["memory"] = memory
        text += ["", "## Memory: greedy over many problems", "", table(memory)]
    if args.http:
        from benchmarks.overhead_http import http_rows, http_table

        http = http_rows(
            problems=args.problems,
            rounds=args.rounds,
            its_hub_python=args.its_hub_python,
            profile_dir=profile_dir,
        )
        report["http"] = http
        text += ["", "## Over HTTP, instant stub", "", http_table(http)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
