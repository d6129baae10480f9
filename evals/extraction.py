"""Answer extraction: the final answer of a model output, and which rule found it.

Its own module because extraction is a pure text job (regexes and brace matching, no sympy, no
processes) that the grader, normalisation and callers who only need the answer all share.
"""

from __future__ import annotations

import re

__all__ = [
    "extract_answer",
    "extract_answer_with_rule",
    "last_boxed",
    "match_brace",
    "strip_answer",
]

_THINK_END = "</think>"
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_FINAL_RE = re.compile(r"final\s+answer\**\s*(?:is\b|:)\s*\**\s*:?\s*", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"the\s+answer\s+is\b\s*:?\s*", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def match_brace(s: str, start: int) -> int:
    """Index of the `}` closing the `{` at `start`, or -1 (truncated output); skips `\\{`, `\\}`."""
    depth = 0
    i = start
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def strip_answer(s: str) -> str:
    """Remove math delimiters, whitespace and a trailing period around an extracted answer."""
    prev = None
    while prev != s:
        prev = s
        s = s.strip()
        if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
            s = s[1:-1]
        elif s.startswith(("\\(", "\\[")) and s.endswith(("\\)", "\\]")):
            s = s[2:-2]
        s = s.strip().rstrip(".").rstrip()
    return s


def last_boxed(text: str) -> str | None:
    """Content of the last balanced, non-empty `\\boxed{...}` / `\\boxed x` / `\\fbox{...}`."""
    for m in reversed(list(_BOXED_RE.finditer(text))):
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            end = match_brace(text, j)
            if end < 0:
                continue  # truncated: fall back to an earlier, complete box
            content = text[j + 1 : end]
        elif j > m.end():
            word = re.match(r"[^\s$]+", text[j:])
            if word is None:
                continue
            content = word.group(0)
        else:
            continue
        content = strip_answer(content)
        inner = last_boxed(content) if content.startswith(("\\boxed", "\\fbox")) else None
        if inner:
            content = inner
        if content:
            return content
    return None


def _delimited_or_line(rest: str) -> str | None:
    """The `$...$` (or `\\(...\\)`) right at the start of `rest`, else the rest of the sentence."""
    rest = rest.lstrip()
    m = re.match(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", rest, re.DOTALL)
    if m:
        content = next(g for g in m.groups() if g is not None)
    else:
        content = rest.split("\n", 1)[0]
        content = re.split(r"\.\s|\.$|\s+I hope\b", content, maxsplit=1)[0]
    content = strip_answer(content)
    return content or None


def _after_last(pattern: re.Pattern[str], text: str) -> str | None:
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    return _delimited_or_line(text[matches[-1].end() :])


def _strong_rules(text: str, strict: bool) -> tuple[str | None, str | None]:
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    if strict:
        return None, None
    final = _after_last(_FINAL_RE, text)
    if final is not None:
        return final, "final_answer_is"
    answer = _after_last(_ANSWER_IS_RE, text)
    if answer is not None:
        return answer, "answer_is"
    return None, None


def extract_answer_with_rule(text: str, strict: bool = False) -> tuple[str | None, str | None]:
    """Final answer of a model output and the rule that found it.

    Reasoning models may box drafts inside `<think>`; the answer after the last `</think>` wins,
    with the whole text as fallback. The last-number rule (non-strict only) comes after every
    anchored rule on both parts because it inflates the accuracy of truncated outputs.
    """
    if not text:
        return None, None
    parts = [text]
    if _THINK_END in text:
        parts.insert(0, text.rsplit(_THINK_END, 1)[1])
    for part in parts:
        answer, rule = _strong_rules(part, strict)
        if answer is not None:
            return answer, rule
    if strict:
        return None, None
    numbers = _NUMBER_RE.findall(text)
    if numbers:
        return numbers[-1].replace(",", ""), "last_number"
    return None, None


def extract_answer(text: str) -> str | None:
    """Final answer of a model output (lenient: all fallbacks allowed)."""
    return extract_answer_with_rule(text)[0]
