"""RPC aggregation: Weibull-mixture reasoning pruning + perplexity consistency.

See docs/best-of-n.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from evals.grading import Grader
from reasoning import Chain, Context, Problem
from reasoning.loop import run_sync
from search import BestOfN
from search.aggregate import (
    aggregate,
    chain_probability,
    rpc_prune,
    rpc_select,
    select,
)
from search.weibull import WeibullMixture, fit_weibull_mixture
from tests.fakes import Reply, RuleGenerator, always, words
from verifiers.confidence import mean_logprob_score

PROBLEM = Problem("r", "What is 3 + 5?", "8")


def _rpc(answers: list[str | None], probs: list[float], texts: list[str] | None = None):
    texts = texts or [f"path {i}: \\boxed{{{a}}}" for i, a in enumerate(answers)]
    return run_sync(rpc_select(answers, texts, probs, Grader()))


def _components(m: WeibullMixture) -> list[tuple[float, float, float]]:
    comps = [(m.weight, m.shape1, m.scale1), (1 - m.weight, m.shape2, m.scale2)]
    return sorted(comps, key=lambda c: c[2])  # by scale: low component first


def test_weibull_fit_recovers_known_parameters() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([0.3 * rng.weibull(2.0, 1000), 0.8 * rng.weibull(8.0, 1000)])
    m = fit_weibull_mixture(x)
    assert m is not None
    (w_lo, k_lo, s_lo), (w_hi, k_hi, s_hi) = _components(m)
    assert w_lo == pytest.approx(0.5, abs=0.05) and w_hi == pytest.approx(0.5, abs=0.05)
    assert k_lo == pytest.approx(2.0, rel=0.15) and s_lo == pytest.approx(0.3, rel=0.1)
    assert k_hi == pytest.approx(8.0, rel=0.15) and s_hi == pytest.approx(0.8, rel=0.1)
    # a (local) maximum of the likelihood: nudging any parameter lowers it
    base = float(np.sum(np.logaddexp(*m.log_joint(x).T)))
    assert base == pytest.approx(m.loglik)
    params = list(m.params())
    for j in range(5):
        for step in (0.98, 1.02):
            nudged = params.copy()
            nudged[j] *= step
            other = WeibullMixture(*nudged, loglik=0.0, iterations=0)  # type: ignore[misc]
            assert float(np.sum(np.logaddexp(*other.log_joint(x).T))) < base


def test_fit_respects_bounds_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    x = 0.6 * rng.weibull(4.0, 300)  # one component: the weight hits its bound
    a, b = fit_weibull_mixture(x), fit_weibull_mixture(x)
    assert a is not None and a == b
    assert 0.2 <= a.weight <= 0.8
    assert min(a.shape1, a.scale1, a.shape2, a.scale2) >= 0.01
    assert fit_weibull_mixture([0.5]) is None


def test_pruning_drops_low_outliers_only() -> None:
    p = [0.9, 0.88, 0.91, 0.2, 0.87, 0.89, 0.92, 0.9]
    pruning = rpc_prune(p)
    assert pruning.skipped is None and pruning.mixture is not None
    assert pruning.keep == [i != 3 for i in range(8)]
    # the highest path always survives (it is never below the mean)
    assert pruning.keep[int(np.argmax(p))]


def test_pruning_guards() -> None:
    few = rpc_prune([0.1, 0.9, 0.5])
    assert few.keep == [True] * 3 and few.skipped == "fewer than 4 paths"
    flat = rpc_prune([0.4] * 6)
    assert flat.keep == [True] * 6 and "constant" in (flat.skipped or "")
    assert rpc_prune([]).keep == []


def test_perplexity_consistency_counts_identical_texts_once() -> None:
    # 3 paths: below the pruning guard, so only PC acts. "7" is written twice, word for word.
    texts = ["so \\boxed{7}", "so \\boxed{7}", "thus \\boxed{8}"]
    sel = _rpc(["7", "7", "8"], [0.5, 0.5, 0.6], texts)
    assert sel.answer == "8" and sel.index == 2
    assert sel.votes == {"7": 0.5, "8": 0.6}
    # distinct texts do add up
    sel = _rpc(["7", "7", "8"], [0.5, 0.5, 0.6])
    assert sel.answer == "7" and sel.votes == {"7": 1.0, "8": 0.6}


def test_rpc_beats_majority_with_probability_mass() -> None:
    answers = ["7", "7", "7", "8", "8"]
    probs = [0.3, 0.32, 0.31, 0.9, 0.92]
    assert select(answers, [0, 0, 0, 1, 1], "majority").answer == "7"
    sel = _rpc(answers, probs)
    assert sel.answer == "8" and sel.index == 3
    assert sel.details["rpc"]["pruned"] == [0, 1, 2]


def test_pruning_changes_the_answer() -> None:
    # Seven low paths say "7": their raw mass (2.11) beats the two confident "8"s (1.81),
    # but all seven sit in the low Weibull component below the mean, so pruning removes them.
    probs = [0.3, 0.31, 0.29, 0.32, 0.3, 0.28, 0.31, 0.9, 0.91]
    answers = ["7"] * 7 + ["8"] * 2
    assert sum(probs[:7]) > sum(probs[7:])
    sel = _rpc(answers, probs)
    info = sel.details["rpc"]
    assert sel.answer == "8" and info["pruned"] == list(range(7))
    assert info["pruning_skipped"] is None and info["mixture"]["weight"] >= 0.2
    assert sel.votes == {"7": 0.0, "8": pytest.approx(1.81)}
    # determinism: same inputs, same everything
    assert _rpc(answers, probs) == sel


def test_ties_and_unanswered_paths() -> None:
    sel = _rpc(["4", "5"], [0.5, 0.5])  # tie: first seen wins
    assert sel.answer == "4" and sel.index == 0
    sel = _rpc([None, "3"], [0.99, 0.1])  # no answer never wins
    assert sel.answer == "3" and sel.index == 1
    empty = _rpc([None, None], [0.5, 0.6])
    assert empty.answer is None and empty.index is None and "rpc" in empty.details
    # pruning would keep only unanswered paths: vote over all rather than give no answer
    sel = _rpc(["7", "7", "7", None, None], [0.3, 0.32, 0.31, 0.9, 0.92])
    assert sel.answer == "7" and "no answered path" in sel.details["rpc"]["pruning_skipped"]


def _lp_chain(text: str, p: float, n: int = 4) -> Chain:
    return Chain(steps=(text,), tokens=n, finished=True, logprobs=(math.log(p),) * n)


def test_aggregate_reads_chain_logprobs() -> None:
    chains = [_lp_chain(f"{i} \\boxed{{7}}", 0.3 + 0.01 * i) for i in range(3)]
    chains += [_lp_chain("\\boxed{8}", 0.9), _lp_chain("so \\boxed{8}", 0.92)]
    assert chain_probability(chains[3]) == pytest.approx(0.9)
    assert chain_probability(chains[3]) == mean_logprob_score(chains[3].logprobs or ())
    sel = run_sync(aggregate(chains, Grader(), "rpc"))
    assert sel.answer == "8" and sel.details["rpc"]["pruned"] == [0, 1, 2]
    with pytest.raises(ValueError, match="search.top_logprobs"):
        run_sync(aggregate([Chain(steps=("\\boxed{1}",))], Grader(), "rpc"))
    with pytest.raises(ValueError, match="aggregate"):
        select(["1"], [0], "rpc", [0.5])


def _logprob_generator(samples: list[tuple[str, float]]) -> RuleGenerator:
    """Returns fixed (text, p) samples, sample k the k-th, with per-token logprobs log p."""
    replies = [Reply(text, logprob=math.log(p)) for text, p in samples]
    return RuleGenerator([(always, replies)], unit=words, template="{question}")


def test_best_of_n_rpc_reports_pruning() -> None:
    with pytest.raises(ValueError, match="search.top_logprobs"):
        BestOfN(aggregate="rpc")
    assert not BestOfN(aggregate="rpc", top_logprobs=0).verifier_use
    assert BestOfN(aggregate="weighted").verifier_use
    samples = [(f"try {i} \\boxed{{7}}", 0.3 + 0.01 * i) for i in range(3)]
    samples += [("\\boxed{8}", 0.9), ("yes \\boxed{8}", 0.92)]
    ctx = Context(PROBLEM, _logprob_generator(samples), judge=Grader())  # no verifier needed
    out = run_sync(BestOfN(n=5, top_logprobs=0, aggregate="rpc").run(PROBLEM, ctx))
    assert out.answer == "8" and out.details["aggregate"] == "rpc"
    assert out.details["rpc"]["pruned"] == [0, 1, 2]
    assert out.details["votes"]["8"] == pytest.approx(1.82)
    assert out.ledger.verifier_calls == 0
    assert out.tree.graph.nodes[out.chain.id]["status"] == "selected"


def test_rpc_on_a_server_without_logprobs_says_the_backend_returned_none() -> None:
    """search.top_logprobs=0 is set and the server ignores it (issue 19): the error must not
    tell the user to set what is already set; it names the chain, the key and the backend."""
    samples = [("\\boxed{8}", 0.9), ("so \\boxed{8}", 0.8)]
    gen = RuleGenerator([(always, [Reply(t) for t, _ in samples])], unit=words)
    ctx = Context(PROBLEM, gen, judge=Grader())
    with pytest.raises(ValueError) as err:
        run_sync(BestOfN(n=2, top_logprobs=0, aggregate="rpc").run(PROBLEM, ctx))
    message = str(err.value)
    assert "the backend returned none although search.top_logprobs asked for them" in message
    assert "has none" in message and "backend=vllm" in message
    assert not message.endswith("set search.top_logprobs=0")


@pytest.mark.engine
def test_rpc_on_the_real_engine(engine) -> None:  # noqa: ANN001
    ctx = Context(PROBLEM, engine, judge=Grader())
    out = run_sync(BestOfN(n=6, top_logprobs=0, aggregate="rpc", max_tokens=48).run(PROBLEM, ctx))
    assert len(out.chains) == 6
    assert out.answer is None or isinstance(out.answer, str)
    info = out.details["rpc"]
    assert len(info["probabilities"]) == 6 and all(0.0 <= p <= 1.0 for p in info["probabilities"])
    assert all(0 <= i < 6 for i in info["pruned"]) and len(info["pruned"]) < 6
    assert info["pruning_skipped"] is None or isinstance(info["pruning_skipped"], str)
    assert all(c.logprobs is not None and len(c.logprobs) == c.tokens for c in out.chains)
