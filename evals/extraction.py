"""Answer extraction: the final answer of a model output, and which rule found it.

Its own module because extraction is a pure text job (regexes and brace matching, no sympy, no
processes) that the grader, normalisation and callers who only need the answer all share. It reads
one answer boxed in parts (`\\boxed{-2} and \\boxed{1}`) whole, and tells a bare answer (`3/4`,
`x \\geq 5`) from a text that holds one (`so $x \\geq 5$ holds`): a bare answer is never mined for
its last number, and a box that holds prose (`\\boxed{3+ then we would need more steps}`) is no
answer at all.

Every function here runs in time linear in its input (one brace table per text, index-based
stripping, a hand-written scanner for `$...$`, `\\[...\\]` and `\\(...\\)`), and
`extract_answer_with_rule` reads at most the last `MAX_TEXT_CHARS` characters of a text, so
extraction stays cheap enough to run inline on every candidate chain. `clean_text` maps unicode
look-alikes (minus signs, zero-width characters, full-width digits) to what the rules expect; the
extraction entry points apply it.
"""

from __future__ import annotations

import bisect
import re

__all__ = [
    "MAX_TEXT_CHARS",
    "boxed_answer",
    "box_is_prose",
    "brace_pairs",
    "clean_text",
    "extract_answer",
    "extract_answer_with_rule",
    "explicit_answer",
    "is_bare_answer",
    "last_boxed",
    "last_boxes",
    "last_inequalities",
    "list_size",
    "match_brace",
    "strip_answer",
    "tuple_size",
]

_THINK_END = "</think>"
# Answers sit at the end of a text; a longer one is read from its last MAX_TEXT_CHARS characters
# (about 64k tokens), so one absurd chain cannot stall the loop that extracts every chain's answer.
MAX_TEXT_CHARS = 1 << 18
_MAX_BOX_DEPTH = 64  # `\boxed{\boxed{...}}` nested deeper is read from its 64 innermost levels
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_FINAL_RE = re.compile(r"final\s+answer\**\s*(?:is\b|:)\s*\**\s*:?\s*", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"the\s+answer\s+is\b\s*:?\s*", re.IGNORECASE)
# Plain numbers of a prose answer: thousands groups, decimal commas (`2,5`), mixed numbers
# (`4 4/9`), fractions (`3/4`).
_NUMBER_RE = re.compile(
    r"(?<![\w.])(?:-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?(?![\d,])|-?\d+,\d+(?![\d,])"
    r"|-?\d+ \d+/\d+|-?\d+\s*/\s*\d+|-?\d+(?:\.\d+)?|-?\.\d+)"
)
# Display math (may span lines) and inline math (may not); `\$5` is money, not math. The spec of
# `_math_spans`, which finds the same matches in linear time (tests compare the two).
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
# Words between two boxes that take the first one back (or reject it: `extraneous`), and a
# question mark (`\boxed{5}? No, ...`).
_REVISION_RE = re.compile(
    r"\b(?:but|wait|actually|instead|however|mistake|wrong|incorrect|recheck|re-check|"
    r"double-check|reconsider|correction|oops|hmm|not|no|again|recomput\w*|extraneous|"
    r"reject\w*|discard\w*|invalid|fails?)\b|\?",
    re.IGNORECASE,
)
# What, said right after a box, rejects it.
_REJECTED_RE = re.compile(
    r"\b(?:extraneous|rejected|invalid|wrong|incorrect|not (?:a )?(?:valid|solution)"
    r"|does not work|doesn't work)\b",
    re.IGNORECASE,
)
# `(?<!\s)`: a run of blanks is tried once, from its start, not from each of its characters.
# a sentence also ends at markup a model writes after it: a thread tag (`</Thread>`), a chat
# template's end token (`<|im_end|>`)
_SENTENCE_END_RE = re.compile(
    r"\.\s|\.$|\.(?=<)|(?<!\s)\s+I hope\b|\n|</?[A-Za-z][\w-]*>|<\|[\w-]+\|>"
)
_ELLIPSIS_ENDS = ("...", "\\dots", "\\ldots", "\\cdots")
_WORD_AFTER_BOX_RE = re.compile(r"[^\s$]+")
# What `match_brace` reacts to: braces, and the escapes that hide one (`\{`, `\}`, and `\\`,
# after which a brace counts again); any other `\x` skips a character that is no brace anyway.
_BRACE_TOKEN_RE = re.compile(r"\\[\\{}]|[{}]")
_MATH_START_RE = re.compile(r"\$|\\[\[(]")
_LHS_RE = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?=[^=]+$)")
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}(?![A-Za-z])")
_MATH_WORDS = {
    "pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "mod", "or",
    "and", "infty", "cm", "mm", "km", "ft", "in", "deg",
}  # fmt: skip
_STOP_WORDS = {"is", "so", "we", "it", "be", "of", "to", "as", "at", "by", "if", "on", "an"}
# Words of a sentence that are never a unit or a name after a number: `3 then` is a draft that
# goes on, not 3 of something (`36 dollars`).
_PROSE_WORDS = {
    "then", "but", "wait", "because", "since", "therefore", "thus", "hence", "which", "that",
    "this", "when", "would", "could", "should", "need", "needs", "more", "steps", "the", "are",
    "was", "were", "will", "can", "answer", "check", "let", "try", "again", "maybe", "perhaps",
}  # fmt: skip


