"""Answer extraction and equivalence grading for math benchmarks (MATH500, AIME, AMC).

One function decides equivalence for both voting clusters and final grading, so a vote can never
be counted as "the same answer" by one rule and graded by another.

The cascade is cheap first: normalise both answers (units, degrees, `\\text{}`, thousands
separators, choice letters, ...) and compare strings and plain numbers in-process. Only what that
cannot decide goes to math-verify (sympy), which can hang on pathological input, so it runs in a
spawned worker process under a SIGALRM deadline, with an outer `future.result(timeout=...)` guard
that kills the pool when a worker is stuck in C code where the signal cannot fire. Workers are
spawned, never forked (the parent hosts a multithreaded vLLM engine), so scripts that grade need
the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.metadata
import logging
import multiprocessing
import os
import re
import signal
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

GRADER_NAME = "reasoning-grader"
GRADER_VERSION = "1"

__all__ = [
    "GRADER_NAME",
    "GRADER_VERSION",
    "Grade",
    "Grader",
    "extract_answer",
    "extract_answer_with_rule",
    "grader_info",
    "is_equivalent",
    "is_equivalent_async",
    "normalize_answer",
    "shutdown",
]

logger = logging.getLogger(__name__)


def grader_info() -> dict[str, str]:
    """Identify the grader in run records, so scores from different graders are never mixed."""
    try:
        mv_version = importlib.metadata.version("math-verify")
    except importlib.metadata.PackageNotFoundError:
        mv_version = "not installed"
    return {"name": GRADER_NAME, "version": GRADER_VERSION, "math_verify": mv_version}


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

_THINK_END = "</think>"
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_FINAL_RE = re.compile(r"final\s+answer\**\s*(?:is\b|:)\s*\**\s*:?\s*", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"the\s+answer\s+is\b\s*:?\s*", re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def _match_brace(s: str, start: int) -> int:
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


def _strip_answer(s: str) -> str:
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


def _last_boxed(text: str) -> str | None:
    """Content of the last balanced, non-empty `\\boxed{...}` / `\\boxed x` / `\\fbox{...}`."""
    for m in reversed(list(_BOXED_RE.finditer(text))):
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            end = _match_brace(text, j)
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
        content = _strip_answer(content)
        inner = _last_boxed(content) if content.startswith(("\\boxed", "\\fbox")) else None
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
    content = _strip_answer(content)
    return content or None


def _after_last(pattern: re.Pattern[str], text: str) -> str | None:
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    return _delimited_or_line(text[matches[-1].end() :])


def _strong_rules(text: str, strict: bool) -> tuple[str | None, str | None]:
    boxed = _last_boxed(text)
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


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

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
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ASSIGN_RE = re.compile(r"^(?P<lhs>[A-Za-z](?:_\{?\w+\}?)?)\s*(?:=|\\in\b)\s*(?P<rhs>[^=]+)$")
_CHOICE_RE = re.compile(r"^\(\s*([A-Ea-e])\s*\)$")
_COLVEC_RE = re.compile(r"\\begin\{([pb]matrix)\}(?P<body>[^&]*?)\\end\{\1\}", re.DOTALL)


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
    """`\\text{abc}` -> `abc` (brace-matched, repeated for nesting)."""
    while True:
        m = _TEXT_CMD_RE.search(s)
        if m is None:
            return s
        open_at = m.end()
        close_at = _match_brace(s, open_at)
        if close_at < 0:
            return s
        s = s[: m.start()] + s[open_at + 1 : close_at] + s[close_at + 1 :]


def _canonical_fracs(s: str) -> str:
    """`\\frac12`, `\\frac 34`, `\\frac9{19}`, `\\frac{270}7`, `\\sqrt2` -> braced forms."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)


def _colvec_to_tuple(m: re.Match[str]) -> str:
    entries = [e.strip() for e in m.group("body").split("\\\\") if e.strip()]
    return "(" + ", ".join(entries) + ")"


def normalize_answer(answer: str) -> str:
    """A canonical LaTeX form of an answer that still means the same thing.

    Strips presentation only (delimiters, spacing, `\\left`, units, degrees, `\\text`, a leading
    `x =`); keeps `\\%` and all structure, so a tuple `(1,2)` never collapses into `12`.
    """
    return _normalize(answer)[0]


def _normalize(answer: str) -> tuple[str, str | None]:
    """`normalize_answer` plus the variable of a stripped `x = ...` (None when there was none)."""
    s = _strip_answer(answer)
    if s.startswith(("\\boxed", "\\fbox")):
        s = _last_boxed(s) or s
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
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
    s = _unwrap_text_cmds(s)
    s = _COLVEC_RE.sub(_colvec_to_tuple, s)
    s = re.sub(r"\s+", " ", s).strip()
    s = _strip_answer(s)
    s = _strip_unit_words(s)
    lhs = None
    assign = _ASSIGN_RE.match(s)
    if assign:
        s, lhs = assign.group("rhs").strip(), assign.group("lhs")
    choice = _CHOICE_RE.match(s)
    if choice:
        s = choice.group(1).upper()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    s = _canonical_fracs(s)
    return re.sub(r"\s+", " ", s).replace(" \\%", "\\%").strip(), lhs


