"""Typed, declarative settings: one declaration per key gives its check, its error and its docs.

Controllers, thread strategies, trimmers and the top-level run keys declare their settings as
`@settings` classes (pydantic dataclasses). A field's type says what it accepts (the annotated
types below, `Literal[...]` for named choices), its `Field(description=...)` or attribute
docstring says what it means. From that one declaration come:

- the check, on construction (strict: no ints for bools, no bools or strings for numbers);
- ONE error shape, `SettingsError` (a `ValueError`) naming the dotted key, what it accepts and
  what it got: `search.n must be an integer >= 1, got 0`;
- the settings tables of docs/configuration.md and `reason --help-search NAME` (`table`).

pydantic is the kept library here because vLLM's own config uses it (it is installed with the
engine), its dataclasses stay plain dataclasses (`dataclasses.fields`, `asdict`), and the
reasoning server can validate untrusted request settings with the same declarations.
Cross-field checks stay in `__post_init__` (pydantic runs it after the field checks) and raise
`self.invalid(key, value, problem)`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.fields import FieldInfo


class SettingsError(ValueError):
    """A setting that cannot run; the message names the dotted key, what it accepts and what it
    got."""


@dataclasses.dataclass(frozen=True)
class Allowed:
    """What a value of a type must be, in words (the `must be ...` of errors and docs)."""

    text: str


# --- the vocabulary of value types (each with its one-line meaning in `Allowed`) -------------
Count = Annotated[int, Field(ge=1), Allowed("an integer >= 1")]
"""How many of something; at least one."""
NonNegativeCount = Annotated[int, Field(ge=0), Allowed("an integer >= 0")]
"""How many of something; zero allowed (zero usually means off)."""
TokenCap = Annotated[int, Field(ge=1), Allowed("an integer >= 1")]
"""A number of tokens that caps a generation; at least one."""
Probability = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False), Allowed("in (0, 1]")]
"""A probability that must leave something: in (0, 1]."""
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), Allowed("in [0, 1]")]
"""A share of a whole, in [0, 1]."""
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False), Allowed("> 0")]
"""A finite number above zero."""
NonNegativeFloat = Annotated[
    float, Field(ge=0, allow_inf_nan=False), Allowed("a finite number >= 0")
]
"""A finite number, zero allowed."""
Flag = Annotated[bool, Allowed("true or false")]
"""A switch: true or false (never 0/1)."""
Text = Annotated[str, Allowed("a string")]
"""Any text, empty allowed."""
NonEmptyText = Annotated[str, Field(min_length=1), Allowed("a non-empty string")]
"""Text that must say something."""
OptionalCount = Annotated[Count | None, Allowed("an integer >= 1 or null")]
"""A count, or null for "no cap" / "the default"."""
OptionalTokenCap = Annotated[TokenCap | None, Allowed("an integer >= 1 or null")]
"""A token cap, or null for "what is left"."""
OptionalNonNegativeCount = Annotated[NonNegativeCount | None, Allowed("an integer >= 0 or null")]
"""A count where 0 and null both mean off."""

# --- generation settings shared by controllers, thread strategies and trimmers --------------
# A key that search/ and trim/ both declare is declared here once (the generation layer does not
# import search/); search/settings.py re-exports these.
AnswerTokens = Annotated[
    NonNegativeCount,
    Field(description="tokens of a forced answer after the answer cue (0: off)"),
]
AnswerCue = Annotated[str, Field(description="the text that opens a forced answer")]

CONFIG = ConfigDict(
    extra="forbid",
    arbitrary_types_allowed=True,
    strict=True,
    use_attribute_docstrings=True,
    validate_default=False,
)

T = TypeVar("T")


class Settings:
    """Base of every `@settings` class: where its keys live and how its errors read.

    `settings_key` is the dotted config node ("search", "search.strategy", "trim");
    `settings_kind` names the group in "is not a <kind> setting" (default: the key).
    """

    settings_key: ClassVar[str] = ""
    settings_kind: ClassVar[str] = ""

    @classmethod
    def key_of(cls, name: str) -> str:
        return f"{cls.settings_key}.{name}" if cls.settings_key else name

    @classmethod
    def invalid(cls, name: str, value: Any, problem: str) -> SettingsError:
        """The one error shape for a bad value of setting `name` (cross-field checks use it)."""
        return SettingsError(f"{cls.key_of(name)} {problem}, got {value!r}")


def settings(cls: type[T]) -> type[T]:
    """Make `cls` a typed settings dataclass (pydantic, strict, unknown keys refused) whose
    construction errors are `SettingsError`s naming the key."""
    built = pydantic_dataclass(cls, config=CONFIG)  # type: ignore[call-overload]
    validate = built.__init__

    @functools.wraps(validate)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            validate(self, *args, **kwargs)
        except ValidationError as exc:
            raise _error(type(self), exc, kwargs) from None

    built.__init__ = __init__
    return built


def _error(cls: type, exc: ValidationError, given: dict[str, Any] | None = None) -> ValueError:
    """The first problem of `exc` in the one error shape."""
    err = exc.errors(include_url=False)[0]
    original = (err.get("ctx") or {}).get("error")
    loc = err.get("loc") or ()
    if not loc and isinstance(original, ValueError):  # from __post_init__: names its own key
        return original if isinstance(original, SettingsError) else SettingsError(str(original))
    name = str(loc[0]) if loc else ""
    key = cls.key_of(name) if hasattr(cls, "key_of") else name
    if err["type"] in ("unexpected_keyword_argument", "unexpected_positional_argument"):
        owner = getattr(cls, "name", "")
        kind = getattr(cls, "settings_kind", "") or owner or getattr(cls, "settings_key", "")
        of = f" of {owner}" if owner and owner != kind else ""  # "a search setting of greedy"
        valid = ", ".join(names(cls))
        return SettingsError(f"{key} is not a {kind or 'known'} setting{of}; valid: {valid}")
    if err["type"] == "missing_argument":
        return SettingsError(f"{key} must be set")
    info = fields_of(cls).get(name)
    allowed = describe(info.annotation, info.metadata) if info is not None else err["msg"]
    value = (given or {}).get(name, err.get("input"))  # the whole value, not a bad item of it
    return SettingsError(f"{key} must be {allowed}, got {value!r}")


def fields_of(cls: type) -> dict[str, FieldInfo]:
    """The declared settings of a `@settings` class, in declaration order. A field a subclass
    redeclares (a new default) keeps the meaning its base documented."""
    out = dict(getattr(cls, "__pydantic_fields__", {}))
    for name, info in out.items():
        if info.description:
            continue
        for base in cls.__mro__[1:]:
            inherited = getattr(base, "__pydantic_fields__", {}).get(name)
            if inherited is not None and inherited.description:
                out[name] = FieldInfo.merge_field_infos(info, description=inherited.description)
                break
    return out


def names(cls: type) -> list[str]:
    """The keys a `@settings` class takes."""
    return [n for n, f in fields_of(cls).items() if f.init is not False]


def describe(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> str:
    """What a value of this type must be, in words: `an integer >= 1 or null`."""
    for item in metadata:
        if isinstance(item, Allowed):
            return item.text
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return describe(base, extra)
    if origin is Literal:
        return f"one of {list(get_args(annotation))}"
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        args = get_args(annotation)
        parts = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return text + (" or null" if type(None) in args else "")
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if origin in (list, tuple) or annotation in (list, tuple):
        inner = [describe(a) for a in get_args(annotation) if a is not Ellipsis]
        return f"a list of ({inner[0]})" if inner else "a list"
    if (
        origin is Callable
        or annotation is Callable
        or getattr(origin, "__name__", "") == "Callable"
    ):
        return "a function"
    return getattr(annotation, "__name__", str(annotation))


def meaning(info: FieldInfo) -> str:
    """A setting's one-line meaning (its description or attribute docstring)."""
    return " ".join((info.description or "").split())


