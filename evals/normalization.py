"""Answer normalisation and the in-process fast path of equivalence.

Its own module because it decides, without sympy, every pair that presentation alone separates
(units, degrees, `\\text{}`, thousands separators, choice letters, plain numbers, a repeating
decimal's bar), and hands the rest to math-verify as normalised forms; it never starts a process.
Two readings are made here before the forms are handed on: inequalities in one variable are
written as the intervals they describe when the other answer is an interval (`x > -4` against
`(-4, \\infty)`), and a function's argument names are made the gold's (`f(t) = t^2` against
`f(x) = x^2`), since they are bound names, also against a bare expression (`f(y) = y^2` against
`x^2`). A comma between digits is a decimal comma only against one value (`2,3` lists two
against `2 or 3`), and a `\\pm` inside a fraction is the two values it stands for.

Normalisation runs in linear time (brace tables and forward scans instead of repeated rescans), and
numbers too long for `int()` are compared digit by digit rather than converted. What must never be
equal is flagged here too: `malformed` names the structural faults (a dangling operator as in `3+`,
unbalanced braces, Python-only tokens as in `__import__`, numbers side by side), and `ungradable`
the answers that are too long to hand to sympy.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import NamedTuple

from evals.extraction import boxed_answer, brace_pairs, clean_text, strip_answer

__all__ = ["MAX_ANSWER_CHARS", "Forms", "fast_path", "malformed", "normalize_answer", "ungradable"]

# Past this an answer is not handed to sympy (it only gets slower, never more right): the longest
# MATH500/AIME/AMC gold answer has 53 characters. Identical or plainly numeric answers of any length
# are still decided by the fast path.
MAX_ANSWER_CHARS = 2000
# Numbers with more digits are compared as digit strings: `int()` refuses strings past 4300 digits
# (Python's guard against its quadratic conversion), and is slow well before that.
_LONG_NUMBER_DIGITS = 1000

_TEXT_CMDS = ("text", "textbf", "textit", "textrm", "textnormal", "mathrm", "mathbf", "mbox")
_TEXT_CMD_RE = re.compile(r"\\(?:" + "|".join(_TEXT_CMDS) + r")\s*(?=\{)")
_DEGREE_RE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\^\s*\{?\\degree\}?|\\degree")
_SPACING_RE = re.compile(r"\\\\|\\[,;: ]|\\q?quad(?![A-Za-z])|~")  # `\\` (row break) is kept
_TRAILING_TEXT_RE = re.compile(
    r"^(?P<head>.*?\S)\s*\\(?:text|textrm|mbox|mathrm)\s*\{[\sA-Za-z.]*\}(?:\s*\^\s*\{?\d\}?)?$"
)
_NUM_WORDS_RE = re.compile(
    r"^(?P<num>[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?)(?P<space>\s*)"
    r"(?P<words>[A-Za-z]+(?: [A-Za-z]+)*)(?:\s*\^\s*\{?[23]\}?)?$"
)
_UNIT_RE = re.compile(
    r"[cmk]m|(?:centi|kilo|milli)?met(?:er|re)s?|inch(?:es)?|ft|feet|foot|yards?|yd|miles?|mi|sq"
    r"|square|cubic|units?|deg(?:rees?)?|rad(?:ians?)?|dollars?|cents?|sec(?:onds?)?|min(?:utes?)?"
    r"|hrs?|hours?|days?|weeks?|months?|years?|mph|kg|grams?|lbs?|pounds?|oz|ounces?|lit(?:er|re)s?"
    r"|ml|gallons?|percent"
)
_MATH_WORDS = {"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "mod"}
_THOUSANDS_RE = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_ASSIGN_RE = re.compile(
    r"^(?P<lhs>[A-Za-z](?:_\{?\w+\}?)?)\s*(?:=|\\in\b|\\approx\b|≈)\s*(?P<rhs>[^=]+)$"
)
# `\approx 0.571429`: an approximation sign before a value says how it was written, not what.
_APPROX_RE = re.compile(r"^(?:\\approx(?![A-Za-z])|≈)\s*")
# A repeating decimal written with a bar (`0.\overline{27}`, `1.2\overline{3}`): an exact value.
_REPEATING_RE = re.compile(
    r"(?<![\d.])(?P<sign>-?)(?P<whole>\d*)\.(?P<fixed>\d*)\s*\\overline\s*\{\s*(?P<rep>\d+)\s*\}"
)
_REPEATING_MAX_DIGITS = 100
# Inequalities in one variable (`x > -4`, `-3 < x \leq 8`, `x < -1 or x > 6`), read as intervals
# when the other answer is an interval or a union of them.
_VAR = r"[A-Za-z](?:_\{?\w+\}?)?"
_INEQ_SPLIT_RE = re.compile(r"(\\leq|\\geq|<|>)")
_OR_RE = re.compile(r"\s*(?:\bor\b|\\lor(?![A-Za-z])|\\vee(?![A-Za-z])|\\cup(?![A-Za-z]))\s*")
_INTERVAL_LIKE_RE = re.compile(r"^[(\[].*[)\]]$|\\cup(?![A-Za-z])")
# A function defined by its rule (`f(t) = t^2`, `f^{-1}(y) = ...`, `g(a, b) = a + 2b`): the
# argument names are bound, so `f(t) = t^2` and `f(x) = x^2` are one function. Arguments are
# lowercase letters: `P(A) = \frac12` and `P(B) = \frac12` are about two events.
_FUNCTION_RE = re.compile(
    r"^(?P<name>[A-Za-z](?:\^\s*\{\s*-\s*1\s*\}|\^\s*-1)?)"
    r"\s*\(\s*(?P<args>[a-z](?:\s*,\s*[a-z])*)\s*\)\s*=\s*(?P<body>[^=]+)$"
)
_SYMBOL_TOKEN_RE = re.compile(r"\\[A-Za-z]+|[A-Za-z]")
# What makes an answer a relation or an equation rather than an expression a function's rule can
# be compared with (relations are in one spelling by then).
_RELATION_SIGN_RE = re.compile(r"[=<>]|\\(?:[lgn]eq|in)(?![A-Za-z])")
# Several values joined by words or signs (`2 or 3`, `x=2 and x=3`, `1 \pm \sqrt2`, a set): a
# list, so a `2,3` on the other side is the list `2, 3`, not the decimal 2.3.
_SEVERAL_VALUES_RE = re.compile(r"\bor\b|\band\b|\\(?:pm|mp|lor|vee)(?![A-Za-z])|\\\{")
_PM_RE = re.compile(r"\\(pm|mp)(?![A-Za-z])")
_CHOICE_RE = re.compile(r"^\(\s*([A-Ea-e])\s*\)$")
# One spelling per relation, so `x \\geq 5` and `x >= 5` are equal strings.
_RELATIONS = {
    "\\geqslant": "\\geq", "\\geq": "\\geq", ">=": "\\geq", "≥": "\\geq", "\\ge": "\\geq",
    "\\leqslant": "\\leq", "\\leq": "\\leq", "<=": "\\leq", "≤": "\\leq", "\\le": "\\leq",
    "\\neq": "\\neq", "!=": "\\neq", "≠": "\\neq", "\\ne": "\\neq", "\\gt": ">", "\\lt": "<",
}  # fmt: skip
_RELATION_RE = re.compile(
    "|".join(re.escape(k) + ("(?![A-Za-z])" if k[-1].isalpha() else "") for k in _RELATIONS)
)
_MIXED_RE = re.compile(
    r"(?P<sign>[-+]?)(?P<whole>\d+)\s*(?:\\frac\{(?P<n1>\d+)\}\{(?P<d1>\d+)\}"
    r"|\s(?P<n2>\d+)\s*/\s*(?P<d2>\d+))(?P<pct>\\%)?"
)
_POWER_RE = re.compile(r"(?<=[\w)\]}])\s*\*\*\s*(?=[\w({\[-])")  # `x**2`, not **bold**
_DECIMAL_COMMA_RE = re.compile(r"[-+]?\d+,\d+")
_BEGIN_MATRIX_RE = re.compile(r"\\begin\{([pb]matrix)\}")
_PLAIN_NUMBER_RE = re.compile(r"([-+]?)(\d*)(?:\.(\d*))?")
# Structural faults (besides unbalanced brackets and environments): an operator with nothing after
# it (`3+`, `x =`, `2\cdot`) or before it (`*3`), Python's dunders (`__import__`), and numbers side
# by side (`3 5`, which latex2sympy reads as 8); thousands groups (`10 000`) and mixed numbers
# (`4 4/9`) are numbers, not neighbours.
_DANGLING_OP_RE = re.compile(
    r"(?:(?<!\^)[-+]|[*/^_=<>]|\\(?:cdot|times|div|pm|mp|leq|geq|neq|in|cup|cap|setminus|to|frac"
    r"|sqrt))\s*$|^\s*(?:[*/^_]|\\(?:cdot|times|div)(?![A-Za-z]))"
)
_GROUPED_OR_MIXED_RE = re.compile(
    r"(?<![\d.])(?:\d+\s+\d+\s*/\s*\d+|\d{1,3}(?:\s\d{3})+(?:\.\d+)?)(?![\d.])"
)
_SIDE_BY_SIDE_RE = re.compile(r"\d\s+\.?\d")
# Text that was never valid unicode (lone surrogates), or was decoded with losses (U+FFFD).
_UNDECODABLE_RE = re.compile("[\ud800-\udfff\ufffd]")
_BRACKET_TOKEN_RE = re.compile(r"\\.|[{}()\[\]]", re.DOTALL)


def _strip_unit_words(s: str) -> str:
    """`36 dollars`, `5 apples`, `12cm` -> the number; never touches `3r^2` or `2 pi`."""
    m = _NUM_WORDS_RE.match(s)
    if m is None:
        return s
    words = m.group("words").lower().split()
    units = all(_UNIT_RE.fullmatch(w) for w in words)
    generic = bool(m.group("space")) and all(len(w) >= 3 and w not in _MATH_WORDS for w in words)
    return m.group("num") if units or generic else s


def _spacing(m: re.Match[str]) -> str:
    return m.group(0) if m.group(0) == "\\\\" else " "


def _unwrap_text_cmds(s: str) -> str:
    """`\\text{abc}` -> `abc` (brace-matched, nested ones too), left to right up to the first
    unclosed one; one brace table and one join, so `\\text{a}` repeated costs one pass."""
    cmds = list(_TEXT_CMD_RE.finditer(s))
    if not cmds:
        return s
    pairs = brace_pairs(s)
    cuts: list[tuple[int, int]] = []
    for m in cmds:
        close_at = pairs.get(m.end(), -1)
        if close_at < 0:
            break
        cuts += [(m.start(), m.end() + 1), (close_at, close_at + 1)]
    return _drop(s, cuts)


def _drop(s: str, cuts: list[tuple[int, int]]) -> str:
    """`s` without the (disjoint) `[start, end)` ranges of `cuts`."""
    out, pos = [], 0
    for start, end in sorted(cuts):
        out.append(s[pos:start])
        pos = end
    out.append(s[pos:])
    return "".join(out)


def _canonical_fracs(s: str) -> str:
    """`\\frac12`, `\\frac 34`, `\\frac9{19}`, `\\frac{270}7`, `\\sqrt2` -> braced forms."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)


