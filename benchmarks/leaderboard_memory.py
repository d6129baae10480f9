"""The leaderboard's peak memory on a large results file (issue 19, point 12).

Writes one run directory whose `results.jsonl` holds `--mb` MiB (default 200) of records shaped
as the runner writes them (a ledger, the grader, the search params, votes and events, a
prediction and a grade reason), with its run.json and summary.json, then runs
`reason-leaderboard RUN --out OUT --no-audit` in a child process and reads that child's peak
resident memory (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`). The same command on a run of
a single record gives the baseline (the interpreter, pandas, numpy and matplotlib loaded), so
the line also says what the records themselves cost.

Run by hand (it takes minutes and about 2x `--mb` of disk):

    python benchmarks/leaderboard_memory.py [--mb 200] [--bootstrap 2000] [--keep DIR]

It prints `settings:` and one result line:

    leaderboard_peak_rss_mb=<peak> file_mb=<size> ratio=<peak/size> baseline_mb=<1 record>
    records_mb=<peak - baseline> records=<count> wall_s=<seconds>

The goal (issue 19): the peak under 2x the file's size, or bounded whatever the size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def record(i: int) -> dict:
    """A record as the runner writes it (evals/runner.py `_record`), about 1 KiB."""
    return {
        "id": f"arith-L{i % 5}-{i:07d}",
        "answer": str(i % 997),
        "prediction": str(i % 991),
        "correct": i % 3 != 0,
        "grade_reason": None if i % 3 else "prediction 12 != gold 7",
        "error": None,
        "error_type": None,
        "error_stage": None,
        "ledger": {
            "generated_tokens": 1500 + i % 700,
            "prompt_tokens": 320,
            "cached_prompt_tokens": 160,
            "generator_calls": 8,
            "samples": 8,
            "verifier_calls": 0,
            "verifier_tokens": 0,
            "critical_path_tokens": 400 + i % 50,
            "wall_s": 3.25,
            "generator_wall_s": 3.1,
            "verifier_wall_s": 0.0,
        },
        "stopped_by": None,
        "search": "best_of_n",
        "search_params": {"n": 8, "aggregate": "majority", "temperature": 0.8, "top_p": 0.95},
        "seed": 0,
        "grader": {"name": "math-verify-cascade", "version": "3"},
        "model": "smollm2-135m",
        "dataset": "arith",
        "verifier": None,
        "budget": {"generated_tokens": None, "samples": None, "verifier_calls": None},
        "votes": {str(i % 991): 5, str(i % 997): 2, "none": 1},
        "missing_scores": None,
        "events": {"sample": 8, "aggregate": 1},
        "chains": 8,
        "finished_at": 1767600000.0 + i,
        "problem_hash": f"{i * 2654435761 % 2**64:016x}",
    }


def write_run(run: Path, target_bytes: int) -> int:
    """A run directory with about `target_bytes` of results; returns how many records."""
    (run / "traces").mkdir(parents=True)
    n = 0
    with (run / "results.jsonl").open("w", encoding="utf-8") as f:
        size = 0
        while size < target_bytes:
            line = json.dumps(record(n)) + "\n"
            f.write(line)
            size += len(line)
            n += 1
    fingerprint = {"dataset.name": "arith", "search.name": "best_of_n", "search.n": 8, "seed": 0}
    selection = {"dataset": "arith", "keys": {}, "problems": n}
    (run / "run.json").write_text(
        json.dumps({"format": 2, "fingerprint": fingerprint, "selection": selection})
    )
    config = {"dataset": {"name": "arith"}, "model": {"name": "smollm2-135m"}, "seed": 0}
    (run / "summary.json").write_text(json.dumps({"problems": n, "config": config}))
    return n


def peak_of(run: Path, out: Path, bootstrap: int) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of `reason-leaderboard RUN --out OUT --no-audit` run
    as a fresh child (ru_maxrss of the children is the largest child's; each call's child is
    measured by a separate python that runs it)."""
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    command = [
        sys.executable,
        "-m",
        "evals.leaderboard.cli",
        str(run),
        "--out",
        str(out),
        "--no-audit",
        "--bootstrap",
        str(bootstrap),
    ]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", probe, *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.monotonic() - started
    kib = int(done.stdout.strip().splitlines()[-1])  # Linux: KiB
    return kib / 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200.0, help="results file size (MiB)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--keep", type=Path, default=None, help="write the runs here, keep them")
    args = parser.parse_args()
    print(
        f"settings: mb={args.mb:g} bootstrap={args.bootstrap} audit=off "
        f"python={sys.version.split()[0]} ru_maxrss_self_mb="
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        small, big = root / "small" / "run", root / "big" / "run"
        write_run(small, 1)
        n = write_run(big, int(args.mb * 2**20))
        size_mb = (big / "results.jsonl").stat().st_size / 2**20
        baseline, _ = peak_of(small, root / "small" / "board", args.bootstrap)
        peak, wall = peak_of(big, root / "big" / "board", args.bootstrap)
    print(
        f"leaderboard_peak_rss_mb={peak:.0f} file_mb={size_mb:.0f} ratio={peak / size_mb:.2f} "
        f"baseline_mb={baseline:.0f} records_mb={peak - baseline:.0f} records={n} "
        f"wall_s={wall:.0f}"
    )


if __name__ == "__main__":
    main()
