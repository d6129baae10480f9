"""A seeded generator of arithmetic problems in five levels: the built-in, offline dataset.

It exists so that the whole pipeline can run (and be tested) with no network and no data files,
and so that even a tiny model scores above zero: level 1 is single-digit addition, level 5 is a
short word problem with several operations. Answers are computed exactly on an expression tree,
never by evaluating a string, and are always non-negative integers (there is no division).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reasoning.types import Problem

LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}  # "/": countdown's exact division
_MAX_TRIES = 200  # draws per problem before accepting a duplicate question or failing


@dataclass(frozen=True)
class BinOp:
    """One binary operation; a tree of these is the single source of question, answer and text."""

    op: str
    left: Expr
    right: Expr


Expr = int | BinOp


def add(a: Expr, b: Expr) -> BinOp:
    return BinOp("+", a, b)


def sub(a: Expr, b: Expr) -> BinOp:
    return BinOp("-", a, b)


def mul(a: Expr, b: Expr) -> BinOp:
    return BinOp("*", a, b)


def evaluate(expr: Expr) -> int:
    """The exact integer value; raises ValueError if any intermediate result is negative.

    Keeping every step non-negative keeps the problems natural (no "3 - 8" midway) and easy
    for small models, so generators redraw when this fails.
    """
    if isinstance(expr, int):
        return expr
    left, right = evaluate(expr.left), evaluate(expr.right)
    if expr.op == "+":
        value = left + right
    elif expr.op == "-":
        value = left - right
    elif expr.op == "*":
        value = left * right
    else:
        raise ValueError(f"unknown operator {expr.op!r}")
    if value < 0:
        raise ValueError("negative intermediate result")
    return value


def count_ops(expr: Expr) -> int:
    return 0 if isinstance(expr, int) else 1 + count_ops(expr.left) + count_ops(expr.right)


def render(expr: Expr, *, times: str = "*") -> str:
    """Infix text with only the parentheses precedence needs (`times` is the `*` symbol).

    A right operand of equal precedence is bracketed only under - and /: dropping the brackets
    of `a + (b - c)` or `a * (b / c)` re-associates them with the same value."""
    if isinstance(expr, int):
        return str(expr)
    prec = _PRECEDENCE[expr.op]
    left = render(expr.left, times=times)
    right = render(expr.right, times=times)
    if isinstance(expr.left, BinOp) and _PRECEDENCE[expr.left.op] < prec:
        left = f"({left})"
    if isinstance(expr.right, BinOp):
        right_prec = _PRECEDENCE[expr.right.op]
        if right_prec < prec or (right_prec == prec and expr.op in "-/"):
            right = f"({right})"
    symbol = times if expr.op == "*" else expr.op
    return f"{left} {symbol} {right}"


def _latex(expr: Expr) -> str:
    return render(expr, times="\\times")


# --- levels 1-4: bare expressions ------------------------------------------------------------


def _level1(rng: random.Random) -> tuple[str, Expr]:
    expr = add(rng.randint(1, 9), rng.randint(1, 9))
    return f"What is {_latex(expr)}?", expr


def _level2(rng: random.Random) -> tuple[str, Expr]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    expr = add(a, b) if rng.random() < 0.5 else sub(max(a, b), min(a, b))
    return f"What is {_latex(expr)}?", expr


def _level3(rng: random.Random) -> tuple[str, Expr]:
    a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(10, 99)
    forms: tuple[Expr, ...] = (
        add(mul(a, b), c),
        add(c, mul(a, b)),
        sub(mul(a, b), c),
        sub(c, mul(a, b)),
    )
    expr = forms[rng.randrange(len(forms))]
    return f"What is {_latex(expr)}?", expr


def _big(rng: random.Random) -> int:
    return rng.randint(12, 99)


def _small(rng: random.Random) -> int:
    return rng.randint(3, 12)


_LEVEL4_FORMS: tuple[Callable[[random.Random], Expr], ...] = (
    lambda r: sub(mul(add(_big(r), _big(r)), _small(r)), _big(r)),
    lambda r: add(mul(sub(_big(r), _big(r)), _small(r)), _big(r)),
    lambda r: sub(mul(_small(r), add(_big(r), _big(r))), _big(r)),
    lambda r: mul(sub(add(_big(r), _big(r)), _big(r)), _small(r)),
    lambda r: add(mul(add(_big(r), _big(r)), _small(r)), mul(_big(r), _small(r))),
    lambda r: sub(mul(add(_big(r), _big(r)), _small(r)), mul(_big(r), _small(r))),
    lambda r: sub(mul(add(_big(r), _big(r)), add(_small(r), _small(r))), _big(r)),
    lambda r: add(_big(r), mul(_small(r), sub(add(_big(r), _big(r)), _big(r)))),
)


def _level4(rng: random.Random) -> tuple[str, Expr]:
    expr = rng.choice(_LEVEL4_FORMS)(rng)
    return f"What is {_latex(expr)}?", expr


# --- level 5: word problems ------------------------------------------------------------------

_NAMES = (
    "Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hugo",
    "Isla", "Jamal", "Keiko", "Liam", "Maya", "Noah", "Olga", "Priya",
)  # fmt: skip
_GOODS = (
    ("notebooks", "pens"), ("shirts", "hats"), ("apples", "melons"), ("books", "posters"),
    ("cups", "plates"), ("tickets", "snacks"), ("candles", "vases"), ("socks", "scarves"),
)  # fmt: skip
_CARGO = ("bottles", "cans", "toys", "light bulbs", "jars", "batteries")
_PASTRIES = ("muffins", "rolls", "cookies", "croissants", "bagels")
_FLOWERS = ("tulips", "roses", "sunflowers", "daisies", "lilies")
_VEHICLES = ("train", "truck", "bus", "ferry")
_PURCHASES = ("bike", "guitar", "phone", "tent", "camera", "desk")


def _shopping(r: random.Random) -> tuple[str, Expr]:
    name, (g1, g2) = r.choice(_NAMES), r.choice(_GOODS)
    a, p, b, q = r.randint(3, 12), r.randint(12, 60), r.randint(3, 12), r.randint(15, 90)
    paid = (a * p + b * q) // 100 * 100 + 100
    expr = sub(paid, add(mul(a, p), mul(b, q)))
    text = (
        f"{name} buys {a} {g1} at {p} dollars each and {b} {g2} at {q} dollars each, "
        f"and pays with {paid} dollars. How many dollars of change does {name} get back?"
    )
    return text, expr


def _trip(r: random.Random) -> tuple[str, Expr]:
    vehicle = r.choice(_VEHICLES)
    s1, h1, s2, h2 = r.randint(40, 120), r.randint(2, 9), r.randint(30, 110), r.randint(2, 9)
    route = s1 * h1 + s2 * h2 + r.randint(100, 900)
    expr = sub(route, add(mul(s1, h1), mul(s2, h2)))
    text = (
        f"A {vehicle} has to cover a route of {route} kilometers. It travels for {h1} hours at "
        f"{s1} kilometers per hour, then for {h2} hours at {s2} kilometers per hour. "
        "How many kilometers of the route are left?"
    )
    return text, expr


def _warehouse(r: random.Random) -> tuple[str, Expr]:
    item = r.choice(_CARGO)
    b, k, c = r.randint(12, 80), r.randint(12, 48), r.randint(10, 40)
    s = r.randint(100, b * k)
    expr = add(sub(mul(b, k), s), mul(c, k))
    text = (
        f"A warehouse has {b} boxes with {k} {item} in each box. On Monday {s} {item} are "
        f"shipped out, and on Tuesday {c} more boxes of {k} {item} arrive. "
        f"How many {item} are in the warehouse now?"
    )
    return text, expr


def _savings(r: random.Random) -> tuple[str, Expr]:
    name, thing = r.choice(_NAMES), r.choice(_PURCHASES)
    a, w = r.randint(25, 150), r.randint(10, 30)
    s = r.randint(100, a * w - 50)
    t = r.randint(20, a * w - s)
    expr = sub(sub(mul(a, w), s), t)
    text = (
        f"{name} earns {a} dollars every week for {w} weeks, then spends {s} dollars on a "
        f"{thing} and {t} dollars on a gift. How many dollars does {name} have left?"
    )
    return text, expr


def _theater(r: random.Random) -> tuple[str, Expr]:
    rows, seats = r.randint(20, 60), r.randint(20, 45)
    x = r.randint(100, rows * seats // 2)
    y = r.randint(100, rows * seats - x)
    expr = sub(sub(mul(rows, seats), x), y)
    text = (
        f"A theater has {rows} rows with {seats} seats in each row. For the evening show, "
        f"{x} adult tickets and {y} child tickets are sold, one seat per ticket. "
        "How many seats stay empty?"
    )
    return text, expr


def _bakery(r: random.Random) -> tuple[str, Expr]:
    pastry = r.choice(_PASTRIES)
    trays, per, days = r.randint(10, 25), r.randint(12, 30), r.randint(12, 30)
    extra = r.randint(5, 40)
    sold = r.randint(trays * per // 2, trays * per + extra - 10)
    expr = mul(sub(add(mul(trays, per), extra), sold), days)
    text = (
        f"Every day a bakery bakes {trays} trays of {per} {pastry} plus {extra} more {pastry} "
        f"for its own cafe, and sells {sold} {pastry} in total. "
        f"The {pastry} that are not sold are given away. "
        f"How many {pastry} are given away in {days} days?"
    )
    return text, expr


def _bus(r: random.Random) -> tuple[str, Expr]:
    vehicle = r.choice(("bus", "tram", "train"))
    a = r.randint(100, 400)
    b = r.randint(20, a)
    c = r.randint(20, 150)
    d = r.randint(20, a - b + c)
    e = r.randint(20, 150)
    expr = add(sub(add(sub(a, b), c), d), e)
    text = (
        f"A {vehicle} starts with {a} passengers. At the first stop {b} passengers get off and "
        f"{c} get on. At the second stop {d} get off and {e} get on. "
        f"How many passengers are on the {vehicle} now?"
    )
    return text, expr


def _garden(r: random.Random) -> tuple[str, Expr]:
    name, flower = r.choice(_NAMES), r.choice(_FLOWERS)
    rows, per = r.randint(12, 45), r.randint(12, 40)
    dead = r.randint(20, rows * per // 3)
    more = r.randint(20, 250)
    gift = r.randint(10, rows * per - dead + more - 10)
    expr = sub(add(sub(mul(rows, per), dead), more), gift)
    text = (
        f"{name} plants {rows} rows of {per} {flower}. {dead} of them do not grow, so {name} "
        f"plants {more} more, which all grow. Later {name} gives {gift} of the growing {flower} "
        f"to friends. How many {flower} does {name} still have?"
    )
    return text, expr


def _school_trip(r: random.Random) -> tuple[str, Expr]:
    classes, size, cap = r.randint(12, 40), r.randint(18, 32), r.randint(30, 60)
    teachers = r.randint(2, classes * 2)
    riders = classes * size + teachers
    buses = -(-riders // cap) + r.randint(0, 1)
    expr = sub(mul(buses, cap), add(mul(classes, size), teachers))
    text = (
        f"A school sends {classes} classes of {size} students and {teachers} teachers on a "
        f"trip. It books {buses} buses with {cap} seats each, and everyone gets a seat. "
        "How many seats on the buses stay empty?"
    )
    return text, expr


_WORD_TEMPLATES: tuple[Callable[[random.Random], tuple[str, Expr]], ...] = (
    _shopping,
    _trip,
    _warehouse,
    _savings,
    _theater,
    _bakery,
    _bus,
    _garden,
    _school_trip,
)


def _level5(rng: random.Random) -> tuple[str, Expr]:
    return rng.choice(_WORD_TEMPLATES)(rng)


_GENERATORS: dict[int, Callable[[random.Random], tuple[str, Expr]]] = {
    1: _level1,
    2: _level2,
    3: _level3,
    4: _level4,
    5: _level5,
}


def _draw(rng: random.Random, level: int, seen: set[str]) -> tuple[str, Expr, int]:
    """One valid problem, avoiding repeated questions while the level's space allows it."""
    fallback: tuple[str, Expr, int] | None = None
    for _ in range(_MAX_TRIES):
        question, expr = _GENERATORS[level](rng)
        try:
            value = evaluate(expr)
        except ValueError:
            continue
        if question not in seen:
            return question, expr, value
        fallback = fallback or (question, expr, value)
    if fallback is None:
        raise RuntimeError(f"arith level {level}: no valid problem in {_MAX_TRIES} draws")
    return fallback