# Unicode look-alikes of what the rules read: minus signs, zero-width characters (which would
# split `1\u200b000` into two numbers), full-width digits and operators. NFKC is not used: it
# also turns `x²` into `x2` and `½` into `1⁄2`.
_LOOKALIKES = str.maketrans(
    {
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad"),  # zero-width, soft hyphen
        **dict.fromkeys("\u2212\ufe63\uff0d\u2796", "-"),  # minus, small/full-width/heavy minus
        **{chr(0xFF10 + d): str(d) for d in range(10)},  # full-width digits
        "\uff0b": "+", "\uff0f": "/", "\uff1d": "=", "\uff08": "(", "\uff09": ")",
        "\u2044": "/", "\u2215": "/",  # fraction slash, division slash
    }
)  # fmt: skip
# An en dash is a minus only where a minus can stand (`is –5`, `(–1, 2)`); `3–5` is a range.
_EN_DASH_MINUS_RE = re.compile(r"(?<![\w)\]}])(?<![\d)\]}]\s)\u2013(?=\s?[\d.\\(])")


def clean_text(text: str) -> str:
    """`text` with unicode look-alikes made ASCII: U+2212 and other minus signs (an en dash too,
    where it stands for one) become `-`, zero-width characters go, full-width digits become
    digits. Idempotent, linear. Lone surrogates stay as they are (two different ones must not
    become one U+FFFD and then look equal); the grader never calls text holding one equal to
    anything but the same text."""
    if text.isascii():
        return text
    text = text.translate(_LOOKALIKES)
    return _EN_DASH_MINUS_RE.sub("-", text) if "\u2013" in text else text


