"""One meaning per search key: the settings controllers share, and their validation.

Every controller is a dataclass built from `conf/search/<name>.yaml`. A key that two controllers
both have means the same thing in both (docs/configuration.md has the table):

- `n`: samples, beams, particles or completions the search keeps (its width of the search);
- `temperature`, `top_p`: how the policy samples text (never a resampling temperature);
- `max_tokens`: tokens per whole sample (best-of-N); `max_step_tokens`: tokens per step;
- `max_steps`: steps per chain; the last allowed step is written to EOS;
- `step_reduction`: per-step verifier scores -> one score (a name or a function);
- `aggregate`: the final vote (a name or a function);
- `filter_duplicates`: drop candidates whose text repeats one seen before;
- `resample_temperature`: the temperature of particle-filter resampling weights;
- `passes`: how many times a whole search is repeated (particle Gibbs).

Budget limits (tokens, verifier calls, samples, seconds) are never search keys: the `budget`
group owns them, so every controller stops on the same limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from search.aggregate import AGGREGATES, STEP_REDUCTIONS, VOTES, StepReduction, Vote
from search.expand import StepPolicy


def _at_least(low: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= low
        return None if ok else f"must be an integer >= {low}"

    return check


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _non_negative(v: Any) -> str | None:
    ok = _number(v) and v >= 0
    return None if ok else "must be a finite number >= 0"


def _positive(v: Any) -> str | None:
    return None if _number(v) and v > 0 else "must be > 0"


def _probability(v: Any) -> str | None:
    return None if _number(v) and 0 < v <= 1 else "must be in (0, 1]"


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def inner(v: Any) -> str | None:
        problem = check(v) if v is not None else None
        return None if problem is None else f"{problem} or null"

    return inner


def _named(table: tuple[str, ...] | dict[str, Any]) -> Callable[[Any], str | None]:
    names = list(table)
    return lambda v: None if callable(v) or v in names else f"must be one of {names} or a function"


# key -> check returning what is wrong (None when the value is fine); shared by every controller
CHECKS: dict[str, Callable[[Any], str | None]] = {
    "n": _at_least(1),
    "width": _at_least(1),
    "temperature": _non_negative,
    "top_p": _probability,
    "max_tokens": _at_least(1),
    "max_step_tokens": _at_least(1),
    "max_steps": _at_least(1),
    "lookahead": _at_least(0),
    "step_reduction": _named(STEP_REDUCTIONS),
    "resample_temperature": _positive,
    "passes": _at_least(1),
    "batch_size": _optional(_at_least(1)),
    "logprobs": _optional(_at_least(0)),
    "filter_duplicates": lambda v: None if isinstance(v, bool) else "must be true or false",
}


def invalid(key: str, value: Any, problem: str) -> ValueError:
    """The one error shape for a bad search setting: it names the config key."""
    return ValueError(f"search.{key} {problem}, got {value!r}")


@dataclass
class SearchSettings:
    """Base of every controller: validates the shared keys on construction.

    Subclasses set `name` (their config name), `aggregates` (the final votes they accept) and
    may override `verifier_use` and `check` (their own keys).
    """

    name: ClassVar[str] = ""
    aggregates: ClassVar[tuple[str, ...]] = AGGREGATES

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            check = CHECKS.get(f.name)
            problem = check(value) if check is not None else None
            if problem is not None:
                raise invalid(f.name, value, problem)
        aggregate = getattr(self, "aggregate", None)
        if aggregate is not None and not callable(aggregate) and aggregate not in self.aggregates:
            raise invalid("aggregate", aggregate, f"must be one of {list(self.aggregates)}")
        self.check()

    def check(self) -> None:
        """Controller-specific validation (raise `invalid(...)`)."""

    @property
    def verifier_use(self) -> str | None:
        """What this controller needs a verifier for; None when it runs without one."""
        return None


@dataclass
class Sampled(SearchSettings):
    """How the policy samples text."""

    temperature: float = 0.8
    top_p: float = 1.0


@dataclass
class Stepwise(Sampled):
    """Controllers that grow chains one step at a time and read per-step verifier scores."""

    aggregates: ClassVar[tuple[str, ...]] = tuple(VOTES)  # rpc needs whole-sample logprobs

    max_steps: int = 40
    max_step_tokens: int = 512
    step_reduction: str | StepReduction = "last"

    @property
    def policy(self) -> StepPolicy:
        return StepPolicy(
            temperature=self.temperature,
            top_p=self.top_p,
            max_step_tokens=self.max_step_tokens,
            max_steps=self.max_steps,
        )


__all__ = ["CHECKS", "Sampled", "SearchSettings", "Stepwise", "StepReduction", "Vote", "invalid"]
