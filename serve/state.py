"""What the server holds for its life (one generator, the judge, the server's own verifier and
trimmer, the composed search configs) and how one request's method becomes its `SolveParts`."""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reasoning.budget import Budget
from reasoning.build import (
    CONF_DIR,
    ConfigError,
    build_budget,
    build_judge,
    build_sampler,
    build_search,
    build_verifier,
    check_verifier,
    refuse_inert_trim,
)
from reasoning.controller import Controller, controller_name
from reasoning.solver import SolveParts
from reasoning.types import Generator, Verifier
from serve.auth import load_keys
from serve.metrics import Metrics
from serve.openai_format import APIError
from serve.requests import Method, bad, deep_merge
from serve.settings import ServerSettings

CONFIG_NAME = "serve"
BUILT_KEPT = 256  # built controllers kept for reuse


def compose_serve(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `reason-serve` runs with these overrides (inside the running Hydra app too)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(CONFIG_NAME, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(CONFIG_NAME, overrides=list(overrides))


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def group_names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def wrap_cache(cfg: DictConfig, generator: Generator) -> Generator:
    """A ready generator wrapped per `cfg.cache`, as `build_generator` wraps the one it builds."""
    from reasoning.cache import CachedGenerator, cache_for

    cache = cache_for(cfg)
    if cache is None:
        return generator
    mode, calls = cache
    backend = plain(cfg.backend)
    return CachedGenerator(generator, calls, mode, name=backend.get("name"), fingerprint=backend)


@dataclasses.dataclass
class Plan:
    """One request's parts and the names its answer and metrics carry."""

    parts: SolveParts
    controller: str
    single_path: bool  # one decoded path (greedy, best-of-1): its tokens are the answer's


class ServerState:
    """The server's parts; `generator` replaces the configured backend (tests, embedding)."""

    def __init__(
        self,
        cfg: DictConfig,
        *,
        generator: Generator | None = None,
        overrides: Sequence[str] = (),
        compose: Callable[[Sequence[str]], DictConfig] = compose_serve,
    ) -> None:
        from reasoning.build import build_generator

        self.cfg = cfg
        self.server = ServerSettings(**plain(cfg.get("server") or {}))
        self.keys = load_keys(self.server)
        self.overrides = [o for o in overrides if not o.lstrip("+~").startswith("search")]
        self.compose = compose
        self.seed = int(cfg.get("seed") or 0)
        self.default = build_search(cfg)  # the server's search, checked before the engine
        self.default_search = controller_name(self.default)
        self.verifier = build_verifier(cfg)
        check_verifier(self.default, self.verifier)
        self.verifier_name = str(OmegaConf.select(cfg, "verifier.name", default="none"))
        self.sampler = build_sampler(cfg)
        self.judge = build_judge(cfg)
        self.budget_node: dict[str, Any] = plain(cfg.budget) if "budget" in cfg else {}
        self.model_name = str(OmegaConf.select(cfg, "model.name", default="model"))
        self.served = list(self.server.served_models or [self.model_name])
        self.searches = self.server.allowed_searches or group_names("search")
        self._search_nodes: dict[str, dict[str, Any]] = {self.default_search: plain(cfg.search)}
        self._verifiers: dict[str, Verifier | None] = {}
        # built controllers by their settings: they hold no per-problem state (SolveParts), so
        # a repeated method skips Hydra's instantiation
        self._built: OrderedDict[str, tuple[Controller, Budget]] = OrderedDict()
        self.generator = wrap_cache(cfg, generator) if generator else build_generator(cfg)
        self.traces: OrderedDict[str, dict[str, Any]] = OrderedDict()
        from serve.limits import Admission

        self.admission = Admission(
            self.server.max_in_flight, self.server.max_queue, self.server.retry_after_s
        )
        self.metrics = Metrics(
            lambda: float(self.admission.in_flight), lambda: float(self.admission.waiting)
        )
        running = getattr(self.generator, "running_requests", None)
        self.metrics.watch_engine(running if callable(running) else None)
        self.tasks: set[Any] = set()  # solve tasks in flight (cancelled at shutdown)

    # --- configs of other searches and verifiers ----------------------------------------------

    def search_node(self, name: str) -> dict[str, Any]:
        """The composed config of `search=name` (400 unknown, 403 not allowed)."""
        if name not in self.searches:
            if name in group_names("search"):
                raise APIError(
                    403,
                    f"search {name!r} is not allowed here (server.allowed_searches: "
                    f"{', '.join(self.searches)})",
                    param="search",
                    code="search_not_allowed",
                )
            raise bad(
                f"unknown search {name!r}; available: {', '.join(self.searches)}",
                param="search",
                code="unknown_search",
            )
        if name not in self._search_nodes:
            cfg = self.compose([*self.overrides, f"search={name}"])
            self._search_nodes[name] = plain(cfg.search)
        return dict(self._search_nodes[name])

    def sampling_keys(self, name: str) -> set[str]:
        try:
            return set(self.search_node(name))
        except APIError:
            return set()  # the method's own check reports it

    def verifier_for(self, method: Method) -> Verifier | None:
        if method.verifier is None and not method.verifier_settings:
            return self.verifier
        name = method.verifier or self.verifier_name
        allowed = self.server.allowed_verifiers or [self.verifier_name]
        if name not in allowed:
            raise APIError(
                403,
                f"verifier {name!r} is not allowed here (server.allowed_verifiers: "
                f"{', '.join(allowed)})",
                param="verifier",
                code="verifier_not_allowed",
            )
        if name not in group_names("verifier"):
            raise bad(f"unknown verifier {name!r}", param="verifier")
        base = self.compose([*self.overrides, f"verifier={name}"])
        node = deep_merge(plain(base.verifier), method.verifier_settings)
        key = json.dumps(node, sort_keys=True, default=str)
        if key not in self._verifiers:
            cfg = OmegaConf.create({"verifier": node, "cache": plain(self.cfg.get("cache") or {})})
            try:
                self._verifiers[key] = build_verifier(cfg)
            except ValueError as exc:
                raise bad(str(exc), param="verifier") from None
        return self._verifiers[key]

    # --- one request -----------------------------------------------------------------------

    def plan(self, method: Method, *, choices: int = 1) -> Plan:
        """The request's parts, its settings checked by the CLI's declarations and the limits."""
        limits = self.server
        if choices > limits.max_n:
            raise bad(f"n={choices} is over the limit server.max_n={limits.max_n}", "n")
        node = deep_merge(self.search_node(method.search), method.search_settings)
        for key, cap in (("n", limits.max_n), ("max_tokens", limits.max_tokens)):
            value = node.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                if key in method.asked:
                    raise bad(
                        f"search.{key}={value} is over the limit "
                        f"server.max_{key.removeprefix('max_')}={cap}",
                        param=f"search.{key}",
                        code="over_limit",
                    )
                node[key] = cap  # the server's own default: clamped, not refused
        budget_node = deep_merge(self.budget_node, method.budget)
        key = json.dumps([node, budget_node], sort_keys=True, default=str)
        built = self._built.get(key)
        if built is None:
            cfg = OmegaConf.create({"search": node, "budget": budget_node})
            try:
                built = (build_search(cfg), build_budget(cfg))
            except ValueError as exc:
                raise bad(str(exc), param=_param(str(exc))) from None
            self._built[key] = built
            while len(self._built) > BUILT_KEPT:
                self._built.popitem(last=False)
        search, budget = built
        budget = self._capped(budget, method)
        verifier = self.verifier_for(method)
        try:
            check_verifier(search, verifier)
            if self.sampler is not None:
                refuse_inert_trim(search)
        except ConfigError as exc:
            raise bad(str(exc), param="search") from None
        parts = SolveParts(
            generator=self.generator,
            search=search,
            verifier=verifier,
            judge=self.judge,
            budget=budget,
            sampler=self.sampler,
        )
        name = controller_name(search)
        single = name == "greedy" or (name == "best_of_n" and getattr(search, "n", 0) == 1)
        return Plan(parts, name, single)

    def _capped(self, budget: Budget, method: Method) -> Budget:
        """The operator's caps: verifier calls (refused over the cap) and seconds (capped)."""
        cap = self.server.max_verifier_calls
        calls = budget.verifier_calls
        if cap is not None and calls is not None and calls > cap:
            raise bad(
                f"budget.verifier_calls={calls} is over the limit server.max_verifier_calls={cap}",
                param="budget.verifier_calls",
                code="over_limit",
            )
        wall = self.server.max_wall_s if budget.wall_s is None else budget.wall_s
        return dataclasses.replace(
            budget,
            verifier_calls=calls if cap is None or calls is not None else cap,
            wall_s=min(wall, self.server.max_wall_s),
        )

    def keep_trace(self, rid: str, trace: dict[str, Any]) -> None:
        self.traces[rid] = trace
        while len(self.traces) > self.server.traces:
            self.traces.popitem(last=False)
        if self.server.trace_dir:
            from evals.rundir import write_trace

            write_trace(self.server.trace_dir, trace)


def _param(message: str) -> str | None:
    """The dotted key a config error message starts with ("search.n must be ...")."""
    head = message.split(" ", 1)[0].rstrip(":")
    return head if "." in head and head.split(".")[0] in ("search", "budget") else None


def controller_of(plan: Plan) -> Controller:
    return plan.parts.search
