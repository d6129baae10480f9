"""Inference-time reasoning: search controllers over a generator and a verifier, metered.

The API functions are imported lazily so that `import reasoning.types` (what verifiers and
controllers need) does not pull in Hydra and the config machinery.
"""

from typing import TYPE_CHECKING, Any

from reasoning.budget import Budget, BudgetExhausted, Ledger
from reasoning.context import Context
from reasoning.controller import Controller
from reasoning.outcome import Outcome
from reasoning.tree import NodeStatus, SearchTree
from reasoning.types import (
    AnswerJudge,
    Chain,
    Completion,
    FinishReason,
    Generator,
    Problem,
    Sampling,
    StepScores,
    Verifier,
)

if TYPE_CHECKING:
    from reasoning.api import asolve, asolve_many, solve, solve_many

_API = frozenset({"asolve", "asolve_many", "solve", "solve_many"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from reasoning import api

        return getattr(api, name)
    raise AttributeError(f"module 'reasoning' has no attribute {name!r}")


__all__ = [
    "AnswerJudge",
    "Budget",
    "BudgetExhausted",
    "Chain",
    "Completion",
    "Context",
    "Controller",
    "FinishReason",
    "Generator",
    "Ledger",
    "NodeStatus",
    "Outcome",
    "Problem",
    "Sampling",
    "SearchTree",
    "StepScores",
    "Verifier",
    "asolve",
    "asolve_many",
    "solve",
    "solve_many",
]
