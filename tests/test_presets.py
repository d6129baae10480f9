"""The paper presets (`conf/experiment/`, `reason +experiment=NAME`) hold the papers' settings.

Every preset is composed as `reason` would compose it (no engine, no model download) and its
values are compared with the table below, written from the papers and their released code:
policy, PRM, N, step cap, token cap, system prompt, temperature, top-p, lookahead, step
reduction, vote, seed, dataset, and any further key a method needs (a thread strategy's, a
trimmer's, a vote's). The policy and an in-process PRM must also fit on one GPU together.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import yaml
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from evals.validation import validate_config
from reasoning.build import compose_config, instantiate_group
from reasoning.prompts import SYSTEM_PROMPTS
from tests.conftest import REPO

EXPERIMENTS = REPO / "conf" / "experiment"
SEARCH_CONFS = REPO / "conf" / "search"

# policies and PRMs, as hub ids
LLAMA_1B = "meta-llama/Llama-3.2-1B-Instruct"
LLAMA_3B = "meta-llama/Llama-3.2-3B-Instruct"
LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
QWEN_1_5B = "Qwen/Qwen2.5-Math-1.5B-Instruct"
QWEN_7B = "Qwen/Qwen2.5-Math-7B-Instruct"
DEEPSEEK_RL = "deepseek-ai/deepseek-math-7b-rl"
S1_32B = "simplescaling/s1-32B"
QWEN3_8B = "Qwen/Qwen3-8B"
APR_COUNTDOWN = "Parallel-Reasoning/llama-apr_cond10_grpo"
QWQ_32B = "Qwen/QwQ-32B"
QWEN3_30B_A3B = "Qwen/Qwen3-30B-A3B"
DEEPSEEK_R1_8B = "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B"
QWEN_PRM = "Qwen/Qwen2.5-Math-PRM-7B"
RLHFLOW_PRM = "RLHFlow/Llama3.1-8B-PRM-Deepseek-Data"

# the policy's and the PRM's shares of one GPU may add up to this much, no more
ONE_GPU = 0.9


@dataclass(frozen=True)
class Paper:
    """One headline setting. `tokens` is the cap per step for step-level searches and per
    sample (or rollout context) for best-of-N and threads; None in a field means the
    controller has no such key."""

    search: str  # the conf/search option
    model: str
    prm: str | None
    n: int | None
    max_steps: int | None
    tokens: int | None
    prompt: str
    temperature: float
    seed: int
    reduction: str | None = None
    lookahead: int | None = None
    aggregate: str | None = None
    width: int | None = None
    passes: int | None = None
    # the reference code's choice where ours differs by default (docs/particle-filtering.md,
    # docs/beam-and-dvts.md): key -> value
    reference: tuple[tuple[str, Any], ...] = ()
    top_p: float = 1.0
    dataset: str = "math500"
    # further settings by their full config key (a strategy's, a trimmer's, a vote's, the
    # engine context): "search.strategy.prompt" -> "raw"
    settings: tuple[tuple[str, Any], ...] = ()


def _pf(search: str, model: str, **kw: Any) -> Paper:
    """The PF paper's Table 1 (Puri et al. 2025): Qwen2.5-Math-PRM-7B with model aggregation,
    a budget of 64 generations, 2048-token steps and samples, search-and-learn's step prompt
    for every policy, T = 0.8, seed 96 in the released scripts."""
    step_level = search != "best_of_n"
    base: dict[str, Any] = dict(
        prm=QWEN_PRM,
        n=64,
        max_steps=40 if step_level else None,
        tokens=2048,
        prompt="steps",
        temperature=0.8,
        seed=96,
        reduction="model",
    )
    return Paper(search, model, **{**base, **kw})


def _sal(search: str, model: str, **kw: Any) -> Paper:
    """Search-and-learn's recipe (HF blog): the RLHFlow PRM, N = 16 of the sweep 4..256,
    M = 4, 40 iterations, 2048 tokens, T = 0.8, agg_strategy last, its config's lookahead 1,
    seeds 0-4."""
    step_level = search != "best_of_n"
    base: dict[str, Any] = dict(
        prm=RLHFLOW_PRM,
        n=16,
        max_steps=40 if step_level else None,
        tokens=2048,
        prompt="steps",
        temperature=0.8,
        seed=0,
        reduction="last",
        lookahead=1 if step_level else None,
        width=4 if step_level else None,
    )
    return Paper(search, model, **{**base, **kw})


BF16 = (("reward_precision", "bf16"),)
PF_DVTS = dict(lookahead=1, width=4, aggregate="best_score")
PF_WBON = dict(aggregate="weighted")

PAPERS: dict[str, Paper] = {
    # particle filtering, Table 1: PF, DVTS and weighted best-of-N at 64 generations
    "pf-llama-3.2-1b": _pf("particle_filter", LLAMA_1B, reference=BF16),
    "pf-llama-3.1-8b": _pf("particle_filter", LLAMA_8B, reference=BF16),
    "pf-qwen2.5-math-1.5b": _pf("particle_filter", QWEN_1_5B, reference=BF16),
    "pf-qwen2.5-math-7b": _pf("particle_filter", QWEN_7B, reference=BF16),
    "pf-dvts-llama-3.2-1b": _pf("dvts", LLAMA_1B, **PF_DVTS),
    "pf-dvts-llama-3.1-8b": _pf("dvts", LLAMA_8B, **PF_DVTS),
    "pf-dvts-qwen2.5-math-1.5b": _pf("dvts", QWEN_1_5B, **PF_DVTS),
    "pf-dvts-qwen2.5-math-7b": _pf("dvts", QWEN_7B, **PF_DVTS),
    "pf-wbon-llama-3.2-1b": _pf("best_of_n", LLAMA_1B, **PF_WBON),
    "pf-wbon-llama-3.1-8b": _pf("best_of_n", LLAMA_8B, **PF_WBON),
    "pf-wbon-qwen2.5-math-1.5b": _pf("best_of_n", QWEN_1_5B, **PF_WBON),
    "pf-wbon-qwen2.5-math-7b": _pf("best_of_n", QWEN_7B, **PF_WBON),
    # particle Gibbs: 16 particles x 4 iterations on Qwen2.5-Math-7B-Instruct
    "pf-gibbs-qwen2.5-math-7b": _pf(
        "particle_gibbs",
        QWEN_7B,
        n=16,
        passes=4,
        reference=(*BF16, ("final_pool", "last"), ("reference_reward", "ahead")),
    ),
    # search-and-learn: beam search, DVTS and weighted best-of-N on Llama-3.2-1B/3B
    "sal-beam-llama-3.2-1b": _sal(
        "beam",
        LLAMA_1B,
        aggregate="best_score",
        reference=(("finished_order", "finish"), ("lookahead_ranking", False)),
    ),
    "sal-beam-llama-3.2-3b": _sal(
        "beam",
        LLAMA_3B,
        aggregate="best_score",
        reference=(("finished_order", "finish"), ("lookahead_ranking", False)),
    ),
    "sal-dvts-llama-3.2-1b": _sal("dvts", LLAMA_1B, aggregate="best_score"),
    "sal-dvts-llama-3.2-3b": _sal("dvts", LLAMA_3B, aggregate="best_score"),
    "sal-wbon-llama-3.2-1b": _sal("best_of_n", LLAMA_1B, aggregate="weighted"),
    "sal-wbon-llama-3.2-3b": _sal("best_of_n", LLAMA_3B, aggregate="weighted"),
    # A*-decoding: Llama-3.2-1B-Instruct on MATH500; PRM, k and budget unverified (ours [R])
    "astar-llama-3.2-1b": Paper(
        "astar",
        LLAMA_1B,
        QWEN_PRM,
        n=None,
        max_steps=40,
        tokens=2048,
        prompt="steps",
        temperature=0.8,
        seed=0,
        reduction="model",
        aggregate="best_score",
        width=4,
    ),
    # RPC: K = 64 on MATH; the closest runnable setting (DeepSeek-Math-RL-7B, MATH500)
    "rpc-deepseek-math-7b-rl": Paper(
        "best_of_n",
        DEEPSEEK_RL,
        None,
        n=64,
        max_steps=None,
        tokens=2048,
        prompt="qwen_math",
        temperature=0.8,
        seed=0,
        aggregate="rpc",
    ),
    # s1 budget forcing: s1-32B greedy on AIME24, thinking up to the whole sample but ~100
    # answer tokens ("auto"), the end of thinking ignored 6 times with "Wait" (56.7)
    "s1-budget-s1-32b": Paper(
        "best_of_n",
        S1_32B,
        None,
        n=1,
        max_steps=None,
        tokens=32000,
        prompt="none",
        temperature=0.0,
        seed=0,
        aggregate="majority",
        dataset="aime24",
        settings=(
            ("trim._target_", "trim.budget_forcing.BudgetForcing"),
            ("trim.max_think_tokens", 31900),
            ("trim.ignore_end", 6),
            ("trim.extend_cue", "Wait"),
            ("model.max_model_len", 32768),
            ("model.thinking.open", "<|im_start|>think"),
            ("model.thinking.close", "<|im_start|>answer"),
        ),
    ),
    # ThreadWeaver: Qwen3-8B, simple_eval.py's T 0.6 / top_p 0.95, a 40k context (79.9 AIME24)
    "threadweaver-qwen3-8b": Paper(
        "threads",
        QWEN3_8B,
        None,
        n=1,
        max_steps=None,
        tokens=40000,
        prompt="none",
        temperature=0.6,
        seed=0,
        aggregate="majority",
        top_p=0.95,
        dataset="aime24",
        settings=(
            ("search.strategy._target_", "search.threads.threadweaver.ThreadWeaver"),
            ("model.max_model_len", 40960),
        ),
    ),
    # APR: the Countdown model conditioned on 10 children, raw prompt, T 1.0, 4,096 tokens (83.4)
    "apr-countdown": Paper(
        "threads",
        APR_COUNTDOWN,
        None,
        n=1,
        max_steps=None,
        tokens=4096,
        prompt="none",
        temperature=1.0,
        seed=0,
        aggregate="majority",
        dataset="countdown",
        settings=(
            ("search.strategy._target_", "search.threads.apr.APR"),
            ("search.strategy.prompt", "raw"),
            ("search.strategy.prefix", ""),
            ("search.strategy.sub_call_budget", 10),
            ("search.strategy.max_thread_tokens", 4096),
            ("model.max_model_len", 4096),
        ),
    ),
    # Hogwild!: QwQ-32B as Alice and Bob, its generation config's T 0.6 / top_p 0.95
    "hogwild-qwq-32b": Paper(
        "threads",
        QWQ_32B,
        None,
        n=1,
        max_steps=None,
        tokens=16384,
        prompt="none",
        temperature=0.6,
        seed=0,
        aggregate="majority",
        top_p=0.95,
        settings=(
            ("search.strategy._target_", "search.threads.hogwild.Hogwild"),
            ("search.strategy.workers", ["Alice", "Bob"]),
            ("search.strategy.collab_every", 256),
            ("search.strategy.answer_tokens", 16),
        ),
    ),
    # HyPER: an MoE model (the paper's four are not retrievable here); every value ours
    "hyper-qwen3-30b-a3b": Paper(
        "hyper",
        QWEN3_30B_A3B,
        None,
        n=8,
        max_steps=None,
        tokens=None,
        prompt="none",
        temperature=0.6,
        seed=0,
        top_p=0.95,
        dataset="aime24",
        settings=(("budget.generated_tokens", 65536), ("search.top_logprobs", 20)),
    ),
    # DeepConf offline: DeepConf@512, top-20 logprobs, lowest group confidence over 2,048
    # tokens, the top 10% kept, confidence-weighted majority
    "deepconf-deepseek-r1-0528-qwen3-8b": Paper(
        "best_of_n",
        DEEPSEEK_R1_8B,
        None,
        n=512,
        max_steps=None,
        tokens=64000,
        prompt="none",
        temperature=0.6,
        seed=0,
        aggregate="confidence",
        top_p=0.95,
        dataset="aime25",
        settings=(
            ("search.top_logprobs", 20),
            ("search.confidence", "lowest_group"),
            ("search.confidence_window", 2048),
            ("search.confidence_keep", 0.1),
            ("model.max_model_len", 65536),
        ),
    ),
    # DeepConf online: DeepConf@512 with 16 warm-up traces, the 90th percentile threshold
    # ("DeepConf-low"), 2,048-token groups, stop at 95% confidence-weighted consensus
    "deepconf-online-deepseek-r1-0528-qwen3-8b": Paper(
        "deepconf",
        DEEPSEEK_R1_8B,
        None,
        n=512,
        max_steps=None,
        tokens=64000,
        prompt="none",
        temperature=0.6,
        seed=0,
        top_p=0.95,
        dataset="aime25",
        settings=(
            ("search.mode", "online"),
            ("search.top_logprobs", 20),
            ("search.warmup", 16),
            ("search.confidence", "lowest_group"),
            ("search.confidence_window", 2048),
            ("search.confidence_keep", 0.1),
            ("search.consensus", 0.95),
            ("model.max_model_len", 65536),
        ),
    ),
}

PRESETS = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))


@cache
def _composed(name: str) -> DictConfig:
    return compose_config([f"+experiment={name}"])


def _compose(name: str) -> DictConfig:
    """`reason +experiment=NAME`'s config (composed once per preset, a copy per test)."""
    return copy.deepcopy(_composed(name))


