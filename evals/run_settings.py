"""The top-level run keys of conf/config.yaml, declared once with the typed settings vocabulary.

`seed`, `concurrency`, `progress`, `verbose`, `retry_errors`, `judge.*`, `cache.*`, `dataset.*`
and `dataset.arith.*` are `@settings` classes (reasoning/settings.py) like the controllers'
keys: the declaration gives the check (evals/validation.py runs it on the composed config
before anything expensive starts), the one error shape (`concurrency must be an integer >= 1,
got 0`) and the "Top-level keys" table of docs/configuration.md (evals/settings_doc.py).

They live in `evals/` because they are keys of a benchmark run, not of one solve: the API and
the reasoning server take search settings, never a concurrency or a progress bar.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError

from evals.arith import LEVELS
from reasoning.cache import MODES, Mode
from reasoning.settings import (
    Allowed,
    Count,
    Flag,
    NonNegativeCount,
    Settings,
    SettingsError,
    describe,
    fields_of,
    settings,
)

SEED_MAX = 2**32 - 1  # numpy (seeded by the engine from `seed`) takes 0 .. 2**32 - 1

Seed = Annotated[int, Field(ge=0, le=SEED_MAX), Allowed(f"an integer >= 0 and <= {SEED_MAX}")]
"""A random seed numpy accepts."""
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False), Allowed("a number > 0")]
"""A positive, finite duration in seconds."""
Name = Annotated[str, Field(pattern=r"\S"), Allowed("a non-empty string")]
"""Text with something besides blanks in it (a name, a path)."""
OptionalName = Annotated[Name | None, Allowed("a non-empty string or null")]
"""A name or path, or null for "the default"."""
OptionalNonNegativeCount = Annotated[NonNegativeCount | None, Allowed("an integer >= 0 or null")]
"""A count, or null for "all"."""
CacheMode = Annotated[
    Mode,
    BeforeValidator(lambda v: "off" if v is None or v is False else v),  # YAML: bare off = false
    Allowed(f"one of {', '.join(MODES)}"),
]
"""A cache mode; null and false (YAML's reading of a bare `off`) mean off."""
ProblemId = Annotated[str, Field(min_length=1)] | int
SubjectName = Annotated[str, Field(pattern=r"\S")]
Level = str | int


def _arith_level(level: int) -> int:
    if level not in LEVELS:
        raise ValueError(f"not one of {LEVELS}")
    return level


ArithLevel = Annotated[int, AfterValidator(_arith_level)]  # strict: never a bool


@dataclasses.dataclass(frozen=True)
class ListOf:
    """A list setting's items in words, and the hint shown when a bare value is given."""

    what: str


def _list(item: Any, what: str) -> Any:
    return Annotated[list[item], ListOf(what), Allowed(f"a list of {what}")]  # type: ignore[valid-type]


ProblemIds = _list(ProblemId, "problem ids")
SubjectNames = _list(SubjectName, "subject names")
Levels = _list(Level, "levels")
ArithLevels = _list(ArithLevel, f"levels {', '.join(map(str, LEVELS))}")


class RunKeys(Settings):
    """A node of top-level run keys. `settings_open`: keys it does not declare are left to
    others (the root holds the groups; `dataset` holds `arith`, `countdown`, ...) instead of
    being refused."""

    settings_open: ClassVar[bool] = False
    settings_ignored: ClassVar[tuple[str, ...]] = ()


@settings
class RootSettings(RunKeys):
    """The keys at the top of conf/config.yaml."""

    settings_open = True

    seed: Seed = 0
    """seeds the engine and each problem's random generator (every call draws its seed there)"""
    concurrency: Count = 32
    """problems in flight at once (the engine batches their requests together)"""
    progress: Flag = True
    """show the progress bar"""
    verbose: Flag = False
    """false: vLLM's own output goes to engine.log in the run directory; true: to the terminal"""
    retry_errors: Flag = False
    """on resume, rerun the problems recorded with an error (false keeps their error records)"""


@settings
class JudgeSettings(RunKeys):
    """The answer judge (`evals.grading.Grader`), for voting and for grading."""

    settings_key = "judge"
    settings_ignored = ("_target_",)

    strict: Flag = False
    """true: only \\boxed{} / "final answer" counts as an answer (no last-number fallback)"""
    timeout_s: Seconds = 5.0
    """seconds per math-verify comparison before it counts as ungradable"""


@settings
class CacheSettings(RunKeys):
    """The record/replay cache of generator and verifier calls (reasoning/cache/)."""

    settings_key = "cache"

    mode: CacheMode = "off"
    """off, record (call and store), replay (the file only; no engine), auto (hits, else call)"""
    path: OptionalName = None
    """the SQLite file; null: cache.sqlite in the run directory"""


@settings
class DatasetSettings(RunKeys):
    """The keys every dataset option has (`dataset=NAME`)."""

    settings_key = "dataset"
    settings_open = True

    name: Name = "arith"
    """the benchmark: each dataset option sets its own (dataset=arith is the default)"""
    path: OptionalName = None
    """a local JSONL file of `problem` and `answer`; null: data_dir, else the Hugging Face hub"""
    data_dir: OptionalName = None
    """a folder of <name>.jsonl files; the default reads $REASONING_DATA_DIR"""
    limit: OptionalNonNegativeCount = None
    """the first this many problems (after the filters); null: all"""
    ids: ProblemIds | None = None
    """only these problem ids, a list (dataset.ids=[a,b]); null: all"""
    subjects: SubjectNames | None = None
    """only problems of these subjects, a list; null: all"""
    levels: Levels | None = None
    """only problems of these levels, a list; null: all"""


@settings
class ArithSettings(RunKeys):
    """Our seeded arithmetic problems (`dataset=arith`), generated offline."""

    settings_key = "dataset.arith"

    n: NonNegativeCount = 30
    """how many problems"""
    levels: ArithLevels = dataclasses.field(default_factory=lambda: [1])
    """the levels drawn from, a list: 1 (3 + 5) to 5 (word problems)"""
    seed: NonNegativeCount = 0
    """the generator's seed"""


# in the order they are checked (and shown in docs/configuration.md)
RUN_SETTINGS: tuple[type[RunKeys], ...] = (
    RootSettings,
    JudgeSettings,
    CacheSettings,
    DatasetSettings,
    ArithSettings,
)


def check_node(cls: type[RunKeys], node: dict[str, Any]) -> None:
    """Check one composed config node against its declaration; raise `SettingsError` naming
    the first bad key. Keys absent from `node` are not checked (the API composes partial
    configs), so declared defaults serve only the docs."""
    known = set(fields_of(cls))
    given = {
        k: v
        for k, v in node.items()
        if k not in cls.settings_ignored and (k in known or not cls.settings_open)
    }
    try:
        cls(**given)
    except SettingsError as exc:
        raise _with_list_hint(cls, given, exc) from None


def _list_part(annotation: Any, metadata: list[Any]) -> tuple[ListOf, Any, bool] | None:
    """(ListOf, item type, optional) of a list setting; None for any other type."""
    what = next((m for m in metadata if isinstance(m, ListOf)), None)
    if what is not None:  # pydantic keeps a required field's metadata beside its type
        return what, get_args(annotation)[0], False
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        if len(args) != 1:
            return None
        annotation = args[0]
    if get_origin(annotation) is not Annotated:
        return None
    base, *extra = get_args(annotation)
    what = next((m for m in extra if isinstance(m, ListOf)), None)
    if what is None:
        return None
    return what, get_args(base)[0], optional


def _with_list_hint(cls: type[RunKeys], given: dict[str, Any], exc: SettingsError) -> Exception:
    """A bad list setting says how to write a list (`write dataset.ids=[x]`) or which item is
    wrong (`['a'] is not one`); any other error stays as it is."""
    for name, info in fields_of(cls).items():
        part = _list_part(info.annotation, info.metadata)
        key = cls.key_of(name)
        if part is None or name not in given or not str(exc).startswith(f"{key} "):
            continue
        what, item, optional = part
        value = given[name]
        if isinstance(value, list):
            adapter: TypeAdapter[Any] = TypeAdapter(item, config={"strict": True})
            bad = []
            for x in value:
                try:
                    adapter.validate_python(x)
                except ValidationError:
                    bad.append(x)
            hint = f"{bad[0]!r} is not one" if bad else describe(item)
        else:
            hint = f"write {key}=[{value}]"
        null = " or null" if optional else ""
        return SettingsError(f"{key} must be a list of {what.what} ({hint}){null}, got {value!r}")
    return exc


__all__ = [
    "RUN_SETTINGS",
    "ArithSettings",
    "CacheSettings",
    "DatasetSettings",
    "JudgeSettings",
    "RootSettings",
    "RunKeys",
    "check_node",
]
