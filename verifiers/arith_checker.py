"""A rule-based process verifier: checks the arithmetic claims written in each step, exactly.

Small models mostly fail by writing false arithmetic ("12 + 7 = 9"); that is cheap to catch
without any model. A step scores 0.0 if any claim in it is false, 1.0 if it has claims and all
are true, and `neutral` when nothing in it can be checked.

Model text is untrusted, so nothing here evaluates it as code: a tokenizer and a Pratt parser
compute exact `Fraction` values, and every cost is bounded (step length, nesting depth, digits,
exponent size, result size). A claim is only counted when both sides are pure numeric
expressions cleanly separated from the prose around them; anything doubtful (`x = 5`,
`f(2) = 7`, `3:4`, `Step 2 = ...`, `50% of 8`, `3 times 4 = 12`) is skipped rather than failed,
because a false 0.0 on a correct step hurts search more than a missed check. One leniency: a
decimal literal may round a value that needs more decimals (`10/3 = 3.33` holds), since models
write rounded results with `=`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from reasoning.types import Chain, Problem, StepScores

__all__ = ["ArithStepChecker", "Claim", "StepVerdict", "check_step"]

MAX_DEPTH = 50  # nesting of groups, signs and powers in one expression
MAX_DIGITS = 100  # digits in one number literal
MAX_EXPONENT = 64  # |integer exponent|
MAX_BITS = 4096  # numerator/denominator size of any intermediate value (~1233 digits)
MAX_CLAIMS = 256  # claims checked per step; real steps have a handful


@dataclass(frozen=True)
class Claim:
    """One checked `left = right` link (a chain `a = b = c` gives two)."""

    text: str
    left: Fraction
    right: Fraction
    ok: bool


@dataclass(frozen=True)
class StepVerdict:
    """A step's score and the claims that decided it (empty when nothing was checkable)."""

    score: float
    claims: tuple[Claim, ...]


# --- tokenizer ----------------------------------------------------------------------------------

# Token kinds. MATH kinds form expressions; the others only matter as neighbours of a claim.
NUM, OP, PCT, LP, RP, FRAC, SQRT = "num", "op", "pct", "lp", "rp", "frac", "sqrt"
EQ, WORD, SEP, HARD, BAD = "eq", "word", "sep", "hard", "bad"
_MATH = frozenset({NUM, OP, PCT, LP, RP, FRAC, SQRT})


class _Tok:
    """One token; a plain slotted class because tokenizing is the hot loop."""

    __slots__ = ("kind", "text", "start", "end", "space_before")

    def __init__(self, kind: str, text: str, start: int, end: int, space_before: bool) -> None:
        self.kind, self.text, self.start, self.end = kind, text, start, end
        self.space_before = space_before  # blank (or a transparent command) before it


