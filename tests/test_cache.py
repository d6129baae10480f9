"""The record/replay cache: keys, modes, concurrency, persistence, and a faithful replay of runs."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from evals.rundir import RESULTS, read_results
from evals.runner import Runner
from reasoning import Problem
from reasoning.cache import (
    CachedGenerator,
    CachedVerifier,
    CacheMiss,
    CallCache,
    cache_for,
    cache_key,
    comparable,
)
from reasoning.types import Chain, Completion, Sampling, StepScores, TokenPrompt
from search import BestOfN
from tests.fakes import ConstantVerifier, ScriptedGenerator

PROBLEM = Problem("p1", "What is 2 + 3?", "5")
PROMPT = "Q: What is 2 + 3?\nA: "


def _never() -> Any:
    raise AssertionError("replay must not build the inner object")


class RichGenerator(ScriptedGenerator):
    """Completions with every optional field set, to check the stored JSON round-trips."""

    async def complete(self, prompt: str, sampling: Sampling) -> list[Completion]:
        self.calls.append((prompt, sampling))
        return [
            Completion(
                text=f"step {i}\n\n\\boxed{{{i}}}",
                tokens=3 + i,
                finish_reason="stop",
                stop="</s>" if i else None,
                prompt_tokens=11,
                cached_prompt_tokens=4,
                logprobs=(-0.5, -1.25, float("-inf")),
                top_logprobs=({"a": -0.1, "b": -2.0}, {"ü": -0.3}, {}),
                token_id_logprobs=({5: -0.25, 70000: float("-inf")}, {}, {5: -3.5}),
            )
            for i in range(sampling.n)
        ]


class TokenVerifier(ConstantVerifier):
    """A verifier that reports what it cost, like a model-backed one."""

    name = "token-verifier"

    def __init__(self) -> None:
        super().__init__(lambda text: min(1.0, len(text) / 40))
        self.calls = 0

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        self.calls += 1
        return StepScores(await super().score(problem, chains), tokens=7 * len(chains))


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[CallCache]:
    with CallCache(tmp_path / "cache.sqlite") as c:
        yield c


async def test_record_then_replay_gives_identical_completions_without_inner_calls(
    cache: CallCache,
) -> None:
    inner = RichGenerator()
    recorder = CachedGenerator(inner, cache, "record")
    sampling = Sampling(n=3, seed=5, logprobs=2)
    fresh = await recorder.complete(PROMPT, sampling)
    assert [c.cached for c in fresh] == [False] * 3 and len(inner.calls) == 1

    player = CachedGenerator(_never, cache, "replay", name=inner.name)
    replayed = await player.complete(PROMPT, sampling)
    assert replayed == [replace(c, cached=True) for c in fresh]
    assert all(
        isinstance(c.logprobs, tuple) and isinstance(c.top_logprobs, tuple) for c in replayed
    )
    # JSON turns the int token ids into strings: they come back as ints
    assert replayed[0].token_id_logprobs == ({5: -0.25, 70000: float("-inf")}, {}, {5: -3.5})
    assert len(inner.calls) == 1
    player.start()  # a no-op in replay: building the inner would raise


async def test_record_always_calls_and_overwrites(cache: CallCache) -> None:
    inner = ScriptedGenerator(["first", "second"])
    recorder = CachedGenerator(inner, cache, "record")
    await recorder.complete(PROMPT, Sampling(seed=1))
    again = await recorder.complete(PROMPT, Sampling(seed=1))
    assert len(inner.calls) == 2 and again[0].text == "second" and not again[0].cached
    player = CachedGenerator(_never, cache, "replay", name="scripted")
    assert (await player.complete(PROMPT, Sampling(seed=1)))[0].text == "second"


async def test_auto_serves_hits_and_records_misses(cache: CallCache) -> None:
    inner = ScriptedGenerator(["a", "b", "c"])
    auto = CachedGenerator(inner, cache, "auto")
    first = await auto.complete(PROMPT, Sampling(seed=1))
    hit = await auto.complete(PROMPT, Sampling(seed=1))
    other = await auto.complete(PROMPT, Sampling(seed=2))
    assert [first[0].text, hit[0].text, other[0].text] == ["a", "a", "b"]
    assert [first[0].cached, hit[0].cached, other[0].cached] == [False, True, False]
    assert len(inner.calls) == 2


async def test_replay_miss_names_the_cache_the_prompt_and_the_sampling(cache: CallCache) -> None:
    await CachedGenerator(ScriptedGenerator(), cache, "record").complete(PROMPT, Sampling(seed=1))
    player = CachedGenerator(_never, cache, "replay", name="scripted")
    with pytest.raises(CacheMiss) as err:
        await player.complete(PROMPT, Sampling(seed=2))
    message = str(err.value)
    assert str(cache.path) in message and "What is 2 + 3?" in message
    assert "seed=2" in message and "1 calls of this generator" in message


async def test_every_sampling_field_prompt_and_name_are_part_of_the_key(cache: CallCache) -> None:
    base = Sampling(seed=1)
    variants = {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 7,
        "stop": ("\n\n",),
        "n": 2,
        "seed": 2,
        "logprobs": 0,
        "logprob_token_ids": (5, 7),
        "keep_special_tokens": True,
    }
    assert set(variants) == {f.name for f in fields(Sampling)}, "a new Sampling field: add it"
    inner = ScriptedGenerator()
    auto = CachedGenerator(inner, cache, "auto")
    await auto.complete(PROMPT, base)
    for name, value in variants.items():
        out = await auto.complete(PROMPT, replace(base, **{name: value}))
        assert not out[0].cached, f"changing Sampling.{name} must miss"
    assert not (await auto.complete(PROMPT + " ", base))[0].cached
    renamed = CachedGenerator(inner, cache, "auto", name="another-model")
    assert not (await renamed.complete(PROMPT, base))[0].cached
    assert (await auto.complete(PROMPT, base))[0].cached
    assert len(inner.calls) == 1 + len(variants) + 2


async def test_prompts_are_recorded_so_replay_needs_no_tokenizer(cache: CallCache) -> None:
    recorder = CachedGenerator(ScriptedGenerator(), cache, "record")
    chain = Chain(steps=("one", "two"))
    expected = [recorder.render(PROBLEM), recorder.render(PROBLEM, chain)]
    player = CachedGenerator(_never, cache, "replay", name="scripted")
    assert [player.render(PROBLEM), player.render(PROBLEM, chain)] == expected
    with pytest.raises(AssertionError, match="must not build"):  # a miss falls back to the inner
        player.render(PROBLEM, Chain(steps=("three",)))


async def test_verifier_scores_and_tokens_are_replayed(cache: CallCache) -> None:
    inner = TokenVerifier()
    chains = [Chain(steps=("a", "b = 2")), Chain(steps=("a much longer first step",))]
    fresh = await CachedVerifier(inner, cache, "record").score(PROBLEM, chains)
    assert isinstance(fresh, StepScores) and not fresh.cached

    kind = f"{TokenVerifier.__module__}.{TokenVerifier.__qualname__}"
    player = CachedVerifier(_never, cache, "replay", name="token-verifier", kind=kind)
    replayed = await player.score(PROBLEM, chains)
    assert isinstance(replayed, StepScores) and replayed.cached
    assert list(replayed) == list(fresh) and replayed.tokens == fresh.tokens == 14
    assert inner.calls == 1

    with pytest.raises(CacheMiss, match="token-verifier.*'p1'"):
        await player.score(PROBLEM, [chains[0], Chain(steps=("other",))])
    with pytest.raises(CacheMiss):
        await player.score(replace(PROBLEM, id="p2"), chains)
    with pytest.raises(CacheMiss):  # same text, other logprobs (confidence verifiers read them)
        await player.score(PROBLEM, [replace(chains[0], logprobs=(-1.0, -2.0)), chains[1]])
    with pytest.raises(CacheMiss):
        await CachedVerifier(_never, cache, "replay", name="token-verifier", kind="x.Y").score(
            PROBLEM, chains
        )

    auto = CachedVerifier(inner, cache, "auto")
    assert (await auto.score(PROBLEM, chains)).cached and inner.calls == 1  # type: ignore[attr-defined]
    plain = await CachedVerifier(ConstantVerifier(), cache, "auto").score(PROBLEM, chains)
    assert plain == [[0.5, 0.5], [0.5]]  # a plain-list verifier works too (0 tokens)


async def test_many_coroutines_and_threads_share_one_cache(cache: CallCache) -> None:
    inner = ScriptedGenerator(lambda prompt, s: f"seed {s.seed}", delay_s=0.001)
    auto = CachedGenerator(inner, cache, "auto")
    seeds = [i % 150 for i in range(400)]  # duplicates in flight at once
    outs = await asyncio.gather(*(auto.complete(PROMPT, Sampling(seed=s)) for s in seeds))
    assert [o[0].text for o in outs] == [f"seed {s}" for s in seeds]

    def hammer(worker: int) -> None:  # the lock also covers threads (e.g. asyncio.to_thread)
        for i in range(50):
            cache.put("renders", f"t{worker}-{i}", i)
            assert cache.get("renders", f"t{worker}-{i}") == i

    await asyncio.gather(*(asyncio.to_thread(hammer, w) for w in range(8)))
    assert cache.count("generator_calls") == 150 and cache.count("renders") == 400

    player = CachedGenerator(_never, cache, "replay", name="scripted")
    again = await asyncio.gather(*(player.complete(PROMPT, Sampling(seed=s)) for s in seeds))
    assert [o[0].text for o in again] == [f"seed {s}" for s in seeds]


async def test_the_file_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "calls.sqlite"
    with CallCache(path) as cache:
        await CachedGenerator(RichGenerator(), cache, "record").complete(PROMPT, Sampling(seed=3))
        recorded = cache.count("generator_calls")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with CallCache(path) as reopened:
        assert reopened.count("generator_calls") == recorded == 1
        out = await CachedGenerator(_never, reopened, "replay", name="scripted").complete(
            PROMPT, Sampling(seed=3)
        )
    assert out[0].cached and out[0].top_logprobs == ({"a": -0.1, "b": -2.0}, {"ü": -0.3}, {})


def test_modes_and_config_resolution(tmp_path: Path) -> None:
    from reasoning.build import _generators, build_generator, compose_config

    assert cache_for(compose_config([])) is None  # off by default
    assert cache_for(compose_config(["cache.mode=off"])) is None
    with pytest.raises(ValueError, match="valid: off, record, replay, auto"):
        cache_for(compose_config(["cache.mode=replya"]), tmp_path)
    with pytest.raises(ValueError, match="needs cache.path"):
        cache_for(compose_config(["cache.mode=auto"]))
    with pytest.raises(FileNotFoundError, match="cache.sqlite of a recorded run"):
        cache_for(compose_config(["cache.mode=replay"]), tmp_path)
    with pytest.raises(ValueError, match="no wrapper"):
        CachedGenerator(ScriptedGenerator(), CallCache(tmp_path / "x.sqlite"), "off")

    mode, cache = cache_for(compose_config(["cache.mode=record"]), tmp_path)  # type: ignore[misc]
    assert mode == "record" and cache.path == (tmp_path / "cache.sqlite").resolve()
    # replay through the build path: the real (vLLM) generator is not even constructed
    before = dict(_generators)
    cfg = compose_config(["cache.mode=replay", f"cache.path={cache.path}"])
    generator = build_generator(cfg, tmp_path / "new-run")
    assert isinstance(generator, CachedGenerator) and generator.mode == "replay"
    assert generator.name == "smollm2-135m" and generator._inner.built is None
    generator.start()
    assert generator._inner.built is None and _generators == before


PROBLEMS = [Problem(f"test/{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(5)]


async def _run(out: Path, generator: Any, verifier: Any) -> list[dict[str, Any]]:
    search = BestOfN(n=4, batch_size=2, aggregate="weighted")
    runner = Runner(generator, search, out, verifier=verifier, progress=False, concurrency=3)
    await runner.run(PROBLEMS)
    return sorted(read_results(out / RESULTS), key=lambda r: r["id"])


async def test_runner_replay_reproduces_the_recorded_results(tmp_path: Path) -> None:
    # Outputs depend on call order (as with an unseeded engine), so only the cache can
    # reproduce them.
    texts = ["so \\boxed{2}", "x y \\boxed{4}", "\\boxed{6}", "a b c \\boxed{8}", "\\boxed{5}"]
    with CallCache(tmp_path / "calls.sqlite") as cache:
        generator = CachedGenerator(ScriptedGenerator(texts, delay_s=0.002), cache, "record")
        verifier = CachedVerifier(TokenVerifier(), cache, "record")
        recorded = await _run(tmp_path / "A", generator, verifier)

    with CallCache(tmp_path / "calls.sqlite") as cache:
        kind = f"{TokenVerifier.__module__}.{TokenVerifier.__qualname__}"
        generator = CachedGenerator(_never, cache, "replay", name="scripted")
        verifier = CachedVerifier(_never, cache, "replay", name="token-verifier", kind=kind)
        replayed = await _run(tmp_path / "B", generator, verifier)

    assert [comparable(r) for r in replayed] == [comparable(r) for r in recorded]
    assert len({r["prediction"] for r in recorded}) > 1  # not trivially equal
    for old, new in zip(recorded, replayed, strict=True):
        led = new["ledger"]
        assert old["ledger"]["cache_hits"] == 0
        assert led["cache_hits"] == led["generator_calls"] + 1  # + one verifier call
        assert led["replayed_tokens"] == led["generated_tokens"] > 0
        assert led["verifier_tokens"] == old["ledger"]["verifier_tokens"] == 28


# --- the real engine, through the CLI ---------------------------------------------------------

# Runs `reason` with vllm, torch and transformers unimportable: a replay that built the engine
# (or even loaded the tokenizer) fails loudly instead of quietly recomputing.
NO_ENGINE = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("vllm", "torch", "transformers"):
            raise ImportError(f"replay imported {name}: it must not build the engine")
sys.meta_path.insert(0, Block())
runpy.run_module("evals.cli", run_name="__main__", alter_sys=True)
"""


