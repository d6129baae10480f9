"""Chat as chat: OpenAI-style conversations and tools as problems, and replies split back.

A server request becomes a `Problem` that carries its whole conversation and tools (validated
here, once, with errors that name the bad field), so the renderer applies the model's chat
template to it, cache keys tell two conversations apart and votes see tool calls. A sample's
text is split back into the reply a client expects: the thinking, the answer and the tool
calls (vLLM's tool parser for the model when one is named, else Hermes-style blocks).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reasoning.types import AnswerJudge, Problem

if TYPE_CHECKING:
    from reasoning.prompts import ThinkingFormat

ROLES = ("system", "user", "assistant", "tool")
# newer OpenAI clients send "developer" for the system turn; templates know only "system"
ROLE_ALIASES = {"developer": "system"}
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOOL_CHOICES = ("none", "auto", "required")


@dataclass(frozen=True)
class ToolCall:
    """One function call the model made; `arguments` is a canonical JSON text (sorted keys)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """A sample as a chat reply: the answer, the thinking (when the model thinks), the calls."""

    content: str | None
    reasoning: str | None  # the thinking block's text, when the model thinks
    tool_calls: tuple[ToolCall, ...] = ()


# --- building problems ---------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """One text per JSON value (sorted keys, no spaces): equal arguments, equal texts."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _text(content: Any, where: str) -> str:
    """Message content as text: a string, or a list of text parts joined by newlines (as
    vLLM does for templates that take strings)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence) or isinstance(content, bytes):
        raise ValueError(f"{where}: must be a string or a list of text parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, Mapping):
            raise ValueError(f"{where}[{j}]: must be an object {{'type': 'text', 'text': ...}}")
        if part.get("type") != "text":
            raise ValueError(
                f"{where}[{j}].type: only text parts are supported, got {part.get('type')!r}"
            )
        if not isinstance(part.get("text"), str):
            raise ValueError(f"{where}[{j}].text: must be a string")
        texts.append(part["text"])
    return "\n".join(texts)


def _arguments(raw: Any, where: str, *, canonical: bool = True) -> str:
    """Call arguments as JSON of an object (a JSON text, or the object itself): canonical
    for votes, else in the client's key order (what a conversation's template shows)."""
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not a JSON text ({err.msg})") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: must be a JSON object")
    if not canonical:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return canonical_json(value)


def _tool_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise ValueError(f"{where}: must match [A-Za-z0-9_-]{{1,64}}, got {name!r}")
    return name


def _message(raw: Any, i: int) -> dict[str, Any]:
    """One validated message, keeping only the fields a template reads (a client echoing a
    reply back may add `refusal`, `audio`, `reasoning_content`: they are dropped)."""
    where = f"messages[{i}]"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: must be an object with a role")
    role = raw.get("role")
    role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
    if role not in ROLES:
        raise ValueError(f"{where}.role: must be one of {list(ROLES)}, got {raw.get('role')!r}")
    message: dict[str, Any] = {"role": role}
    content = raw.get("content")
    calls = raw.get("tool_calls") if role == "assistant" else None
    if content is None and not calls:
        raise ValueError(f"{where}.content: required for a {role} message")
    message["content"] = None if content is None else _text(content, f"{where}.content")
    if raw.get("name") is not None:
        if not isinstance(raw["name"], str):
            raise ValueError(f"{where}.name: must be a string")
        message["name"] = raw["name"]
    if role == "tool":
        if not isinstance(raw.get("tool_call_id"), str) or not raw["tool_call_id"]:
            raise ValueError(f"{where}.tool_call_id: required (a string) for a tool message")
        message["tool_call_id"] = raw["tool_call_id"]
    if calls:
        if not isinstance(calls, Sequence) or isinstance(calls, str):
            raise ValueError(f"{where}.tool_calls: must be a list")
        message["tool_calls"] = [_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(calls)]
    return message


def _call(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: must be an object")
    if raw.get("type", "function") != "function":
        raise ValueError(f"{where}.type: must be 'function', got {raw.get('type')!r}")
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise ValueError(f"{where}.id: required (a string)")
    function = raw.get("function")
    if not isinstance(function, Mapping):
        raise ValueError(f"{where}.function: must be an object with name and arguments")
    return {
        "id": raw["id"],
        "type": "function",
        "function": {
            "name": _tool_name(function.get("name"), f"{where}.function.name"),
            "arguments": _arguments(
                function.get("arguments", "{}"), f"{where}.function.arguments", canonical=False
            ),
        },
    }


def _tool(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: must be an object")
    if raw.get("type") != "function":
        raise ValueError(f"{where}.type: must be 'function', got {raw.get('type')!r}")
    function = raw.get("function")
    if not isinstance(function, Mapping):
        raise ValueError(f"{where}.function: must be an object with a name")
    out: dict[str, Any] = {"name": _tool_name(function.get("name"), f"{where}.function.name")}
    if function.get("description") is not None:
        if not isinstance(function["description"], str):
            raise ValueError(f"{where}.function.description: must be a string")
        out["description"] = function["description"]
    if "parameters" in function:
        parameters = function["parameters"]
        if not isinstance(parameters, Mapping):
            raise ValueError(f"{where}.function.parameters: must be a JSON schema object")
        if parameters.get("type", "object") != "object":
            raise ValueError(
                f"{where}.function.parameters.type: must be 'object', got {parameters['type']!r}"
            )
        try:  # a schema travels to the template and the cache key as JSON (its key order kept)
            out["parameters"] = json.loads(json.dumps(parameters, ensure_ascii=False))
        except (TypeError, ValueError):
            raise ValueError(f"{where}.function.parameters: not JSON-serialisable") from None
    if function.get("strict") is not None:
        out["strict"] = bool(function["strict"])
    return {"type": "function", "function": out}


def _tool_choice(raw: Any, names: Sequence[str]) -> Any:
    if raw is None:
        return None
    if isinstance(raw, str):
        if raw not in TOOL_CHOICES:
            raise ValueError(f"tool_choice: must be one of {list(TOOL_CHOICES)} or a function")
        if raw != "none" and not names:
            raise ValueError(f"tool_choice: {raw!r} needs tools")
        return raw
    function = raw.get("function") if isinstance(raw, Mapping) else None
    if (
        not isinstance(raw, Mapping)
        or raw.get("type") != "function"
        or not isinstance(function, Mapping)
    ):
        raise ValueError("tool_choice: must be a string or {'type': 'function', 'function': ...}")
    name = function.get("name")
    if name not in names:
        raise ValueError(f"tool_choice.function.name: {name!r} is not one of the tools")
    return {"type": "function", "function": {"name": name}}


def chat_problem(
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    id: str,
) -> Problem:
    """A chat request as a Problem: `question` is the last user message's text.

    Raises ValueError naming the bad field (e.g. "messages[2].role") for malformed input.
    """
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise ValueError("messages: must be a non-empty list of messages")
    checked = tuple(_message(m, i) for i, m in enumerate(messages))
    users = [m["content"] for m in checked if m["role"] == "user"]
    if not users:
        raise ValueError("messages: needs at least one user message")
    tools_out: tuple[dict[str, Any], ...] | None = None
    if tools is not None:
        if not isinstance(tools, Sequence) or isinstance(tools, str):
            raise ValueError("tools: must be a list of function tools")
        tools_out = tuple(_tool(t, f"tools[{i}]") for i, t in enumerate(tools))
        names = [t["function"]["name"] for t in tools_out]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"tools[{i}].function.name: {name!r} is given twice")
    names = [t["function"]["name"] for t in tools_out or ()]
    return Problem(
        id=id,
        question=users[-1],
        messages=checked,
        tools=tools_out or None,
        tool_choice=_tool_choice(tool_choice, names),
    )


def completion_problem(prompt: str, *, id: str) -> Problem:
    """A /v1/completions prompt as a Problem rendered as it is (no chat template)."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt: must be a non-empty string")
    return Problem(id=id, question=prompt, prompt=prompt)