_TOKEN = re.compile(
    r"(?P<ws>[ \t\r\f\v\u00a0\u2009\u202f&~]+)"
    r"|(?P<num>[0-9]{1,3}(?:(?:,|\{,\})[0-9]{3})+(?:\.[0-9]+)?(?![0-9])|[0-9]+(?:\.[0-9]+)?"
    r"|\.[0-9]+)"
    r"|(?P<env>\\(?:begin|end)\s*\{[^{}]{0,40}\})"
    r"|(?P<cmd>\\[A-Za-z]+|\\.?)"
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<sym>\*\*|==|!=|<=|>=|=>|.)",
    re.DOTALL,
)
# Unicode operators mapped one char to one char, so offsets still index the original text.
_UNICODE = str.maketrans({"×": "*", "·": "*", "⋅": "*", "∙": "*", "÷": "/", "−": "-"})


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CLOSE = {")": "(", "]": "[", "}": "{"}
_HARD_SYMBOLS = _words(
    '< > <= >= != => ? " ` “ ” ≈ ≠ ≤ ≥ → ⇒ ⟹ ∴ • \\( \\) \\[ \\] \\\\ \\le \\leq \\ge \\geq \\lt '
    "\\gt \\ne \\neq \\approx \\sim \\simeq \\equiv \\cong \\Rightarrow \\implies \\to "
    "\\rightarrow \\Longrightarrow \\iff \\therefore \\because"
)
# Symbols and commands that always make the same token: (kind, normalised text).
_FIXED: dict[str, tuple[str, str]] = {
    **{s: (OP, s) for s in "+-*/^"},
    **{s: (SEP, s) for s in ",:.;"},  # boundaries or not, depending on their neighbours
    **{s: (HARD, s) for s in _HARD_SYMBOLS},
    "%": (PCT, "%"),
    "\\%": (PCT, "%"),
    "=": (EQ, "="),
    "==": (EQ, "="),
    "(": (LP, "("),
    "[": (LP, "["),
    ")": (RP, ")"),
    "]": (RP, "]"),
    "\\times": (OP, "*"),
    "\\cdot": (OP, "*"),
    "\\ast": (OP, "*"),
    "\\div": (OP, "/"),
    "\\frac": (FRAC, "\\frac"),
    "\\dfrac": (FRAC, "\\frac"),
    "\\tfrac": (FRAC, "\\frac"),
    "\\cfrac": (FRAC, "\\frac"),
    "\\sqrt": (SQRT, "\\sqrt"),
}
_SPACE_COMMANDS = {"\\ "} | _words(
    "\\quad \\qquad \\, \\; \\: \\! \\$ \\displaystyle \\left \\right \\big \\Big \\bigl "
    "\\bigr \\Bigl \\Bigr"
)
# Commands whose brace argument is read as plain content (text, or a box around math).
_TRANSPARENT = _words(
    "\\boxed \\fbox \\text \\textbf \\textit \\textrm \\mathrm \\mathbf \\mathit \\mbox "
    "\\hbox \\operatorname \\emph"
)
_DIGITS = "0123456789"


class _Unparsable(Exception):
    """The side is not a bounded, exact numeric expression; its claim is skipped."""


def _number(text: str) -> Fraction:
    """Exact value of a number literal (evaluated only when a claim side is parsed)."""
    digits = text.replace("{,}", "").replace(",", "")
    whole, _, frac = digits.partition(".")
    if len(whole) + len(frac) > MAX_DIGITS:
        raise _Unparsable("too many digits")
    if len(whole) > 1 and whole[0] == "0":
        raise _Unparsable("leading zero (a date or a code, not a number)")
    scale = 10 ** len(frac)
    return Fraction(int(whole or "0") * scale + int(frac or "0"), scale)


def _neighbour(text: str, i: int, step: int) -> str:
    """The first non-blank character from text[i] on in direction `step` (NUL if none)."""
    while 0 <= i < len(text) and text[i] in " \t":
        i += step
    return text[i] if 0 <= i < len(text) else "\x00"


def _spaced_times(line: str, start: int, end: int, toks: list[_Tok]) -> bool:
    """Is the x at line[start:end] written as `<number> x <number>` (blank on both sides)?"""
    if not toks or toks[-1].kind not in (NUM, RP) or start == 0 or line[start - 1] != " ":
        return False
    return line[end : end + 1] == " " and _neighbour(line, end, 1) in _DIGITS + "("


_GROUP_KINDS = {"num": NUM, "word": WORD, "env": HARD}  # \begin{align}, \end{cases}: HARD


