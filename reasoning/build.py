"""Building the objects of a run from a Hydra config: the one path for the CLI and the API.

Generators are cached by their config so that a multirun sweep or repeated `solve()` calls
start the engine once.
"""

from __future__ import annotations

import atexit
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from reasoning.budget import Budget
from reasoning.cache import CachedGenerator, CachedVerifier, cache_for
from reasoning.controller import Controller, controller_name
from reasoning.types import AnswerJudge, Generator, Verifier

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

_generators: dict[str, Generator] = {}


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The same config `reason` would run with these overrides."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def build_generator(cfg: DictConfig, run_dir: str | Path | None = None) -> Generator:
    """The run's generator, wrapped per `cfg.cache`; replay never even constructs the engine."""
    cache = cache_for(cfg, run_dir)
    if cache is None:
        return generator_for(cfg.backend)
    mode, calls = cache
    backend = _plain(cfg.backend)
    inner = (lambda: generator_for(cfg.backend)) if mode == "replay" else generator_for(cfg.backend)
    return CachedGenerator(inner, calls, mode, name=backend.get("name"), fingerprint=backend)


def generator_for(backend: Any) -> Generator:
    """The generator of one backend config, shared by everyone who asks with the same config
    (a judge that runs on the policy's own model reuses the policy's engine)."""
    node = backend if isinstance(backend, DictConfig) else OmegaConf.create(dict(backend))
    key = json.dumps(_plain(node), sort_keys=True)
    if key not in _generators:
        _generators[key] = instantiate(node)
    return _generators[key]


def build_search(cfg: DictConfig) -> Controller:
    return instantiate(cfg.search)


def build_judge(cfg: DictConfig) -> AnswerJudge:
    """The answer judge of `cfg.judge` (extraction + equivalence, for voting and grading)."""
    return instantiate(cfg.judge)


def check_verifier(search: Controller, verifier: Verifier | None) -> None:
    """Refuse a controller that needs a verifier when there is none, saying what for."""
    use = getattr(search, "verifier_use", None)
    if use and verifier is None:
        raise ValueError(
            f"search={controller_name(search)} needs a verifier ({use}): set verifier=<name>, "
            "e.g. verifier=arith (see `reason --help` for the verifier group)"
        )


def build_verifier(cfg: DictConfig, run_dir: str | Path | None = None) -> Verifier | None:
    if cfg.get("verifier") is None or "_target_" not in cfg.verifier:
        return None
    cache = cache_for(cfg, run_dir)
    if cache is None:
        return instantiate(cfg.verifier)
    mode, calls = cache
    inner = (lambda: instantiate(cfg.verifier)) if mode == "replay" else instantiate(cfg.verifier)
    # The whole resolved verifier config keys the cache: a changed setting (a judge's model,
    # the checker's neutral score) must never replay the old scores.
    name, kind = cfg.verifier.get("name"), json.dumps(_plain(cfg.verifier), sort_keys=True)
    return CachedVerifier(inner, calls, mode, name=name, kind=kind)


def build_budget(cfg: DictConfig) -> Budget:
    return Budget(**_plain(cfg.budget))


def close_generators() -> None:
    """Shut engines down (also registered at exit)."""
    while _generators:
        _, generator = _generators.popitem()
        close = getattr(generator, "close", None)
        if close is not None:
            close()


atexit.register(close_generators)