def _improper(s: str) -> str:
    """A mixed number (`4 4/9`, `1\\frac{4}{5}`) as one fraction, so `4 4/9` is never `44/9`."""
    m = _MIXED_RE.fullmatch(s)
    if m is None:
        return s
    num, den = (m.group("n1"), m.group("d1")) if m.group("n1") else (m.group("n2"), m.group("d2"))
    if max(len(num), len(den), len(m.group("whole"))) > _LONG_NUMBER_DIGITS or int(den) == 0:
        return s
    value = int(m.group("whole")) + Fraction(int(num), int(den))
    sign = "-" if m.group("sign") == "-" else ""
    if value.denominator == 1:
        return f"{sign}{value.numerator}{m.group('pct') or ''}"
    return f"{sign}\\frac{{{value.numerator}}}{{{value.denominator}}}{m.group('pct') or ''}"


def _colvec_to_tuple(body: str) -> str:
    entries = [e.strip() for e in body.split("\\\\") if e.strip()]
    return "(" + ", ".join(entries) + ")"


def _colvecs(s: str) -> str:
    """`\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}` (or bmatrix, one column: no `&`) -> `(1, 2)`.

    What a lazy `\\begin{...}([^&]*?)\\end{...}` regex substitution does, with the next
    `\\end{...}` and `&` found once for all openers: the regex rescans to the end of the text
    from every unclosed `\\begin{pmatrix}`.
    """
    out: list[str] = []
    pos = 0
    next_at: dict[str, int] = {}  # tag -> its first index at or after the last lookup's start

    def find(tag: str, start: int) -> int:
        at = next_at.get(tag)
        if at is None or (0 <= at < start):
            at = next_at[tag] = s.find(tag, start)
        return at

    for m in _BEGIN_MATRIX_RE.finditer(s):
        if m.start() < pos:
            continue  # inside a matrix already replaced
        end_tag = "\\end{" + m.group(1) + "}"
        close = find(end_tag, m.end())
        if close < 0 or 0 <= find("&", m.end()) < close:
            continue
        out += [s[pos : m.start()], _colvec_to_tuple(s[m.end() : close])]
        pos = close + len(end_tag)
    return "".join(out) + s[pos:] if out else s