def _tokenize(line: str) -> list[_Tok]:
    """Tokens of one line; prose becomes WORD/SEP/HARD/BAD tokens around the math."""
    toks: list[_Tok] = []
    append = toks.append
    braces: list[bool] = []  # open "{" groups: True when transparent (no token for the "}")
    space, transparent_next = True, False
    for m in _TOKEN.finditer(line):
        group, tok_text = m.lastgroup, m.group()
        start, end = m.span()
        if group == "ws":
            space = True
            continue
        opens_transparent, transparent_next = transparent_next, False
        kind = _GROUP_KINDS.get(group or "")
        if kind is not None:
            if kind == WORD and tok_text in ("x", "X") and _spaced_times(line, start, end, toks):
                kind, tok_text = OP, "*"  # "122 x 59": a spaced x between numbers is a product
        elif tok_text in _FIXED:
            kind, tok_text = _FIXED[tok_text]
            if not toks and m.group() in ("-", "*", "+") and line[end : end + 1] in (" ", "\t"):
                kind = HARD  # a markdown bullet ("- 5 + 3 = 8")
        elif tok_text in _SPACE_COMMANDS:
            space = True
            continue
        elif tok_text in _TRANSPARENT:
            space, transparent_next = True, True
            continue
        elif tok_text == "{":
            braces.append(opens_transparent)
            if opens_transparent:
                space = True
                continue
            kind = LP
        elif tok_text == "}":
            if braces and braces.pop():
                space = True
                continue
            kind = RP
        elif tok_text == "$":
            # "$12 + $7 = $19": a dollar sign before a digit is currency, not a delimiter
            space = True
            if end < len(line) and line[end] in _DIGITS:
                continue
            kind = HARD
        elif tok_text == "**":
            # markdown bold ("**Step 2:**", "= **19**") unless it joins math ("2**10")
            if (
                _neighbour(line, start - 1, -1) in _DIGITS + ")]}"
                and _neighbour(line, end, 1) in _DIGITS + "([{"
            ):
                kind = BAD
            else:
                space = True
                continue
        else:
            kind = BAD  # unknown commands (\pi, \circ, \cdots), "!", "|", "_", other unicode
        append(_Tok(kind, tok_text, start, end, space))
        space = kind == HARD
    return toks


# --- finding claims -------------------------------------------------------------------------


# Words that make a claim side only a fragment of the real expression: operators in words
# ("3 times 4 + 1", "= 2 to the power 3"), magnitudes ("= 3 million"), labels ("Step 2 + ...").
_OPERATOR_WORDS = _words("times plus minus over by multiplied divided mod modulo than")
_LABEL_WORDS = _words(
    "step steps problem question case part example day days week weeks month months year years "
    "line equation eq figure fig page chapter section item number no row column level round "
    "term rule method option choice stage phase point test trial version hour hours minute "
    "minutes grade room table exercise lemma theorem claim answer"
)
_AFTER_WORDS = _OPERATOR_WORDS | _words(
    "of to percent squared cubed power factorial point choose hundred hundreds thousand "
    "thousands million millions billion billions trillion trillions dozen dozens half halves "
    "third thirds quarter quarters"
)
# Prepositions join a quantity to what follows only after one: "add 3 to 4 + 1", "half of
# 2 + 6", but not "the sum of 12 + 7", "equal to 10 + 20".
_LINK_WORDS = _words("of to from into per")
_QUANTITY_WORDS = _words("half halves twice double triple third thirds quarter quarters dozen")


def _blocks_before(toks: list[_Tok], i: int, first: _Tok) -> bool:
    """Does the prose word toks[i], just before a claim's left side, belong to that side?"""
    w = toks[i].text.lower()
    if not first.space_before or len(w) == 1 or w in _OPERATOR_WORDS or w in _LABEL_WORDS:
        return True
    if w in _LINK_WORDS and i > 0:
        prev = toks[i - 1]
        return prev.kind in (NUM, RP, PCT) or prev.text.lower() in _QUANTITY_WORDS
    return False


def _blocks_after(word: _Tok) -> bool:
    """Does the prose word just after a claim's right side belong to that side?"""
    w = word.text.lower()
    return not word.space_before or len(w) == 1 or w in _AFTER_WORDS


def _separator_blocks(toks: list[_Tok], i: int, far: int) -> bool:
    """A `,` `:` `.` `;` joins math on both sides ("3:4", "0,5", "3 : 4") unless it is
    written like a label or list ("Step 2: 12 + 7", "1. 3 + 4", "1, 2 + 3")."""
    if not 0 <= far < len(toks) or toks[far].kind not in _MATH:
        return False
    sep = toks[i]
    nxt_space = i + 1 < len(toks) and toks[i + 1].space_before
    return not (not sep.space_before and nxt_space)


