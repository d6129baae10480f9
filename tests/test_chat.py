"""Chat problems: validation, rendering with the chat template, replies split, votes over calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evals.grading import Grader
from reasoning import Context
from reasoning.cache import CachedGenerator, CallCache
from reasoning.cache.call_keys import cache_key, problem_json
from reasoning.chat import (
    Reply,
    ReplyJudge,
    chat_problem,
    completion_problem,
    split_reply,
)
from reasoning.prompts import ChatRenderer, ThinkingFormat
from reasoning.types import Chain, Problem, judge_for
from search import BestOfN
from tests.fakes import ScriptedGenerator

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
USER = {"role": "user", "content": "Weather in Paris?"}


def _chat(messages: list[Any] | None = None, **kw: Any) -> Problem:
    return chat_problem(messages or [USER], id="r1", **kw)


# --- validation ------------------------------------------------------------------------------

BAD: list[tuple[dict[str, Any], str]] = [
    ({"messages": []}, r"^messages: must be a non-empty list"),
    ({"messages": "hi"}, r"^messages: must be a non-empty list"),
    ({"messages": [USER, "hi"]}, r"^messages\[1\]: must be an object"),
    ({"messages": [USER, {"role": "robot", "content": "x"}]}, r"^messages\[1\]\.role: must be"),
    ({"messages": [{"content": "x"}]}, r"^messages\[0\]\.role"),
    ({"messages": [{"role": ["user"], "content": "x"}]}, r"^messages\[0\]\.role: must be"),
    ({"messages": [{"role": "user"}]}, r"^messages\[0\]\.content: required"),
    ({"messages": [{"role": "user", "content": 3}]}, r"^messages\[0\]\.content: must be"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        r"^messages\[0\]\.content\[0\]\.type: only text parts",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
        r"^messages\[0\]\.content\[0\]\.text: must be a string",
    ),
    ({"messages": [{"role": "user", "content": ["x"]}]}, r"^messages\[0\]\.content\[0\]: must"),
    ({"messages": [{"role": "user", "content": "x", "name": 5}]}, r"^messages\[0\]\.name"),
    ({"messages": [{"role": "system", "content": "x"}]}, r"^messages: needs at least one user"),
    (
        {"messages": [USER, {"role": "tool", "content": "sunny"}]},
        r"^messages\[1\]\.tool_call_id: required",
    ),
    (
        {"messages": [USER, {"role": "assistant", "tool_calls": "x"}]},
        r"^messages\[1\]\.tool_calls: must be a list",
    ),
    (
        {"messages": [USER, {"role": "assistant", "tool_calls": [{"type": "function"}]}]},
        r"^messages\[1\]\.tool_calls\[0\]\.id: required",
    ),
    (
        {"messages": [USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "x"}]}]},
        r"^messages\[1\]\.tool_calls\[0\]\.type: must be 'function'",
    ),
    (
        {"messages": [USER, {"role": "assistant", "tool_calls": [{"id": "c"}]}]},
        r"^messages\[1\]\.tool_calls\[0\]\.function: must be an object",
    ),
    (
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "a b", "arguments": "{}"}}],
                },
            ]
        },
        r"^messages\[1\]\.tool_calls\[0\]\.function\.name: must match",
    ),
    (
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{x"}}],
                },
            ]
        },
        r"^messages\[1\]\.tool_calls\[0\]\.function\.arguments: not a JSON text",
    ),
    (
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
                },
            ]
        },
        r"^messages\[1\]\.tool_calls\[0\]\.function\.arguments: must be a JSON object",
    ),
    ({"tools": {"type": "function"}}, r"^tools: must be a list"),
    ({"tools": ["f"]}, r"^tools\[0\]: must be an object"),
    ({"tools": [{"type": "retrieval"}]}, r"^tools\[0\]\.type: must be 'function'"),
    ({"tools": [{"type": "function"}]}, r"^tools\[0\]\.function: must be an object"),
    (
        {"tools": [WEATHER, {"type": "function", "function": {"name": "x" * 65}}]},
        r"^tools\[1\]\.function\.name: must match",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "description": 1}}]},
        r"^tools\[0\]\.function\.description: must be a string",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
        r"^tools\[0\]\.function\.parameters: must be a JSON schema object",
    ),
    (
        {
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
            ]
        },
        r"^tools\[0\]\.function\.parameters\.type: must be 'object'",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"d": {1, 2}}}}]},
        r"^tools\[0\]\.function\.parameters: not JSON-serialisable",
    ),
    ({"tools": [WEATHER, CLOCK, WEATHER]}, r"^tools\[2\]\.function\.name: 'get_weather' is given"),
    ({"tools": [WEATHER], "tool_choice": "always"}, r"^tool_choice: must be one of"),
    ({"tool_choice": "required"}, r"^tool_choice: 'required' needs tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, r"^tool_choice: must be a string"),
    (
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
        r"^tool_choice\.function\.name: 'x' is not one of the tools",
    ),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD, ids=[e for _, e in BAD])
def test_malformed_chat_input_is_a_value_error_naming_the_field(
    kwargs: dict[str, Any], error: str
) -> None:
    kwargs = {"messages": [USER], **kwargs}
    with pytest.raises(ValueError, match=error):
        chat_problem(kwargs.pop("messages"), id="r", **kwargs)


def test_a_valid_conversation_is_kept_as_templates_read_it() -> None:
    problem = chat_problem(
        [
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi."}, {"type": "text", "text": "Paris?"}],
            },
            {
                "role": "assistant",
                "content": None,
                "refusal": None,  # what an SDK echoes back: dropped
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"unit": "c", "city": "Paris"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "user", "content": "And tomorrow?", "name": "ann"},
        ],
        tools=[WEATHER],
        tool_choice="auto",
        id="r7",
    )
    assert problem.id == "r7" and problem.question == "And tomorrow?"
    assert problem.answer is None and problem.tool_choice == "auto"
    roles = [m["role"] for m in problem.messages or ()]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert problem.messages is not None
    assert problem.messages[1]["content"] == "Hi.\nParis?"
    assert "refusal" not in problem.messages[2] and problem.messages[4]["name"] == "ann"
    # the client's key order is kept for the template (votes use canonical JSON instead)
    assert problem.messages[2]["tool_calls"][0]["function"]["arguments"] == (
        '{"unit":"c","city":"Paris"}'
    )
    assert problem.tools is not None and problem.tools[0]["function"]["name"] == "get_weather"


def test_completion_problem_is_its_raw_prompt() -> None:
    problem = completion_problem("2 + 2 =", id="c1")
    assert (problem.question, problem.prompt, problem.messages) == ("2 + 2 =", "2 + 2 =", None)
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="^prompt: must be a non-empty string"):
            completion_problem(bad, id="c")  # type: ignore[arg-type]


# --- rendering -------------------------------------------------------------------------------


class RecordingTokenizer:
    """A chat template that writes every message and tool it is given, and keeps the call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def apply_chat_template(
        self, messages: list[dict[str, Any]], tokenize: bool, add_generation_prompt: bool, **kw: Any
    ) -> str:
        self.calls.append({"messages": messages, **kw})
        body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        tools = "".join(f"[{t['function']['name']}]" for t in kw.get("tools") or ())
        return tools + body + ("<assistant>" if add_generation_prompt else "")