def normalize_answer(answer: str) -> str:
    """A canonical LaTeX form of an answer that still means the same thing.

    Strips presentation only (delimiters, spacing, `\\left`, units, degrees, `\\text`, a leading
    `x =`); keeps `\\%` and all structure, so a tuple `(1,2)` never collapses into `12`.
    """
    return _normalize(answer)[0]


def _normalize(answer: str) -> tuple[str, str | None, str]:
    """`normalize_answer`, the variable of a stripped `x = ...` (or None), and the form that
    keeps it (for math-verify, which compares `2x+4y-3=0` with `y = ...` itself)."""
    s = strip_answer(clean_text(answer))
    if s.startswith(("\\boxed", "\\fbox")):
        s = boxed_answer(s) or s
    s = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", _POWER_RE.sub("^", s))
    s = re.sub(r"\\left\s*\.|\\right\s*\.", "", s)
    s = re.sub(r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])", "", s)
    s = re.sub(r",\s*\\!\s*", ",", s).replace("\\!", "").replace("{,}", ",")
    s = _SPACING_RE.sub(_spacing, s)
    s = _DEGREE_RE.sub("", s)
    s = s.replace("\\$", "")
    s = re.sub(r"(?<!\\)%", r"\\%", s)
    s = re.sub(r"\\text\s*\{\s*\\%\s*\}", r"\\%", s)
    trailing = _TRAILING_TEXT_RE.match(s)
    if trailing:
        s = trailing.group("head")
    s = re.sub(r"\s*\\text\s*\{\s*(or|and)\s*\}\s*", r" \1 ", s)  # `x<-1\text{or}x>6`
    s = _unwrap_text_cmds(s)
    s = _colvecs(s)
    s = _RELATION_RE.sub(lambda m: _RELATIONS[m.group(0)], s)
    s = re.sub(r"\s+", " ", s).strip()
    s = strip_answer(_APPROX_RE.sub("", strip_answer(s)))
    s = _strip_unit_words(s)
    s = _repeating_decimals(s)
    full, lhs = s, None
    assign = _ASSIGN_RE.match(s)
    if assign:
        s, lhs = assign.group("rhs").strip(), assign.group("lhs")
    choice = _CHOICE_RE.match(s)
    if choice:
        s = choice.group(1).upper()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    s = _improper(_tidy(_canonical_fracs(s)))
    return s, lhs, (_improper(_tidy(_canonical_fracs(full))) if lhs else s)