def _left_span(toks: list[_Tok], eq: int) -> int | None:
    """Start index of the numeric expression ending just before toks[eq], if cleanly bounded."""
    i, depth = eq - 1, 0
    while i >= 0:
        t = toks[i]
        if t.kind not in _MATH:
            break
        if t.kind == RP:
            depth += 1
        elif t.kind == LP:
            if depth == 0:
                break  # the group around the claim opens here: "(so 3 + 4 = 7)"
            depth -= 1
        i -= 1
    start = i + 1
    if start == eq or depth:
        return None
    first = toks[start]
    if first.kind == PCT or (first.kind == OP and first.text not in "+-"):
        return None  # cut in the middle: "x^2", "3 apples * 4"
    if i < 0:
        return start
    before = toks[i]
    signed = first.kind == OP
    bare = not any(t.kind in (OP, FRAC, SQRT, PCT) for t in toks[start:eq])
    if before.kind in (HARD, EQ, LP):
        return start
    if before.kind == SEP:
        return None if _separator_blocks(toks, i, i - 1) else start
    if before.kind == WORD:
        # "x - 3", "Step 2 = ...", "3 times 4 = 12": the word belongs to the expression
        if signed or bare or _blocks_before(toks, i, first):
            return None
        return start
    return None  # BAD: an unknown command or symbol touches the expression


def _right_span(toks: list[_Tok], eq: int) -> int | None:
    """End index (exclusive) of the numeric expression starting after toks[eq], if bounded."""
    j, depth = eq + 1, 0
    while j < len(toks):
        t = toks[j]
        if t.kind not in _MATH:
            break
        if t.kind == LP:
            if depth == 0 and t.space_before and toks[j - 1].kind in (NUM, RP, PCT):
                # "= 19 (the answer)" is a remark; "= 7 (2)" may be a tag or a product: skip
                nxt = toks[j + 1] if j + 1 < len(toks) else None
                word = nxt.text.lower() if nxt is not None and nxt.kind == WORD else ""
                return j if len(word) > 1 and word not in _AFTER_WORDS else None
            depth += 1
        elif t.kind == RP:
            if depth == 0:
                break
            depth -= 1
        j += 1
    if j == eq + 1 or depth or toks[j - 1].kind == OP:
        return None  # empty, unclosed, or cut after an operator ("= 12 + x")
    if j == len(toks):
        return j
    after = toks[j]
    if after.kind in (HARD, EQ, RP):
        return j
    if after.kind == SEP:
        return None if _separator_blocks(toks, j, j + 1) else j
    if after.kind == WORD:
        return None if _blocks_after(after) else j
    return None  # BAD: "= 5!", "= 3\pi"


# --- parser ------------------------------------------------------------------------------------


def _bounded(x: Fraction) -> Fraction:
    if x.numerator.bit_length() > MAX_BITS or x.denominator.bit_length() > MAX_BITS:
        raise _Unparsable("value too large")
    return x


def _power(base: Fraction, exp: Fraction) -> Fraction:
    if exp.denominator != 1 or abs(exp.numerator) > MAX_EXPONENT:
        raise _Unparsable("exponent not a small integer")
    e = exp.numerator
    if base == 0 and e <= 0:
        raise _Unparsable("0 to a non-positive power")
    size = max(base.numerator.bit_length(), base.denominator.bit_length())
    if size * abs(e) > MAX_BITS:
        raise _Unparsable("power too large")
    return base**e


def _sqrt(x: Fraction) -> Fraction:
    """Exact square root of a rational square; irrational roots are not checkable."""
    if x < 0:
        raise _Unparsable("negative root")
    n, d = math.isqrt(x.numerator), math.isqrt(x.denominator)
    if n * n != x.numerator or d * d != x.denominator:
        raise _Unparsable("irrational root")
    return Fraction(n, d)


