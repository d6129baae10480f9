"""Config validation before anything expensive: every bad value names its key and what it takes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from evals import experiment
from evals.run_settings import RUN_SETTINGS, DatasetSettings, RootSettings
from evals.validation import MIN_MODEL_LEN, validate_config
from reasoning import build
from reasoning.build import (
    CONF_DIR,
    ConfigError,
    build_budget,
    build_search,
    check_context,
    check_verifier,
    compose_config,
)
from reasoning.cache import CallCache, check_cache_file
from reasoning.settings import default_of, fields_of, meaning, names
from reasoning.types import Problem
from tests.fakes import ScriptedGenerator, TokenRuleGenerator, always


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["seed=abc"], "seed must be an integer >= 0 and <= 4294967295, got 'abc'"),
        (["seed=-1"], "seed must be an integer >= 0"),
        (["seed=true"], "seed must be an integer"),
        (["concurrency=abc"], "concurrency must be an integer >= 1, got 'abc'"),
        (["concurrency=0"], "concurrency must be an integer >= 1, got 0"),
        (["concurrency=2.5"], "concurrency must be an integer >= 1, got 2.5"),
        (["progress=maybe"], "progress must be true or false, got 'maybe'"),
        (["verbose=1"], "verbose must be true or false, got 1"),
        (["retry_errors=yes"], "retry_errors must be true or false, got 'yes'"),
        (["judge.timeout_s=0"], "judge.timeout_s must be a number > 0, got 0"),
        (["judge.strict=sometimes"], "judge.strict must be true or false"),
        (["dataset.ids=x"], "dataset.ids must be a list of problem ids (write dataset.ids=[x])"),
        (["dataset.ids=[[a]]"], "dataset.ids must be a list of problem ids (['a'] is not one)"),
        (["dataset.limit=-2"], "dataset.limit must be an integer >= 0 or null, got -2"),
        (["dataset.limit=ten"], "dataset.limit must be an integer >= 0 or null, got 'ten'"),
        (["dataset.subjects=Algebra"], "dataset.subjects must be a list of subject names"),
        (["dataset.levels=3"], "write dataset.levels=[3]"),
        (["dataset.arith.levels=[9]"], "dataset.arith.levels must be a list of levels 1, 2, 3"),
        (["dataset.arith.n=many"], "dataset.arith.n must be an integer >= 0, got 'many'"),
        (["+dataset.arith.count=3"], "dataset.arith.count is not a dataset.arith setting"),
        (["cache.mode=sometimes"], "cache.mode must be one of off, record, replay, auto"),
        (["+cache.file=x"], "cache.file is not a cache setting; valid: mode, path"),
        (["budget.wall_s=abc"], "budget.wall_s must be a number > 0 or null, got 'abc'"),
        (["budget.samples=[1]"], "budget.samples must be a number > 0 or null, got [1]"),
        (["budget.generated_tokens=-1"], "budget.generated_tokens must be positive or null"),
        (["+budget.tokens=5"], "budget.tokens is not a budget limit; valid: generated_tokens"),
    ],
)
def test_bad_top_level_values_name_the_key(overrides: list[str], message: str) -> None:
    cfg = compose_config(overrides)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)  # API callers catch ValueError


def test_defaults_and_every_preset_validate() -> None:
    validate_config(compose_config([]))
    for preset in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        validate_config(compose_config([f"+experiment={preset.stem}"]))
    ok = ["dataset.ids=[a,7]", "dataset.levels=[1,'Level 2']", "dataset.limit=0", "seed=7"]
    validate_config(compose_config([*ok, "budget.wall_s=1.5", "cache.mode=off"]))


def test_the_run_keys_are_declared_with_the_defaults_of_conf_config_yaml() -> None:
    """Every key of the checked nodes is declared (with a meaning) and composes to its declared
    default, so the docs table shows what a run gets; unknown keys of closed nodes are refused."""
    cfg = compose_config([])
    for cls in RUN_SETTINGS:
        node = OmegaConf.select(cfg, cls.settings_key) if cls.settings_key else cfg
        prefix = f"{cls.settings_key}." if cls.settings_key else ""
        for name, info in fields_of(cls).items():
            assert meaning(info), f"{prefix}{name} has no meaning"
            if name == "data_dir":  # read from the environment
                continue
            assert OmegaConf.to_container(node)[name] == default_of(info), prefix + name
        if not cls.settings_open:
            assert set(node) - set(cls.settings_ignored) == set(names(cls)), prefix
    for path in sorted((CONF_DIR / "dataset").glob("*.yaml")):
        keys = set(yaml.safe_load(path.read_text())) - {"arith", "countdown"}
        assert keys == set(names(DatasetSettings)), path.stem
    root = {"seed", "concurrency", "progress", "verbose", "retry_errors"}
    assert set(names(RootSettings)) == root


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+judge.strictness=true"], "judge.strictness is not a judge setting; valid: strict,"),
        (["dataset.arith.levels=[true]"], "dataset.arith.levels must be a list of levels 1, 2"),
        (["dataset.arith.levels=2"], "write dataset.arith.levels=[2]"),
        (["dataset.ids=['']"], "dataset.ids must be a list of problem ids ('' is not one)"),
        (["dataset.name=' '"], "dataset.name must be a non-empty string, got ' '"),
        (["cache.path=' '"], "cache.path must be a non-empty string or null, got ' '"),
    ],
)
def test_more_bad_top_level_values_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(compose_config(overrides))
    assert message in str(err.value)


def test_partial_configs_check_only_what_they_hold() -> None:
    """The API composes partial configs: absent nodes and keys are not checked."""
    validate_config(OmegaConf.create({"seed": 3}))
    validate_config(OmegaConf.create({"cache": {"mode": "off"}, "dataset": {"limit": 2}}))
    with pytest.raises(ConfigError, match="dataset.limit must be an integer >= 0 or null"):
        validate_config(OmegaConf.create({"dataset": {"limit": "x"}}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["search.n=abc"], "search.n must be an integer >= 1, got 'abc'"),
        (["search.max_tokens=-5"], "search.max_tokens must be an integer >= 1, got -5"),
        (["search.temperature=-1"], "search.temperature must be a finite number >= 0, got -1"),
        (["search.top_p=7"], "search.top_p must be in (0, 1], got 7"),
        (["search=beam", "search.max_steps=0"], "search.max_steps must be an integer >= 1"),
        (
            ["+search.foo=1"],
            "search.foo is not a search setting of best_of_n; valid: temperature, top_p, n",
        ),
    ],
)
def test_search_errors_come_unwrapped(overrides: list[str], message: str) -> None:
    """search/settings.py's own message, not Hydra's InstantiationException around it."""
    with pytest.raises(ConfigError) as err:
        build_search(compose_config(overrides))
    assert str(err.value).startswith(message)
    assert "Error in call to target" not in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["search=threads", "search/strategy=apr", "+search.strategy.delta=8"],
            "search.strategy.delta is not a apr setting; valid: prefix,",
        ),
        (
            ["search=threads", "search/strategy=hogwild", "search.strategy.round_tokens=0"],
            "search.strategy.round_tokens must be an integer >= 1, got 0",
        ),
        (
            ["search=greedy", "+search.n=4"],
            "search.n is not a search setting of greedy; valid: max_tokens",
        ),
        (["search=hyper"], "search=hyper needs budget.generated_tokens"),
        (
            ["search=hyper", "budget.generated_tokens=100"],
            "budget.generated_tokens must afford one round and a forced answer",
        ),
        (["search=best_of_n", "search.top_logprobs=-1"], "search.top_logprobs must be"),
    ],
)
def test_settings_that_would_not_act_fail_before_any_engine(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        build_search(compose_config(overrides))
    assert str(err.value).startswith(message)


def test_inactive_strategy_blocks_do_not_exist() -> None:
    cfg = compose_config(["search=threads", "search/strategy=apr"])
    assert cfg.search.strategy._target_.endswith(".APR")
    assert not {"threadweaver", "apr", "fork_join", "hogwild", "policy"} & set(cfg.search)
    with pytest.raises(Exception, match="search.hogwild"):  # Hydra's struct refusal names it
        compose_config(["search=threads", "search.hogwild.delta=8"])
    with pytest.raises(Exception, match="search.n"):
        compose_config(["search=greedy", "search.n=4"])  # greedy has no n


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (["search=hyper", "budget.generated_tokens=4096", "+trim=trimr"], "hyper"),
        (["search=threads", "+trim=budget"], "threads"),
        (["search=threads", "search/strategy=hogwild", "+trim=sdv"], "threads"),
    ],
)
def test_trimming_is_refused_for_controllers_that_decode_their_own_prompts(
    overrides: list[str], name: str
) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(compose_config(overrides))
    assert str(err.value).startswith(f"trimming cannot act on {name}: it decodes its own prompts")
    assert "+trim" in str(err.value)
    validate_config(compose_config(["search=best_of_n", "+trim=trimr"]))  # it acts there


def test_budget_and_verifier_errors_are_config_errors() -> None:
    assert build_budget(compose_config(["budget.wall_s=2"])).wall_s == 2
    with pytest.raises(ConfigError, match=r"budget.wall_s must be positive or null, got -1"):
        build_budget(compose_config(["budget.wall_s=-1"]))
    search = build_search(compose_config(["search.aggregate=weighted"]))
    with pytest.raises(ConfigError, match="needs a verifier"):
        check_verifier(search, None)


def test_cache_path_must_be_a_cache_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database\n")
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    under_a_file = text / "cache.sqlite"
    for path, why in [
        (tmp_path, "it is a directory"),
        (text, "it is not an SQLite file"),
        (foreign, "an SQLite database of other tables: people"),
        (under_a_file, "is a file, not a directory"),
    ]:
        with pytest.raises(ValueError, match=f"cache.path={path} is not a call cache") as err:
            check_cache_file(path)
        assert why in str(err.value)
        with pytest.raises(ValueError, match="is not a call cache"):
            CallCache(path)  # the one way a cache file is opened
        cfg = compose_config(["cache.mode=auto", f"cache.path={path}"])
        with pytest.raises(ConfigError, match=f"cache.path={path} is not a call cache"):
            validate_config(cfg, tmp_path)

    # fine: a missing file, an empty one, a recorded cache
    check_cache_file(tmp_path / "new" / "cache.sqlite")
    (tmp_path / "empty.sqlite").touch()
    check_cache_file(tmp_path / "empty.sqlite")
    with CallCache(tmp_path / "empty.sqlite") as cache:
        cache.put("renders", "k", "v")
    check_cache_file(tmp_path / "empty.sqlite")
    assert not (tmp_path / "new").exists()  # checking creates nothing

    missing = tmp_path / "missing.sqlite"
    with pytest.raises(ConfigError, match="cache.mode=replay: no cache at"):
        validate_config(compose_config(["cache.mode=replay", f"cache.path={missing}"]))
    with pytest.raises(ConfigError, match=r"no cache at .*run/cache.sqlite"):
        validate_config(compose_config(["cache.mode=replay"]), tmp_path / "run")


FAST = ["dataset.arith.n=2", "search.n=1", "search.max_tokens=8", "progress=false"]


def test_a_bad_value_fails_before_the_generator_and_leaves_the_run_dir_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything cheap is checked before the generator (the engine) and the Runner exist, so a
    corrected config then runs in the same directory."""
    built: list[object] = []

    def generator(cfg: object, run_dir: object = None) -> ScriptedGenerator:
        built.append(cfg)
        return ScriptedGenerator(["The answer is \\boxed{3}"])

    monkeypatch.setattr(experiment, "build_generator", generator)
    run_dir = tmp_path / "run"
    bad = [
        ["concurrency=0"],
        ["seed=abc"],
        ["search.temperature=-1"],
        ["search.max_tokens=-5"],
        ["search.top_p=7"],
        ["budget.wall_s=abc"],
        ["dataset.ids=x"],
        ["cache.mode=auto", f"cache.path={tmp_path}"],
        ["search.aggregate=weighted"],
        ["judge.timeout_s=-1"],
    ]
    for overrides in bad:
        with pytest.raises(ConfigError):
            experiment.run_experiment(compose_config([*FAST, *overrides]), run_dir)
    assert built == []
    assert not run_dir.exists() or not any(run_dir.iterdir())

    summary = experiment.run_experiment(compose_config(FAST), run_dir)
    assert summary["problems"] == 2 and len(built) == 1
    records = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in records] == ["3", "3"]