def brace_pairs(text: str) -> dict[int, int]:
    """Index of the `}` closing each balanced `{` of `text`, in one pass: the answers of
    `match_brace` for every `{` that is not itself escaped (`\\{`), without its rescans."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_TOKEN_RE.finditer(text):
        c = m.group()
        if c == "{":
            stack.append(m.start())
        elif c == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


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


def _strip_blank(s: str, i: int, j: int) -> tuple[int, int]:
    while i < j and s[i].isspace():
        i += 1
    while j > i and s[j - 1].isspace():
        j -= 1
    return i, j


def _strip_span(s: str, i: int, j: int) -> tuple[int, int]:
    """`strip_answer` on `s[i:j]`, as the bounds of the result: indices move, nothing is copied,
    so stripping a thousand nested `$` costs a thousand steps, not a thousand copies."""
    while True:
        before = (i, j)
        i, j = _strip_blank(s, i, j)
        k = 0  # `$$$...$$$`: all but the last pair of the `$` runs at both ends go at once
        while i + k < j - 2 - k and s[i + k] == "$" == s[j - 1 - k] == s[j - 2 - k]:
            k += 1
        i, j = i + k, j - k
        if j - i >= 2 and s[i] == "$" and s[j - 1] == "$" and s[j - 2] != "\\":
            i, j = i + 1, j - 1
        elif s.startswith(("\\(", "\\["), i, j) and s.endswith(("\\)", "\\]"), i, j) and j - i >= 4:
            i, j = i + 2, j - 2
        i, j = _strip_blank(s, i, j)
        if j > i and s[j - 1] in ".,;" and not s.endswith(_ELLIPSIS_ENDS, i, j):
            j -= 1
        if j - i > 4 and s.startswith("**", i, j) and s.endswith("**", i, j):
            i, j = i + 2, j - 2  # markdown bold
        if j > i and s[j - 1] == "\\":
            j -= 2 if s.endswith("\\\\", i, j) else 1  # a stray `\` or a row break `\\`
        if (i, j) == before:
            return i, j


def strip_answer(s: str) -> str:
    """Remove math delimiters, markdown bold, whitespace and sentence punctuation (`.`, `,`, `;`)
    around an extracted answer; an ellipsis (`1, 2, 3, ...`) is part of the answer and stays.
    A backslash that ends the answer (`17\\`, a row break `4\\\\`) escapes nothing and goes too."""
    i, j = _strip_span(s, 0, len(s))
    return s[i:j]


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of each complete, non-empty, outermost box, in order."""
    if _BOXED_RE.search(text) is None:
        return []
    return _boxes_in(text, 0, len(text), brace_pairs(text), 0)


# How far past an unclosed `\boxed{` a stray `\}` that closes it is looked for.
_STRAY_CLOSE_MAX_CHARS = 256


def _stray_close(text: str, open_at: int, hi: int) -> int:
    """Where `\\}` closes the unclosed box brace at `open_at` (`\\boxed{17\\}`: a stray backslash
    before the closing brace), or -1: the first `\\}` that no `\\{` in the box opened, with every
    plain brace before it closed, within `_STRAY_CLOSE_MAX_CHARS` (so the cost stays linear)."""
    braces = sets = 0
    i, stop = open_at + 1, min(hi, open_at + 1 + _STRAY_CLOSE_MAX_CHARS)
    while i < stop:
        c = text[i]
        if c == "\\" and i + 1 < stop:
            nxt = text[i + 1]
            if nxt == "}" and braces == 0 and sets == 0:
                return i
            sets += {"{": 1, "}": -1}.get(nxt, 0)
            i += 2
            continue
        if c in "$\n" or (c == "}" and braces == 0):
            return -1  # the math or the line ends first: truncated, not a stray backslash
        braces += 1 if c == "{" else -1 if c == "}" else 0
        i += 1
    return -1


