"""One budget type and one ledger for every controller, so spends compare across methods."""

from __future__ import annotations

from dataclasses import dataclass, fields


class BudgetExhausted(Exception):
    """Raised by the Context before a call that a reached limit forbids."""

    def __init__(self, limit: str) -> None:
        super().__init__(f"budget reached: {limit}")
        self.limit = limit


LIMITS = ("generated_tokens", "verifier_calls", "wall_s", "samples")
# Scoring what was already generated spends no generator budget, so only these stop it: a search
# whose token budget ran out still scores its last children (a verifier budget caps that).
SCORING_LIMITS = ("verifier_calls", "wall_s")


@dataclass(frozen=True)
class Budget:
    """Limits per problem; None means unlimited."""

    generated_tokens: int | None = None
    verifier_calls: int | None = None
    wall_s: float | None = None
    samples: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value <= 0:
                raise ValueError(f"budget.{f.name} must be positive or null, got {value!r}")


@dataclass
class Ledger:
    """Counters of what a search spent; summed across problems for run totals."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached_prompt_tokens: int = 0
    generator_calls: int = 0
    samples: int = 0
    verifier_calls: int = 0
    verifier_tokens: int = 0
    cache_hits: int = 0  # generator/verifier calls served by the record/replay cache
    replayed_tokens: int = 0  # generated tokens of those hits (counted above, not computed)
    # generated tokens on the longest dependency chain of the search tree: the latency of the
    # search had every independent request run at once (reasoning.tree, docs/threads.md)
    critical_path_tokens: int = 0
    wall_s: float = 0.0

    def add(self, other: Ledger) -> None:
        for name in _LEDGER_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, float]:
        # every field is a number: read directly (dataclasses.asdict deep-copies each value,
        # a share of every record's cost)
        out = {name: getattr(self, name) for name in _LEDGER_FIELDS}
        out["wall_s"] = round(self.wall_s, 3)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Ledger:
        return cls(**{k: v for k, v in data.items() if k in _LEDGER_NAMES})

    def exhausted(self, budget: Budget, limits: tuple[str, ...] = LIMITS) -> str | None:
        """The name of the first of `limits` reached, or None."""
        for name in limits:
            cap = getattr(budget, name)
            if cap is not None and getattr(self, name) >= cap:
                return name
        return None


_LEDGER_FIELDS = tuple(f.name for f in fields(Ledger))
_LEDGER_NAMES = frozenset(_LEDGER_FIELDS)