def default_of(info: FieldInfo) -> Any:
    """A setting's default value (a factory's product; `...` when it has none)."""
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    from pydantic_core import PydanticUndefined

    return ... if info.default is PydanticUndefined else info.default


def _cell(value: Any) -> str:
    if value is ...:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"`{getattr(value, 'name', type(value).__name__)}`"
    if callable(value):
        return getattr(value, "__name__", repr(value))
    if isinstance(value, tuple):
        value = list(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return "`" + text.replace("|", "\\|").replace("\n", "\\n") + "`"


def rows(cls: type) -> list[tuple[str, str, str, str]]:
    """(key, allowed values, default, meaning) of each setting of `cls`."""
    out = []
    for name, info in fields_of(cls).items():
        if info.init is False:
            continue
        allowed = describe(info.annotation, info.metadata)
        out.append((name, allowed, _cell(default_of(info)), meaning(info)))
    return out


def table(cls: type, prefix: str = "") -> str:
    """A markdown table of `cls`'s settings: what docs/configuration.md and `--help` show."""
    lines = ["| key | accepts | default | meaning |", "| --- | --- | --- | --- |"]
    for name, allowed, default, text in rows(cls):
        allowed = allowed.replace("|", "\\|")
        lines.append(f"| `{prefix}{name}` | {allowed} | {default} | {text.replace('|', '/')} |")
    return "\n".join(lines)


__all__ = [
    "Allowed",
    "AnswerCue",
    "AnswerTokens",
    "Count",
    "Flag",
    "Fraction",
    "NonEmptyText",
    "NonNegativeCount",
    "NonNegativeFloat",
    "OptionalCount",
    "OptionalNonNegativeCount",
    "OptionalTokenCap",
    "PositiveFloat",
    "Probability",
    "Settings",
    "SettingsError",
    "Text",
    "TokenCap",
    "default_of",
    "describe",
    "fields_of",
    "meaning",
    "names",
    "rows",
    "settings",
    "table",
]
