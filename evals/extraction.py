"""Answer extraction: the final answer of a model output, and which rule found it.

Its own module because extraction is a pure text job (regexes and brace matching, no sympy, no
processes) that the grader, normalisation and callers who only need the answer all share. It reads
one answer boxed in parts (`\\boxed{-2} and \\boxed{1}`) whole, and tells a bare answer (`3/4`,
`x \\geq 5`) from a text that holds one (`so $x \\geq 5$ holds`): a bare answer is never mined for
its last number.
"""

from __future__ import annotations

import re

__all__ = [
    "boxed_answer",
    "extract_answer",
    "extract_answer_with_rule",
    "explicit_answer",
    "is_bare_answer",
    "last_boxed",
    "last_boxes",
    "list_size",
    "match_brace",
    "strip_answer",
]

_THINK_END = "</think>"
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_FINAL_RE = re.compile(r"final\s+answer\**\s*(?:is\b|:)\s*\**\s*:?\s*", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"the\s+answer\s+is\b\s*:?\s*", re.IGNORECASE)
# Plain numbers of a prose answer: thousands groups, decimal commas (`2,5`), mixed numbers
# (`4 4/9`), fractions (`3/4`).
_NUMBER_RE = re.compile(
    r"(?<![\w.])(?:-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?(?![\d,])|-?\d+,\d+(?![\d,])"
    r"|-?\d+ \d+/\d+|-?\d+\s*/\s*\d+|-?\d+(?:\.\d+)?|-?\.\d+)"
)
# Display math (may span lines) and inline math (may not); `\$5` is money, not math.
_MATH_ENV_RE = re.compile(
    r"(?<!\\)\$\$(?P<d>.+?)(?<!\\)\$\$|\\\[(?P<b>.+?)\\\]|\\\((?P<p>[^\n]+?)\\\)"
    r"|(?<![\\\d])\$(?P<i>(?:\\\$|[^$\n])+?)(?<!\\)\$",
    re.DOTALL,
)
# Math right at the start of a text: display math may span lines, inline math may not.
_LEADING_MATH_RE = re.compile(
    r"\$\$(?P<d>.+?)\$\$|\\\[(?P<b>.+?)\\\]|\$(?P<i>[^$\n]+?)\$|\\\((?P<p>[^\n]+?)\\\)", re.DOTALL
)
# What may separate the boxes of one answer (`\boxed{-2} and \boxed{1}`, `$x=\boxed{2}$ or ...`).
_BOX_SEPARATOR_RE = re.compile(
    r"(?:\s|[,;&~]|\$|\\[()\[\],;: ]|\\\\|\\q?quad(?![A-Za-z])|\band\b|\bor\b"
    r"|[A-Za-z](?:_\{?\w+\}?)?\s*=)*"
)
_TEXT_WRAP_RE = re.compile(r"\\(?:text|textrm|mbox|mathrm)\s*\{([^{}]*)\}")
_REVISION_RE = re.compile(
    r"\b(?:but|wait|actually|instead|however|mistake|wrong|incorrect|recheck|re-check|"
    r"double-check|reconsider|correction|oops|hmm|not|again)\b",
    re.IGNORECASE,
)
_SENTENCE_END_RE = re.compile(r"\.\s|\.$|\s+I hope\b|\n")
_ELLIPSIS_RE = re.compile(r"(?:\.\.\.|\\[lc]?dots)\s*$")
_LHS_RE = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?=[^=]+$)")
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}(?![A-Za-z])")
_MATH_WORDS = {
    "pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "mod", "or",
    "and", "infty", "cm", "mm", "km", "ft", "in", "deg",
}  # fmt: skip
_STOP_WORDS = {"is", "so", "we", "it", "be", "of", "to", "as", "at", "by", "if", "on", "an"}


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
    """Remove math delimiters, markdown bold, whitespace and sentence punctuation (`.`, `,`, `;`)
    around an extracted answer; an ellipsis (`1, 2, 3, ...`) is part of the answer and stays."""
    prev = None
    while prev != s:
        prev = s
        s = s.strip()
        if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s[-2] != "\\":
            s = s[1:-1]
        elif s.startswith(("\\(", "\\[")) and s.endswith(("\\)", "\\]")):
            s = s[2:-2]
        s = s.strip()
        if s[-1:] in (".", ",", ";") and not _ELLIPSIS_RE.search(s):
            s = s[:-1]
        if len(s) > 4 and s.startswith("**") and s.endswith("**"):
            s = s[2:-2]  # markdown bold
    return s


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of each complete, non-empty, outermost box, in order."""
    found: list[tuple[int, int, str]] = []
    covered = 0
    for m in _BOXED_RE.finditer(text):
        if m.start() < covered:
            continue  # nested in the previous box
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            end = match_brace(text, j)
            if end < 0:
                continue  # truncated: an earlier, complete box may still hold the answer
            content, stop = text[j + 1 : end], end + 1
        elif j > m.end():
            word = re.match(r"[^\s$]+", text[j:])
            if word is None:
                continue
            content, stop = word.group(0), j + word.end()
        else:
            continue
        content = strip_answer(content)
        if content.startswith(("\\boxed", "\\fbox")):
            content = last_boxed(content) or ""
        if content:
            found.append((m.start(), stop, content))
            covered = stop
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last balanced, non-empty `\\boxed{...}` / `\\boxed x` / `\\fbox{...}`."""
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