TURNS = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Weather?"},
]


def test_a_chat_problem_renders_every_turn_with_the_configured_system_prompt() -> None:
    tok = RecordingTokenizer()
    renderer = ChatRenderer(tok, "Use tools.")
    problem = _chat(TURNS)
    assert renderer.render(problem) == (
        "<system>Use tools.</system><user>Hi</user><assistant>Hello!</assistant>"
        "<user>Weather?</user><assistant>"
    )
    assert "tools" not in tok.calls[-1]  # no tools given: the template is called as before
    # a partial answer is appended verbatim to the same head, as for plain problems
    chain = Chain(steps=("Let me", "see"))
    assert renderer.render(problem, chain) == renderer.render(problem) + "Let me\n\nsee\n\n"


def test_the_clients_system_message_wins_over_the_configured_one() -> None:
    renderer = ChatRenderer(RecordingTokenizer(), "steps")
    problem = _chat([{"role": "system", "content": "You are terse."}, *TURNS])
    rendered = renderer.render(problem)
    assert rendered.startswith("<system>You are terse.</system><user>Hi</user>")
    assert rendered.count("<system>") == 1


def test_tools_go_to_the_template_unless_tool_choice_says_none() -> None:
    tok = RecordingTokenizer()
    renderer = ChatRenderer(tok, "none")
    assert renderer.render(_chat(tools=[WEATHER, CLOCK])).startswith("[get_weather][get_time]")
    assert tok.calls[-1]["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert tok.calls[-1]["date_string"]  # the pinned template kwargs are still passed
    named = {"type": "function", "function": {"name": "get_time"}}
    assert renderer.render(_chat(tools=[WEATHER, CLOCK], tool_choice=named)).startswith(
        "[get_time]<user>"
    )
    assert renderer.render(_chat(tools=[WEATHER], tool_choice="none")).startswith("<user>")


def test_forced_thinking_opens_after_the_chat_template() -> None:
    renderer = ChatRenderer(RecordingTokenizer(), "none", {"forced": True})
    assert renderer.render(_chat(TURNS)).endswith("<user>Weather?</user><assistant><think>\n")


def test_a_completion_problem_renders_without_any_template() -> None:
    tok = RecordingTokenizer()
    renderer = ChatRenderer(tok, "steps", {"forced": True})
    problem = completion_problem("def add(a, b):", id="c")
    assert renderer.render(problem) == "def add(a, b):"
    assert renderer.render(problem, Chain(steps=("x",), delimiter="")) == "def add(a, b):x"
    assert tok.calls == []


def test_a_variant_of_the_question_replaces_the_last_user_message() -> None:
    from dataclasses import replace

    renderer = ChatRenderer(RecordingTokenizer(), "none")
    problem = _chat(TURNS)
    variant = renderer.render(replace(problem, question="Rules. Weather?"))
    assert variant.endswith("<user>Rules. Weather?</user><assistant>")
    assert "<assistant>Hello!</assistant>" in variant


@pytest.fixture(scope="module")
def smollm2() -> Any:
    """The embedded SmolLM2's tokenizer and its real chat template (no engine)."""
    transformers = pytest.importorskip("transformers")
    from reasoning.models import embedded_checkpoint

    return transformers.AutoTokenizer.from_pretrained(str(embedded_checkpoint("smollm2-135m")))


def test_smollm2_template_renders_a_multi_turn_tool_conversation(smollm2: Any) -> None:
    problem = chat_problem(
        [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "user", "content": "Thanks. Warm?"},
        ],
        tools=[WEATHER],
        id="w",
    )
    rendered = ChatRenderer(smollm2, "short").render(problem)
    assert rendered == (
        "<|im_start|>system\nSolve the math problem step by step. Write the final answer as "
        "\\boxed{answer}.<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<|im_end|>\n"  # a call-only turn: null content renders empty
        "<|im_start|>tool\n18 C<|im_end|>\n"
        "<|im_start|>user\nThanks. Warm?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # the client's system prompt replaces both the configured one and SmolLM's own default
    own = _chat([{"role": "system", "content": "Answer in French."}, USER])
    assert ChatRenderer(smollm2, "short").render(own) == (
        "<|im_start|>system\nAnswer in French.<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"
    )
    # a plain problem renders exactly as before
    plain = Problem("p", "Weather in Paris?")
    assert ChatRenderer(smollm2, "short").render(plain) == ChatRenderer(smollm2, "short").render(
        _chat([USER])
    )


# --- split_reply -----------------------------------------------------------------------------

THINK = ThinkingFormat()
TOOLS = _chat(tools=[WEATHER, CLOCK])


def _block(name: str, arguments: Any) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def test_split_reply_separates_thinking_from_the_answer() -> None:
    plain = _chat()
    assert split_reply("<think>2+3 is 5</think>\n\nIt is 5.", plain, THINK) == Reply(
        "It is 5.", "2+3 is 5"
    )
    # forced thinking: the prompt opened the block, the text only closes it
    forced = ThinkingFormat(forced=True)
    reply = split_reply("so 5\n</think>\nFive.", plain, forced)
    assert (reply.reasoning, reply.content) == ("so 5", "Five.")
    # a sample cut inside its thinking has no answer yet
    reply = split_reply("still thinking", plain, forced)
    assert (reply.reasoning, reply.content) == ("still thinking", None)
    reply = split_reply("<think>unfinished", plain, THINK)
    assert (reply.reasoning, reply.content) == ("unfinished", None)
    # a thinking model that answered without thinking; a model that never thinks
    assert split_reply("Five.", plain, THINK).reasoning is None
    assert split_reply("<think>x</think>y", plain, None).content == "<think>x</think>y"


def test_split_reply_reads_hermes_tool_calls_with_canonical_arguments() -> None:
    text = (
        "<think>Need the weather and the time.</think>Checking.\n"
        + _block("get_weather", {"unit": "c", "city": "Paris"})
        + "\n"
        + _block("get_time", {})
    )
    reply = split_reply(text, TOOLS, THINK)
    assert reply.reasoning == "Need the weather and the time."
    assert reply.content == "Checking."
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("get_weather", '{"city":"Paris","unit":"c"}'),
        ("get_time", "{}"),
    ]
    ids = [c.id for c in reply.tool_calls]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 2
    assert [c.id for c in split_reply(text, TOOLS, THINK).tool_calls] == ids  # deterministic
    # arguments given as a JSON text, and a block the sample ended inside (EOS before </tool_call>)
    stringly = '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}'
    only = split_reply(stringly, TOOLS, None)
    assert only.content is None and only.tool_calls[0].arguments == '{"city":"Oslo"}'