def offered_tools(problem: Problem) -> list[dict[str, Any]] | None:
    """The tools the template shows the model: none under tool_choice "none", only the named
    one under a named choice (no constrained decoding enforces either: see docs)."""
    if not problem.tools or problem.tool_choice == "none":
        return None
    tools = [dict(t) for t in problem.tools]
    if isinstance(problem.tool_choice, Mapping):
        name = problem.tool_choice["function"]["name"]
        tools = [t for t in tools if t["function"]["name"] == name]
    return tools


def template_messages(problem: Problem) -> list[dict[str, Any]]:
    """The conversation as chat templates read it: null content as "", call arguments as
    objects (Hermes/Qwen templates `tojson` them), and the last user message replaced when a
    controller renders a variant of the question (`Context.render_question`)."""
    assert problem.messages is not None
    out: list[dict[str, Any]] = []
    for m in problem.messages:
        message = {**m, "content": m.get("content") or ""}
        if "tool_calls" in m:
            message["tool_calls"] = [
                {
                    **c,
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": json.loads(c["function"]["arguments"]),
                    },
                }
                for c in m["tool_calls"]
            ]
        out.append(message)
    last_user = max(i for i, m in enumerate(out) if m["role"] == "user")
    if out[last_user]["content"] != problem.question:
        out[last_user] = {**out[last_user], "content": problem.question}
    return out