def _key(clean: str) -> str:
    """Comparison key: spacing and the percent sign do not change the answer."""
    return re.sub(r"\s+", "", clean).replace("\\%", "")


def _as_number(key: str) -> tuple[Fraction, bool] | None:
    """(value, exact) of a plain integer, decimal or simple fraction; decimals are not exact."""
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


def _fast_path(prediction: str, gold: str) -> tuple[bool | None, tuple[str, str, str, str]]:
    """Decide without sympy when possible; else return the forms math-verify should compare."""
    (pred_clean, pred_var), (gold_clean, gold_var) = _normalize(prediction), _normalize(gold)
    if pred_var and gold_var and pred_var != gold_var:  # `y = 5` does not answer `x = 5`
        pred_clean, gold_clean = f"{pred_var}={pred_clean}", f"{gold_var}={gold_clean}"
    forms = (pred_clean, gold_clean, _strip_answer(prediction), _strip_answer(gold))
    pred_key, gold_key = _key(pred_clean), _key(gold_clean)
    if not pred_key:
        return False, forms
    if pred_key == gold_key:
        return True, forms
    if re.fullmatch(r"[A-E]", gold_key):
        return _choice_letter(pred_clean) == gold_key, forms
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
            return pct / 100 == other, forms
        if pred_num[1] and gold_num[1]:
            return False, forms
    return None, forms


# --------------------------------------------------------------------------------------------
# math-verify in a worker process
# --------------------------------------------------------------------------------------------


class _Deadline(BaseException):
    """Raised by SIGALRM in the worker; a BaseException so math-verify's `except Exception` and
    `except TimeoutException` handlers let it through."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Deadline


def _mv_parse(candidates: tuple[str, ...]) -> list[Any]:
    """Parse the first candidate form that yields a sympy object (math-verify needs delimiters)."""
    from math_verify import parse
    from sympy import Basic, MatrixBase

    first: list[Any] = []
    for text in candidates:
        if not text:
            continue
        parsed = parse(f"${text}$", parsing_timeout=None)  # type: ignore[arg-type]
        if any(isinstance(p, (Basic, MatrixBase)) for p in parsed):
            return parsed
        first = first or parsed
    return first


def _mv_compare(forms: tuple[str, str, str, str]) -> bool:
    from math_verify import verify

    pred_clean, gold_clean, pred_raw, gold_raw = forms
    try:
        gold = _mv_parse((gold_clean, gold_raw))
        pred = _mv_parse((pred_clean, pred_raw))
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=None))  # type: ignore[arg-type]
    except Exception:  # a sympy failure on odd input is a mismatch, not a crash
        logger.debug("math-verify failed on %r", forms, exc_info=True)
        return False


def _mv_worker(forms: tuple[str, str, str, str], timeout_s: float) -> bool | None:
    """Run in a worker's main thread: math-verify under a SIGALRM deadline; None when it fires.

    The alarm is disarmed inside the outer `try`, so one firing during cleanup is still caught.
    """
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 1e-4))
        try:
            return _mv_compare(forms)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        return None
    finally:
        signal.signal(signal.SIGALRM, previous)


def _warmup() -> int:
    """Import sympy/math-verify once per worker so the first real call is not charged for it."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    verify(parse("$\\frac{1}{2}$"), parse("$0.5$"))
    return os.getpid()


_WORKERS = max(1, int(os.environ.get("REASONING_GRADER_WORKERS", min(4, os.cpu_count() or 1))))
_WARMUP_TIMEOUT_S = 120.0
_OUTER_GRACE_S = 2.0  # the in-worker alarm should win; the outer guard is for stuck C code
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _get_pool() -> ProcessPoolExecutor:
    """The shared worker pool, created on first use with spawned (never forked) warm workers."""
    global _pool
    with _pool_lock:
        if _pool is None:
            pool = ProcessPoolExecutor(
                max_workers=_WORKERS, mp_context=multiprocessing.get_context("spawn")
            )
            try:
                warm = [pool.submit(_warmup) for _ in range(_WORKERS)]
                for f in warm:
                    f.result(timeout=_WARMUP_TIMEOUT_S)
            except (BrokenProcessPool, TimeoutError) as e:
                _kill(pool)
                raise RuntimeError(
                    "grading workers failed to start; a script that grades must guard its entry "
                    "point with `if __name__ == '__main__':` (workers are spawned)"
                ) from e
            _pool = pool
        return _pool


