"""Building the objects of a run from a Hydra config: the one path for the CLI and the API.

Generators are cached by their config so that a multirun sweep or repeated `solve()` calls
start the engine once.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import functools
import inspect
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from hydra.errors import CompactHydraException, InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from reasoning.budget import Budget
from reasoning.cache import CachedGenerator, CachedVerifier, cache_for
from reasoning.context import Sampler
from reasoning.controller import Controller, controller_name
from reasoning.generators import provide_shared_generators
from reasoning.types import AnswerJudge, Generator, Problem, Verifier

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

_generators: dict[str, Generator] = {}


class ConfigError(CompactHydraException, ValueError):
    """A config value that cannot run; the message names the key and what it accepts.

    A `ValueError` for API callers; a compact Hydra error, so `reason` prints the message
    alone instead of a traceback.
    """


_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def _settings_of(target: Any) -> list[str]:
    """The keyword arguments a `_target_` takes (a dataclass's fields, else its signature)."""
    try:
        obj = get_object(str(target))
        if dataclasses.is_dataclass(obj):
            return [f.name for f in dataclasses.fields(obj) if f.init]
        params = inspect.signature(obj).parameters.values()
        return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except Exception:  # an unknown target: say nothing rather than something wrong
        return []


def instantiate_group(node: Any, key: str) -> Any:
    """`instantiate(node)` with the constructor's own error (Hydra wraps it, and its text names
    no key) as a `ConfigError` that names `key` (the config group, e.g. "search").

    Lists and dicts arrive as plain Python containers (`_convert_="all"`), so the typed
    declarations (reasoning/settings.py) check them as such."""
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as exc:
        cause: BaseException | None = exc
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, TypeError) and (match := _UNEXPECTED.search(str(cause))):
            target = node.get("_target_") if hasattr(node, "get") else None
            valid = [k for k in _settings_of(target) if not k.startswith("_")]
            also = f"; valid: {', '.join(valid)}" if valid else ""
            raise ConfigError(f"{key}.{match.group(1)} is not a {key} setting{also}") from cause
        if isinstance(cause, ValueError | TypeError):
            text = str(cause)
            # SettingsError messages (reasoning/settings.py) already start with "<key>."
            message = text if text.startswith(f"{key}.") else f"{key}: {text}"
            raise ConfigError(message) from cause
        raise


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The same config `reason` would run with these overrides (a copy the caller may change).

    Composed once per distinct list of overrides: Hydra's compose costs ~0.1 s of CPU, which
    every API call (`solve_many` on a few problems) paid again. Interpolations stay unresolved
    in the cached config, so environment variables are still read when a value is used."""
    return copy.deepcopy(_composed(tuple(overrides)))


@functools.lru_cache(maxsize=64)
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def build_generator(cfg: DictConfig, run_dir: str | Path | None = None) -> Generator:
    """The run's generator, wrapped per `cfg.cache`; replay never even constructs the engine.

    A generator that is built is checked before anything else happens (`check_context`): an
    engine whose context cannot hold a prompt is refused before it starts, and before a cache
    file is opened."""
    replay = _cache_mode(cfg) == "replay"
    built = None if replay else generator_for(cfg.backend)
    if built is not None:
        check_context(cfg, built)
    cache = cache_for(cfg, run_dir)
    if cache is None:
        return built if built is not None else generator_for(cfg.backend)
    mode, calls = cache
    backend = _plain(cfg.backend)
    inner = built if built is not None else (lambda: generator_for(cfg.backend))
    return CachedGenerator(inner, calls, mode, name=backend.get("name"), fingerprint=backend)


def _cache_mode(cfg: DictConfig) -> str:
    mode = OmegaConf.select(cfg, "cache.mode", default="off")
    return "off" if mode in (None, False) else str(mode)


def _context_key(cfg: DictConfig) -> str:
    """The key the engine's context length comes from: `model.max_model_len` unless the backend
    sets its own."""
    raw = OmegaConf.to_container(cfg.backend, resolve=False)
    value = raw.get("max_model_len") if isinstance(raw, dict) else None
    if isinstance(value, str) and (match := re.fullmatch(r"\$\{([\w.]+)\}", value.strip())):
        return match.group(1)
    return "backend.max_model_len"


def check_context(cfg: DictConfig, generator: Generator) -> None:
    """Refuse an engine context (`model.max_model_len`) that cannot hold a rendered prompt plus
    one generated token: the chat template and system prompt of an empty question already take
    more. Such an engine would start, fail every problem and generate nothing. Checked with the
    generator's own tokenizer, before its engine starts (a backend without a context length of
    its own, a server, is not checked: the server says)."""
    limit = OmegaConf.select(cfg, "backend.max_model_len", default=None)
    if not isinstance(limit, int) or isinstance(limit, bool):
        return
    try:
        head = len(generator.tokenize(generator.render(Problem("", ""))))  # type: ignore[attr-defined]
    except Exception:  # a generator that cannot render here: its first call says what is wrong
        return
    if head + 1 > limit:
        key = _context_key(cfg)
        raise ConfigError(
            f"{key}={limit} cannot hold a rendered prompt plus one token: the chat template and "
            f"system prompt alone take {head} tokens before any question; set {key} to at least "
            f"{head + 1} plus the longest question and the tokens to generate (e.g. {key}=2048)"
        )


def generator_for(backend: Any) -> Generator:
    """The generator of one backend config, shared by everyone who asks with the same config
    (a judge that runs on the policy's own model reuses the policy's engine)."""
    node = backend if isinstance(backend, DictConfig) else OmegaConf.create(dict(backend))
    key = json.dumps(_plain(node), sort_keys=True)
    if key not in _generators:
        _generators[key] = instantiate_group(node, "backend")
    return _generators[key]


provide_shared_generators(generator_for)  # verifiers reach the cache through the core


def resolve_search(cfg: DictConfig) -> DictConfig:
    """`cfg` with a search that stands for another replaced by the one it resolves to: a class
    with a `resolve_config(cfg)` (search=auto, the budget advisor's pick) gets the whole config
    (dataset, model, budget) and returns it with `search` replaced. Any other config is
    returned as it is. The core names no such class: they are found through `_target_`."""
    target = OmegaConf.select(cfg, "search._target_", default=None)
    if target is None:
        return cfg
    try:
        cls = get_object(str(target))
    except Exception:  # an unknown target fails when the search is built, with its own message
        return cfg
    resolve = getattr(cls, "resolve_config", None)
    return cfg if resolve is None else resolve(cfg)


def build_search(cfg: DictConfig) -> Controller:
    """The controller of `cfg.search` (resolved first: `resolve_search`); its settings are
    checked on construction (search/settings.py), a bad one raising `ConfigError("search.<key>
    ...")`; a controller that reads the budget (`check_budget`, HyPER) is checked against
    `cfg.budget` here, before any engine starts."""
    cfg = resolve_search(cfg)
    search = instantiate_group(cfg.search, "search")
    check = getattr(search, "check_budget", None)
    if check is not None and OmegaConf.select(cfg, "budget") is not None:
        try:
            check(build_budget(cfg))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    return search


def check_trim(cfg: DictConfig) -> None:
    """Refuse `+trim=NAME` for a controller that decodes its own prompts (its class sets
    `decodes_own_prompts`): the trimmer acts only on samples drawn through the Context's prompt,
    so the run would be labelled trimmed while nothing was trimmed."""
    if OmegaConf.select(cfg, "trim") is None:
        return
    target = OmegaConf.select(cfg, "search._target_", default=None)
    try:
        cls = get_object(str(target)) if target is not None else None
    except Exception:
        return  # an unknown target fails when the search is built, with its own message
    if cls is not None:
        refuse_inert_trim(cls, str(target).rsplit(".", 1)[-1])


def refuse_inert_trim(search: object, fallback: str = "") -> None:
    """Raise the refusal of `check_trim` for a controller (a class or a built one) that decodes
    its own prompts: for the API, which may be handed a ready controller and trimmer."""
    if getattr(search, "decodes_own_prompts", False):
        name = getattr(search, "name", "") or fallback or type(search).__name__
        raise ConfigError(
            f"trimming cannot act on {name}: it decodes its own prompts; remove +trim"
        )


def build_sampler(cfg: DictConfig) -> Sampler | None:
    """The thought trimmer of `cfg.trim` (`+trim=NAME`), which takes over every sample the
    controller draws (docs/thought-trimming.md); None when the config has no `trim`. Refused
    (`check_trim`) for a controller that decodes its own prompts."""
    node = OmegaConf.select(cfg, "trim")
    if node is None:
        return None
    check_trim(cfg)
    return cast(Sampler, instantiate_group(node, "trim"))


def build_judge(cfg: DictConfig) -> AnswerJudge:
    """The answer judge of `cfg.judge` (extraction + equivalence, for voting and grading)."""
    return instantiate_group(cfg.judge, "judge")


def check_verifier(search: Controller, verifier: Verifier | None) -> None:
    """Refuse a controller that needs a verifier when there is none, saying what for."""
    use = getattr(search, "verifier_use", None)
    if use and verifier is None:
        raise ConfigError(
            f"search={controller_name(search)} needs a verifier ({use}): set verifier=<name>, "
            "e.g. verifier=arith (see `reason --help` for the verifier group)"
        )


def build_verifier(cfg: DictConfig, run_dir: str | Path | None = None) -> Verifier | None:
    if cfg.get("verifier") is None or "_target_" not in cfg.verifier:
        return None
    cache = cache_for(cfg, run_dir)
    if cache is None:
        return instantiate_group(cfg.verifier, "verifier")
    mode, calls = cache

    def build() -> Verifier:
        return instantiate_group(cfg.verifier, "verifier")

    inner = build if mode == "replay" else build()
    # The whole resolved verifier config keys the cache: a changed setting (a judge's model,
    # the checker's neutral score) must never replay the old scores.
    name, kind = cfg.verifier.get("name"), json.dumps(_plain(cfg.verifier), sort_keys=True)
    return CachedVerifier(inner, calls, mode, name=name, kind=kind)


def build_budget(cfg: DictConfig) -> Budget:
    """The per-problem limits of `cfg.budget` (Budget checks that each is positive or null)."""
    limits = _plain(cfg.budget)
    unknown = sorted(set(limits) - {f.name for f in dataclasses.fields(Budget)})
    if unknown:
        valid = ", ".join(f.name for f in dataclasses.fields(Budget))
        raise ConfigError(f"budget.{unknown[0]} is not a budget limit; valid: {valid}")
    for name, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"budget.{name} must be a number > 0 or null, got {value!r}")
    try:
        return Budget(**limits)
    except ValueError as exc:  # "budget.<name> must be positive or null, got ..."
        raise ConfigError(str(exc)) from exc


def close_generators() -> None:
    """Shut engines down (also registered at exit)."""
    while _generators:
        _, generator = _generators.popitem()
        close = getattr(generator, "close", None)
        if close is not None:
            close()


atexit.register(close_generators)
