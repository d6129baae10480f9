"""The HTTP arm of the overhead benchmark (benchmarks/overhead_http.py), without an engine.

One stub (a child process on the loopback) serves the module: it answers completions whole and
streamed with the ids InstantGenerator gives in-process, logs what it is sent, and the minimal
client and a tiny toolkit run go through it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.instant import InstantGenerator
from benchmarks.overhead_http import (
    REPO,
    Stub,
    _ratio,
    _replay,
    _row,
    _run_child,
    read_log,
    running_stub,
)
from reasoning.types import Sampling, TokenPrompt


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    with running_stub(max_life_s=300) as handle:
        yield handle


@pytest.fixture(scope="module")
def instant() -> InstantGenerator:
    return InstantGenerator()


def _post(url: str, body: dict[str, Any]) -> bytes:
    request = urllib.request.Request(
        url + "/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def test_the_stub_answers_whole_completions_with_the_in_process_ids(
    stub: Stub, instant: InstantGenerator
) -> None:
    """n=2 with seed 5: samples 5 and 6 of the script, the same ids and text as in-process,
    vLLM's fields (token ids, prompt ids, stop_reason) and usage that adds up."""
    body = {
        "model": "smollm2-135m",
        "prompt": [1, 2, 3],
        "n": 2,
        "max_tokens": 512,
        "seed": 5,
        "return_token_ids": True,
    }
    answer = json.loads(_post(stub.url, body))
    want = asyncio.run(
        instant.complete(TokenPrompt((1, 2, 3)), Sampling(n=2, seed=5, max_tokens=512))
    )
    got = answer["choices"]
    assert [c["token_ids"] for c in got] == [list(w.token_ids or ()) for w in want]
    assert [c["text"] for c in got] == [w.text for w in want]
    assert got[0]["prompt_token_ids"] == [1, 2, 3]
    assert [c["finish_reason"] for c in got] == ["stop", "stop"]  # whole samples end with EOS
    assert [c["stop_reason"] for c in got] == [None, None]
    assert answer["usage"]["completion_tokens"] == sum(w.tokens for w in want)
    assert answer["usage"]["prompt_tokens"] == 3


