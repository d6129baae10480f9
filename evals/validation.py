"""Cheap checks of a run's top-level keys, before anything expensive starts.

`run_experiment` (evals/experiment.py) calls `validate_config` first: a wrong type or value of
`seed`, `concurrency`, `progress`, `verbose`, `retry_errors`, `judge.*`, `cache.*`, `dataset.*`
or `budget.*` fails here with a `ConfigError` that names the key, says what it accepts and
shows what it got (the shape of search/settings.py's errors), before any data is loaded, the
run directory is written or the engine starts.

Search keys are not checked here: every controller checks its own on construction
(search/settings.py, raised by `reasoning.build.build_search`); budget limits are `Budget`'s
(`reasoning.build.build_budget`, called from here).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from evals.arith import LEVELS
from reasoning.build import ConfigError, build_budget, check_trim
from reasoning.cache import CACHE_FILE, MODES, check_cache_file

Check = Callable[[Any], str | None]  # the problem with a value, None when it is fine

_ABSENT = object()
_SEED_MAX = 2**32 - 1  # numpy (seeded by the engine from `seed`) takes 0 .. 2**32 - 1


def _integer(low: int, high: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= low
        if ok and (high is None or v <= high):
            return None
        return f"must be an integer >= {low}" + ("" if high is None else f" and <= {high}")

    return check


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _positive(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and v > 0
    return None if ok else "must be a number > 0"


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def _optional(check: Check) -> Check:
    def inner(v: Any) -> str | None:
        problem = check(v) if v is not None else None
        return None if problem is None else f"{problem} or null"

    return inner


def _list_of(what: str, item: Check, key: str) -> Check:
    """A list (`key=[a,b]`) whose items pass `item`; a bare value gets the list spelled out."""

    def check(v: Any) -> str | None:
        if not isinstance(v, list):
            return f"must be a list of {what} (write {key}=[{v}])"
        bad = [x for x in v if item(x) is not None]
        return f"must be a list of {what} ({bad[0]!r} is not one)" if bad else None

    return check


def _id(v: Any) -> str | None:
    return None if isinstance(v, str | int) and not isinstance(v, bool) and str(v) else "bad"


def _level(v: Any) -> str | None:
    return None if isinstance(v, int | str) and not isinstance(v, bool) else "bad"


def _arith_level(v: Any) -> str | None:
    return None if v in LEVELS and not isinstance(v, bool) else "bad"


def _cache_mode(v: Any) -> str | None:
    mode = "off" if v in (None, False) else v  # YAML reads a bare off as false
    return None if mode in MODES else f"must be one of {', '.join(MODES)}"


# key -> check; a key absent from the config is not checked (the API composes partial configs)
CHECKS: dict[str, Check] = {
    "seed": _integer(0, _SEED_MAX),
    "concurrency": _integer(1),
    "progress": _boolean,
    "verbose": _boolean,
    "retry_errors": _boolean,
    "judge.strict": _boolean,
    "judge.timeout_s": _positive,
    "cache.mode": _cache_mode,
    "cache.path": _optional(_string),
    "dataset.name": _string,
    "dataset.path": _optional(_string),
    "dataset.data_dir": _optional(_string),
    "dataset.limit": _optional(_integer(0)),
    "dataset.ids": _optional(_list_of("problem ids", _id, "dataset.ids")),
    "dataset.subjects": _optional(_list_of("subject names", _string, "dataset.subjects")),
    "dataset.levels": _optional(_list_of("levels", _level, "dataset.levels")),
    "dataset.arith.n": _integer(0),
    "dataset.arith.levels": _list_of(
        f"levels {', '.join(map(str, LEVELS))}", _arith_level, "dataset.arith.levels"
    ),
    "dataset.arith.seed": _integer(0),
}
CACHE_KEYS = ("mode", "path")
ARITH_KEYS = ("n", "levels", "seed")


def invalid(key: str, value: Any, problem: str) -> ConfigError:
    """The one error shape: the key, what it accepts, what it got."""
    return ConfigError(f"{key} {problem}, got {value!r}")


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _unknown(cfg: DictConfig, group: str, known: tuple[str, ...]) -> None:
    node = OmegaConf.select(cfg, group)
    if not isinstance(node, DictConfig):
        return
    extra = sorted(set(node.keys()) - set(known))  # type: ignore[arg-type]
    if extra:
        raise ConfigError(f"{group}.{extra[0]} is not a {group} setting; valid: {', '.join(known)}")


def validate_config(cfg: DictConfig, run_dir: str | Path | None = None) -> None:
    """Raise `ConfigError` for the first top-level key that cannot run (see the module doc)."""
    _unknown(cfg, "cache", CACHE_KEYS)
    _unknown(cfg, "dataset.arith", ARITH_KEYS)
    for key, check in CHECKS.items():
        value = _value(cfg, key)
        if value is _ABSENT:
            continue
        problem = check(value)
        if problem is not None:
            raise invalid(key, value, problem)
    if OmegaConf.select(cfg, "budget") is not None:
        build_budget(cfg)  # budget.<limit> must be a number > 0 or null
    check_trim(cfg)  # +trim under a controller that decodes its own prompts: refused by name
    _check_cache(cfg, run_dir)


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