def _prm_path(cfg: DictConfig) -> str | None:
    verifier = cfg.verifier
    if "_target_" not in verifier:
        return None
    if isinstance(verifier.get("backend"), DictConfig):  # generative PRM: its own engine
        return verifier.backend.path
    return verifier.path


def _prm_share(cfg: DictConfig) -> float | None:
    """The in-process PRM engine's share of the GPU (None: no PRM engine, or vLLM's default)."""
    verifier = cfg.verifier
    if "_target_" not in verifier:
        return 0.0
    if isinstance(verifier.get("backend"), DictConfig):  # generative PRM: a second vLLM engine
        return verifier.backend.get("gpu_memory_utilization")
    if verifier.get("backend") == "http":
        return 0.0
    return (verifier.get("engine_kwargs") or {}).get("gpu_memory_utilization")


def test_every_preset_is_in_the_table_and_every_row_has_a_preset() -> None:
    assert sorted(PAPERS) == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_the_preset_holds_the_papers_settings(name: str) -> None:
    paper = PAPERS[name]
    cfg = _compose(name)
    OmegaConf.resolve(cfg)
    search = cfg.search
    wanted_target = yaml.safe_load((SEARCH_CONFS / f"{paper.search}.yaml").read_text())["_target_"]
    token_key = {
        "best_of_n": "max_tokens",
        "deepconf": "max_tokens",
        "threads": "max_tokens",
        "hyper": None,
    }.get(paper.search, "max_step_tokens")
    got = {
        "target": search._target_,
        "model": cfg.model.path,
        "policy": cfg.backend.path,
        "prm": _prm_path(cfg),
        "n": search.get("n"),
        "max_steps": search.get("max_steps"),
        "tokens": search[token_key] if token_key else None,
        "prompt": cfg.backend.system_prompt,
        "temperature": search.temperature,
        "top_p": search.top_p,
        "seed": cfg.seed,
        # without a verifier the reduction is unused
        "reduction": search.get("step_reduction") if paper.prm else None,
        "lookahead": search.get("lookahead"),
        "aggregate": search.get("aggregate"),
        "width": search.get("width"),
        "passes": search.get("passes"),
        "dataset": cfg.dataset.name,
        "reference": tuple((k, search.get(k)) for k, _ in paper.reference),
        "settings": tuple((k, _plain(OmegaConf.select(cfg, k))) for k, _ in paper.settings),
    }
    want = {
        "target": wanted_target,
        "model": paper.model,
        "policy": paper.model,
        "prm": paper.prm,
        "n": paper.n,
        "max_steps": paper.max_steps,
        "tokens": paper.tokens,
        "prompt": paper.prompt,
        "temperature": paper.temperature,
        "top_p": paper.top_p,
        "seed": paper.seed,
        "reduction": paper.reduction,
        "lookahead": paper.lookahead,
        "aggregate": paper.aggregate,
        "width": paper.width,
        "passes": paper.passes,
        "dataset": paper.dataset,
        "reference": paper.reference,
        "settings": paper.settings,
    }
    assert got == want
    assert paper.prompt in SYSTEM_PROMPTS


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value


