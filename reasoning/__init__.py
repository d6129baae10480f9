"""Inference-time reasoning: search controllers over a generator and a verifier, metered."""

from reasoning.api import asolve, asolve_many, solve, solve_many
from reasoning.budget import Budget, BudgetExhausted, Ledger
from reasoning.context import Context
from reasoning.tree import SearchTree
from reasoning.types import (
    AnswerJudge,
    Chain,
    Completion,
    Generator,
    Outcome,
    Problem,
    Sampling,
    Verifier,
)

__all__ = [
    "AnswerJudge",
    "Budget",
    "BudgetExhausted",
    "Chain",
    "Completion",
    "Context",
    "Generator",
    "Ledger",
    "Outcome",
    "Problem",
    "Sampling",
    "SearchTree",
    "Verifier",
    "asolve",
    "asolve_many",
    "solve",
    "solve_many",
]
