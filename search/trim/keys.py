"""Validation of trimming keys: one error shape that names the `trim.<key>` config key."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def invalid(key: str, value: Any, problem: str) -> ValueError:
    """The error for a bad trimming setting (the `search.<key>` shape of search/settings.py)."""
    return ValueError(f"trim.{key} {problem}, got {value!r}")


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def at_least(low: int) -> Callable[[Any], str | None]:
    return lambda v: None if _integer(v) and v >= low else f"must be an integer >= {low}"


def fraction(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return None if ok and 0 < v <= 1 else "must be in (0, 1]"


def text(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


def nonempty_text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


def cue_list(v: Any) -> str | None:
    """A list of non-empty strings (Hydra passes a ListConfig; a bare string is a mistake)."""
    if isinstance(v, str) or not hasattr(v, "__iter__"):
        return "must be a list of strings"
    items = list(v)
    if not items or not all(isinstance(c, str) and c for c in items):
        return "must be a non-empty list of non-empty strings"
    return None


def validate(owner: Any, checks: dict[str, Callable[[Any], str | None]]) -> None:
    """Run `checks` over `owner`'s attributes; raise `invalid` for the first one that fails."""
    for key, check in checks.items():
        value = getattr(owner, key)
        problem = check(value)
        if problem is not None:
            raise invalid(key, value, problem)