def _repeating_decimals(s: str) -> str:
    """`0.\\overline{27}` -> `\\frac{3}{11}`, `0.1\\overline{6}` -> `\\frac{1}{6}`: a bar over the
    repeating digits makes a decimal exact, so it is compared as the fraction it is."""
    if "overline" not in s:
        return s

    def exact(m: re.Match[str]) -> str:
        whole, fixed, rep = m.group("whole") or "0", m.group("fixed"), m.group("rep")
        if len(whole) + len(fixed) + len(rep) > _REPEATING_MAX_DIGITS:
            return m.group(0)
        value = Fraction(int(whole + fixed + rep) - int(whole + fixed), 10 ** len(fixed)) / (
            10 ** len(rep) - 1
        )
        sign = m.group("sign")
        if value.denominator == 1:
            return f"{sign}{value.numerator}"
        return f"{sign}\\frac{{{value.numerator}}}{{{value.denominator}}}"

    return _REPEATING_RE.sub(exact, s)


def _inequality_intervals(s: str) -> str | None:
    """`x > -4` -> `(-4, \\infty)`, `-3 < x \\leq 8` -> `(-3, 8]`, `x < -1 or x > 6` ->
    `(-\\infty, -1) \\cup (6, \\infty)`: inequalities in one variable (relations already in
    one spelling) as the intervals they describe; None for anything else."""
    if not re.search(r"[<>]|\\[lgn]eq", s):
        return None
    variable, intervals = None, []
    unequal = re.fullmatch(rf"({_VAR})\s*\\neq\s*(.+)", s)
    if unequal:  # `x \neq 3`: everything but 3
        point = unequal.group(2).strip()
        if re.search(r"[<>=]|\\[lgn]eq|\bor\b", point) or re.fullmatch(_VAR, point):
            return None
        return f"(-\\infty, {point}) \\cup ({point}, \\infty)"
    for part in _OR_RE.split(s):
        tokens = [t.strip() for t in _INEQ_SPLIT_RE.split(part)]
        terms, ops = tokens[::2], tokens[1::2]
        if (
            len(terms) not in (2, 3)
            or not all(terms)
            or any(_INEQ_SPLIT_RE.search(t) for t in terms)
        ):
            return None
        var_at = [i for i, t in enumerate(terms) if re.fullmatch(_VAR, t)]
        if len(terms) == 3:
            var_at = [1] if 1 in var_at else []
        if len(var_at) != 1 or variable not in (None, terms[var_at[0]]):
            return None
        variable = terms[var_at[0]]
        upward = [op in ("<", "\\leq") for op in ops]
        if len(set(upward)) != 1:
            return None  # `1 < x > 3` is no interval
        closed = [op in ("\\leq", "\\geq") for op in ops]
        ends: list[tuple[str, bool]] = []  # (endpoint, closed) left to right on the number line
        if len(terms) == 3:
            ends = [(terms[0], closed[0]), (terms[2], closed[1])]
            if not upward[0]:
                ends.reverse()
        elif (var_at[0] == 0) == upward[0]:  # `x < a`, `a > x`: below a
            ends = [("-\\infty", False), (terms[1 - var_at[0]], closed[0])]
        else:  # `x > a`, `a < x`: above a
            ends = [(terms[1 - var_at[0]], closed[0]), ("\\infty", False)]
        (low, low_closed), (high, high_closed) = ends
        intervals.append(f"{'[' if low_closed else '('}{low}, {high}{']' if high_closed else ')'}")
    return " \\cup ".join(intervals)