def test_split_reply_keeps_what_is_not_an_offered_call_as_content() -> None:
    unknown = _block("launch_rocket", {"when": "now"})
    broken = "<tool_call>{not json}</tool_call>"
    reply = split_reply(f"A {unknown} B {broken}", TOOLS, None)
    assert reply.tool_calls == () and unknown in (reply.content or "") and broken in reply.content
    # a call written while thinking is not a call
    thought = split_reply(f"<think>maybe {_block('get_time', {})}</think>No call.", TOOLS, THINK)
    assert thought.tool_calls == () and thought.content == "No call."
    # no tools offered, or tool_choice "none": the text is the answer
    call = _block("get_weather", {"city": "Paris"})
    assert split_reply(call, _chat(), None).content == call
    refused = _chat(tools=[WEATHER], tool_choice="none")
    assert split_reply(call, refused, None).tool_calls == ()


def test_split_reply_falls_back_to_a_bare_json_call() -> None:
    bare = '{"name": "get_weather", "arguments": {"city": "Rome"}}'
    reply = split_reply(bare, TOOLS, None)
    assert reply.content is None and reply.tool_calls[0].name == "get_weather"
    fenced = split_reply(f"```json\n[{bare}, {bare}]\n```", TOOLS, None)
    assert [c.arguments for c in fenced.tool_calls] == ['{"city":"Rome"}'] * 2
    assert fenced.tool_calls[0].id != fenced.tool_calls[1].id
    # JSON that is not a call stays the answer
    assert split_reply('{"city": "Rome"}', TOOLS, None).content == '{"city": "Rome"}'