def _boxed_group(text: str) -> tuple[str, int] | None:
    """`boxed_answer` and where its last box ends."""
    boxes = _boxes(text)
    if not boxes:
        return None
    group = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        between = _TEXT_WRAP_RE.sub(r"\1", text[prev[1] : group[0][0]])
        if not _BOX_SEPARATOR_RE.fullmatch(between):
            break
        if re.search(r",\W*or\b", between) and "=" not in between:
            break  # `\boxed{15\frac{39}{40}}, or \boxed{\frac{639}{40}}`: one value restated
        group.insert(0, prev)
    if len(group) == 1:
        return group[0][2], group[0][1]
    return ", ".join(_LHS_RE.sub("", content) for _, _, content in group), group[-1][1]


def boxed_answer(text: str) -> str | None:
    """The last box, joined with the boxes right before it that belong to the same answer.

    Models box each root of a solution set on its own (`\\boxed{-2} and \\boxed{1}`,
    `x = \\boxed{2} or x = \\boxed{3}`); boxes apart from each other by prose (`first \\boxed{3},
    then \\boxed{4}`) are drafts, and only the last counts. Joined parts keep their order, so a
    list still compares against an ordered tuple.
    """
    group = _boxed_group(text)
    return group[0] if group else None


def last_boxes(text: str, count: int) -> str | None:
    """The last `count` boxes joined, adjacent or not; None when there are fewer, or when the
    text between them takes an earlier box back (`\\boxed{1}, but that is wrong: \\boxed{-2}`).

    For a gold that lists `count` values, when the model boxed them in separate sentences
    (`The first root is \\boxed{2}. The second is \\boxed{3}.`).
    """
    boxes = _boxes(text)
    if count < 2 or len(boxes) < count:
        return None
    chosen = boxes[-count:]
    gaps = (text[a[1] : b[0]] for a, b in zip(chosen, chosen[1:], strict=False))
    if any(_REVISION_RE.search(gap) for gap in gaps):
        return None
    return ", ".join(_LHS_RE.sub("", content) for _, _, content in chosen)


def list_size(answer: str) -> int:
    """How many values a bare answer lists: top-level commas, `\\pm` counting twice
    (`1,-2` and `1 \\pm \\sqrt{19}` list 2; `(6,31,-1)` is one tuple)."""
    s = strip_answer(answer)
    if s.startswith("\\{") and s.endswith("\\}"):
        s = s[2:-2]
    items, depth, start = [], 0, 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(s[start:i])
            start = i + 1
    items.append(s[start:])
    return sum(2 if "\\pm" in item else 1 for item in items if item.strip())


def is_bare_answer(text: str) -> bool:
    """Whether `text` is an answer by itself rather than prose or a solution that contains one.

    Bare: no math delimiters or boxes inside (after stripping the outer ones) and no sentence
    (one word is a name, or a unit after a number: `\\text{Evelyn}`, `36 dollars`; `xy + yz` is
    a product; `I think 5` is a sentence); so `3/4` or `x^2+3x-4` is compared as written, never
    reduced to its last number.
    """
    s = strip_answer(text)
    if not s or _BOXED_RE.search(s) or re.search(r"(?<!\\)\$|\\[(\[]", s):
        return False
    s = re.sub(r"\\(?:begin|end|operatorname|mathbf|mathbb|array)\s*\{[^{}]*\}", " ", s)
    words = {w.lower() for w in _WORD_RE.findall(s)} - _MATH_WORDS
    long_words = [w for w in words if len(w) >= 3]
    if len(long_words) >= 2 or (long_words and _STOP_WORDS.intersection(words)):
        return False
    # A word may end a number (`36 dollars`, `864 inches^2`); prose has words between numbers.
    word = next((m for m in _WORD_RE.finditer(s) if m.group(0).lower() in long_words), None)
    if word is None or not re.search(r"\d", s):
        return True  # no sentence word, or a word answer (`\\text{Evelyn}`, `east`)
    before, after = s[: word.start()], re.sub(r"\^\s*\{?\d\}?", "", s[word.end() :])
    return bool(re.search(r"\d", before)) and not re.search(r"\d", after)


def _number(raw: str) -> str:
    """A prose number as an answer: thousands separators dropped, a decimal comma made a point."""
    raw = re.sub(r"\s+", "", raw)
    if re.fullmatch(r"-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?", raw):
        return raw.replace(",", "")
    return raw.replace(",", ".")


def _juxtaposed(s: str) -> bool:
    """Words or numbers side by side with no operator (`d e 2`, `36 dollars`): not one
    expression, so the last-number rule reads it (lists such as `3, 5, 7` are expressions)."""
    tokens = s.split()
    plain = re.compile(r"[\w.]+,?")
    return any(
        plain.fullmatch(a) and not a.endswith(",") and plain.fullmatch(b)
        for a, b in zip(tokens, tokens[1:], strict=False)
    )


