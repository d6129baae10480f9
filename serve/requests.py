"""The method of one request: its model name, `extra_body` and headers turned into the search,
verifier and budget settings of its solve, checked against the operator's limits.

Three ways compose, later ones winning key by key: the model name ("beam/smollm2-135m": the
search before the slash), the OpenAI sampling fields (max_tokens, temperature, top_p; applied
only where the controller has the key), the headers (`X-Reasoning-Search: NAME`,
`X-Reasoning-Settings: JSON or key=value,...`) and the body's `search` / `verifier` / `budget`
objects. The values are checked by the same typed declarations as the CLI when the parts are
built (`reasoning.build`), so an unknown or invalid key is a 400 that names it.

Request values never reach Hydra as config syntax: keys starting with `_` (`_target_`) and
strings with `${` (an interpolation could read the server's environment) are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from serve.openai_format import APIError

SEARCH_HEADER = "x-reasoning-search"
SETTINGS_HEADER = "x-reasoning-settings"
GROUPS = ("search", "verifier", "budget")
# OpenAI sampling fields -> the controller key they set (when the controller declares it)
SAMPLING_FIELDS = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
}


@dataclass
class Method:
    """What a request asks of the search: names and the settings to merge over the server's."""

    search: str
    search_settings: dict[str, Any] = field(default_factory=dict)
    verifier: str | None = None  # None: the server's own verifier
    verifier_settings: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    asked: set[str] = field(default_factory=set)  # search keys the client set itself


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def check_safe(value: Any, where: str) -> None:
    """Refuse config syntax in request values (see the module docstring)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("_"):
                raise bad(f"{where}.{key} is not a setting a request may set", param=where)
            check_safe(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_safe(item, f"{where}[{i}]")
    elif isinstance(value, str) and "${" in value:
        raise bad(f"{where}: '${{' is not allowed in a request value", param=where)


def split_model(model: Any, served: Sequence[str]) -> str | None:
    """The search a model name picks ("beam/smollm2-135m" -> "beam"; a bare served name ->
    None, the server's default); 404 for a model the server does not serve."""
    if not isinstance(model, str) or not model:
        raise bad("model must be a non-empty string", param="model", code="invalid_model")
    search, slash, name = model.rpartition("/")
    if name not in served:
        known = ", ".join(served)
        raise APIError(
            404,
            f"model {model!r} is not served here; served: {known} (or SEARCH/{served[0]})",
            param="model",
            code="model_not_found",
        )
    if slash and not search:
        raise bad(f"model {model!r}: empty search name before '/'", param="model")
    return search or None


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def header_settings(text: str) -> dict[str, Any]:
    """`X-Reasoning-Settings`: a JSON object ({"search": {...}, "budget": {...}}) or
    `group.key=value` pairs separated by commas (values read as JSON when they parse)."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise bad(f"{SETTINGS_HEADER} is not valid JSON: {exc}", SETTINGS_HEADER) from None
        if not isinstance(data, dict):
            raise bad(f"{SETTINGS_HEADER} must be a JSON object", param=SETTINGS_HEADER)
        return data
    out: dict[str, Any] = {}
    for pair in text.split(","):
        key, eq, value = pair.strip().partition("=")
        if not eq or not key.strip():
            raise bad(f"{SETTINGS_HEADER}: {pair.strip()!r} is not key=value", SETTINGS_HEADER)
        *path, last = key.strip().split(".")
        if not path or path[0] not in GROUPS:
            raise bad(
                f"{SETTINGS_HEADER}: {key.strip()} must start with one of {', '.join(GROUPS)}",
                param=SETTINGS_HEADER,
            )
        node = out
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise bad(f"{SETTINGS_HEADER}: {key.strip()} repeats a key", SETTINGS_HEADER)
        node[last] = _parse_value(value.strip())
    return out


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` merged in, key by key (nested objects merged, not replaced)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _group(layer: Mapping[str, Any], name: str, where: str) -> Any:
    value = layer.get(name)
    if value is None:
        return None
    check_safe(value, f"{where}.{name}" if where else name)
    return value


def method_of(
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    served: Sequence[str],
    default_search: str,
    sampling_keys: Any = None,
) -> Method:
    """The request's method; `sampling_keys(search_name)` gives the keys a controller declares
    (the OpenAI sampling fields go only where they exist)."""
    method = Method(search=split_model(body.get("model"), served) or default_search)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if headers.get(SEARCH_HEADER):
        layers.append((SEARCH_HEADER, {"search": {"name": headers[SEARCH_HEADER].strip()}}))
    if headers.get(SETTINGS_HEADER):
        layers.append((SETTINGS_HEADER, header_settings(headers[SETTINGS_HEADER])))
    layers.append(("", {g: body[g] for g in GROUPS if g in body}))
    search: dict[str, Any] = {}
    for where, layer in layers:
        unknown = sorted(set(layer) - set(GROUPS))
        if unknown:
            raise bad(f"{where}: {unknown[0]} is not one of {', '.join(GROUPS)}", param=where)
        s = _group(layer, "search", where)
        if isinstance(s, str):
            s = {"name": s}
        if s is not None:
            if not isinstance(s, Mapping):
                raise bad("search must be an object or a controller name", param="search")
            search = deep_merge(search, s)
        v = _group(layer, "verifier", where)
        if isinstance(v, str):
            v = {"name": v}
        if v is not None:
            if not isinstance(v, Mapping):
                raise bad("verifier must be an object or a verifier name", param="verifier")
            if "name" in v:
                method.verifier = str(v["name"])
                method.verifier_settings = {}
            method.verifier_settings = deep_merge(
                method.verifier_settings, {k: x for k, x in v.items() if k != "name"}
            )
        b = _group(layer, "budget", where)
        if b is not None:
            if not isinstance(b, Mapping):
                raise bad("budget must be an object", param="budget")
            method.budget = deep_merge(method.budget, b)
    if "name" in search:
        name = search.pop("name")
        if not isinstance(name, str) or not name:
            raise bad("search.name must be a controller name", param="search.name")
        method.search = name
    keys = set(sampling_keys(method.search)) if sampling_keys is not None else set()
    sampled: dict[str, Any] = {}
    for openai_key, key in SAMPLING_FIELDS.items():
        if body.get(openai_key) is not None and key in keys:
            sampled[key] = body[openai_key]
    method.search_settings = deep_merge(sampled, search)
    method.asked = set(method.search_settings)
    return method
