"""benchmarks/overhead.py: a controller's child run reports what the toolkit spent per token."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from benchmarks import overhead  # noqa: E402
from benchmarks.instant import InstantGenerator  # noqa: E402
from reasoning.types import Sampling  # noqa: E402


def test_a_run_reports_the_toolkits_cpu_apart_from_the_generators(tmp_path: Path) -> None:
    out = tmp_path / "overhead"
    assert (
        overhead.main(["--only", "best_of_n,trim_budget", "--problems", "3", "--out", str(out)])
        == 0
    )
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {r["controller"]: r for r in report["in_process"]}
    for name, row in rows.items():
        assert "error" not in row, row
        assert row["problems"] == 3 and row["errors"] == 0 and row["tokens"] > 0
        # what the toolkit spent is the run's CPU less the generator's replayed calls
        assert row["toolkit_cpu_s"] == pytest.approx(row["cpu_s"] - row["generator_cpu_s"])
        assert 0 < row["generator_cpu_s"] < row["cpu_s"]
        assert row["tokens_per_s"] == pytest.approx(row["tokens"] / row["toolkit_cpu_s"])
        assert row["peak_rss_mb"] > 0 and row["startup_cpu_s"] > 0, name
    # best-of-8 over 3 problems: 3 calls of 8 whole samples; the trimmer streams each sample
    assert rows["best_of_n"]["calls"] == 3 and not rows["best_of_n"]["streamed"]
    assert rows["trim_budget"]["streamed"] and rows["trim_budget"]["calls"] >= 24
    assert "| best_of_n |" in out.with_suffix(".md").read_text()


def test_the_replayed_generator_is_the_same_calls_again() -> None:
    gen = overhead._as_streaming(overhead.Metered(InstantGenerator()))

    async def calls() -> int:
        await gen.complete("p", Sampling(n=2, max_tokens=64, seed=1))
        read = 0
        async for _ in gen.stream("p", Sampling(max_tokens=64, seed=2)):
            read += 1
            if read == 5:
                break  # a trimmer that cut the sample: only 5 deltas are replayed
        return read

    assert asyncio.run(calls()) == 5
    assert [(kind, read) for kind, _, _, read in gen.log] == [("complete", 0), ("stream", 5)]
    assert gen.replay_cpu() >= 0
