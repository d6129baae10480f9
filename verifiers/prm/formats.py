"""What a PRM reads: each format's prompt layout, its tokenization with left truncation of the
solution, and how a row of logits at a step marker becomes P(correct).

Prompts are rendered and tokenized here, and token ids are sent to the engine, so both backends
score the same tokens, left truncation never touches the question, and `StepScores.tokens` is
exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reasoning.prompts import SYSTEM_PROMPTS

Rows = list[list[float]]  # one two-class row of logits per step marker, as an engine returns

QWEN_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
_SENTINEL = "\x00SOLUTION\x00"  # marks where the solution goes in a rendered chat prompt
_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class RenderedPrompt:
    """A PRM input in three parts: only `solution` may be truncated (from the left)."""

    head: str  # system prompt, question, ...: never truncated
    solution: str  # the steps, each followed by the step marker
    tail: str  # whatever the format closes with (chat end tokens)
    n_steps: int

    @property
    def text(self) -> str:
        return self.head + self.solution + self.tail


class QwenPRMFormat:
    """Qwen2.5-Math-PRM: system/user/assistant chat, `<extra_0>` after every step."""

    name = "qwen"
    step_token = "<extra_0>"
    positive_index = 1  # the head's label 1 is "correct"
    add_special_tokens = False  # the chat template writes every special token itself

    def __init__(self, system_prompt: str = QWEN_SYSTEM_PROMPT) -> None:
        self.system_prompt = system_prompt

    def label_tokens(self, tokenizer: Any) -> tuple[str, str] | None:
        return None  # the checkpoint has its own classification head

    def render(
        self, question: str, steps: Sequence[str], tokenizer: Any | None = None
    ) -> RenderedPrompt:
        """The chat prompt the PRM was trained on, through the PRM's own chat template."""
        clean = [s.replace(self.step_token, "") for s in steps]
        solution = "".join(s + self.step_token for s in clean)
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": question.replace(self.step_token, "")},
            {"role": "assistant", "content": _SENTINEL},
        ]
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            shell = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=False
            )
        else:  # no template at hand (unit tests): Qwen's own ChatML
            from jinja2 import Template

            shell = Template(_CHATML).render(messages=messages)
        head, tail = shell.split(_SENTINEL)
        return RenderedPrompt(head, solution, tail, len(clean))


class MathShepherdFormat:
    """Math-Shepherd as search-and-learn queries it (`MathShepherd.score` in its
    src/sal/models/reward_models.py): `system_prompt + "\\n" + question + "\\n"`, a space, then
    the steps joined by blank lines, each followed by the tag " ки":
    "SYSTEM\\nquestion\\n step 1 ки\\n\\nstep 2 ки". P(+) among `+`/`-` at each tag."""

    name = "math_shepherd"
    step_token = "ки"
    step_tag = " ки"
    step_separator = "\n\n"  # search-and-learn tags the solution text's blank lines
    positive_index = 0  # rows are [logit(+), logit(-)]
    add_special_tokens = True  # BOS, as in the Math-Shepherd reference code

    def __init__(self, system_prompt: str = SYSTEM_PROMPTS["steps"]) -> None:
        self.system_prompt = system_prompt  # search-and-learn's default `Config.system_prompt`

    def label_tokens(self, tokenizer: Any) -> tuple[str, str]:
        """The vocabulary entries of "+" and "-" as they follow a space (the tag position):
        "▁+"/"▁-" in SentencePiece vocabularies (648/387 for Mistral), "Ġ+"/"Ġ-" in byte-level
        BPE, the bare symbols otherwise."""
        vocab = tokenizer.get_vocab()
        out = []
        for symbol in ("+", "-"):
            for candidate in ("▁" + symbol, "Ġ" + symbol, symbol):
                if candidate in vocab:
                    out.append(candidate)
                    break
            else:
                raise ValueError(f"the PRM tokenizer has no token for {symbol!r}")
        return out[0], out[1]

    def render(
        self, question: str, steps: Sequence[str], tokenizer: Any | None = None
    ) -> RenderedPrompt:
        clean = [s.replace(self.step_token, "") for s in steps]
        solution = self.step_separator.join(s + self.step_tag for s in clean)
        question = question.replace(self.step_token, "")
        head = f"{self.system_prompt}\n{question}\n "
        return RenderedPrompt(head, solution, "", len(clean))


PRMFormat = QwenPRMFormat | MathShepherdFormat
FORMATS: dict[str, Callable[[], PRMFormat]] = {
    "qwen": QwenPRMFormat,
    "math_shepherd": MathShepherdFormat,
}


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids for the engine and how the scored steps map back to the chain's steps."""

    ids: list[int]
    n_steps: int  # steps the caller asked about
    n_visible: int  # steps whose marker survived truncation (the last ones)


def positive_probability(row: Sequence[float], positive_index: int) -> float:
    """softmax(row)[positive_index] for a two-class row of logits, in float64."""
    other = 1 - positive_index
    delta = float(row[other]) - float(row[positive_index])
    if delta > 700:  # exp overflow: the positive class has ~0 probability
        return 0.0
    return 1.0 / (1.0 + math.exp(delta))


def encode_prompt(
    fmt: PRMFormat,
    rendered: RenderedPrompt,
    tokenizer: Any,
    step_tag_id: int,
    max_model_len: int,
) -> EncodedPrompt:
    """Token ids of a rendered PRM prompt; the solution loses tokens from its left if too long.

    Checks that every visible step left exactly one marker token, which is what catches a
    `step_tag_id` that does not match how the format tokenizes.
    """
    tok, tag = tokenizer, step_tag_id
    ids = list(tok.encode(rendered.text, add_special_tokens=fmt.add_special_tokens))
    visible = rendered.n_steps
    if len(ids) > max_model_len:
        head = tok.encode(rendered.head, add_special_tokens=fmt.add_special_tokens)
        solution = tok.encode(rendered.solution, add_special_tokens=False)
        tail = tok.encode(rendered.tail, add_special_tokens=False) if rendered.tail else []
        room = max_model_len - len(head) - len(tail)
        kept = solution[-room:] if room > 0 else []
        if tag not in kept:
            raise ValueError(
                f"the PRM prompt's question alone takes {len(head) + len(tail)} of "
                f"max_model_len={max_model_len} tokens: no step fits"
            )
        ids = list(head) + list(kept) + list(tail)
        visible = kept.count(tag)
    if ids.count(tag) != visible:
        raise ValueError(
            f"expected {visible} step markers (token {tag}) in the PRM prompt, found "
            f"{ids.count(tag)}: step_tag_id does not match how {fmt.name!r} "
            "prompts tokenize"
        )
    return EncodedPrompt(ids, rendered.n_steps, visible)
