"""Model-free confidence verifiers and the core logprob statistics they share with HyPER and RPC:
hand-computed scores, bad logprobs (the -9999 placeholder), and the real engine."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from evals.grading import Grader
from reasoning import Chain, Context, Problem
from reasoning.backends.vllm_engine import top_alternatives
from reasoning.logprobs import (
    min_group_confidence,
    self_certainty_score,
    tail_confidence,
    token_confidence,
    token_kl_from_uniform,
    top_probability,
    window_min_mean,
    window_min_score,
)
from reasoning.loop import run_sync
from reasoning.types import StepScores, Verifier
from search import BestOfN
from verifiers.confidence import (
    ConfidenceVerifier,
    MeanLogprob,
    SelfCertainty,
    WindowMinLogprob,
)

PROBLEM = Problem("c", "What is 3 + 5?", "8")
HALF = math.log(0.5)


def _chain(logprobs: list[float] | None, top: list[list[float]] | None = None, steps: int = 2):
    return Chain(
        steps=tuple(f"step {i}" for i in range(steps)),
        tokens=len(logprobs or ()),
        logprobs=None if logprobs is None else tuple(logprobs),
        top_logprobs=None if top is None else tuple(tuple(t) for t in top),
    )


def _score(verifier: object, chains: list[Chain]) -> StepScores:
    return run_sync(verifier.score(PROBLEM, chains))  # type: ignore[attr-defined]


def test_mean_logprob_is_the_geometric_mean_probability() -> None:
    out = _score(MeanLogprob(), [_chain([HALF] * 4), _chain([math.log(0.25), 0.0], steps=3)])
    assert isinstance(out, StepScores) and out.tokens == 0
    assert out[0] == pytest.approx([0.5, 0.5])  # same score for every step
    assert out[1] == pytest.approx([0.5] * 3)  # sqrt(0.25 * 1)


def test_window_min_finds_the_dip() -> None:
    lps = [math.log(0.9)] * 10 + [math.log(0.1)] * 2 + [math.log(0.9)] * 10
    # worst 4-token window holds both dips: exp((2 log 0.9 + 2 log 0.1) / 4) = sqrt(0.09)
    assert window_min_score(lps, window=4) == pytest.approx(0.3)
    mean = math.exp(sum(lps) / len(lps))
    assert window_min_score(lps, window=4) < mean
    # shorter than the window: the whole-sequence mean
    assert window_min_score(lps, window=100) == pytest.approx(mean)
    out = _score(WindowMinLogprob(window=4), [_chain(lps)])
    assert out[0] == pytest.approx([0.3, 0.3])
    with pytest.raises(ValueError, match="window"):
        WindowMinLogprob(window=0)


def test_self_certainty_peaked_beats_flat() -> None:
    flat = [[math.log(0.25)] * 4] * 3
    peaked = [[math.log(0.97), math.log(0.01), math.log(0.01), math.log(0.01)]] * 3
    assert self_certainty_score(flat) == pytest.approx(0.0, abs=1e-12)
    # KL(U||p) = -log 4 - mean(log p) for the renormalised top-4 (sums to 1 already here)
    kl = -math.log(4) - (math.log(0.97) + 3 * math.log(0.01)) / 4
    assert token_kl_from_uniform(peaked[0]) == pytest.approx(kl)
    assert self_certainty_score(peaked) == pytest.approx(1 - math.exp(-kl))
    # renormalisation: only relative values matter
    assert token_kl_from_uniform([v - 3.0 for v in peaked[0]]) == pytest.approx(kl)
    out = _score(SelfCertainty(), [_chain([HALF] * 3, flat), _chain([HALF] * 3, peaked)])
    assert out[0][0] == pytest.approx(0.0, abs=1e-12) and out[1][0] > 0.7


def test_non_finite_logprobs_are_ignored() -> None:
    bad = [HALF, math.nan, -math.inf, HALF, -9999.0, HALF]
    assert _score(MeanLogprob(), [_chain(bad)])[0][0] == pytest.approx(0.5)
    assert window_min_score(bad, window=2) == pytest.approx(0.5)
    top = [[math.log(0.5), math.log(0.5), -math.inf, math.nan]]  # two usable: flat
    assert self_certainty_score(top) == pytest.approx(0.0, abs=1e-12)
    assert token_kl_from_uniform([HALF, math.nan]) is None  # one usable value: no information
    # nothing usable at all: no evidence of confidence
    assert _score(MeanLogprob(), [_chain([math.nan, -math.inf])])[0][0] == 0.0
    assert self_certainty_score([[0.0]]) == 0.0


def test_the_placeholder_is_dropped_by_every_top_k_statistic() -> None:
    """A server that clamps -inf to -9999 gives the statistics of the values it did send."""
    sent = [[-0.1, -2.0, -9999.0], [-1.0, -9999.0, -9999.0], [-0.5, -1.5, -9999.5]]
    dropped = [[-0.1, -2.0], [-1.0], [-0.5, -1.5]]
    assert token_confidence(sent[0]) == pytest.approx(1.05)  # not (0.1 + 2 + 9999) / 3
    assert [token_confidence(t) for t in sent] == [token_confidence(t) for t in dropped]
    assert tail_confidence(sent, window=2) == tail_confidence(dropped, window=2)
    assert min_group_confidence(sent, 2) == pytest.approx(min_group_confidence(dropped, 2))
    assert token_confidence([-9999.0, math.nan]) is None
    assert top_probability([-9999.0, -math.inf]) == 0.0
    assert top_probability([HALF, -9999.0]) == pytest.approx(0.5)


@dataclass(frozen=True)
class _VllmLogprob:
    """The fields of vLLM's `Logprob` that the engine backend reads."""

    logprob: float
    rank: int
    decoded_token: str