def test_bad_data_file_is_a_config_error_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "oops"\n')
    cfg = compose_config(["dataset=math500", f"dataset.path={bad}"])
    with pytest.raises(ConfigError, match=f"{bad}, line 2: invalid JSON"):
        experiment.run_experiment(cfg, tmp_path / "run")


# --- the engine's context (issue 19 point 10: max_model_len=10 started the engine, exited 0 and
# --- generated nothing) ----------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    value=st.one_of(
        st.integers(-5, MIN_MODEL_LEN - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(["abc", "2048tokens", True]),
    )
)
def test_a_context_that_cannot_hold_a_prompt_is_refused_by_validation(value: object) -> None:
    """Property: any model.max_model_len under the floor, or not an integer, is refused by
    validation (before data, the run directory or the engine), naming the key."""
    cfg = compose_config([])
    cfg.model.max_model_len = value
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert str(err.value).startswith(
        f"model.max_model_len must be an integer >= {MIN_MODEL_LEN} or null"
    )
    assert str(err.value).endswith(f"got {value!r}")


def test_a_usable_context_and_null_pass_validation() -> None:
    validate_config(compose_config(["model.max_model_len=2048"]))
    validate_config(compose_config(["model.max_model_len=null"]))
    validate_config(compose_config([f"model.max_model_len={MIN_MODEL_LEN}"]))


