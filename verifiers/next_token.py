"""P(label) from a causal LM's next-token distribution: the core of judges and generative PRMs.

One temperature-0 token is generated and the backend returns the log-probabilities of the
label tokens themselves at that position (`Sampling.logprob_token_ids`), whatever their rank:

    P(positive) = sum_{t in positive} p(t) / (sum_{t in positive} p(t) + sum_{t in negative} p(t))

With one token a side (RLHFlow's `+`/`-`) this is exactly the reference code's two-way softmax
over the two logits: the log-softmax normaliser cancels in the ratio. Reading the labels out of
the top-k alternatives instead gives 1.0 whenever the negative label falls outside the top k,
and nothing at all when both do.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence

from reasoning.generators import shared_generator
from reasoning.types import Chain, Generator, Problem, Sampling, StepScores

UNDECIDED = 0.5  # both labels have probability 0 (logprob -inf): no evidence either way
MAX_LABEL_TOKENS = 128  # vLLM's cap on `logprob_token_ids` per request


class LabelLogprobsMissingError(RuntimeError):
    """The backend did not return the logprobs of the label tokens it was asked for."""


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values, default=-math.inf)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def positive_probability(
    logprobs: Mapping[int, float], positive: Iterable[int], negative: Iterable[int]
) -> float:
    """P(positive) against P(negative) from the label tokens' logprobs, in float64."""
    pos = _logsumexp([logprobs[t] for t in positive])
    neg = _logsumexp([logprobs[t] for t in negative])
    if pos == neg == -math.inf:
        return UNDECIDED
    delta = neg - pos
    if delta > 700:  # exp overflow: the positive labels have ~0 probability
        return 0.0
    return 1.0 / (1.0 + math.exp(delta))


def single_token(tokenizer: object, text: str) -> int | None:
    """The id of `text` when the tokenizer encodes it as exactly one token, else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
    return int(ids[0]) if len(ids) == 1 else None


def label_variants(tokenizer: object, labels: Iterable[str]) -> tuple[int, ...]:
    """The ids of every single-token spelling of each label: as written, lower, Capitalized and
    UPPER case, each with and without a leading space ("yes" gives "yes", " Yes", ...)."""
    out: set[int] = set()
    for label in labels:
        word = label.strip()
        found = False
        for cased in dict.fromkeys((word, word.lower(), word.capitalize(), word.upper())):
            for text in (cased, " " + cased):
                tid = single_token(tokenizer, text)
                if tid is not None:
                    out.add(tid)
                    found = True
        if not found:
            raise ValueError(f"no spelling of the label {label!r} is a single token")
    return tuple(sorted(out))


async def label_probability(
    generator: Generator,
    prompt: str,
    positive: Iterable[int],
    negative: Iterable[int],
) -> tuple[float, int]:
    """(P(positive label tokens | positive or negative), tokens read and written), from the
    exact logprobs of the label token ids for the token after `prompt`."""
    pos, neg = tuple(positive), tuple(negative)
    ids = tuple(sorted(set(pos) | set(neg)))
    sampling = Sampling(temperature=0.0, top_p=1.0, max_tokens=1, n=1, logprob_token_ids=ids)
    (completion,) = await generator.complete(prompt, sampling)
    tokens = completion.prompt_tokens + completion.tokens
    scored = completion.token_id_logprobs[0] if completion.token_id_logprobs else {}
    missing = [t for t in ids if t not in scored]
    if missing:
        raise LabelLogprobsMissingError(
            f"generator {getattr(generator, 'name', generator)!r} returned no logprob for the "
            f"label token ids {missing}: its backend must honour Sampling.logprob_token_ids "
            "(vLLM's `logprob_token_ids`, in-process or through its OpenAI-compatible server)"
        )
    return positive_probability(scored, pos, neg), tokens


class NextTokenVerifier:
    """Base of verifiers that read P(label) off a causal LM served by a generator backend.

    The model comes either as a ready `generator` or as a `backend` config (built lazily and
    shared through the core's `reasoning.generators`, so a judge on the policy's own model
    reuses its engine and a replayed run never starts it). The generator must expose its HF
    `tokenizer` for the chat template and the label token ids. One generator call per prompt:
    its prompt tokens and the one generated token are what `StepScores.tokens` meters.
    """

    name = "next-token"
    positive: tuple[str, ...] = ("yes",)
    negative: tuple[str, ...] = ("no",)

    def __init__(
        self,
        backend: object | None = None,
        *,
        generator: Generator | None = None,
    ) -> None:
        if backend is None and generator is None:
            raise ValueError(f"{type(self).__name__} needs a generator or a backend config")
        self._backend = backend
        self._generator = generator
        self._label_ids: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = shared_generator(self._backend)
        return self._generator

    @property
    def tokenizer(self) -> object:
        tokenizer = getattr(self.generator, "tokenizer", None)
        if tokenizer is None:
            raise TypeError(f"{self.name} needs a generator with a `tokenizer` (chat template)")
        return tokenizer

    def label_token_ids(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(positive ids, negative ids): every single-token spelling of the labels."""
        return (
            label_variants(self.tokenizer, self.positive),
            label_variants(self.tokenizer, self.negative),
        )

    @property
    def label_ids(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if self._label_ids is None:
            pos, neg = self.label_token_ids()
            if both := set(pos) & set(neg):
                raise ValueError(f"{self.name}: token ids {sorted(both)} count as both labels")
            if len(pos) + len(neg) > MAX_LABEL_TOKENS:
                raise ValueError(f"{self.name}: more than {MAX_LABEL_TOKENS} label tokens")
            self._label_ids = (pos, neg)
        return self._label_ids

    async def probabilities(self, prompts: list[str]) -> tuple[list[float], int]:
        """P(positive) for each prompt, all requests in flight together; plus total tokens."""
        pos, neg = self.label_ids
        results = await asyncio.gather(
            *(label_probability(self.generator, p, pos, neg) for p in prompts)
        )
        return [p for p, _ in results], sum(t for _, t in results)

    def prompt(self, problem: Problem, steps: tuple[str, ...]) -> str:
        raise NotImplementedError

    async def score_prefixes(self, problem: Problem, chains: list[Chain]) -> StepScores:
        """One question per step prefix of every chain: a per-step (process) score."""
        prompts = [
            self.prompt(problem, c.steps[:k]) for c in chains for k in range(1, len(c.steps) + 1)
        ]
        probs, tokens = await self.probabilities(prompts)
        out: list[list[float]] = []
        for chain in chains:
            out.append(probs[: len(chain.steps)])
            probs = probs[len(chain.steps) :]
        return StepScores(out, tokens=tokens)