def test_split_reply_uses_the_models_own_parser_when_given() -> None:
    seen: list[str] = []

    def parser(text: str) -> list[tuple[str, str]] | None:
        seen.append(text)
        return [("get_time", '{"tz": "UTC"}')] if "[[time]]" in text else None

    reply = split_reply("<think>hm</think>[[time]]", TOOLS, THINK, parser=parser)
    assert seen == ["[[time]]"] and reply.tool_calls[0].arguments == '{"tz":"UTC"}'
    assert reply.content is None
    # a parser's call to a tool not offered, or with arguments that are no object: not a call
    assert split_reply("[[time]]", _chat(tools=[WEATHER]), None, parser=parser).tool_calls == ()
    assert split_reply("x", TOOLS, None, parser=lambda text: [("get_time", "[1]")]).content == "x"
    # the parser found nothing: the Hermes fallback still reads the blocks
    fallback = split_reply(_block("get_time", {}), TOOLS, None, parser=parser)
    assert fallback.tool_calls[0].name == "get_time"


# --- votes -----------------------------------------------------------------------------------


async def test_best_of_n_votes_over_normalised_tool_calls() -> None:
    texts = [
        "It is sunny, I think: \\boxed{sunny}",
        _block("get_weather", {"city": "Paris", "unit": "c"}),
        "<think>look it up</think>" + _block("get_weather", {"unit": "c", "city": "Paris"}),
        "\\boxed{sunny}",
        '{"name": "get_weather", "arguments": {"unit": "c", "city": "Paris"}}',
    ]
    gen = ScriptedGenerator(texts)
    problem = _chat(tools=[WEATHER])
    out = await BestOfN(n=5).run(problem, Context(problem, gen, judge=Grader()))
    assert out.answer == 'get_weather({"city":"Paris","unit":"c"})'
    assert out.details["votes"] == {'get_weather({"city":"Paris","unit":"c"})': 3.0, "sunny": 2.0}
    assert out.chain is not None and out.chain.text == texts[1]  # the first of the winners
    reply = split_reply(out.chain.text, problem, None)
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("get_weather", '{"city":"Paris","unit":"c"}')
    ]