def _templated(words: int) -> TokenRuleGenerator:
    """A generator whose chat template and system prompt alone take about `words` tokens."""
    template = "system:" + " w" * words + " Q: {question}\nA: "
    return TokenRuleGenerator([(always, "The answer is \\boxed{3}")], template=template)


@settings(max_examples=30, deadline=None)
@given(words=st.integers(0, 120), limit=st.integers(MIN_MODEL_LEN, 160))
def test_the_built_generator_must_hold_its_rendered_prompt_plus_one_token(
    words: int, limit: int
) -> None:
    """Property: the check with the model's own tokenizer refuses exactly the contexts that
    cannot hold the rendered prompt of an empty question plus one token, naming the key."""
    gen = _templated(words)
    head = len(gen.tokenize(gen.render(Problem("", ""))))
    cfg = compose_config([f"model.max_model_len={limit}"])
    if head + 1 <= limit:
        check_context(cfg, gen)
        return
    with pytest.raises(ConfigError) as err:
        check_context(cfg, gen)
    assert str(err.value).startswith(
        f"model.max_model_len={limit} cannot hold a rendered prompt plus one token: the chat "
        f"template and system prompt alone take {head} tokens"
    )


def test_the_context_check_runs_before_the_engine_and_any_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = _templated(100)
    started: list[bool] = []
    gen.start = lambda: started.append(True)  # type: ignore[attr-defined]
    monkeypatch.setattr(build, "generator_for", lambda backend: gen)
    cache = tmp_path / "calls.sqlite"
    cfg = compose_config(["model.max_model_len=64", "cache.mode=record", f"cache.path={cache}"])
    with pytest.raises(ConfigError, match=r"model\.max_model_len=64 cannot hold"):
        build.build_generator(cfg, tmp_path)
    assert not cache.exists() and started == []
    cfg = compose_config(["model.max_model_len=64", "backend.max_model_len=50"])
    with pytest.raises(ConfigError, match=r"^backend\.max_model_len=50 cannot hold"):
        build.build_generator(cfg, tmp_path)
    assert build.build_generator(compose_config(["model.max_model_len=2048"])) is gen


def test_a_config_is_composed_once_and_each_caller_gets_its_own_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hydra's compose cost ~0.1 s of CPU per API call; composed once per list of overrides,
    # a caller that edits its config must still not change anyone else's
    import hydra

    overrides = ["search=beam", "search.n=6", "search.width=3"]
    first = build.compose_config(overrides)
    composed: list[object] = []
    real = hydra.compose
    monkeypatch.setattr(hydra, "compose", lambda *a, **k: composed.append(a) or real(*a, **k))
    first.search.n = 99
    again = build.compose_config(overrides)
    assert composed == [] and again.search.n == 6 and again.search.width == 3
    assert build.compose_config(["search=beam", "search.n=5"]).search.n == 5
    assert len(composed) == 1  # a new list of overrides is composed
