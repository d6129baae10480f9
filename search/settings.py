"""One meaning per search key: the settings controllers share, declared once.

Every controller is a `@settings` dataclass (reasoning/settings.py) built from
`conf/search/<name>.yaml`. A key that two controllers (or a controller and a thread strategy)
both have is declared once here, with its type and one-line meaning, and means the same thing
everywhere (tests/test_structure.py compares the declarations; docs/configuration.md carries the
tables they render). Keys the trimmers (trim/) share as well, such as the answer cue, are
declared in reasoning/settings.py and re-exported here.

Budget limits (tokens, verifier calls, samples, seconds) are never search keys: the `budget`
group owns them, so every controller stops on the same limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field

from reasoning.settings import (
    Allowed,
    AnswerCue,
    AnswerTokens,
    Count,
    Flag,
    NonNegativeCount,
    NonNegativeFloat,
    OptionalCount,
    OptionalNonNegativeCount,
    OptionalTokenCap,
    PositiveFloat,
    Probability,
    Settings,
    SettingsError,
    TokenCap,
    settings,
)
from search.aggregate import AGGREGATES, STEP_REDUCTIONS, VOTES, StepReduction, Vote
from search.confidence_vote import Measure
from search.expand import StepSampling


def _named(table: Any) -> Callable[[Any], Any]:
    names = list(table)

    def check(value: Any) -> Any:
        if not callable(value) and value not in names:
            raise ValueError(f"must be one of {names} or a function")
        return value

    return check


def _describe(text: str) -> Any:
    return Field(description=text)


# --- the shared vocabulary: one name, one type, one meaning ---------------------------------
Samples = Annotated[
    Count, _describe("samples, beams, particles or rollouts the search keeps (its width)")
]
Temperature = Annotated[NonNegativeFloat, _describe("policy sampling temperature")]
TopP = Annotated[Probability, _describe("policy nucleus (top-p) sampling mass")]
MaxTokens = Annotated[
    TokenCap,
    _describe(
        "tokens one context may hold after its prompt: everything decoded into it (a sample; a "
        "rollout, the threads that write into it included)"
    ),
]
MaxStepTokens = Annotated[TokenCap, _describe("tokens per step")]
MaxSteps = Annotated[Count, _describe("steps per chain; the last allowed step is written to EOS")]
Width = Annotated[Count, _describe("children sampled per expanded node")]
Lookahead = Annotated[
    NonNegativeCount, _describe("greedy steps rolled out to rank a candidate (0: none)")
]
StepReductionName = Annotated[
    str | Callable[..., Any],
    AfterValidator(_named(STEP_REDUCTIONS)),
    Allowed(f"one of {list(STEP_REDUCTIONS)} or a function"),
    _describe("per-step verifier scores -> one score (a name or a function)"),
]
AggregateName = Annotated[
    str | Callable[..., Any],
    Allowed("one of the controller's votes or a function"),
    _describe("the final vote over the answers (a name or a function)"),
]
FilterDuplicates = Annotated[Flag, _describe("drop candidates whose text repeats one seen before")]
ResampleTemperature = Annotated[
    PositiveFloat, _describe("temperature of the resampling weights (never the policy's)")
]
Passes = Annotated[Count, _describe("how many times a whole search is repeated")]
BatchSize = Annotated[
    OptionalCount, _describe("samples per generator call; null sends all at once")
]
TopLogprobs = Annotated[
    OptionalNonNegativeCount,
    Allowed("an integer >= 0 or null"),
    _describe(
        "logprob alternatives per token kept on the chains: null off, 0 the sampled token only, "
        "k also the k most likely alternatives"
    ),
]
InFlight = Annotated[
    Count,
    _describe(
        "samples or simulations decoding at once (what the engine batches; what a stop can abort)"
    ),
]
ConfidenceMeasure = Annotated[
    Measure,
    _describe(
        "a trace's confidence from its token confidences: lowest_group (lowest mean over sliding "
        "windows of confidence_window tokens), bottom (mean of the lowest 10% of those windows), "
        "tail (mean over the last confidence_window tokens) or mean"
    ),
]
ConfidenceWindow = Annotated[
    Count, _describe("tokens per sliding confidence window (lowest_group, bottom) or in the tail")
]
ConfidenceKeep = Annotated[
    Probability,
    _describe(
        'the most confident share of the traces that votes (DeepConf: 0.1 "low", 0.9 "high")'
    ),
]
RoundTokens = Annotated[TokenCap, _describe("tokens each open path or thread decodes per round")]
MaxThreadTokens = Annotated[
    OptionalTokenCap,
    _describe("tokens one thread may decode; null: what is left of its context"),
]
Prefix = Annotated[
    str | None,
    _describe(
        'control text the answer starts with, as if the model wrote it ("": none, for a model '
        "trained on the format; null: the strategy's default opening)"
    ),
]


def invalid(key: str, value: Any, problem: str) -> SettingsError:
    """The one error shape for a bad search setting: it names the `search.<key>` config key."""
    return SettingsError(f"search.{key} {problem}, got {value!r}")


class SearchSettings(Settings):
    """Base of every controller: checks the final vote and the controller's own cross-field
    rules (`check`) once the declared fields have passed.

    Subclasses set `name` (their config name), `aggregates` (the final votes they accept) and
    may override `verifier_use` and `check`. `decodes_own_prompts`: the controller writes its
    own prompts (explicit continuations), so a trimmer, which acts on the calls that sample
    through the Context's prompt, cannot act on it and `+trim` is refused.
    """

    settings_key: ClassVar[str] = "search"
    settings_kind: ClassVar[str] = "search"
    name: ClassVar[str] = ""
    aggregates: ClassVar[tuple[str, ...]] = AGGREGATES
    decodes_own_prompts: ClassVar[bool] = False

    def __post_init__(self) -> None:
        aggregate = getattr(self, "aggregate", None)
        if aggregate is not None and not callable(aggregate) and aggregate not in self.aggregates:
            raise invalid(
                "aggregate", aggregate, f"must be one of {list(self.aggregates)} or a function"
            )
        self.check()

    def check(self) -> None:
        """Controller-specific cross-field validation (raise `invalid(...)`)."""

    @property
    def verifier_use(self) -> str | None:
        """What this controller needs a verifier for; None when it runs without one."""
        return None


class StrategySettings(Settings):
    """Base of every thread strategy (`search/strategy=NAME`): its settings live under
    `search.strategy`, and an unknown key is "not a <name> setting"."""

    settings_key: ClassVar[str] = "search.strategy"
    name: ClassVar[str] = ""

    @property
    def verifier_use(self) -> str | None:
        return None


@settings
class Sampled(SearchSettings):
    """How the policy samples text."""

    temperature: Temperature = 0.8
    top_p: TopP = 1.0


@settings
class Stepwise(Sampled):
    """Controllers that grow chains one step at a time and read per-step verifier scores."""

    aggregates: ClassVar[tuple[str, ...]] = tuple(VOTES)  # rpc needs whole-sample logprobs

    max_steps: MaxSteps = 40
    max_step_tokens: MaxStepTokens = 512
    step_reduction: StepReductionName = "last"

    @property
    def sampling(self) -> StepSampling:
        return StepSampling(
            temperature=self.temperature,
            top_p=self.top_p,
            max_step_tokens=self.max_step_tokens,
            max_steps=self.max_steps,
        )


__all__ = [
    "AggregateName",
    "AnswerCue",
    "AnswerTokens",
    "BatchSize",
    "ConfidenceKeep",
    "ConfidenceMeasure",
    "ConfidenceWindow",
    "InFlight",
    "FilterDuplicates",
    "Lookahead",
    "MaxStepTokens",
    "MaxSteps",
    "MaxThreadTokens",
    "MaxTokens",
    "Passes",
    "Prefix",
    "ResampleTemperature",
    "RoundTokens",
    "Sampled",
    "Samples",
    "SearchSettings",
    "StepReduction",
    "StepReductionName",
    "Stepwise",
    "StrategySettings",
    "Temperature",
    "TopLogprobs",
    "TopP",
    "Vote",
    "Width",
    "invalid",
    "settings",
]
