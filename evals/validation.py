"""Cheap checks of a run's top-level keys, before anything expensive starts.

`run_experiment` (evals/experiment.py) calls `validate_config` first: a wrong type or value of
`seed`, `concurrency`, `progress`, `verbose`, `retry_errors`, `judge.*`, `cache.*`, `dataset.*`
or `budget.*` fails here with a `ConfigError` that names the key, says what it accepts and
shows what it got, before any data is loaded, the run directory is written or the engine
starts. The keys are declared, typed, in evals/run_settings.py (the same declarations as every
controller's); this module runs them over the composed config.

`model.max_model_len` must be an integer >= `MIN_MODEL_LEN` or null here; whether it holds the
rendered prompt plus one token is checked with the tokenizer when the generator is built
(`reasoning.build.check_context`), still before the engine starts.

Search keys are not checked here: every controller checks its own on construction
(search/settings.py, raised by `reasoning.build.build_search`); budget limits are `Budget`'s
(`reasoning.build.build_budget`, called from here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from evals.run_settings import RUN_SETTINGS, RunKeys, check_node
from reasoning.build import ConfigError, build_budget, check_trim
from reasoning.cache import CACHE_FILE, check_cache_file
from reasoning.settings import SettingsError, names

_ABSENT = object()


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _node(cfg: DictConfig, cls: type[RunKeys]) -> dict[str, Any] | None:
    """The keys `cls` checks, as plain values; None when its node is absent. A node that
    refuses unknown keys comes whole; an open one (the root, `dataset`) only with the keys
    `cls` declares, so other groups are neither resolved nor checked here."""
    node = OmegaConf.select(cfg, cls.settings_key) if cls.settings_key else cfg
    if not isinstance(node, DictConfig):
        return None
    keys = names(cls) if cls.settings_open else [str(k) for k in node]
    prefix = f"{cls.settings_key}." if cls.settings_key else ""
    values = {k: _value(cfg, prefix + k) for k in keys}
    return {k: v for k, v in values.items() if v is not _ABSENT}


def validate_config(cfg: DictConfig, run_dir: str | Path | None = None) -> None:
    """Raise `ConfigError` for the first top-level key that cannot run (see the module doc)."""
    for cls in RUN_SETTINGS:  # absent nodes and keys are not checked: the API composes parts
        node = _node(cfg, cls)
        if node is None:
            continue
        try:
            check_node(cls, node)
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None
    if OmegaConf.select(cfg, "budget") is not None:
        build_budget(cfg)  # budget.<limit> must be a number > 0 or null
    check_trim(cfg)  # +trim under a controller that decodes its own prompts: refused by name
    _check_context(cfg)
    _check_cache(cfg, run_dir)


MIN_MODEL_LEN = 32
"""The least engine context taken: no chat template, system prompt and question fit with room
to answer in fewer tokens. The exact need (the rendered prompt plus one token) is checked with
the model's tokenizer when the generator is built, before its engine starts
(`reasoning.build.check_context`)."""


def _check_context(cfg: DictConfig) -> None:
    """`model.max_model_len` (and a `backend.max_model_len` of its own) must be an integer
    >= MIN_MODEL_LEN or null: a context that cannot hold a prompt would start the engine and
    generate nothing."""
    for key in ("model.max_model_len", "backend.max_model_len"):
        try:
            value = _value(cfg, key)
        except Exception:  # an interpolation that does not resolve: the backend's build says
            continue
        if value is _ABSENT or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < MIN_MODEL_LEN:
            raise ConfigError(
                f"{key} must be an integer >= {MIN_MODEL_LEN} or null (the engine's context "
                "holds the rendered prompt, chat template and system prompt included, plus "
                f"every generated token), got {value!r}"
            )


def _check_cache(cfg: DictConfig, run_dir: str | Path | None) -> None:
    """The cache file of cache.mode/cache.path, read-only: nothing is created here."""
    mode = _value(cfg, "cache.mode")
    if mode in (_ABSENT, None, False, "off"):
        return
    path = _value(cfg, "cache.path")
    if path is None:
        if run_dir is None:
            return  # reasoning.cache.cache_for says what is missing
        path = str(Path(run_dir) / CACHE_FILE)
    if mode == "replay" and not Path(path).expanduser().exists():
        raise ConfigError(
            f"cache.mode=replay: no cache at {path}; set cache.path to the cache.sqlite of a "
            "recorded run (cache.mode=record or auto)"
        )
    try:
        check_cache_file(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