def test_the_stub_streams_one_token_per_chunk(stub: Stub, instant: InstantGenerator) -> None:
    """A step call (stop "\\n\\n") streamed: one id per chunk, the ids of the whole step,
    finish on the last token with the stop string, a cumulative usage count on every chunk,
    then the usage-only chunk and [DONE]."""
    body = {
        "model": "smollm2-135m",
        "prompt": "x",
        "max_tokens": 64,
        "stop": ["\n\n"],
        "seed": 3,
        "stream": True,
        "return_token_ids": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    lines = [line for line in _post(stub.url, body).decode().split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    *tokens, usage_only = chunks
    (want,) = asyncio.run(instant.complete("x", Sampling(seed=3, max_tokens=64, stop=("\n\n",))))
    assert [c["choices"][0]["token_ids"] for c in tokens] == [[t] for t in want.token_ids or ()]
    assert "".join(c["choices"][0]["text"] for c in tokens) == want.text
    assert [c["usage"]["completion_tokens"] for c in tokens] == list(range(1, want.tokens + 1))
    assert all(c["choices"][0]["finish_reason"] is None for c in tokens[:-1])
    last = tokens[-1]["choices"][0]
    if want.stop is not None:  # a middle step ends at the delimiter; the final one at EOS
        assert (last["finish_reason"], last["stop_reason"]) == ("stop", "\n\n")
    else:
        assert (last["finish_reason"], last["stop_reason"]) == ("stop", None)
    assert usage_only["choices"] == [] and usage_only["usage"]["completion_tokens"] == want.tokens


def test_the_minimal_client_replays_every_logged_request(stub: Stub, tmp_path: Path) -> None:
    """Three logged requests (one streamed) replayed: three requests reach the stub again,
    the same bodies, and the tokens the replay counts are the tokens the stub served."""
    first = tmp_path / "first.jsonl"
    stub.set_log(first)
    bodies = [
        {"model": "smollm2-135m", "prompt": "a", "n": 2, "max_tokens": 40, "seed": 1},
        {
            "model": "smollm2-135m",
            "prompt": [4, 5],
            "max_tokens": 30,
            "stop": ["\n\n"],
            "seed": 2,
            "return_token_ids": True,
        },
        {
            "model": "smollm2-135m",
            "prompt": "b",
            "max_tokens": 20,
            "seed": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ]
    for body in bodies:
        _post(stub.url, body)
    stub.set_log(None)
    logged = read_log(first)
    assert [r["body"] for r in logged] == bodies
    again = tmp_path / "again.jsonl"
    stub.set_log(again)
    tokens, calls = asyncio.run(_replay(stub.url, [r["body"] for r in logged], cap=2))
    stub.set_log(None)
    replayed = read_log(again)
    assert calls == len(replayed) == 3
    assert sorted(json.dumps(r["body"], sort_keys=True) for r in replayed) == sorted(
        json.dumps(b, sort_keys=True) for b in bodies
    )
    assert tokens == sum(r["tokens"] for r in replayed) == sum(r["tokens"] for r in logged)


def test_a_tiny_toolkit_run_over_the_stub(stub: Stub, tmp_path: Path) -> None:
    """2 problems of best_of_n with n=2: one request each (n=2), every token the stub served
    counted in the ledger, CPU measured."""
    log = tmp_path / "toolkit.jsonl"
    stub.set_log(log)
    result = _run_child(
        [
            sys.executable,
            str(REPO / "benchmarks" / "overhead_http.py"),
            "--child-toolkit",
            "best_of_n",
            "--url",
            stub.url,
            "--problems",
            "2",
            "--override",
            "search.n=2",
        ],
        timeout_s=120,
    )
    stub.set_log(None)
    assert "error" not in result, result
    served = read_log(log)
    assert result["calls"] == len(served) == 2
    assert all(r["body"]["n"] == 2 and r["body"]["return_token_ids"] for r in served)
    assert result["tokens"] == sum(r["tokens"] for r in served) > 0
    assert result["problems"] == 2 and result["errors"] == 0
    assert result["cpu_s"] > 0 and result["startup_cpu_s"] > 0 and result["peak_rss_mb"] > 0
    row = _row("best_of_n", "toolkit", False, [result])
    assert row["tokens"] > 0 and row["us_per_token"] > 0


def test_a_row_is_the_median_of_its_rounds() -> None:
    """Three rounds: CPU 1.0, 3.0, 2.0 s -> median 2.0 (the mean would be 2.0 too, so the
    tokens differ: 100, 400, 1000 -> median 400, mean 500). us/token = 1e6 * 2.0 / 400 = 5000;
    ms/call = 1e3 * 2.0 / 8 = 250; tokens per CPU s = 400 / 2.0 = 200."""
    runs = [
        {"cpu_s": 1.0, "startup_cpu_s": 0.5, "peak_rss_mb": 10, "tokens": 100, "calls": 8},
        {"cpu_s": 3.0, "startup_cpu_s": 0.7, "peak_rss_mb": 30, "tokens": 400, "calls": 8},
        {"cpu_s": 2.0, "startup_cpu_s": 0.6, "peak_rss_mb": 20, "tokens": 1000, "calls": 8},
    ]
    row = _row("beam", "toolkit", False, runs)
    assert (row["cpu_s"], row["startup_cpu_s"], row["peak_rss_mb"]) == (2.0, 0.6, 20)
    assert (row["tokens"], row["calls"]) == (400, 8)
    assert row["us_per_token"] == pytest.approx(5000.0)
    assert row["ms_per_call"] == pytest.approx(250.0)
    assert row["tokens_per_cpu_s"] == pytest.approx(200.0)
    # the ratio is of CPU per token: 5000 / 2500 = 2
    assert _ratio(row, {"us_per_token": 2500.0}) == pytest.approx(2.0)
    assert _ratio(row, None) is None
    failed = _row("beam", "its_hub", False, [{"error": "Traceback\nValueError: no"}], "x")
    assert failed["note"] == "x; ValueError: no" and "us_per_token" not in failed