def _rename_arguments(pred: str, gold: str) -> str:
    """`pred` with its function's argument names made the gold's (`f(t) = t^2 + k` against
    `f(x) = ...` -> `f(x) = x^2 + k`), when both define the same function name with as many
    arguments; other letters (free parameters such as `k`) stay, so a renamed parameter still
    differs. Anything else is returned as it is: `t^2` and `x^2` are not one answer."""
    p, g = _FUNCTION_RE.match(pred), _FUNCTION_RE.match(gold)
    if p is None or g is None or _key(p.group("name")) != _key(g.group("name")):
        return pred
    p_args, g_args = (re.split(r"\s*,\s*", m.group("args")) for m in (p, g))
    if len(p_args) != len(g_args) or len(set(p_args)) != len(p_args) or p_args == g_args:
        return pred
    names = dict(zip(p_args, g_args, strict=True))
    body = _SYMBOL_TOKEN_RE.sub(lambda m: names.get(m.group(0), m.group(0)), p.group("body"))
    return f"{gold[: g.start('body')]}{body}"


def _letters_of(s: str) -> set[str]:
    """The one-letter symbols of an expression (`\\frac`, `\\pi`, `\\sqrt` are commands, not
    letters)."""
    return {t for t in _SYMBOL_TOKEN_RE.findall(s) if len(t) == 1}


def _function_as_expression(pred: str, gold: str) -> str:
    """`pred`, a function of one argument defined by its rule (`f(y) = y^3 - 1`), as its rule
    when `gold` is a bare expression (`x^3 - 1`): the argument is a bound name, so it is renamed
    to the one letter of the gold that the rule does not already use freely (`f(t) = t^2 + c`
    against `x^2 + c` -> `x^2 + c`). The rule as written when the gold uses the argument's own
    letter, or has no letter; `pred` unchanged when no letter is left for the argument
    (`f(y) = y^2 + x` against `x^2 + x`: renaming onto the free `x` would merge two names), or
    when the gold is a relation, a list or a function itself (`_rename_arguments`)."""
    p = _FUNCTION_RE.match(pred)
    if p is None or _FUNCTION_RE.match(gold) or _RELATION_SIGN_RE.search(gold) or "," in gold:
        return pred
    arg, body = p.group("args"), p.group("body").strip()
    if "," in arg:
        return pred
    gold_letters = _letters_of(gold)
    if arg in gold_letters or not gold_letters:
        return body
    unmatched = gold_letters - (_letters_of(body) - {arg})
    if len(unmatched) != 1:
        return pred
    (letter,) = unmatched
    return _SYMBOL_TOKEN_RE.sub(lambda m: letter if m.group(0) == arg else m.group(0), body)


