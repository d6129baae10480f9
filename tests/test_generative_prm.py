"""The RLHFlow generative PRM's P(+) is the exact two-way softmax over the `+`/`-` logits.

A scripted language model with a whole next-token distribution (128 character tokens) answers
both ways a backend can: top-k alternatives, or the logprobs of the ids asked for. The PRM must
use the latter, so labels outside the top 20 still count. The real engine is checked in
tests/test_judge.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from reasoning.cache import CachedGenerator, CallCache
from reasoning.types import Chain, Completion, Problem, Sampling
from verifiers.generative_prm import GenerativePRM

VOCAB = 128
PLUS, MINUS = ord("+"), ord("-")
PROBLEM = Problem("g", "What is 3 + 5?", "8")
CHAINS = [
    Chain(steps=("3 + 5 = 8.", "So the answer is \\boxed{8}.")),
    Chain(steps=("3 + 5 = 9, so \\boxed{9}.",)),
]

Logits = dict[int, float]


class _CharTokenizer:
    """One token per character; `merge` maps a string that becomes one token of its own."""

    def __init__(self, merge: dict[str, int] | None = None) -> None:
        self.merge = merge or {}

    def apply_chat_template(self, messages, tokenize, add_generation_prompt, **kw):  # noqa: ANN001
        return "".join(f"[{m['role']}]{m['content']}" for m in messages) + "[assistant]"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        out: list[int] = []
        i = 0
        while i < len(text):
            for piece, tid in self.merge.items():
                if text.startswith(piece, i):
                    out.append(tid)
                    i += len(piece)
                    break
            else:
                out.append(ord(text[i]))
                i += 1
        return out


def _log_softmax(logits: Logits) -> list[float]:
    full = [logits.get(t, 0.0) for t in range(VOCAB)]
    top = max(full)
    norm = top + math.log(sum(math.exp(x - top) for x in full))
    return [x - norm for x in full]


def _fillers(n: int, logit: float = 5.0) -> Logits:
    """`n` tokens ("A", "B", ...) more likely than anything else."""
    return {ord("A") + i: logit for i in range(n)}


class _ScriptedLM:
    """A generator whose next-token distribution is `logits_for(prompt)` over VOCAB tokens."""

    name = "scripted-lm"

    def __init__(
        self, logits_for: Callable[[str], Logits], tokenizer: _CharTokenizer | None = None
    ) -> None:
        self.logits_for = logits_for
        self.tokenizer = tokenizer or _CharTokenizer()
        self.calls: list[tuple[str, Sampling]] = []

    def render(self, problem: Problem, chain: Chain | None = None) -> str:
        return problem.question

    def logprobs(self, prompt: str) -> list[float]:
        return _log_softmax(self.logits_for(prompt))

    async def complete(self, prompt: str, sampling: Sampling) -> list[Completion]:
        self.calls.append((prompt, sampling))
        lps = self.logprobs(prompt)
        ranked = sorted(range(VOCAB), key=lambda t: -lps[t])
        top = by_id = None
        if sampling.logprob_token_ids:
            by_id = ({t: lps[t] for t in sampling.logprob_token_ids},)
        elif sampling.logprobs:
            top = ({chr(t): lps[t] for t in ranked[: sampling.logprobs]},)
        return [
            Completion(
                chr(ranked[0]),
                1,
                "length",
                prompt_tokens=len(self.tokenizer.encode(prompt)),
                top_logprobs=top,
                token_id_logprobs=by_id,
            )
        ]


def _top_k_reading(top: dict[str, float]) -> float:
    """What reading `+`/`-` out of the top-k alternatives gives (the former method)."""
    p, n = (math.exp(top[t]) if t in top else 0.0 for t in ("+", "-"))
    return 0.5 if p + n == 0 else p / (p + n)


def _exact(logits: Logits) -> float:
    lps = _log_softmax(logits)
    return math.exp(lps[PLUS]) / (math.exp(lps[PLUS]) + math.exp(lps[MINUS]))


async def _score_one(logits: Logits) -> tuple[float, _ScriptedLM]:
    gen = _ScriptedLM(lambda prompt: logits)
    scores = await GenerativePRM(generator=gen).score(PROBLEM, [Chain(steps=("3 + 5 = 8.",))])
    return scores[0][0], gen


async def test_minus_outside_the_top_20_no_longer_gives_one() -> None:
    logits = {**_fillers(19), PLUS: 4.5, MINUS: 1.0}  # "+" ranks 20th, "-" far below
    gen = _ScriptedLM(lambda prompt: logits)
    (former,) = await gen.complete("x", Sampling(temperature=0.0, max_tokens=1, logprobs=20))
    assert _top_k_reading(former.top_logprobs[0]) == 1.0  # the reported bug
    score, _ = await _score_one(logits)
    assert 0.0 < score < 1.0
    assert score == pytest.approx(1 / (1 + math.exp(1.0 - 4.5)), rel=1e-12)


async def test_both_labels_outside_the_top_20_no_longer_give_one_half() -> None:
    logits = {**_fillers(25), PLUS: 2.0, MINUS: 1.0}
    gen = _ScriptedLM(lambda prompt: logits)
    (former,) = await gen.complete("x", Sampling(temperature=0.0, max_tokens=1, logprobs=20))
    assert _top_k_reading(former.top_logprobs[0]) == 0.5  # the reported bug
    score, _ = await _score_one(logits)
    assert score == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-12)


@pytest.mark.parametrize(
    "logits",
    [
        {PLUS: 3.0, MINUS: -2.0},
        {**_fillers(40, 9.0), PLUS: -3.0, MINUS: 4.0},
        {PLUS: -60.0, MINUS: 30.0},  # P(+) ~ 1e-39: no underflow to a wrong 0.5
    ],
)
async def test_p_plus_is_the_exact_ratio_of_the_two_label_probabilities(logits: Logits) -> None:
    score, gen = await _score_one(logits)
    assert score == pytest.approx(_exact(logits), rel=1e-9)
    ((_, sampling),) = gen.calls
    # one temperature-0 token, the two label ids asked for by id, no top-k
    assert sampling.logprob_token_ids == (PLUS, MINUS) and sampling.logprobs is None
    assert sampling.temperature == 0.0 and sampling.max_tokens == 1


async def test_every_prompt_is_metered() -> None:
    def logits_for(prompt: str) -> Logits:  # a "9" anywhere makes the model say "-"
        return {PLUS: 1.0, MINUS: 3.0} if "9" in prompt else {PLUS: 2.0, MINUS: 0.5}

    gen = _ScriptedLM(logits_for)
    prm = GenerativePRM(generator=gen)
    scores = await prm.score(PROBLEM, CHAINS)
    assert [len(s) for s in scores] == [2, 1]
    assert scores[0] == [pytest.approx(_exact(logits_for("")))] * 2
    assert scores[1] == [pytest.approx(_exact(logits_for("9")))]
    # one call per step prefix; each reads its prompt and writes one token
    assert len(gen.calls) == 3
    assert scores.tokens == sum(len(p) + 1 for p, _ in gen.calls)
    prefixes = [CHAINS[0].steps[:1], CHAINS[0].steps, CHAINS[1].steps]
    assert [p for p, _ in gen.calls] == [prm.prompt(PROBLEM, s) for s in prefixes]


async def test_a_label_merged_into_the_assistant_header_is_refused() -> None:
    # this tokenizer reads "]+" as one token: the prompt's last token would not be followed
    # by the "+" token the reference scores
    tok = _CharTokenizer(merge={"]+": 120})
    prm = GenerativePRM(generator=_ScriptedLM(lambda p: {}, tokenizer=tok))
    with pytest.raises(ValueError, match="wrong position"):
        await prm.score(PROBLEM, CHAINS)
    multi = GenerativePRM(generator=_ScriptedLM(lambda p: {}))
    multi.positive = ("++",)  # two tokens
    with pytest.raises(ValueError, match="single token"):
        multi.label_ids  # noqa: B018


async def test_the_cache_keys_and_replays_the_label_logprobs(tmp_path: Path) -> None:
    def logits_for(prompt: str) -> Logits:
        return {**_fillers(30), PLUS: 1.0 + len(prompt) % 3, MINUS: 2.0}

    with CallCache(tmp_path / "cache.sqlite") as cache:
        inner = _ScriptedLM(logits_for)
        recorded = await GenerativePRM(generator=CachedGenerator(inner, cache, "record")).score(
            PROBLEM, CHAINS
        )
        replayer = _ScriptedLM(logits_for)
        player = CachedGenerator(replayer, cache, "replay")
        replayed = await GenerativePRM(generator=player).score(PROBLEM, CHAINS)
        assert replayer.calls == [] and list(replayed) == list(recorded)
        assert replayed.tokens == recorded.tokens
        # the label ids are part of the key: other labels are another call
        prompt, sampling = inner.calls[0]
        auto = CachedGenerator(inner, cache, "auto")
        assert (await auto.complete(prompt, sampling))[0].cached
        other = replace(sampling, logprob_token_ids=(PLUS,))
        assert not (await auto.complete(prompt, other))[0].cached