class _Parser:
    """Pratt-style parser over toks[start:end] that evaluates as it goes."""

    def __init__(self, toks: list[_Tok], start: int, end: int) -> None:
        self.toks, self.i, self.end, self.depth = toks, start, end, 0

    def parse(self) -> Fraction:
        value = self._expr()
        if self.i != self.end:
            raise _Unparsable("trailing tokens")
        return value

    def _peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < self.end else None

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Unparsable("too deep")

    def _expr(self) -> Fraction:
        self._enter()
        value = self._product()
        while (t := self._peek()) is not None and t.kind == OP and t.text in "+-":
            self.i += 1
            rhs = self._product()
            value = _bounded(value + rhs if t.text == "+" else value - rhs)
        self.depth -= 1
        return value

    def _product(self) -> Fraction:
        value = self._unary()
        while (t := self._peek()) is not None:
            if t.kind == OP and t.text in "*/":
                self.i += 1
                rhs = self._unary()
                if t.text == "/" and rhs == 0:
                    raise _Unparsable("division by zero")
                value = _bounded(value * rhs if t.text == "*" else value / rhs)
            elif t.kind == LP and t.text in "([":
                value = _bounded(value * self._power())  # implicit: "2(3 + 4)", "(2)(3)"
            else:
                break
        return value

    def _unary(self) -> Fraction:
        t = self._peek()
        if t is not None and t.kind == OP and t.text in "+-":
            self._enter()
            self.i += 1
            value = self._unary()
            self.depth -= 1
            return -value if t.text == "-" else value
        return self._power()

    def _power(self) -> Fraction:
        base = self._postfix()
        t = self._peek()
        if t is not None and t.kind == OP and t.text == "^":
            self._enter()
            self.i += 1
            base = _power(base, self._unary())  # right-associative: 2^3^2 = 2^9
            self.depth -= 1
        return base

    def _postfix(self) -> Fraction:
        value = self._primary()
        t = self._peek()
        if t is not None and t.kind == PCT:
            self.i += 1
            value = value / 100
        return value

    def _group(self) -> Fraction:
        t = self._peek()
        if t is None or t.kind != LP:
            raise _Unparsable("expected a group")
        self.i += 1
        value = self._expr()
        close = self._peek()
        if close is None or close.kind != RP or _CLOSE[close.text] != t.text:
            raise _Unparsable("unbalanced group")
        self.i += 1
        return value

    def _primary(self) -> Fraction:
        t = self._peek()
        if t is None:
            raise _Unparsable("missing operand")
        if t.kind == NUM:
            self.i += 1
            return _number(t.text)
        if t.kind == LP:
            return self._group()
        if t.kind in (FRAC, SQRT):
            self.i += 1
            nxt = self._peek()
            if nxt is None or nxt.text != "{":
                raise _Unparsable("\\frac and \\sqrt need braces")
            first = self._group()
            if t.kind == SQRT:
                return _sqrt(first)
            nxt = self._peek()
            if nxt is None or nxt.text != "{":
                raise _Unparsable("\\frac needs two braced arguments")
            second = self._group()
            if second == 0:
                raise _Unparsable("division by zero")
            return _bounded(first / second)
        raise _Unparsable(f"unexpected {t.text!r}")


# --- verdicts ----------------------------------------------------------------------------------


def _decimal_places(toks: list[_Tok], start: int, end: int) -> int:
    """Decimal places of a side that is just a (signed) decimal literal, else 0."""
    side = toks[start:end]
    if len(side) == 2 and side[0].kind == OP and side[0].text in "+-":
        side = side[1:]
    if len(side) != 1 or side[0].kind != NUM:
        return 0
    return len(side[0].text.partition(".")[2])


def _agrees(value: Fraction, literal: Fraction, places: int) -> bool:
    """A literal with `places` decimals matches a value it correctly rounds (10/3 = 3.33),
    but only when the value needs more decimals than that: 0.5 * 8 = 4.1 stays false."""
    if places <= 0 or (value * 10**places).denominator == 1:
        return False
    return abs(value - literal) * 2 * 10**places <= 1