def _boxes_in(
    text: str, lo: int, hi: int, pairs: dict[int, int], depth: int
) -> list[tuple[int, int, str]]:
    """`_boxes` of `text[lo:hi]` (positions in `text`); `pairs` is `brace_pairs(text)`.

    A box whose content is boxes again (`\\boxed{\\boxed{7}}`) reads the last of them, at most
    `_MAX_BOX_DEPTH` levels down. Each search resumes after the previous box, so a text of
    unclosed `\\boxed{` costs one pass, not one pass per box.
    """
    found: list[tuple[int, int, str]] = []
    pos = lo
    while (m := _BOXED_RE.search(text, pos, hi)) is not None:
        pos = j = m.end()
        while j < hi and text[j] in " \t":
            j += 1
        if j < hi and text[j] == "{":
            end = pairs.get(j, -1)
            if end < 0 or end >= hi:
                end = _stray_close(text, j, hi)
                if end < 0:
                    continue  # truncated: an earlier, complete box may still hold the answer
                start, stop = j + 1, end + 2  # `\boxed{17\}`: the box ends at the `}`
            else:
                start, stop = j + 1, end + 1
        elif j > m.end():
            word = _WORD_AFTER_BOX_RE.match(text, j, hi)
            if word is None:
                continue
            start, end = j, word.end()
            stop = end
        else:
            continue
        start, end = _strip_span(text, start, end)
        if text.startswith(("\\boxed", "\\fbox"), start, end):
            inner = _boxes_in(text, start, end, pairs, depth + 1) if depth < _MAX_BOX_DEPTH else []
            content = inner[-1][2] if inner else ""
        else:
            content = text[start:end]
        if content:
            found.append((m.start(), stop, content))
            pos = stop  # boxes nested in this one are part of it
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last balanced, non-empty `\\boxed{...}` / `\\boxed x` / `\\fbox{...}`."""
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


def _boxed_group(text: str) -> tuple[str, int] | None:
    """`boxed_answer` and where its last box ends. A last box that the words right after it
    reject (`the value \\boxed{-3} is extraneous`) gives way to the box before it."""
    boxes = _boxes(text)
    if not boxes:
        return None
    while len(boxes) > 1 and _rejected_after(text, boxes[-1][1]):
        boxes.pop()
    group = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        between = _TEXT_WRAP_RE.sub(r"\1", text[prev[1] : group[0][0]])
        if not _BOX_SEPARATOR_RE.fullmatch(between):
            break
        if re.search(r",[^\w,]*or\b", between) and "=" not in between:
            break  # `\boxed{15\frac{39}{40}}, or \boxed{\frac{639}{40}}`: one value restated
        group.insert(0, prev)
    if len(group) == 1:
        return group[0][2], group[0][1]
    return ", ".join(_LHS_RE.sub("", content) for _, _, content in group), group[-1][1]


def _rejected_after(text: str, end: int) -> bool:
    """Whether the rest of the sentence after a box ending at `end` rejects it."""
    after = _SENTENCE_END_RE.split(text[end : end + 200], maxsplit=1)[0]
    return _REJECTED_RE.search(after) is not None


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
    if _rejected_after(text, chosen[-1][1]):
        return None  # `the value \boxed{-3} is extraneous`: not one of the values
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


def tuple_size(answer: str) -> int:
    """How many entries a bare answer that is one tuple has (`(3, -1)`: 2), else 0."""
    s = strip_answer(answer)
    if not (s.startswith("(") and s.endswith(")")) or list_size(s) != 1:
        return 0
    return list_size(s[1:-1])


def is_bare_answer(text: str) -> bool:
    """Whether `text` is an answer by itself rather than prose or a solution that contains one.

    Bare: no math delimiters or boxes inside (after stripping the outer ones) and no sentence
    (one word is a name, or a unit after a number: `\\text{Evelyn}`, `36 dollars`; `xy + yz` is
    a product; `I think 5` is a sentence; one token with no blank, `1+__import__('os')`, is no
    sentence; nor is a word of prose after a number: `3 then`); so `3/4` or `x^2+3x-4` is
    compared as written, never reduced to its last number.
    """
    s = strip_answer(text)
    if not s or _BOXED_RE.search(s) or re.search(r"(?<!\\)\$|\\[(\[]", s):
        return False
    if not re.search(r"[\s<>]", s):
        return True  # one token (`1+__import__('os')`, no `</think>`): no sentence to mine
    s = re.sub(r"\\(?:begin|end|operatorname|mathbf|mathbb|array)\s*\{[^{}]*\}", " ", s)
    words = {w.lower() for w in _WORD_RE.findall(s)} - _MATH_WORDS
    long_words = [w for w in words if len(w) >= 3]
    if len(long_words) >= 2 or (long_words and _STOP_WORDS.intersection(words)):
        return False
    if _PROSE_WORDS.intersection(words):
        return False  # `3 then`: a sentence that goes on
    # A word may end a number (`36 dollars`, `864 inches^2`); prose has words between numbers.
    word = next((m for m in _WORD_RE.finditer(s) if m.group(0).lower() in long_words), None)
    if word is None or not re.search(r"\d", s):
        return True  # no sentence word, or a word answer (`\\text{Evelyn}`, `east`)
    before, after = s[: word.start()], re.sub(r"\^\s*\{?\d\}?", "", s[word.end() :])
    return bool(re.search(r"\d", before)) and not re.search(r"\d", after)


def box_is_prose(content: str) -> bool:
    """Whether what a box holds is prose rather than an answer (`3+ then we would need more
    steps`, `3 is what we get`): not a bare answer (see `is_bare_answer`; a unit or a name after
    a number, `36 dollars`, `\\text{Evelyn}`, is one). Such a box is no answer at all: reading the
    number in it would grade `\\boxed{3 then we need more steps}` as 3."""
    return not is_bare_answer(content)


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


class _Positions:
    """Sorted start positions of one pattern's matches in a text, found once, looked up by
    bisection: the first one at or after a position."""

    def __init__(self, pattern: str, text: str) -> None:
        self.at = [m.start() for m in re.finditer(pattern, text)]

    def first(self, pos: int) -> int:
        k = bisect.bisect_left(self.at, pos)
        return self.at[k] if k < len(self.at) else -1


def _math_spans(text: str) -> list[tuple[int, str]]:
    """(end, content) of each match of `_MATH_ENV_RE` in `text`, left to right, as `finditer`
    would give them, in linear time: where an opener has no closer (`\\[` or `\\(` repeated),
    the regex rescans the rest of the text from every opener; this looks the closer up."""
    spans: list[tuple[int, str]] = []
    closers: dict[str, _Positions] = {}

    def first(name: str, pattern: str, pos: int) -> int:
        if name not in closers:
            closers[name] = _Positions(pattern, text)
        return closers[name].first(pos)

    pos = 0
    while (m := _MATH_START_RE.search(text, pos)) is not None:
        p = m.start()
        prev = text[p - 1] if p else ""
        span: tuple[int, str] | None = None
        if m.group() == "$":
            if text.startswith("$$", p) and prev != "\\":  # `$$...$$`, content >= 1 char
                q = first("dd", r"(?<!\\)(?=\$\$)", p + 3)
                if q >= 0:
                    span = (q + 2, text[p + 2 : q])
            if span is None and prev != "\\" and not prev.isdecimal():  # `$...$`, one line
                q = first("d", r"(?<!\\)\$", p + 1)
                if q > p + 1 and not 0 <= first("nl", "\n", p + 1) < q:
                    span = (q + 1, text[p + 1 : q])
        else:
            close = "\\]" if m.group() == "\\[" else "\\)"
            q = first(close, re.escape(close), p + 3)
            one_line = close == "\\]" or not 0 <= first("nl", "\n", p + 2) < q
            if q >= 0 and one_line:
                span = (q + 2, text[p + 2 : q])
        if span is None:
            pos = p + 1
        else:
            spans.append(span)
            pos = span[0]
    return spans


# An inequality, in any spelling; and `or` between two pieces of inline math.
_INEQUALITY_RE = re.compile(r"[<>≤≥]|\\(?:le|ge|leq|geq|lt|gt|leqslant|geqslant)(?![A-Za-z])")
_OR_WORD = r"\s*,?\s*(?:or|\\text\s*\{\s*or\s*\})\s*"
_INLINE_MATH = r"(?:\$(?P<i>[^$\n]+?)\$|\\\((?P<p>[^\n]+?)\\\))"
_OR_BEFORE_RE = re.compile(_INLINE_MATH + _OR_WORD + r"$")
_OR_AFTER_RE = re.compile(_OR_WORD + _INLINE_MATH)
_OR_LOOKBACK_CHARS = 300
_OR_CHAIN_MAX = 8  # pieces of one answer at most: a text of a thousand `$x<1$ or` stays cheap


def _span_start(text: str, end: int, raw: str) -> int:
    """Where the math span ending at `end` with content `raw` opens (`$`, `$$`, `\\(`, `\\[`)."""
    for width in (1, 2):
        start = end - len(raw) - 2 * width
        if start >= 0 and text[start] in "$\\" and text.startswith(raw, start + width):
            return start
    return max(0, end - len(raw))


def _or_chain(text: str, start: int, end: int, content: str) -> tuple[str, int]:
    """`content` (the math at `text[start:end]`) joined with the inequalities in the inline
    math right before and after it that `or` joins (`$x < -1$ or $x > 6$`: one solution set
    written in parts), and where the chain ends; `content` alone when it is no inequality."""
    if not _INEQUALITY_RE.search(content):
        return content, end
    parts = [content]
    while len(parts) < _OR_CHAIN_MAX and (
        m := _OR_BEFORE_RE.search(text, max(0, start - _OR_LOOKBACK_CHARS), start)
    ):
        part = strip_answer(m.group("i") or m.group("p"))
        if not _INEQUALITY_RE.search(part):
            break
        parts.insert(0, part)
        start = m.start()
    while len(parts) < _OR_CHAIN_MAX and (m := _OR_AFTER_RE.match(text, end)) is not None:
        part = strip_answer(m.group("i") or m.group("p"))
        if not _INEQUALITY_RE.search(part):
            break
        parts.append(part)
        end = m.end()
    return " or ".join(parts), end


def last_inequalities(text: str) -> str | None:
    """The last inequalities of a text that `or` joins (`so $x < -1$ or $x > 6$.` ->
    `x < -1 or x > 6`), when they are its last math and no number follows; else None."""
    spans = _math_spans(text)
    if not spans:
        return None
    end, raw = spans[-1]
    if re.search(r"\d", text[end:]):
        return None
    joined, _ = _or_chain(text, _span_start(text, end, raw), end, strip_answer(raw))
    return joined if " or " in joined else None


def _last_math_or_number(text: str) -> tuple[str, str] | None:
    """The rightmost inline/display math or plain number: (answer, rule); inequalities that
    `or` joins are one answer (`$x < -1$ or $x > 6$`)."""
    best: tuple[int, str, str] | None = None
    for end, raw in _math_spans(text):
        content = strip_answer(raw)
        if content and (best is None or end >= best[0]):
            best = (end, content, "last_math")
    if best is not None and best[2] == "last_math":
        joined = last_inequalities(text)
        best = (best[0], joined, "last_math") if joined is not None else best
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
            content = strip_answer(next(g for g in m.groups() if g is not None))
            content, chain_end = _or_chain(text, offset, offset + m.end(), content)
            end = chain_end - offset
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
    with the whole text as fallback. A final box that holds prose (`box_is_prose`) gives no
    answer, (None, None): its number is not the answer, and no fallback mines the text for one.
    A bare math answer (non-strict only: `3/4`, `x^2+1`, `2 + 5 = 7` -> `7`) is its own answer.
    The last math / last number rules (non-strict only) come after every anchored rule on both
    parts because they inflate the accuracy of truncated outputs.
    """
    if not text:
        return None, None
    text = clean_text(text[-MAX_TEXT_CHARS:])
    parts = [text]
    if _THINK_END in text:
        parts.insert(0, text.rsplit(_THINK_END, 1)[1])
    for part in parts:
        answer, rule = _strong_rules(part, strict)
        if answer is not None and rule == "boxed" and box_is_prose(answer):
            return None, None  # the model's final statement answers nothing: nothing to mine
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