@pytest.mark.parametrize("name", PRESETS)
def test_the_preset_builds_its_controller_and_needs_no_missing_verifier(name: str) -> None:
    cfg = _compose(name)
    search = instantiate_group(cfg.search, "search")  # the controller's own checks run here
    if "trim" in cfg:
        instantiate_group(cfg.trim, "trim")  # the trimmer's too
    if getattr(search, "verifier_use", None):
        assert PAPERS[name].prm is not None, f"{name}: the controller needs a verifier"
    if getattr(search, "aggregate", None) == "rpc":
        assert search.top_logprobs is not None
    if getattr(search, "aggregate", None) == "confidence":
        assert search.top_logprobs


@pytest.mark.parametrize("name", PRESETS)
def test_the_preset_composes_and_passes_run_validation(name: str) -> None:
    """`reason +experiment=NAME` composes, and the run-level checks (budget, +trim under the
    controller, the engine context) pass before any engine would start."""
    validate_config(_compose(name))


def _unknown_keys(node: DictConfig, target: str) -> set[str]:
    params = inspect.signature(get_class(target)).parameters
    return {k for k in node if not k.startswith("_")} - set(params)


@pytest.mark.parametrize("name", PRESETS)
def test_every_key_reaches_a_constructor_argument(name: str) -> None:
    """A misspelt key added by a preset would only fail when the engine starts: on a GPU."""
    cfg = _compose(name)
    assert _unknown_keys(cfg.backend, cfg.backend._target_) == set()
    verifier = cfg.verifier
    if "_target_" in verifier:
        assert _unknown_keys(verifier, verifier._target_) == set()
        if isinstance(verifier.get("backend"), DictConfig):
            assert _unknown_keys(verifier.backend, verifier.backend._target_) == set()


@pytest.mark.parametrize("name", PRESETS)
def test_policy_and_prm_fit_on_one_gpu(name: str) -> None:
    cfg = _compose(name)
    policy = cfg.backend.gpu_memory_utilization
    prm = _prm_share(cfg)
    assert policy is not None and 0 < policy <= ONE_GPU, "the policy's share must be set"
    assert prm is not None, "an in-process PRM must set its share (vLLM's default takes 0.9)"
    assert policy + prm <= ONE_GPU + 1e-9
    if PAPERS[name].prm is not None:
        assert prm > 0


@pytest.mark.parametrize("name", PRESETS)
def test_the_preset_file_is_global_and_names_its_command(name: str) -> None:
    text = (EXPERIMENTS / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert f"reason +experiment={name}" in text


def test_the_readme_names_every_preset() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Reproducing the papers", 1)[1].split("\n## ", 1)[0]
    # the command, or the preset's name in a table next to the number it should give
    missing = [n for n in PRESETS if f"+experiment={n}" not in section and f"`{n}`" not in section]
    assert missing == []