def _discard_pool(pool: ProcessPoolExecutor) -> None:
    """Kill a pool whose worker is stuck; the next call builds a fresh one."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    logger.warning("grading worker stuck or dead; replacing the pool")
    _kill(pool)


def _kill(pool: ProcessPoolExecutor) -> None:
    # No public API kills workers; `_processes` has been stable since Python 3.2.
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Close the worker pool (idempotent); a later grading call starts a new one."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown)


# At most one job in flight per worker, so time spent queueing is not charged to a job's timeout.
_thread_slots = threading.BoundedSemaphore(_WORKERS)
_loop_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _loop_semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    sem = _loop_slots.get(loop)
    if sem is None:
        sem = _loop_slots[loop] = asyncio.Semaphore(_WORKERS)
    return sem


def _run_guarded(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """Run `fn(*args)` in the pool; on the outer timeout kill the pool and return None.

    A pool broken or discarded by another call's timeout is rebuilt and the call retried once.
    """
    with _thread_slots:
        for _ in range(2):
            pool = _get_pool()
            try:
                future: Future[Any] = pool.submit(fn, *args)
            except (BrokenProcessPool, RuntimeError):  # RuntimeError: pool already shut down
                _discard_pool(pool)
                continue
            try:
                return future.result(timeout=timeout_s)
            except TimeoutError:
                _discard_pool(pool)
                return None
            except BrokenProcessPool:
                _discard_pool(pool)
            except CancelledError:  # `shutdown()` raced with this call
                return None
    return None


async def _run_guarded_async(
    fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float
) -> Any:
    """Async twin of `_run_guarded`: awaits the pool future without blocking the event loop."""
    async with _loop_semaphore():
        for _ in range(2):
            pool = _pool if _pool is not None else await asyncio.to_thread(_get_pool)
            try:
                future = pool.submit(fn, *args)
            except (BrokenProcessPool, RuntimeError):
                _discard_pool(pool)
                continue
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), timeout=timeout_s)
            except TimeoutError:
                _discard_pool(pool)
                return None
            except BrokenProcessPool:
                _discard_pool(pool)
    return None


# --------------------------------------------------------------------------------------------
# Equivalence
# --------------------------------------------------------------------------------------------

_CACHE_SIZE = 65536
_cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_get(key: tuple[str, str]) -> bool | None:
    with _cache_lock:
        value = _cache.get(key)
        if value is not None:
            _cache.move_to_end(key)
        return value


def _cache_put(key: tuple[str, str], value: bool) -> None:
    """Only decided results are cached: a timeout may succeed on a less loaded machine."""
    with _cache_lock:
        _cache[key] = value
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _local(prediction: str | None, gold: str) -> tuple[bool | None, tuple[str, str, str, str]]:
    if prediction is None:
        return False, ("", "", "", "")
    cached = _cache_get((prediction, gold))
    if cached is not None:
        return cached, ("", "", "", "")
    decided, forms = _fast_path(prediction, gold)
    if decided is not None:
        _cache_put((prediction, gold), decided)
    return decided, forms


def is_equivalent(prediction: str | None, gold: str, timeout_s: float = 5.0) -> bool | None:
    """Whether `prediction` is the same answer as `gold`; None when undecided within `timeout_s`.

    Asymmetric like math-verify: `gold` is the reference (e.g. `x = 5` gold accepts `5`).
    """
    decided, forms = _local(prediction, gold)
    if decided is not None or prediction is None:
        return bool(decided)
    result = _run_guarded(_mv_worker, (forms, timeout_s), timeout_s + _OUTER_GRACE_S)
    if result is not None:
        _cache_put((prediction, gold), bool(result))
    return result


async def is_equivalent_async(
    prediction: str | None, gold: str, timeout_s: float = 5.0
) -> bool | None:
    """`is_equivalent` for event loops: the sympy work never blocks the loop."""
    decided, forms = _local(prediction, gold)
    if decided is not None or prediction is None:
        return bool(decided)
    result = await _run_guarded_async(_mv_worker, (forms, timeout_s), timeout_s + _OUTER_GRACE_S)
    if result is not None:
        _cache_put((prediction, gold), bool(result))
    return result


# --------------------------------------------------------------------------------------------
# The AnswerJudge
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grade:
    """Verdict for one problem; `correct` is None when it could not be decided."""

    correct: bool | None
    reason: str | None = None


class Grader:
    """The `AnswerJudge` used for voting and grading alike (see `reasoning.types.AnswerJudge`)."""

    name = GRADER_NAME

    def __init__(self, strict: bool = False, timeout_s: float = 5.0) -> None:
        self.strict = strict
        self.timeout_s = timeout_s

    def extract(self, text: str) -> str | None:
        return extract_answer_with_rule(text, strict=self.strict)[0]

    async def equivalent(self, a: str | None, b: str | None) -> bool | None:
        """Whether answer `a` matches `b` (`b` plays the reference role)."""
        if a is None or b is None:
            return False
        return await is_equivalent_async(a, b, self.timeout_s)

    async def grade(self, prediction: str | None, gold: str | None) -> Grade:
        if gold is None:
            return Grade(None, "no gold answer")
        if prediction is None:
            return Grade(False, "no answer extracted")
        result = await self.equivalent(prediction, gold)
        if result is None:
            return Grade(None, f"grading timed out after {self.timeout_s:g}s")
        return Grade(result, None)

    def __repr__(self) -> str:
        return f"Grader(strict={self.strict}, timeout_s={self.timeout_s})"
