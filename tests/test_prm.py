"""PoolingPRM on tiny random-init PRMs: one in-process engine and one vLLM server per module.

The tiny checkpoints (tests/tiny_models.py) have the real architectures and marker tokens but
random weights, so the tests check plumbing, not judgement: counts, ranges, order under
batching, in-process == HTTP, truncation, and that Math-Shepherd scores are P(+) of the LM.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from reasoning.prompts import SYSTEM_PROMPTS
from reasoning.steps import collapse_steps, whole_prefix
from reasoning.types import Chain, Problem, StepScores, Verifier
from tests.servers import ServerHandle, start_vllm_server
from tests.tiny_models import build_tiny_prm, build_tiny_shepherd
from verifiers.prm import (
    QWEN_SYSTEM_PROMPT,
    MathShepherdFormat,
    MicroBatcher,
    PoolingPRM,
    QwenPRMFormat,
)

CONF = Path(__file__).resolve().parent.parent / "conf" / "verifier"
MAX_LEN = 512  # small, so that the truncation test needs only a modest chain
DTYPE = "bfloat16"  # "auto" runs the float32 tiny checkpoint in float16: 4x slower on CPU
PROBLEMS = [
    Problem(id="p1", question="What is 3 + 4?"),
    Problem(id="p2", question="Compute 12 * 7."),
    Problem(id="p3", question="Solve for x: x - 5 = 20."),
    Problem(id="p4", question="What is the sum of 25 and 59?"),
]
THREE = Chain(steps=("3 + 4 = 7", "So x = 7.", "The answer is \\boxed{7}."))


def _chains() -> list[tuple[Problem, Chain]]:
    """20 chains over 4 problems, of 1 to 4 steps, all different."""
    out = []
    for i in range(20):
        problem = PROBLEMS[i % 4]
        steps = tuple(f"Step {k + 1}: {i} + {k} = {i + k}" for k in range(1 + i % 4))
        out.append((problem, Chain(steps=steps)))
    return out


@pytest.fixture(scope="session")
def tiny_prm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_prm(tmp_path_factory.mktemp("tiny-prm"))


@pytest.fixture(scope="session")
def tiny_shepherd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_shepherd(tmp_path_factory.mktemp("tiny-shepherd"))


@pytest.fixture(scope="module")
def prm(tiny_prm_dir: Path) -> Iterator[PoolingPRM]:
    verifier = PoolingPRM(str(tiny_prm_dir), max_model_len=MAX_LEN, batch_size=16, dtype=DTYPE)
    verifier.start()
    yield verifier
    verifier.close()


@pytest.fixture(scope="module")
def server(tiny_prm_dir: Path, prm: PoolingPRM) -> Iterator[ServerHandle]:
    handle = start_vllm_server(str(tiny_prm_dir), extra_args=prm.server_args(), timeout_s=300)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
async def http_prm(tiny_prm_dir: Path, server: ServerHandle) -> AsyncIterator[PoolingPRM]:
    verifier = PoolingPRM(
        str(tiny_prm_dir),
        backend="http",
        base_url=server.base_url,
        max_model_len=MAX_LEN,
        batch_size=16,
        dtype=DTYPE,
        max_retries=1,
        backoff_s=0.1,
        request_timeout_s=120,
    )
    yield verifier
    await verifier.aclose()


# -- no engine -----------------------------------------------------------------------------


def test_qwen_format_renders_the_chatml_prompt() -> None:
    rendered = QwenPRMFormat().render("What is 3 + 4?", ["3 + 4 = 7", "The answer is 7."])
    assert rendered.text == (
        f"<|im_start|>system\n{QWEN_SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n"
        "<|im_start|>assistant\n3 + 4 = 7<extra_0>The answer is 7.<extra_0><|im_end|>\n"
    )
    assert rendered.solution == "3 + 4 = 7<extra_0>The answer is 7.<extra_0>"
    assert rendered.n_steps == 2


def test_qwen_format_uses_the_prm_tokenizer_template(tiny_prm_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_prm_dir)
    steps = ["a <extra_0>b", "c"]  # a marker inside a step would add a score: dropped
    ours = QwenPRMFormat().render("Q", steps, tokenizer).text
    assert ours == QwenPRMFormat().render("Q", steps).text
    assert ours.count("<extra_0>") == 2
    assert "a b<extra_0>c<extra_0><|im_end|>" in ours


def test_math_shepherd_format_renders_plain_text() -> None:
    # The layout of HF search-and-learn's `MathShepherd.score` (src/sal/models/reward_models.py):
    # prompt = system_prompt + "\n" + question + "\n"; the solution (steps joined by "\n\n")
    # gets " ки" before every "\n\n" and at its end; the input is f"{prompt} {solution}".
    # The system prompt is search-and-learn's default `Config.system_prompt` (== "steps").
    rendered = MathShepherdFormat().render("What is 3 + 4?", ["3 + 4 = 7", "The answer is 7"])
    assert rendered.text == (
        f"{SYSTEM_PROMPTS['steps']}\nWhat is 3 + 4?\n 3 + 4 = 7 ки\n\nThe answer is 7 ки"
    )
    assert rendered.head == f"{SYSTEM_PROMPTS['steps']}\nWhat is 3 + 4?\n "
    assert rendered.solution == "3 + 4 = 7 ки\n\nThe answer is 7 ки"
    # a tag inside a step would add a score: dropped
    plain = MathShepherdFormat(system_prompt="S").render("Q", ["a ки", "b"])
    assert plain.text == "S\nQ\n a  ки\n\nb ки" and plain.n_steps == 2


def test_whole_prefix_collapses_the_chain_into_one_step() -> None:
    assert collapse_steps(["a", "b\n\nc", "d"]) == ("a\nb\nc\nd",)
    rendered = QwenPRMFormat().render("Q", collapse_steps(["a", "b"]))
    assert rendered.solution == "a\nb<extra_0>"


def test_is_a_verifier_without_starting_anything() -> None:
    prm = PoolingPRM("Qwen/Qwen2.5-Math-PRM-7B")  # a hub id: nothing is fetched or loaded
    assert isinstance(prm, Verifier)
    assert prm._tokenizer is None and prm._engine is None
    with pytest.raises(ValueError, match="base_url"):
        PoolingPRM("Qwen/Qwen2.5-Math-PRM-7B", backend="http")


@pytest.mark.parametrize("name", ["qwen2.5-math-prm-7b", "math-shepherd-mistral-7b"])
def test_configs_instantiate(name: str) -> None:
    prm = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert isinstance(prm, PoolingPRM) and isinstance(prm, Verifier)
    assert prm._engine is None


def test_step_tag_defaults_to_the_format_token(tiny_prm_dir: Path) -> None:
    prm = PoolingPRM(str(tiny_prm_dir))
    assert prm.step_tag_id == prm.tokenizer.convert_tokens_to_ids("<extra_0>")
    wrong = PoolingPRM(str(tiny_prm_dir), step_tag_id=prm.step_tag_id - 1)
    with pytest.raises(ValueError, match="step markers"):
        wrong.encode("Q", ["a", "b"])


def test_truncation_keeps_the_question(tiny_prm_dir: Path) -> None:
    prm = PoolingPRM(str(tiny_prm_dir), max_model_len=120)
    question = "What is the sum of 25 and 59?"
    steps = [f"Step {k}: {k} + 25 = {k + 25}, so the sum grows." for k in range(30)]
    encoded = prm.encode(question, steps)
    assert len(encoded.ids) <= 120
    assert encoded.n_steps == 30 and 0 < encoded.n_visible < 30
    text = prm.tokenizer.decode(encoded.ids)
    assert question in text and QWEN_SYSTEM_PROMPT in text
    assert text.endswith(f"{steps[-1]}<extra_0><|im_end|>\n")
    assert steps[0] not in text
    with pytest.raises(ValueError, match="question alone"):
        prm.encode(question * 40, steps)


async def test_micro_batcher_merges_and_orders() -> None:
    calls: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0.01)
        return [10 * i for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, batch_size=4, wait_s=0.005)
    results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(10)))
    assert results == [[10 * i, 10 * (i + 100)] for i in range(10)]
    assert max(len(c) for c in calls) == 4 and sum(len(c) for c in calls) == 20
    assert await batcher.submit([7]) == [70]  # a lone item goes out after wait_s


async def test_micro_batcher_failure_reaches_every_caller() -> None:
    async def run(items: list[int]) -> list[int]:
        raise OSError("engine down")

    batcher: MicroBatcher[int, int] = MicroBatcher(run, batch_size=8, wait_s=0.001)
    outcomes = await asyncio.gather(
        *(batcher.submit([i]) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, OSError) for o in outcomes)


# -- in-process engine ---------------------------------------------------------------------


@pytest.mark.engine
async def test_one_score_per_step_in_range(prm: PoolingPRM) -> None:
    scores = await prm.score(PROBLEMS[0], [THREE, Chain(steps=("7",)), Chain()])
    assert isinstance(scores, StepScores)
    assert [len(s) for s in scores] == [3, 1, 0]
    assert all(0.0 <= x <= 1.0 for s in scores for x in s)
    assert len(set(scores[0])) == 3  # random weights, but not constant
    assert scores.tokens == sum(
        len(prm.encode(PROBLEMS[0].question, c.steps).ids)
        for c in [
            THREE,
            Chain(steps=("7",)),
        ]
    )


@pytest.mark.engine
async def test_whole_prefix_gives_one_score_from_the_same_engine(prm: PoolingPRM) -> None:
    whole = [whole_prefix(THREE), whole_prefix(Chain(steps=("7",)))]
    scores = await prm.score(PROBLEMS[0], whole)
    assert [len(s) for s in scores] == [1, 1]
    assert 0.0 <= scores[0][0] <= 1.0
    # a one-step chain is the same prompt either way
    single = await prm.score(PROBLEMS[0], [Chain(steps=("7",))])
    assert scores[1][0] == pytest.approx(single[0][0], abs=1e-5)


@pytest.mark.engine
async def test_concurrent_chains_are_batched_and_matched(prm: PoolingPRM) -> None:
    pairs = _chains()
    alone = [(await prm.score(p, [c]))[0] for p, c in pairs]
    before = len(prm.batch_sizes)
    together = await asyncio.gather(*(prm.score(p, [c]) for p, c in pairs))
    sizes = prm.batch_sizes[before:]
    assert sum(sizes) == 20 and max(sizes) > 1  # merged into engine batches
    for (_, chain), one, batched in zip(pairs, alone, together, strict=True):
        assert len(batched[0]) == len(chain.steps)
        assert batched[0] == pytest.approx(one, abs=1e-5)
    # distinct chains give distinct scores, so a mix-up would have been caught
    assert len({round(s[-1], 6) for s in alone}) > 10


@pytest.mark.engine
async def test_long_chain_is_left_truncated_and_still_scored(prm: PoolingPRM) -> None:
    steps = tuple(f"Step {k}: {k} + 25 = {k + 25}, so the sum grows." for k in range(80))
    scores = (await prm.score(PROBLEMS[3], [Chain(steps=steps)]))[0]
    visible = prm.encode(PROBLEMS[3].question, steps).n_visible
    assert len(scores) == 80 and 0 < visible < 80
    assert scores[: 80 - visible] == [1.0] * (80 - visible)  # unseen steps: neutral
    assert all(0.0 <= x <= 1.0 for x in scores)


@pytest.mark.engine
async def test_math_shepherd_scores_are_p_plus_of_the_lm(tiny_shepherd_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    prm = PoolingPRM(
        str(tiny_shepherd_dir), format="math_shepherd", max_model_len=MAX_LEN, dtype="float32"
    )  # float32: with "auto", vLLM on CPU runs a float32 checkpoint in float16
    try:
        scores = await prm.score(PROBLEMS[0], [THREE])
        encoded = prm.encode(PROBLEMS[0].question, THREE.steps)
    finally:
        prm.close()
    assert len(scores[0]) == 3
    model = AutoModelForCausalLM.from_pretrained(tiny_shepherd_dir, dtype=torch.float32)
    plus, minus = prm.tokenizer.convert_tokens_to_ids(["Ġ+", "Ġ-"])
    with torch.no_grad():
        logits = model(torch.tensor([encoded.ids])).logits[0]
    tags = [i for i, t in enumerate(encoded.ids) if t == prm.step_tag_id]
    expected = torch.softmax(logits[tags][:, [plus, minus]].double(), dim=-1)[:, 0]
    assert scores[0] == pytest.approx(expected.tolist(), abs=1e-4)


# -- HTTP server ---------------------------------------------------------------------------


@pytest.mark.server
async def test_http_matches_inprocess(prm: PoolingPRM, http_prm: PoolingPRM) -> None:
    chains = [THREE, Chain(steps=("7",)), Chain()]
    local = await prm.score(PROBLEMS[0], chains)
    remote = await http_prm.score(PROBLEMS[0], chains)
    assert [len(s) for s in remote] == [3, 1, 0]
    assert remote.tokens == local.tokens
    for a, b in zip(local, remote, strict=True):
        assert b == pytest.approx(a, abs=1e-4)


@pytest.mark.server
async def test_http_concurrent_chains_match(prm: PoolingPRM, http_prm: PoolingPRM) -> None:
    pairs = _chains()
    local = await asyncio.gather(*(prm.score(p, [c]) for p, c in pairs))
    remote = await asyncio.gather(*(http_prm.score(p, [c]) for p, c in pairs))
    assert sum(http_prm.batch_sizes) == 20 and max(http_prm.batch_sizes) > 1
    for a, b in zip(local, remote, strict=True):
        assert b[0] == pytest.approx(a[0], abs=1e-4)