def _function_body_against(gold: str, pred: str, pred_var: str | None) -> str | None:
    """The rule of a gold function of one argument (`f(x) = 3x - 7` -> `3x - 7`) when the
    prediction gives a rule in that argument without the function's name: an expression, or
    `y = ...` with any other letter than the argument (`x = 4` is a value of the argument, not
    a rule). None otherwise: the gold is compared whole."""
    g = _FUNCTION_RE.match(gold)
    if g is None or _FUNCTION_RE.match(pred) or _RELATION_SIGN_RE.search(pred):
        return None
    arg = g.group("args")
    if "," in arg or pred_var == arg or not (_letters_of(pred) <= {arg} | _letters_of(gold)):
        return None
    return g.group("body").strip()


def _expand_pm(s: str) -> str:
    """A value with one `\\pm` (or `\\mp`) inside a group, as its two values: `\\frac{-3 \\pm
    \\sqrt5}{2}` -> `\\frac{-3 + \\sqrt5}{2}, \\frac{-3 - \\sqrt5}{2}` (math-verify reads a
    `\\pm` only at the top level: `1 \\pm \\sqrt2`). Each comma-separated item on its own;
    items with a comma inside (a tuple, a set), a relation, or several signs stay as written."""
    if "\\pm" not in s and "\\mp" not in s:
        return s
    items, depth, start = [], 0, 0
    for i, c in enumerate(s):
        depth += (c in "([{") - (c in ")]}")
        if c == "," and depth == 0:
            items.append(s[start:i])
            start = i + 1
    items.append(s[start:])
    out, changed = [], False
    for item in items:
        signs = list(_PM_RE.finditer(item))
        nested = len(signs) == 1 and _bracket_depth(item, signs[0].start()) > 0
        if not nested or "," in item or "\\{" in item or re.search(r"[<>]|\\[lgn]eq", item):
            out.append(item.strip())
            continue
        m = signs[0]
        first, second = ("+", "-") if m.group(1) == "pm" else ("-", "+")
        out += [f"{item[: m.start()]}{sign}{item[m.end() :]}".strip() for sign in (first, second)]
        changed = True
    return ", ".join(out) if changed else s


def _bracket_depth(s: str, at: int) -> int:
    """How many brackets or braces are open at index `at` of `s`."""
    return sum((c in "([{") - (c in ")]}") for c in s[:at])


def _tidy(s: str) -> str:
    return re.sub(r"\s+", " ", s).replace(" \\%", "\\%").strip()


def _key(clean: str) -> str:
    """Comparison key: spacing and the percent sign do not change the answer."""
    return re.sub(r"\s+", "", clean).replace("\\%", "")


def _plain_number(key: str) -> tuple[str, str, str] | None:
    """(sign, integer digits, fraction digits) of a plain integer or decimal, canonical (no
    leading or trailing zeros, no sign on zero): equal tuples, equal values, at any length."""
    m = _PLAIN_NUMBER_RE.fullmatch(key)
    if m is None or not (m.group(2) or m.group(3)):
        return None
    whole, frac = m.group(2).lstrip("0"), (m.group(3) or "").rstrip("0")
    sign = "-" if m.group(1) == "-" and (whole or frac) else ""
    return sign, whole, frac


def _long_numbers(pred_key: str, gold_key: str, percent: bool) -> bool | None:
    """Two plain numbers, one of them too long for `int()`: compared digit by digit. None when
    either is no plain number, or when they differ and a percent sign may still reconcile them."""
    if max(len(pred_key), len(gold_key)) <= _LONG_NUMBER_DIGITS:
        return None
    pred, gold = _plain_number(pred_key), _plain_number(gold_key)
    if pred is None or gold is None:
        return None
    return True if pred == gold else (None if percent else False)


def _as_number(key: str) -> tuple[Fraction, bool] | None:
    """(value, exact) of a plain integer, decimal or simple fraction; decimals are not exact.
    None for numbers longer than `_LONG_NUMBER_DIGITS` (see `_long_numbers`)."""
    if len(key) > _LONG_NUMBER_DIGITS:
        return None
    if re.fullmatch(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)", key):
        return Fraction(key), "." not in key
    m = re.fullmatch(r"([-+]?)(?:\\frac\{(\d+)\}\{(\d+)\}|(\d+)/(\d+))", key)
    if m:
        num, den = (m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5))
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return (-value if m.group(1) == "-" else value), True
    return None


