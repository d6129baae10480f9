"""`search=auto`: run the configuration the budget advisor ranks first.

`search=auto search.advisor=BOARD_DIR` stands for another controller: before anything is built,
`reasoning.build.resolve_search` hands the whole config to `Auto.resolve_config`, which asks the
advisor (evals/leaderboard/advisor.py) for the board's frontier for the run's dataset name,
model name and verifier within the budget (`search.budget_tokens`, else
`budget.generated_tokens`), and returns the config with `search` replaced by the pick's
controller and its recorded params, and an `advised` node saying what was picked (board, row,
config hash, search, params, the board's accuracy and tokens). The run then records the picked
controller's name and params like any run of it, `advised` in its summary's config and on every
result line; `advised` is part of the run's fingerprint, so on the leaderboard the run is a
row of its own next to the row it was picked from (never pooled with it as another seed).
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, ClassVar

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict
from pydantic import Field

from reasoning.build import CONF_DIR, ConfigError, instantiate_group
from reasoning.settings import Allowed, PositiveFloat, Settings, settings

ADVISED = "advised"  # the config node (and result-line field) that records the pick

Board = Annotated[
    str | None,
    Allowed("a folder written by reason-leaderboard, or null"),
    Field(description="search=auto: the leaderboard folder whose frontier picks the controller"),
]
BudgetTokens = Annotated[
    PositiveFloat | None,
    Allowed("a number > 0 or null"),
    Field(
        description="search=auto: mean generated tokens per problem the pick may have spent on "
        "the board (null: budget.generated_tokens)"
    ),
]


@settings
class Auto(Settings):
    """The advisor's pick (evals/leaderboard/advisor.py): resolved before the run starts, so
    it never runs itself."""

    settings_key: ClassVar[str] = "search"
    settings_kind: ClassVar[str] = "search"
    name: ClassVar[str] = "auto"
    verifier_use: ClassVar[str | None] = None

    advisor: Board = None
    budget_tokens: BudgetTokens = None

    @classmethod
    def resolve_config(cls, cfg: DictConfig) -> DictConfig:
        return resolve_auto(cfg)

    async def run(self, problem: Any, ctx: Any) -> Any:
        raise ConfigError(
            "search=auto is resolved to the advisor's pick before a run starts: build it with "
            "reasoning.build.build_search (or resolve_search) from the whole config"
        )


def resolve_auto(cfg: DictConfig) -> DictConfig:
    """`cfg` with `search` replaced by the advisor's first pick and an `advised` record; a
    ConfigError naming the key when the board, the budget or a row is missing."""
    from evals.leaderboard.advisor import AdvisorError, advise, read_board

    auto = instantiate_group(cfg.search, "search")  # its own keys checked first
    if auto.advisor is None:
        raise ConfigError(
            "search=auto needs search.advisor=BOARD_DIR: a folder written by reason-leaderboard"
        )
    budget = auto.budget_tokens
    if budget is None:
        budget = OmegaConf.select(cfg, "budget.generated_tokens", default=None)
    if budget is None:
        raise ConfigError(
            "search=auto needs a budget: search.budget_tokens=T (mean generated tokens per "
            "problem) or budget.generated_tokens=T"
        )
    dataset = str(OmegaConf.select(cfg, "dataset.name", default="?"))
    model = str(OmegaConf.select(cfg, "model.name", default="?"))
    verifier = verifier_name(cfg)
    try:
        advice = advise(
            read_board(auto.advisor),
            {},  # the pick needs no paired comparison: its runs are not read
            dataset=dataset,
            model=model,
            budget=float(budget),
            verifier=verifier,
            board=auto.advisor,
        )
    except AdvisorError as exc:
        raise ConfigError(f"search=auto: {exc}") from None
    pick = advice.best
    node = search_node(pick.search, pick.search_params, pick.row)
    record = {
        "board": auto.advisor,
        "row": pick.row,
        "config_hash": pick.config_hash,
        "search": pick.search,
        "search_params": pick.search_params,
        "verifier": pick.verifier,
        "budget_tokens": float(budget),
        "accuracy": pick.accuracy,
        "ci_low": pick.ci_low,
        "ci_high": pick.ci_high,
        "tokens_per_problem": pick.tokens_per_problem,
    }
    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.search = node
        out[ADVISED] = record
    return out


def verifier_name(cfg: DictConfig) -> str:
    """The verifier's name as the leaderboard shows it: `verifier.name`, else the name its
    class declares (what the runner records), else `none` (no verifier)."""
    name = OmegaConf.select(cfg, "verifier.name", default=None)
    if name:
        return str(name)
    target = OmegaConf.select(cfg, "verifier._target_", default=None)
    if target is None:
        return "none"
    try:
        cls = get_object(str(target))
    except Exception:  # an unknown verifier fails when it is built, with its own message
        return str(target).rsplit(".", 1)[-1]
    named = getattr(cls, "name", None)
    return named if isinstance(named, str) else cls.__name__


def _target(path: Any) -> str | None:
    target = OmegaConf.load(path).get("_target_") if path.is_file() else None
    return str(target) if target else None


def search_node(name: str, params: dict[str, Any], row: int = 0) -> dict[str, Any]:
    """The search config of controller `name` with `params` as a result line records them
    (`evals.runner.search_params`): its `_target_` from conf/search/<name>.yaml, and a nested
    settings object recorded with its `name` (the thread strategy) as that group's node."""
    target = _target(CONF_DIR / "search" / f"{name}.yaml")
    if target is None:
        raise ConfigError(
            f"search=auto: the board's pick, row {row}, is search={name}, which has no "
            f"conf/search/{name}.yaml here"
        )
    node: dict[str, Any] = {"_target_": target}
    for key, value in params.items():
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            inner = _target(CONF_DIR / "search" / key / f"{value['name']}.yaml")
            if inner is not None:
                value = {"_target_": inner, **{k: v for k, v in value.items() if k != "name"}}
        node[key] = value
    return node