# --- splitting replies ---------------------------------------------------------------------

ToolParser = Callable[[str], "list[tuple[str, str]] | None"]
"""Model output -> (name, arguments JSON text) per call, None when it made none: a model's own
format (see `vllm_tool_parser`)."""

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_FENCE = re.compile(r"\A```(?:json)?\s*(.*?)\s*```\Z", re.DOTALL)


def _as_call(value: Any, names: Sequence[str]) -> tuple[str, str] | None:
    """(name, canonical arguments) of a {"name", "arguments"} object naming an offered tool."""
    if not isinstance(value, Mapping) or value.get("name") not in names:
        return None
    raw = value.get("arguments", value.get("parameters", {}))
    try:
        return str(value["name"]), _arguments(raw, "arguments")
    except ValueError:
        return None


def _hermes_calls(text: str, names: Sequence[str]) -> tuple[list[tuple[str, str]], str]:
    """Hermes-style `<tool_call>{...}</tool_call>` blocks (the last may lack its close tag: the
    sample ended at EOS), and the text with the parsed blocks taken out."""
    calls: list[tuple[str, str]] = []
    rest: list[str] = []
    at = 0
    for match in _BLOCK.finditer(text):
        try:
            call = _as_call(json.loads(match.group(1)), names)
        except json.JSONDecodeError:
            call = None
        if call is None:
            continue  # not a call: it stays in the content
        calls.append(call)
        rest.append(text[at : match.start()])
        at = match.end()
    rest.append(text[at:])
    return calls, "".join(rest)


