"""Per-problem fault isolation in the runner: a bad problem ends as its own error record while
every other problem finishes; run-level faults still stop the run (resume picks it up).

The bad inputs are the corpus `tests/data/bad_inputs/runner.jsonl` (one case a line: the
problem and the strings its record's `error` must contain). The scripted generator refuses
them as vLLM does: a prompt longer than the context raises vLLM's prompt-length error, a lone
surrogate raises the tokenizer's TypeError. One test runs the corpus on the real engine.
"""

from __future__ import annotations

import asyncio
import errno
import json
from pathlib import Path
from typing import Any

import pytest

from evals.faults import RunInterrupted, describe_error, is_run_level
from evals.grading import Grade, Grader
from evals.rundir import RESULTS, SUMMARY, TRACES, read_results, trace_filename
from evals.runner import Runner
from reasoning import Problem
from reasoning.backends.openai_server import (
    BrokenStreamError,
    OpenAIGenerator,
    RequestFailedError,
    ServerUnavailableError,
)
from reasoning.context import BrokenSampleError, EmptyResponseError
from reasoning.types import Completion, Sampling
from search import BestOfN
from tests.conftest import TEST_DATA
from tests.fakes import ScriptedGenerator
from tests.servers import StubServer, free_port

CORPUS = TEST_DATA / "bad_inputs" / "runner.jsonl"
LINES = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
CASES = [c for c in LINES if c["kind"] == "problem"]  # a bad problem (any backend refuses it)
# a problem a hostile server fails on every time (tests/servers.py's StubServer plays it)
SERVER_CASES = [c for c in LINES if c["kind"] == "server"]
GOOD = [Problem(f"good/{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(1, 5)]
# the HF fast tokenizer's words for a lone surrogate (vLLM wraps it in EngineGenerateError)
TOKENIZER_ERROR = (
    "TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]"
)


def vllm_too_long(length: int, max_model_len: int) -> str:
    """What vLLM (vllm/renderers/params.py) says of a prompt over the context."""
    return (
        f"This model's maximum context length is {max_model_len} tokens. However, your prompt "
        f"contains {length} input tokens, which exceeds this limit even without any output "
        f"tokens. Please reduce the length of the input prompt. "
        f"(parameter=input_tokens, value={length})"
    )


def _answer(prompt: str, sampling: object) -> str:
    """Right on odd problems, wrong on even ones."""
    i = int(prompt.split("What is ")[1].split(" +")[0])
    return f"so \\boxed{{{2 * i if i % 2 else 99}}}"


class VLLMLikeGenerator(ScriptedGenerator):
    """The scripted generator with vLLM's input checks (one token per word)."""

    def __init__(self, *args: Any, max_model_len: int = 2048, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_model_len = max_model_len

    async def complete(self, prompt: str, sampling: Sampling) -> list[Completion]:
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:
            raise TypeError(TOKENIZER_ERROR) from None
        length = len(prompt.split())
        if length > self.max_model_len:
            raise ValueError(vllm_too_long(length, self.max_model_len))
        return await super().complete(prompt, sampling)


def _problem(case: dict[str, Any]) -> Problem:
    p = case["problem"]
    return Problem(p["id"], p["question"], p.get("answer"))


def _runner(out: Path, gen: Any = None, **kw: Any) -> Runner:
    gen = gen if gen is not None else VLLMLikeGenerator(_answer)
    return Runner(gen, BestOfN(n=2), out, progress=False, concurrency=3, **kw)


def _assert_clean_utf8_lines(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    raw.decode("utf-8")  # strict: a lone surrogate must not reach the file
    return [json.loads(line) for line in raw.splitlines()]


def _assert_good_finished(records: dict[str, dict[str, Any]], good: list[Problem]) -> None:
    for p in good:
        r = records[p.id]
        assert r["error"] is None and r["correct"] is (int(p.answer) // 2 % 2 == 1), r
        assert r["ledger"]["samples"] == 2


def _assert_error_record(record: dict[str, Any], case: dict[str, Any]) -> None:
    assert record["correct"] is None and record["error"], record
    for text in case["expect"]["error_contains"]:
        assert text in record["error"], (text, record["error"][:300])
    assert record["error_type"] and record["error_stage"] == "solve"


def test_corpus_is_well_formed() -> None:
    assert len({c["case"] for c in LINES}) == len(LINES) == len(CASES) + len(SERVER_CASES)
    assert len(CASES) >= 5 and len(SERVER_CASES) >= 4
    for case in LINES:
        assert set(case) == {"case", "kind", "problem", "expect"}
        assert {"id", "question", "answer"} <= set(case["problem"])
        assert case["problem"]["id"] in case["expect"]["error_contains"]


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
async def test_a_bad_problem_is_its_own_error_record(tmp_path: Path, case: dict) -> None:
    bad = _problem(case)
    problems = [GOOD[0], GOOD[1], bad, GOOD[2], GOOD[3]]
    summary = await _runner(tmp_path).run(problems)

    lines = _assert_clean_utf8_lines(tmp_path / RESULTS)
    assert sorted(r["id"] for r in lines) == sorted(p.id for p in problems)
    records = {r["id"]: r for r in lines}
    _assert_error_record(records[bad.id], case)
    assert records[bad.id]["answer"] == bad.answer  # a lone surrogate reads back as written
    _assert_good_finished(records, GOOD)
    assert summary["errors"] == 1 and summary["problems"] == 5
    assert summary["n"] == 4 and summary["correct"] == 2 and summary["ungraded"] == 0
    assert sum(summary["errors_by_type"].values()) == 1
    assert json.loads((tmp_path / SUMMARY).read_text())["errors"] == 1
    trace = json.loads((tmp_path / TRACES / trace_filename(bad.id)).read_text())
    assert trace["id"] == bad.id and trace["error"] == records[bad.id]["error"]


async def test_every_corpus_case_in_one_run(tmp_path: Path) -> None:
    problems = [*GOOD[:2], *(_problem(c) for c in CASES), *GOOD[2:]]
    summary = await _runner(tmp_path).run(problems)
    records = {r["id"]: r for r in _assert_clean_utf8_lines(tmp_path / RESULTS)}
    for case in CASES:
        _assert_error_record(records[case["problem"]["id"]], case)
    _assert_good_finished(records, GOOD)
    assert summary["errors"] == len(CASES) and summary["n"] == len(GOOD)
    assert len(list((tmp_path / TRACES).glob("*.json"))) == len(problems)


async def test_ten_megabyte_problem_fails_alone(tmp_path: Path) -> None:
    huge = Problem("huge/10mb", "What is 1 + 1? " + "x " * 5_000_000, "2")
    summary = await _runner(tmp_path).run([GOOD[0], huge, GOOD[1]])
    records = {r["id"]: r for r in read_results(tmp_path / RESULTS)}
    err = records["huge/10mb"]["error"]
    assert "huge/10mb" in err and "ValueError" in err and "maximum context length" in err
    assert len(err) < 3000  # the message, not the input
    _assert_good_finished(records, GOOD[:2])
    assert summary["errors"] == 1 and summary["n"] == 2


class _CrashingGrader(Grader):
    async def grade(
        self, prediction: str | None, gold: str | None, problem: Problem | None = None
    ) -> Grade:
        if gold == "4":
            raise RuntimeError("grader exploded")
        return await super().grade(prediction, gold, problem)


async def test_a_grader_crash_ends_only_that_problem(tmp_path: Path) -> None:
    summary = await _runner(tmp_path, grader=_CrashingGrader()).run(GOOD)
    records = {r["id"]: r for r in read_results(tmp_path / RESULTS)}
    crashed = records["good/2"]
    assert crashed["correct"] is None and crashed["error_stage"] == "grade"
    assert crashed["error"] == "problem good/2: RuntimeError: grader exploded"
    assert crashed["error_type"] == "RuntimeError"
    assert crashed["prediction"] == "99" and crashed["ledger"]["samples"] == 2  # kept
    _assert_good_finished(records, [GOOD[0], *GOOD[2:]])
    assert summary["errors"] == 1 and summary["n"] == 3 and summary["ungraded"] == 0
    trace = json.loads((tmp_path / TRACES / trace_filename("good/2")).read_text())
    assert len(trace["chains"]) == 2 and "grader exploded" in trace["error"]


async def test_a_failure_in_the_middle_of_a_search_keeps_what_it_spent(tmp_path: Path) -> None:
    calls = {"n": 0}

    class FailsOnSecond(ScriptedGenerator):
        async def complete(self, prompt: str, sampling: Sampling) -> list[Completion]:
            calls["n"] += 1
            if calls["n"] == 2:
                raise ValueError("sampling refused")
            return await super().complete(prompt, sampling)

    gen = FailsOnSecond(_answer)
    search = BestOfN(n=2, batch_size=1)  # two calls of one sample
    runner = Runner(gen, search, tmp_path, progress=False, concurrency=1)
    summary = await runner.run(GOOD[:1])
    (record,) = read_results(tmp_path / RESULTS)
    assert "ValueError: sampling refused" in record["error"]
    assert record["ledger"]["samples"] == 1 and record["ledger"]["generator_calls"] == 1
    assert summary["errors"] == 1 and summary["ledger"]["samples"] == 1


async def test_lone_surrogate_in_a_gold_answer_is_written_and_graded(tmp_path: Path) -> None:
    odd = Problem("odd/surrogate-gold", "What is 1 + 1?", "2\ud800", {"note": "\udfff"})
    summary = await _runner(tmp_path).run([odd, GOOD[0]])
    (good, record) = sorted(_assert_clean_utf8_lines(tmp_path / RESULTS), key=lambda r: r["id"])
    assert record["id"] == odd.id and record["answer"] == "2\ud800"
    assert record["error"] is None and record["correct"] in (True, False)
    trace_bytes = (tmp_path / TRACES / trace_filename(odd.id)).read_bytes()
    trace = json.loads(trace_bytes.decode("utf-8"))
    assert trace["gold"] == "2\ud800" and trace["metadata"] == {"note": "\udfff"}
    assert summary["errors"] == 0 and summary["n"] == 2


async def test_error_records_are_kept_on_resume_unless_retry_errors(tmp_path: Path) -> None:
    flaky = VLLMLikeGenerator(_answer, max_model_len=8)  # "Q: What is 1 + 1?\nA: " fits
    tight = [*GOOD[:2], Problem("long/1", "What is 1 + 1 when it is long?", "2")]
    summary = await _runner(tmp_path, flaky).run(tight)
    assert summary["errors"] == 1
    before = read_results(tmp_path / RESULTS)

    again = VLLMLikeGenerator(_answer)
    summary = await _runner(tmp_path, again).run(tight)
    assert again.calls == [] and summary["errors"] == 1  # nothing reran
    assert read_results(tmp_path / RESULTS) == before

    fixed = VLLMLikeGenerator(_answer)
    summary = await _runner(tmp_path, fixed, retry_errors=True).run(tight)
    assert len(fixed.calls) == 1 and summary["errors"] == 0 and summary["n"] == 3
    after = read_results(tmp_path / RESULTS)
    assert sorted(r["id"] for r in after) == sorted(p.id for p in tight)  # one line each
    assert after[:2] == [r for r in before if not r["error"]]


async def test_retry_errors_can_come_from_the_config(tmp_path: Path) -> None:
    tight = [GOOD[0], Problem("long/1", "What is 1 + 1 when it is long?", "2")]
    await _runner(tmp_path, VLLMLikeGenerator(_answer, max_model_len=8)).run(tight)
    fixed = VLLMLikeGenerator(_answer)
    runner = _runner(tmp_path, fixed, config={"retry_errors": True})
    assert (await runner.run(tight))["errors"] == 0 and len(fixed.calls) == 1


def _fails_on_problem_3(exc: BaseException) -> ScriptedGenerator:
    class Failing(ScriptedGenerator):
        async def complete(self, prompt: str, sampling: Sampling) -> list[Completion]:
            if "What is 3 +" in prompt:
                raise exc
            return await super().complete(prompt, sampling)

    return Failing(_answer)


class EngineDeadError(Exception):
    """Named as vLLM's (matched by name, so that the runner need not import vllm)."""


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("scripted backend failure"),
        ServerUnavailableError("no OpenAI-compatible server answered at http://x/v1"),
        OSError(errno.ENOSPC, "No space left on device"),
        EngineDeadError("EngineCore encountered an issue"),
        MemoryError(),
        ExceptionGroup("in a controller's task group", [ConnectionError("down")]),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_run_level_faults_still_stop_the_run(tmp_path: Path, exc: BaseException) -> None:
    runner = Runner(_fails_on_problem_3(exc), BestOfN(n=2), tmp_path, progress=False, concurrency=1)
    with pytest.raises(RunInterrupted, match="finished problems are saved.*rerun"):
        await runner.run(GOOD)
    kept = [r["id"] for r in read_results(tmp_path / RESULTS)]
    assert kept[:2] == ["good/1", "good/2"] and "good/3" not in kept  # no error record
    healthy = ScriptedGenerator(_answer)
    summary = await Runner(healthy, BestOfN(n=2), tmp_path, progress=False).run(GOOD)
    assert summary["problems"] == 4 and summary["errors"] == 0
    assert len(healthy.calls) == 4 - len(kept)  # only the unfinished problems ran again


async def test_disk_full_while_writing_a_result_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(path: Path, line: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Runner, "_append", staticmethod(full))
    with pytest.raises(RunInterrupted, match="No space left"):
        await _runner(tmp_path).run(GOOD)


async def test_cancelling_the_run_stops_it(tmp_path: Path) -> None:
    """A cancelled run stops at once; what finished stays, nothing in flight is recorded."""
    gen = ScriptedGenerator(_answer, delay_s=0.05)
    task = asyncio.create_task(
        Runner(gen, BestOfN(n=1), tmp_path, progress=False, concurrency=1).run(GOOD)
    )
    while len(read_results(tmp_path / RESULTS)) < 1:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 1 <= len(read_results(tmp_path / RESULTS)) < 4


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("exc", "run_level"),
    [
        (ValueError("prompt too long"), False),
        (TypeError(TOKENIZER_ERROR), False),
        (TimeoutError(), False),  # an OSError, but one problem's
        (OSError(errno.ENAMETOOLONG, "File name too long"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
        (ExceptionGroup("g", [ValueError("a"), KeyError("b")]), False),
        (RequestFailedError("kept failing this request"), False),  # a 500, a timeout
        (BrokenStreamError("dropped"), False),
        (BrokenSampleError("abort"), False),
        (EmptyResponseError("no sample"), False),
        (ConnectionError(), True),
        (ConnectionResetError(), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (OSError(errno.EROFS, "Read-only file system"), True),
        (ExceptionGroup("g", [ValueError("a"), ConnectionError("b")]), True),
        (KeyboardInterrupt(), True),
        (asyncio.CancelledError(), True),
    ],
    ids=repr,
)
def test_is_run_level(exc: BaseException, run_level: bool) -> None:
    assert is_run_level(exc) is run_level


def test_an_error_caused_by_a_dead_backend_is_run_level() -> None:
    try:
        try:
            raise ConnectionError("refused")
        except ConnectionError as cause:
            raise RuntimeError("wrapped") from cause
    except RuntimeError as exc:
        assert is_run_level(exc)
        assert describe_error(exc) == "RuntimeError: wrapped <- ConnectionError: refused"


def test_describe_error_is_short_and_never_raises() -> None:
    assert describe_error(_Unprintable()) == "_Unprintable: <unprintable>"
    text = describe_error(ValueError("x" * 100_000))
    assert len(text) < 2100 and text.endswith("chars cut]")
    group = ExceptionGroup("unhandled errors in a TaskGroup", [ValueError("too long")])
    assert describe_error(group) == "ValueError: too long"


@pytest.mark.engine
def test_problem_longer_than_the_engine_context_fails_alone(engine: Any, tmp_path: Path) -> None:
    """The real engine (SmolLM2, max_model_len 2048): the corpus fails, the others finish."""
    from evals.arith import generate_arith
    from reasoning.loop import run_sync

    good = generate_arith(2)
    huge = Problem("huge/10mb", "What is 1 + 1? " + "x " * 5_000_000, "2")
    problems = [good[0], huge, *(_problem(c) for c in CASES), good[1]]
    runner = Runner(engine, BestOfN(n=1, max_tokens=32), tmp_path, progress=False, concurrency=4)
    summary = run_sync(runner.run(problems))
    records = {r["id"]: r for r in _assert_clean_utf8_lines(tmp_path / RESULTS)}
    for case in CASES:
        _assert_error_record(records[case["problem"]["id"]], case)
    assert "maximum context length" in records["huge/10mb"]["error"]
    for p in good:
        assert records[p.id]["error"] is None and records[p.id]["correct"] in (True, False)
        assert records[p.id]["ledger"]["generated_tokens"] > 0
    assert summary["errors"] == len(CASES) + 1 and summary["n"] == 2


async def test_a_record_that_cannot_be_written_becomes_an_error(tmp_path: Path) -> None:
    class OddVotes(BestOfN):
        async def run(self, problem: Problem, ctx: Any) -> Any:
            outcome = await super().run(problem, ctx)
            if problem.id == "good/2":
                outcome.details["votes"] = {("not", "a", "string"): 1}  # json cannot key it
            return outcome

    runner = Runner(VLLMLikeGenerator(_answer), OddVotes(n=2), tmp_path, progress=False)
    summary = await runner.run(GOOD)
    records = {r["id"]: r for r in read_results(tmp_path / RESULTS)}
    odd = records["good/2"]
    assert odd["error_stage"] == "record" and "TypeError" in odd["error"]
    assert odd["prediction"] == "99" and odd["ledger"]["samples"] == 2
    _assert_good_finished(records, [GOOD[0], *GOOD[2:]])
    assert summary["errors"] == 1


# --- a hostile server (issue 19, point 9): a problem the server always fails ---------------


def _stub_answer(prompt: str) -> str:
    i = int(prompt.split("What is ")[1].split(" +")[0])
    return f"so \\boxed{{{2 * i if i % 2 else 99}}}"


def _stub_runner(out: Path, url: str, **kw: Any) -> Runner:
    gen = OpenAIGenerator(
        "embedded:smollm2-135m",
        base_urls=url,
        served_model="stub",
        max_retries=1,
        backoff_s=0.01,
        timeout_s=0.5,  # HANG: each try fails after half a second
        stall_timeout_s=0.5,
    )
    return Runner(gen, BestOfN(n=2), out, progress=False, concurrency=3, **kw)


async def test_a_problem_the_server_always_fails_is_its_error_record(tmp_path: Path) -> None:
    """Every server corpus case in one run: each is its problem's error record after its
    retries, every good problem is graded, a resume reruns none of them and retry_errors=true
    reruns exactly them. Before, a 500 or a timeout after retries stopped the whole run."""
    bad = [_problem(c) for c in SERVER_CASES]
    problems = [GOOD[0], *bad, *GOOD[1:]]
    with StubServer(_stub_answer, max_requests=300, lifetime_s=90, hang_s=10) as stub:
        summary = await _stub_runner(tmp_path, stub.base_url).run(problems)
        records = {r["id"]: r for r in _assert_clean_utf8_lines(tmp_path / RESULTS)}
        for case in SERVER_CASES:
            _assert_error_record(records[case["problem"]["id"]], case)
        _assert_good_finished(records, GOOD)
        assert summary["errors"] == len(SERVER_CASES) and summary["n"] == len(GOOD)
        asked = len(stub.requests)
        await _stub_runner(tmp_path, stub.base_url).run(problems)  # resume: nothing to rerun
        assert len(stub.requests) == asked
        summary = await _stub_runner(tmp_path, stub.base_url, retry_errors=True).run(problems)
        assert len(stub.requests) > asked and summary["errors"] == len(SERVER_CASES)
        assert len(read_results(tmp_path / RESULTS)) == len(problems)  # one line each


async def test_a_whole_server_outage_still_stops_the_run(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nobody listens: connection refused
    with pytest.raises(RunInterrupted, match="no OpenAI-compatible server answered"):
        await _stub_runner(tmp_path, url).run(GOOD)
    assert read_results(tmp_path / RESULTS) == []