def generate_arith(n: int = 20, levels: Sequence[int] = (1,), seed: int = 0) -> list[Problem]:
    """`n` problems spread round-robin over `levels`, identical for identical arguments.

    Each level draws from its own `random.Random` seeded from (`seed`, level), so problem
    `arith-L3-0004` is the same whatever `n` or the other levels are.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"arith: n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"arith: seed must be an integer, got {seed!r}")
    levels = list(levels)
    if not levels:
        raise ValueError("arith: levels must not be empty")
    bad = [lv for lv in levels if isinstance(lv, bool) or lv not in LEVELS]
    if bad:
        raise ValueError(f"arith: unknown levels {bad}; valid levels are {list(LEVELS)}")
    if len(set(levels)) != len(levels):
        raise ValueError(f"arith: duplicate levels in {levels}")

    rngs = {lv: random.Random(f"arith:{seed}:{lv}") for lv in levels}
    seen: dict[int, set[str]] = {lv: set() for lv in levels}
    counts = dict.fromkeys(levels, 0)
    problems: list[Problem] = []
    for i in range(n):
        level = levels[i % len(levels)]
        question, expr, value = _draw(rngs[level], level, seen[level])
        seen[level].add(question)
        problems.append(
            Problem(
                id=f"arith-L{level}-{counts[level]:04d}",
                question=question,
                answer=str(value),
                metadata={
                    "level": level,
                    "source": "arith",
                    "seed": seed,
                    "expression": render(expr),
                },
            )
        )
        counts[level] += 1
    return problems