def _result_of(answer: str) -> str:
    """`2 + 5 = 7` -> `7`: the result of a computation with numbers only; an equation with
    variables (`y = 2x + 3`, `x = 5`) is an answer in itself."""
    if "=" not in answer or re.search(r"[<>]|\\[lg]e", answer):
        return answer
    lhs, result = answer.split("=", 1)[0], answer.rsplit("=", 1)[1].strip()
    if re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", lhs)) or not result:
        return answer
    return result


def _last_math_or_number(text: str) -> tuple[str, str] | None:
    """The rightmost inline/display math or plain number: (answer, rule)."""
    best: tuple[int, str, str] | None = None
    for m in _MATH_ENV_RE.finditer(text):
        content = strip_answer(next(g for g in m.groups() if g is not None))
        if content and (best is None or m.end() >= best[0]):
            best = (m.end(), content, "last_math")
    for m in _NUMBER_RE.finditer(text):
        if best is None or m.end() > best[0]:
            best = (m.end(), _number(m.group(0)), "last_number")
    return (best[1], best[2]) if best else None


def _delimited_at_start(rest: str) -> str | None:
    """The `$...$` (or `\\(...\\)`, `\\[...\\]`) right at the start of `rest`, if any."""
    m = _LEADING_MATH_RE.match(rest.lstrip())
    if m is None:
        return None
    return strip_answer(next(g for g in m.groups() if g is not None)) or None


def _delimited_or_line(rest: str) -> str | None:
    """The math right at the start of `rest`, else the rest of the sentence.

    A sentence that is prose (`The largest $n$ is 34`) gives what follows its last ` is `, or
    else its last math or number.
    """
    delimited = _delimited_at_start(rest)
    if delimited is not None:
        return delimited
    content = _SENTENCE_END_RE.split(rest.lstrip(), maxsplit=1)[0]
    if not is_bare_answer(content):
        after_is = re.split(r"\s(?:is|are|equals)\s", content)
        if len(after_is) > 1 and is_bare_answer(after_is[-1]):
            content = after_is[-1]
        else:
            found = _last_math_or_number(content)
            content = found[0] if found else content
    content = strip_answer(content)
    return content or None


def _anchored(text: str) -> tuple[str, int, str] | None:
    """(answer, end, rule) right after the last `final answer is` (else `the answer is`): math
    in delimiters, or a bare answer that ends the sentence (`The answer is 4 4/9.`)."""
    for pattern, rule in ((_FINAL_RE, "final_answer_is"), (_ANSWER_IS_RE, "answer_is")):
        matches = list(pattern.finditer(text))
        if not matches:
            continue
        rest = text[matches[-1].end() :].lstrip()
        offset = len(text) - len(rest)
        m = _LEADING_MATH_RE.match(rest)
        if m is not None:
            content, end = strip_answer(next(g for g in m.groups() if g is not None)), m.end()
        else:
            line = _SENTENCE_END_RE.split(rest, maxsplit=1)[0]
            if not is_bare_answer(line):
                return None
            content, end = strip_answer(line), len(line)
        if not content or _BOXED_RE.search(content):
            return None
        return content, offset + end, rule
    return None


def explicit_answer(text: str) -> tuple[str, str] | None:
    """(answer, rule) the text states outright: its boxes, or the math right after `the answer
    is` (`The answer is $\\frac{14}{3}$, about 4.67`); the later of the two when both occur
    (`\\boxed{200} ... Final Answer: The final answer is $10,455$`)."""
    boxed, anchored = _boxed_group(text), _anchored(text)
    if anchored is not None and (boxed is None or anchored[1] > boxed[1]):
        return anchored[0], anchored[2]
    return (boxed[0], "boxed") if boxed else None


def _after_last(pattern: re.Pattern[str], text: str) -> str | None:
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    return _delimited_or_line(text[matches[-1].end() :])


def _strong_rules(text: str, strict: bool) -> tuple[str | None, str | None]:
    if strict:
        boxed = boxed_answer(text)
        return (boxed, "boxed") if boxed is not None else (None, None)
    explicit = explicit_answer(text)
    if explicit is not None:
        return explicit
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
    with the whole text as fallback. A bare math answer (non-strict only: `3/4`, `x^2+1`,
    `2 + 5 = 7` -> `7`) is its own answer. The last math / last number rules (non-strict only)
    come after every anchored rule on both parts because they inflate the accuracy of truncated
    outputs.
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
    bare = strip_answer(text)
    if is_bare_answer(bare) and re.search(r"[\d\\^=<>+*/]", bare) and not _juxtaposed(bare):
        return _result_of(bare), "bare"
    for part in parts:
        found = _last_math_or_number(part)
        if found is not None:
            return found
    return None, None


def extract_answer(text: str) -> str | None:
    """Final answer of a model output (lenient: all fallbacks allowed)."""
    return extract_answer_with_rule(text)[0]