@pytest.mark.engine
@pytest.mark.parametrize(
    "extra",
    [[], ["verifier=judge", "search.aggregate=weighted"]],
    ids=["majority", "judge"],
)
def test_cli_replay_reproduces_a_recorded_run_without_the_engine(
    tmp_path: Path, extra: list[str]
) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    args = ["dataset.arith.n=3", "search.n=2", "search.max_tokens=32", "progress=false", *extra]
    record = subprocess.run(
        [sys.executable, "-m", "evals.cli", *args, "cache.mode=record", f"hydra.run.dir={a}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert record.returncode == 0, record.stderr[-3000:]
    assert (a / "cache.sqlite").exists()

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "VLLM_LOGGING_LEVEL": "INFO"}
    replay = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_ENGINE,
            *args,
            "cache.mode=replay",
            f"cache.path={a / 'cache.sqlite'}",
            f"hydra.run.dir={b}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "vllm" not in (replay.stdout + replay.stderr).lower()

    def records(run: Path) -> list[dict[str, Any]]:
        return sorted(read_results(run / RESULTS), key=lambda r: r["id"])

    recorded, replayed = records(a), records(b)
    assert len(recorded) == 3
    assert [comparable(r) for r in replayed] == [comparable(r) for r in recorded]
    verifier_calls = 1 if extra else 0  # the judge scores both chains in one call
    for r in replayed:
        led = r["ledger"]
        assert led["generator_calls"] == 1
        assert led["cache_hits"] == led["generator_calls"] + verifier_calls
        assert led["replayed_tokens"] == led["generated_tokens"]
        assert (led["verifier_tokens"] > 0) == bool(extra)
    summaries = [json.loads((run / "summary.json").read_text()) for run in (a, b)]
    assert summaries[0]["accuracy"] == summaries[1]["accuracy"]


def test_keys_of_recorded_files_do_not_change(cache: CallCache) -> None:
    """Files recorded earlier replay only while a call's key stays what it was: these are the
    keys the single-module cache (before the reasoning/cache/ package) computed. A change of
    what a key covers must bump KEY_VERSION, and then update these on purpose."""
    gen = CachedGenerator(ScriptedGenerator(["x"]), cache, "record", name="gen")
    text_key = gen._key("Q: What is 2 + 3?\nA: ", Sampling(n=2, seed=7))
    assert text_key == "f5b4e5edc815795ee9a5b0cbc563bf51d5649edb1e510214bf562b8ed4969e69"
    stream_key = gen._key(TokenPrompt((1, 2, 3)), Sampling(), "stream")
    assert stream_key == "9ec413b26d3e4d6d442fae04a5ab74cdca5862362f971e3c63b3a94ddd9f0a43"
    verify = {"kind": "verify", "verifier": "v", "class": "k", "chains": [{"steps": ["a"]}]}
    verify_key = cache_key({**verify, "problem": {"id": "p1", "question": "q"}})
    assert verify_key == "633b537d2af5545d48404cab31532e2476eb6d73c703cf2f41fdb47ed0798f0e"


def test_the_package_keeps_one_job_per_module() -> None:
    """`from reasoning.cache import ...` keeps working; each job has its own module."""
    import reasoning.cache as package
    from reasoning.cache import call_keys, codecs, replay, store, wrappers

    assert package.CallCache is store.CallCache and package.cache_key is call_keys.cache_key
    assert package.CachedGenerator is wrappers.CachedGenerator
    assert package.completion_from_json is codecs.completion_from_json
    assert package.comparable is replay.comparable
    assert set(package.__all__) <= set(dir(package))
    assert not hasattr(codecs, "CallCache") and not hasattr(call_keys, "sqlite3")