# math-verify's `float_rounding` default: a decimal equals an exact value when both rounded to
# this many places agree (`0.428571` is 3/7; `0.4286` is not).
_FLOAT_ROUNDING = 6


def _rounded_equal(a: Fraction, b: Fraction) -> bool:
    return round(a, _FLOAT_ROUNDING) == round(b, _FLOAT_ROUNDING)


def _choice_letter(clean: str) -> str | None:
    m = re.match(r"^\(?\s*([A-Ea-e])\s*\)?(?:[\s:.]|$)", clean)
    return m.group(1).upper() if m else None


def _letters(s: str) -> str:
    return re.sub(r"[^a-z]", "", s.lower())


def _is_word_answer(raw: str, clean: str) -> bool:
    """Gold answers that are words (`\\text{Evelyn}`, `\\text{even}`), not products of symbols."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z ]*[A-Za-z]", clean):
        return False
    return bool(_TEXT_CMD_RE.search(raw)) or (len(clean) >= 4 and "\\" not in raw)


class Forms(NamedTuple):
    """What math-verify compares when the fast path cannot decide: normalised, then as written."""

    pred: str
    gold: str
    pred_raw: str
    gold_raw: str


def _decimal_comma(key: str) -> Fraction | None:
    """`2,5` read as 2.5; never `2, 5` (a list) nor a thousands group such as `1,500`."""
    if len(key) > _LONG_NUMBER_DIGITS:
        return None
    if _DECIMAL_COMMA_RE.fullmatch(key) and not _THOUSANDS_RE.fullmatch(key):
        return Fraction(key.replace(",", "."))
    return None


def fast_path(prediction: str, gold: str) -> tuple[bool | None, Forms]:
    """Decide without sympy when possible; else return the forms math-verify should compare.

    Both sides are bare answers (see `evals.extraction.is_bare_answer`). A malformed prediction
    (see `malformed`) is never equal to another answer.
    """
    prediction, gold = clean_text(prediction), clean_text(gold)
    (pred_clean, pred_var, pred_full), (gold_clean, gold_var, gold_full) = (
        _normalize(prediction),
        _normalize(gold),
    )
    pred_clean, gold_clean = _as_intervals_against(pred_clean, gold_clean)
    if pred_var is None and gold_var is None:
        pred_full, gold_full = pred_clean, gold_clean
    pred_clean = _rename_arguments(pred_clean, gold_clean)
    pred_clean = _function_as_expression(pred_clean, gold_clean)
    gold_body = _function_body_against(gold_clean, pred_clean, pred_var)
    if gold_body is not None:  # `y = 3x - 7` against `f(x) = 3x - 7`: the rules are compared
        gold_clean = gold_full = gold_body
        pred_var = None
    if pred_var is None:
        pred_full = pred_clean
    pred_clean, gold_clean, pred_full, gold_full = map(
        _expand_pm, (pred_clean, gold_clean, pred_full, gold_full)
    )
    forms = Forms(pred_full, gold_full, strip_answer(prediction), strip_answer(gold))
    pred_key, gold_key = _key(pred_clean), _key(gold_clean)
    if not pred_key:
        return False, forms
    if _UNDECODABLE_RE.search(pred_clean) or _UNDECODABLE_RE.search(gold_clean):
        return pred_key == gold_key, forms  # damaged text: equal to the same text, nothing else
    if pred_var and gold_var and pred_var != gold_var:
        return None, forms  # `y = 5` does not answer `x = 5`; math-verify compares equations
    if pred_key == gold_key:
        return True, forms
    if re.fullmatch(r"[A-E]", gold_key):
        return _choice_letter(pred_clean) == gold_key, forms  # `C)` is a letter, not malformed
    if _fault(pred_clean) is not None:
        return False, forms  # `3+` is not `3`, whatever part of it a parser can read
    percent = ("\\%" in pred_clean) != ("\\%" in gold_clean)
    long_numbers = _long_numbers(pred_key, gold_key, percent)
    if long_numbers is not None:
        return long_numbers, forms
    if _is_word_answer(gold, gold_clean):
        return _letters(pred_key) == _letters(gold_key), forms
    pred_num, gold_num = _as_number(pred_key), _as_number(gold_key)
    if pred_num is not None and gold_num is not None:
        if pred_num[0] == gold_num[0]:
            return True, forms
        pred_pct, gold_pct = "\\%" in pred_clean, "\\%" in gold_clean
        if pred_pct != gold_pct:
            # Decided here, not by math-verify, whose reading of "25\%" (25 or 1/4) depends on
            # the antlr4 runtime installed next to it: 25\% matches 25 (above) and 1/4.
            pct, other = (pred_num[0], gold_num[0]) if pred_pct else (gold_num[0], pred_num[0])
            if pct / 100 == other:
                return True, forms
            inexact = not (pred_num[1] and gold_num[1])
            # math-verify's tolerance for a rounded value: equal to `_FLOAT_ROUNDING` places
            return (inexact and _rounded_equal(pct, other * 100)), forms
        if pred_num[1] and gold_num[1]:
            return False, forms
    # A decimal comma against one value (`2,74` vs `2.74`); as a list it could not match that.
    pred_dec, gold_dec = _decimal_comma(pred_clean), _decimal_comma(gold_clean)
    if pred_dec is not None and "," not in gold_key and not _SEVERAL_VALUES_RE.search(gold_clean):
        if gold_num is not None:
            return pred_dec == gold_num[0], forms
        forms = forms._replace(pred=forms.pred.replace(",", "."))
    if gold_dec is not None and "," not in pred_key and not _SEVERAL_VALUES_RE.search(pred_clean):
        if pred_num is not None:
            return gold_dec == pred_num[0], forms
        forms = forms._replace(gold=forms.gold.replace(",", "."))
    return None, forms


def _as_intervals_against(pred: str, gold: str) -> tuple[str, str]:
    """The two answers, with the one that is inequalities in one variable written as intervals
    when the other is an interval or a union (`x > -4` against `(-4, \\infty)`); as they are
    otherwise (two inequalities compare as relations)."""
    pred_iv, gold_iv = _inequality_intervals(pred), _inequality_intervals(gold)
    if pred_iv is not None and gold_iv is None and _INTERVAL_LIKE_RE.search(gold):
        return pred_iv, gold
    if gold_iv is not None and pred_iv is None and _INTERVAL_LIKE_RE.search(pred):
        return pred, gold_iv
    return pred, gold


def _fault(clean: str) -> str | None:
    """What makes a normalised answer malformed, or None (see `malformed`)."""
    if _UNDECODABLE_RE.search(clean):
        return "an undecodable character"
    if _DANGLING_OP_RE.search(clean):
        return "an operator with no operand"
    if "__" in clean:
        return "a Python name (`__`)"
    braces = sets = brackets = 0
    for m in _BRACKET_TOKEN_RE.finditer(clean):
        token = m.group()
        if token in ("{", "}"):
            braces += 1 if token == "{" else -1
        elif token in ("\\{", "\\}"):
            sets += 1 if token == "\\{" else -1
        elif token in "([)]":
            brackets += 1 if token in "([" else -1
        if min(braces, sets, brackets) < 0:
            return "unbalanced brackets"
    if braces or sets or brackets:
        return "unbalanced brackets"
    if clean.count("\\begin{") != clean.count("\\end{"):
        return "an environment left open"
    if _SIDE_BY_SIDE_RE.search(_GROUPED_OR_MIXED_RE.sub("0", clean)):
        return "numbers side by side"
    return None


def malformed(answer: str) -> str | None:
    """Why a bare answer is not a well-formed expression (`3+`, `\\frac{1}{2`, `(1, 2`,
    `1+__import__('os')`, `3 5`), or None. A parser that reads only part of such an answer would
    grade it by that part, so it never counts as equal to a well-formed one."""
    return _fault(_normalize(answer)[0])


def ungradable(prediction: str, gold: str) -> str | None:
    """Why two bare answers the fast path left undecided cannot be compared further, or None:
    one is longer than `MAX_ANSWER_CHARS`, or the gold answer is malformed."""
    for role, answer in (("gold answer", gold), ("prediction", prediction)):
        if len(answer) > MAX_ANSWER_CHARS:
            return f"{role} too long to grade ({len(answer)} > {MAX_ANSWER_CHARS} characters)"
    fault = malformed(gold)
    return f"gold answer is malformed: {fault}" if fault is not None else None