async def test_a_chat_problem_without_calls_votes_by_answer_then_by_text() -> None:
    problem = _chat()
    gen = ScriptedGenerator(["so \\boxed{5}", "It is  sunny.", "\\boxed{5}", "It is sunny."])
    out = await BestOfN(n=4).run(problem, Context(problem, gen, judge=Grader()))
    assert out.answer == "5" and out.details["votes"] == {"5": 2.0, "It is sunny.": 2.0}
    # nothing boxed at all: the reply text is the answer (a chat problem always has one)
    gen = ScriptedGenerator(["Hello there!", "Hi!", "Hello  there!"])
    out = await BestOfN(n=3).run(problem, Context(problem, gen, judge=Grader()))
    assert (
        out.answer == "Hello there!" and out.chain is not None and out.chain.text == "Hello there!"
    )


async def test_only_chat_problems_get_the_reply_judge() -> None:
    judge = Grader()
    assert judge_for(judge, Problem("p", "q")) is judge
    bound = judge_for(judge, _chat(tools=[WEATHER]))
    assert isinstance(bound, ReplyJudge)
    # tool-call and text keys compare exactly; math answers keep the grader's equivalence
    assert await bound.equivalent("1/2", "0.5")
    key = bound.extract(_block("get_weather", {"city": "x"}))
    assert key is not None and not await bound.equivalent(key, key + " ")


# --- cache keys ------------------------------------------------------------------------------


def test_cache_keys_differ_for_different_conversations_and_keep_old_plain_keys() -> None:
    plain = Problem("p1", "What is 2 + 3?", "5")
    assert problem_json(plain) == {"id": "p1", "question": "What is 2 + 3?"}
    one = _chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}, USER])
    two = _chat([{"role": "user", "content": "Hey"}, {"role": "assistant", "content": "Yo"}, USER])
    assert one.question == two.question
    keys = {
        cache_key({"problem": problem_json(p)})
        for p in (
            one,
            two,
            _chat(),
            _chat(tools=[WEATHER]),
            _chat(tools=[WEATHER], tool_choice="none"),
        )
    }
    assert len(keys) == 5
    raw = completion_problem(USER["content"], id="r1")
    assert problem_json(raw) != problem_json(_chat()) and problem_json(raw)["prompt"]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[CallCache]:
    with CallCache(tmp_path / "cache.sqlite") as c:
        yield c


def test_replayed_renders_tell_conversations_apart(cache: CallCache) -> None:
    class Rendering(ScriptedGenerator):
        def render(self, problem: Problem, chain: Chain | None = None) -> str:
            return ChatRenderer(RecordingTokenizer(), "none").render(problem, chain)

    one = _chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}, USER])
    two = _chat([{"role": "user", "content": "Hey"}, {"role": "assistant", "content": "Yo"}, USER])
    recorded = CachedGenerator(Rendering(), cache, "record").render(one)
    built: list[str] = []

    def inner() -> Any:
        built.append("inner")
        return Rendering()

    player = CachedGenerator(inner, cache, "replay", name="scripted")
    assert player.render(one) == recorded and built == []
    assert player.render(two) != recorded and built == ["inner"]  # a miss, not one's prompt


def test_vllms_tool_parser_reads_the_models_own_format(smollm2: Any) -> None:
    pytest.importorskip("vllm")
    from reasoning.chat import vllm_tool_parser

    problem = _chat(tools=[WEATHER])
    parser = vllm_tool_parser("pythonic", smollm2, problem)
    text = '[get_weather(city="Paris", unit="c")]'
    assert split_reply(text, problem, None).tool_calls == ()  # not a format the fallback reads
    reply = split_reply(text, problem, None, parser=parser)
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("get_weather", '{"city":"Paris","unit":"c"}')
    ]
    assert reply.content is None