def _bare_calls(text: str, names: Sequence[str]) -> list[tuple[str, str]]:
    """A reply that is nothing but a JSON call object (or a list of them), perhaps fenced."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    if not body.startswith(("{", "[")):
        return []
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return []
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(v, names) for v in items]
    return [c for c in calls if c is not None] if items and all(calls) else []


def _offered(
    parsed: list[tuple[str, str]] | None, names: Sequence[str]
) -> list[tuple[str, str]] | None:
    """A parser's calls with canonical arguments; None (use the fallbacks) when one names a
    tool that was not offered or has arguments that are not a JSON object."""
    if not parsed or any(name not in names for name, _ in parsed):
        return None
    try:
        return [(name, _arguments(args, "arguments")) for name, args in parsed]
    except ValueError:
        return None


def _split_thinking(text: str, thinking: ThinkingFormat | None) -> tuple[str | None, str | None]:
    """(reasoning, the rest): the text up to the close tag is thinking; a text that never
    closes its block (opened by the model or forced by the prompt) is all thinking."""
    if thinking is None:
        return None, text
    head = text.lstrip()
    opened = head.startswith(thinking.open)
    at = text.find(thinking.close)
    if at < 0:
        if opened or thinking.forced:
            return head.removeprefix(thinking.open).strip(), None
        return None, text
    reasoning = text[:at].lstrip().removeprefix(thinking.open)
    return reasoning.strip(), text[at + len(thinking.close) :]


def call_id(problem: Problem, index: int, name: str, arguments: str) -> str:
    """A deterministic id ("call_<hash>"): the same reply replays with the same ids."""
    digest = hashlib.sha256(f"{problem.id}\0{index}\0{name}\0{arguments}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def split_reply(
    text: str,
    problem: Problem,
    thinking: ThinkingFormat | None,
    *,
    parser: ToolParser | None = None,
) -> Reply:
    """A sample's text as a chat reply: thinking, answer, and the tool calls it made.

    Calls are read only from the answer (never the thinking), only when the problem offers
    tools and tool_choice is not "none", and only for offered tool names: `parser` (the model's
    own format) when given, else Hermes `<tool_call>` blocks, else a bare JSON call object.
    Arguments are canonical JSON, so equal calls compare equal as text.
    """
    reasoning, rest = _split_thinking(text, thinking)
    names = [t["function"]["name"] for t in problem.tools or ()]
    found: list[tuple[str, str]] = []
    if rest is not None and names and problem.tool_choice != "none":
        parsed = _offered(parser(rest), names) if parser is not None else None
        if parsed:
            found, rest = parsed, ""
        else:
            found, rest = _hermes_calls(rest, names)
            if not found:
                found = _bare_calls(rest, names)
                rest = "" if found else rest
    content = None if rest is None else rest.strip()
    if found and not content:
        content = None
    calls = tuple(
        ToolCall(call_id(problem, i, name, args), name, args)
        for i, (name, args) in enumerate(found)
    )
    return Reply(content=content, reasoning=reasoning or None, tool_calls=calls)


def vllm_tool_parser(name: str, tokenizer: Any, problem: Problem) -> ToolParser:
    """vLLM's tool parser `name` (e.g. "hermes", "llama3_json") for `problem`'s tools, as a
    `ToolParser`. vLLM is imported only here: a light install without it never calls this."""
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.tool_parsers import ToolParserManager

    request = ChatCompletionRequest(
        model="reasoning",
        messages=[dict(m) for m in problem.messages or ()],
        tools=[dict(t) for t in problem.tools or ()],
        tool_choice=problem.tool_choice or "auto",
    )
    tool_parser = ToolParserManager.get_tool_parser(name)(tokenizer, request.tools)

    def parse(text: str) -> list[tuple[str, str]] | None:
        info = tool_parser.extract_tool_calls(text, request)
        if not info.tools_called:
            return None
        return [(c.function.name, c.function.arguments) for c in info.tool_calls]

    return parse


# --- votes over replies --------------------------------------------------------------------


def call_key(calls: Sequence[ToolCall]) -> str:
    """What a vote compares calls by: names and canonical arguments, in order."""
    return "; ".join(f"{c.name}({c.arguments})" for c in calls)


class ReplyJudge:
    """The vote's judge on a chat problem (`types.judge_for` binds it): a sample that calls
    tools answers with its calls (name and canonical arguments), else with what the inner
    judge extracts, else with its reply text; only the inner judge's answers compare by its
    equivalence, calls and texts compare exactly."""

    def __init__(self, inner: AnswerJudge, problem: Problem) -> None:
        from reasoning.prompts import ThinkingFormat

        self.inner = inner
        self.problem = problem
        self.thinking = ThinkingFormat()  # the usual tags; a text without them has no thinking
        self._exact: set[str] = set()  # answers made here, not by the inner judge

    def extract(self, text: str) -> str | None:
        reply = split_reply(text, self.problem, self.thinking)
        if reply.tool_calls:
            key = call_key(reply.tool_calls)
        else:
            key = self.inner.extract(text) or None
            if key is not None:
                return key
            key = " ".join((reply.content or "").split())
            if not key:
                return None
        self._exact.add(key)
        return key

    async def equivalent(self, a: str, b: str) -> bool | None:
        if a in self._exact or b in self._exact:
            return a == b
        return await self.inner.equivalent(a, b)