# One position as vLLM returns it with logprobs=3: the top 3, plus the sampled token (id 7,
# rank 5) because it is outside them.
OUTSIDE = {
    1: _VllmLogprob(-0.5, 1, "a"),
    2: _VllmLogprob(-1.5, 2, "b"),
    3: _VllmLogprob(-2.0, 3, "c"),
    7: _VllmLogprob(-4.0, 5, "s"),
}


def test_token_confidence_averages_every_returned_entry_as_deepconf() -> None:
    """DeepConf's compute_confidence (facebookresearch/deepconf, deepconf/utils.py) averages
    all the entries vLLM returns at a position: k + 1 when the sampled token is outside the
    top k. `k` keeps only the k largest (the older reading)."""
    table = [-0.5, -1.5, -2.0, -4.0]
    assert token_confidence(table) == pytest.approx(8.0 / 4)
    assert token_confidence(table, k=3) == pytest.approx(4.0 / 3)
    assert tail_confidence([table], window=4) == pytest.approx(2.0)


def test_the_engine_backend_keeps_the_sampled_token_outside_the_top_k() -> None:
    """Both backends hand over every entry vLLM returns (vLLM's server sends the sampled token
    too): the engine used to drop it, so its confidence was the top-k mean."""
    texts, ids = top_alternatives((7,), [OUTSIDE], 3) or ((), ())
    assert ids == ((1, 2, 3, 7),)  # rank order, the sampled token last
    assert texts == ({"a": -0.5, "b": -1.5, "c": -2.0, "s": -4.0},)
    assert token_confidence(list(texts[0].values())) == pytest.approx(2.0)
    # a sampled token inside the top k is one of the k entries vLLM sends
    inside = {k: v for k, v in OUTSIDE.items() if k != 7}
    texts, ids = top_alternatives((2,), [inside], 3) or ((), ())
    assert ids == ((1, 2, 3),) and len(texts[0]) == 3
    assert top_alternatives((7,), [OUTSIDE], None) is None


def test_window_min_mean_of_a_hand_sequence() -> None:
    assert window_min_mean([3.0, 1.0, 2.0, 0.0, 4.0], 2) == pytest.approx(1.0)  # the pair (2, 0)
    assert window_min_mean([3.0, 1.0], 5) == pytest.approx(2.0)  # shorter: one window
    assert window_min_mean([], 3) is None
    with pytest.raises(ValueError, match="window"):
        window_min_mean([1.0], 0)


def test_missing_logprobs_name_the_setting() -> None:
    with pytest.raises(ValueError, match="search.top_logprobs"):
        _score(MeanLogprob(), [_chain(None)])
    with pytest.raises(ValueError, match="search.top_logprobs"):
        _score(WindowMinLogprob(), [_chain(None)])
    with pytest.raises(ValueError, match="search.top_logprobs"):
        _score(SelfCertainty(), [_chain([HALF], None)])


def test_facade_kinds_names_and_protocol() -> None:
    for kind in ("mean_logprob", "window_min", "self_certainty"):
        v = ConfidenceVerifier(kind, window=8)
        assert isinstance(v, Verifier)
        assert v.name == f"confidence:{kind}"
    for impl in (MeanLogprob(), WindowMinLogprob(), SelfCertainty()):
        assert isinstance(impl, Verifier)
    with pytest.raises(ValueError, match="mean_logprob.*window_min.*self_certainty"):
        ConfidenceVerifier("entropy")
    lps = [math.log(0.9)] * 6 + [math.log(0.1)] * 2
    assert _score(ConfidenceVerifier("window_min", window=2), [_chain(lps)])[0][0] == (
        pytest.approx(0.1)
    )


def test_config_builds_the_facade() -> None:
    from reasoning.build import build_verifier, compose_config

    v = build_verifier(compose_config(["verifier=confidence", "verifier.kind=self_certainty"]))
    assert isinstance(v, ConfidenceVerifier) and v.name == "confidence:self_certainty"


@pytest.mark.engine
def test_self_certainty_on_the_real_engine(engine) -> None:  # noqa: ANN001
    ctx = Context(PROBLEM, engine, verifier=ConfidenceVerifier("self_certainty"), judge=Grader())
    out = run_sync(
        BestOfN(n=4, max_tokens=48, top_logprobs=5, aggregate="weighted").run(PROBLEM, ctx)
    )
    assert len(out.chains) == 4 and out.ledger.verifier_calls == 4
    for c in out.chains:
        assert c.logprobs is not None and len(c.logprobs) == c.tokens
        assert c.top_logprobs is not None and len(c.top_logprobs) == c.tokens
        # the top 5, plus the sampled token where it is outside them (as vLLM's server sends)
        assert all(1 <= len(top) <= 6 for top in c.top_logprobs)
        # a sixth entry is the sampled token's, less likely than the five
        tops = zip(c.top_logprobs, c.logprobs, strict=True)
        assert all(len(top) <= 5 or lp == min(top) for top, lp in tops)
        assert c.scores and all(0.0 <= s <= 1.0 for s in c.scores)
        assert len(set(c.scores)) == 1  # one whole-chain score repeated per step