def _line_claims(line: str, toks: list[_Tok], limit: int) -> list[Claim]:
    """The checkable `left = right` links among one line's tokens (at most `limit`)."""
    values: dict[tuple[int, int], Fraction | None] = {}

    def side(start: int, end: int) -> Fraction | None:
        if (start, end) not in values:  # a chain's middle side is parsed once, used twice
            try:
                values[start, end] = _Parser(toks, start, end).parse()
            except (_Unparsable, ArithmeticError, ValueError):
                values[start, end] = None
        return values[start, end]

    claims: list[Claim] = []
    for eq, tok in enumerate(toks):
        if tok.kind != EQ:
            continue
        start, end = _left_span(toks, eq), _right_span(toks, eq)
        if start is None or end is None:
            continue
        left, right = side(start, eq), side(eq + 1, end)
        if left is None or right is None:
            continue
        ok = (
            left == right
            or _agrees(left, right, _decimal_places(toks, eq + 1, end))
            or _agrees(right, left, _decimal_places(toks, start, eq))
        )
        claims.append(Claim(line[toks[start].start : toks[end - 1].end], left, right, ok))
        if len(claims) >= limit:
            break
    return claims


def _claims(text: str) -> tuple[Claim, ...]:
    """All claims of a step, line by line: no claim spans a line break, and lines without an
    `=` (most prose) cost nothing."""
    claims: list[Claim] = []
    normalised = text.translate(_UNICODE)
    offset = 0
    for line in normalised.split("\n"):
        if "=" in line and len(claims) < MAX_CLAIMS:
            original = text[offset : offset + len(line)]  # claim texts quote the model verbatim
            claims += _line_claims(original, _tokenize(line), MAX_CLAIMS - len(claims))
        offset += len(line) + 1
    return tuple(claims)


@lru_cache(maxsize=4096)
def _cached_claims(text: str) -> tuple[Claim, ...]:
    """`_claims`, cached (tree searches re-score shared prefix steps again and again) and
    guarded: a bug met by some odd model text must cost one unchecked step, not the run."""
    try:
        return _claims(text)
    except Exception:  # the fuzz test calls _claims unguarded, so bugs still surface there
        return ()


def check_step(text: str, *, neutral: float = 0.5, max_step_chars: int = 4000) -> StepVerdict:
    """Verdict for one step of model text; never raises, and steps over the limit are neutral."""
    if not isinstance(text, str) or len(text) > max_step_chars:
        return StepVerdict(neutral, ())
    claims = _cached_claims(text)
    if not claims:
        return StepVerdict(neutral, ())
    return StepVerdict(1.0 if all(c.ok for c in claims) else 0.0, claims)


class ArithStepChecker:
    """Verifier scoring each step by its arithmetic claims: 0 any false, 1 all true, else neutral.

    Free and deterministic, so it suits weighted voting and step-level search on arithmetic;
    on steps without numeric claims it abstains (`neutral`) instead of guessing.
    """

    name = "arith"

    def __init__(self, neutral: float = 0.5, max_step_chars: int = 4000) -> None:
        if not 0.0 <= neutral <= 1.0:
            raise ValueError(f"verifier.neutral must be in [0, 1], got {neutral}")
        if max_step_chars < 1:
            raise ValueError(f"verifier.max_step_chars must be >= 1, got {max_step_chars}")
        self.neutral = float(neutral)
        self.max_step_chars = int(max_step_chars)

    def check_step(self, text: str) -> StepVerdict:
        """The verdict for one step, with the claims found (steps over max_step_chars: neutral)."""
        return check_step(text, neutral=self.neutral, max_step_chars=self.max_step_chars)

    def check_steps(self, steps: Iterable[str]) -> list[float]:
        """One score per step, in order."""
        return [self.check_step(s).score for s in steps]

    async def score(self, problem: Problem, chains: Sequence[Chain]) -> StepScores:
        return StepScores([self.check_steps(c.steps) for c in chains], tokens=0)
