"""Record/replay cache of generator and verifier calls: rerun a search without an engine.

A `CallCache` is one SQLite file (WAL mode) of content-addressed calls: the key is the sha256
of a canonical JSON of everything the call depends on, so one file can serve many runs and
sweeps, and a changed setting simply misses instead of returning a stale answer.

- generator calls are keyed on (generator name, prompt, every `Sampling` field incl. `seed`
  and `n`). The name stands for the model: give different weights different names.
- verifier calls on (verifier name, its class, problem id + question, each chain's steps and,
  when sampled, its logprobs).
- prompts (`render`) on (generator fingerprint, problem id + question, chain steps), so that a
  replay needs neither the engine nor the tokenizer; a render miss falls back to the inner
  generator (built then, but never started).

Modes (`cache.mode` in conf/config.yaml; `off` means the build code does not wrap at all):
  record  always call the inner object, store (overwriting), return the fresh results
  replay  answer from the file only; a miss raises `CacheMiss`; the engine is never started
          and, built through `reasoning.build`, the generator and verifier never constructed
  auto    hits from the file, misses computed and stored

Replayed results carry `cached=True`; the Context still counts their tokens toward budgets and
the ledger (adding `cache_hits` / `replayed_tokens`), so a replay takes the same decisions.

What a replay reproduces. Running the recorded config again with `cache.mode=replay
cache.path=<recorded cache.sqlite>` into a new run directory yields a results.jsonl whose
records, sorted by `id`, equal the recorded ones field for field except:
  - `ledger.wall_s` and `finished_at` (wall clock: they differ between any two runs, so a
    byte-for-byte copy of results.jsonl is impossible),
  - `ledger.cache_hits` and `ledger.replayed_tokens` (what the replay did not compute),
  - record order (problems finish in the order concurrency allows).
`comparable()` strips exactly these fields. This holds because the Context draws each call's
seed from a per-problem RNG, so every call of the recorded run has its own key. It assumes
that a controller's sequence of calls depends only on the results of earlier calls (not on
which concurrent call returned first) and that no `budget.wall_s` limit cut the search short:
replayed calls take no time, so a wall-clock budget stops at a different point.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal, cast, get_args

from reasoning.types import (
    Chain,
    Completion,
    Delta,
    FinishReason,
    Generator,
    Messages,
    Problem,
    Prompt,
    Sampling,
    StepScores,
    TokenPrompt,
    Verifier,
)

Mode = Literal["off", "record", "replay", "auto"]
MODES: tuple[str, ...] = get_args(Mode)
CACHE_FILE = "cache.sqlite"
# Part of every key: bump when what a key covers changes. 2: Sampling.logprob_token_ids (the
# judge's and generative PRM's scores changed with it, so their recorded calls must miss too).
KEY_VERSION = 2

# Record fields that legitimately differ between a recorded run and its replay.
VOLATILE_FIELDS = ("finished_at",)
VOLATILE_LEDGER_FIELDS = ("wall_s", "cache_hits", "replayed_tokens")

_TABLES = ("generator_calls", "verifier_calls", "renders", "streams")


class CacheMiss(LookupError):
    """A replay asked for a call that the cache file does not hold."""


def cache_key(payload: Mapping[str, Any]) -> str:
    """sha256 of a canonical JSON (sorted keys, no whitespace): the same call, the same key."""
    text = json.dumps(
        {"v": KEY_VERSION, **payload}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _short(text: str, limit: int = 80) -> str:
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


class CallCache:
    """One SQLite file of recorded calls; thread- and asyncio-safe (one connection, one lock).

    Lookups and writes are sub-millisecond, so they run inline on the event loop: no awaits
    means a replayed call cannot reorder the coroutines around it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_cache_file(self.path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit survives a killed process (not necessarily a power cut)
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA busy_timeout=30000")
                for table in _TABLES:
                    self._db.execute(
                        f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, owner TEXT, "
                        "summary TEXT, value TEXT NOT NULL, created REAL)"
                    )
        except (OSError, sqlite3.Error) as exc:
            raise _not_a_cache(self.path, f"{type(exc).__name__}: {exc}") from exc

    def get(self, table: str, key: str) -> Any | None:
        """The stored value (decoded JSON), or None."""
        with self._lock:
            row = self._db.execute(f"SELECT value FROM {table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(
        self,
        table: str,
        key: str,
        value: Any,
        *,
        owner: str = "",
        summary: str = "",
        overwrite: bool = True,
    ) -> None:
        """Store `value` as JSON; `owner`/`summary` are for people inspecting the file."""
        verb = "INSERT OR REPLACE" if overwrite else "INSERT OR IGNORE"
        data = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                f"{verb} INTO {table} (key, owner, summary, value, created) VALUES (?,?,?,?,?)",
                (key, owner, summary, data, time.time()),
            )

    def count(self, table: str, owner: str | None = None) -> int:
        query, args = f"SELECT COUNT(*) FROM {table}", ()
        if owner is not None:
            query, args = query + " WHERE owner = ?", (owner,)
        with self._lock:
            return int(self._db.execute(query, args).fetchone()[0])

    def close(self) -> None:
        """Close the connection (the last close also folds the WAL back into the file)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> CallCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SQLITE_HEADER = b"SQLite format 3\x00"


def _not_a_cache(path: Path, why: str) -> ValueError:
    return ValueError(
        f"cache.path={path} is not a call cache ({why}); set cache.path to the cache.sqlite of "
        "a recorded run, or to a new file name (cache.mode=record or auto create it)"
    )


def check_cache_file(path: str | Path) -> None:
    """Refuse, without creating or changing anything, a path that cannot be a call cache: a
    directory, a file that is not SQLite, an SQLite database of other tables, a file under a
    file. A missing file is fine (record and auto create it)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise _not_a_cache(path, "it is a directory")
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise _not_a_cache(path, f"{parent} is a file, not a directory")
        return
    try:
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise _not_a_cache(path, f"cannot read it: {exc.strerror or exc}") from exc
    if not header:
        return  # an empty file: SQLite makes it a database on first write
    if header != _SQLITE_HEADER:
        raise _not_a_cache(path, "it is not an SQLite file")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise _not_a_cache(path, f"SQLite cannot read it: {exc}") from exc
    if tables and not tables & set(_TABLES):
        raise _not_a_cache(
            path, f"an SQLite database of other tables: {', '.join(sorted(tables)[:5])}"
        )


_open: dict[Path, CallCache] = {}


def open_cache(path: str | Path) -> CallCache:
    """A shared CallCache per file, so a run's generator and verifier use one connection."""
    resolved = Path(path).expanduser().resolve()
    if resolved not in _open:
        _open[resolved] = CallCache(resolved)
    return _open[resolved]


def close_caches() -> None:
    while _open:
        _open.popitem()[1].close()


atexit.register(close_caches)


def cache_for(cfg: Any, run_dir: str | Path | None = None) -> tuple[Mode, CallCache] | None:
    """The mode and file that `cfg.cache` asks for; None when caching is off.

    Fails fast when replay has nothing to read, before anything expensive happens.
    """
    node = cfg.get("cache") or {}
    mode = node.get("mode", "off")
    mode = "off" if mode in (None, False) else str(mode)  # YAML reads a bare `off` as False
    if mode not in MODES:
        raise ValueError(f"cache.mode={mode!r}; valid: {', '.join(MODES)}")
    if mode == "off":
        return None
    path = node.get("path")
    if path is None:
        if run_dir is None:
            raise ValueError(f"cache.mode={mode} needs cache.path=FILE here (no run directory)")
        path = Path(run_dir) / CACHE_FILE
    if mode == "replay" and not Path(path).expanduser().exists():
        raise FileNotFoundError(
            f"cache.mode=replay: no cache at {path}; set cache.path to the cache.sqlite of a "
            "recorded run (cache.mode=record or auto)"
        )
    return cast(Mode, mode), open_cache(path)  # CallCache refuses a file that is no cache


def _check_mode(mode: str) -> Mode:
    if mode == "off":
        raise ValueError("cache mode 'off' means no wrapper: use the inner object itself")
    if mode not in MODES:
        raise ValueError(f"cache mode {mode!r}; valid: {', '.join(MODES)}")
    return cast(Mode, mode)


class _Lazy:
    """The wrapped object, or a zero-arg factory called the first time it is really needed."""

    def __init__(self, inner: Any, is_inner: Callable[[Any], bool]) -> None:
        self._built = inner if is_inner(inner) else None
        self._factory = None if self._built is not None else inner
        self._build_lock = threading.Lock()

    @property
    def built(self) -> Any | None:
        return self._built

    def get(self) -> Any:
        if self._built is None:
            with self._build_lock:
                if self._built is None:
                    self._built = self._factory()  # type: ignore[misc]
        return self._built


def _completion_to_json(c: Completion | Delta) -> dict[str, Any]:
    return {f.name: getattr(c, f.name) for f in fields(c) if f.name != "cached"}


def _logprob_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the dataclasses hold (JSON made int keys strings)."""
    logprobs = data.get("logprobs")
    top = data.get("top_logprobs")
    by_id = data.get("token_id_logprobs")
    ids = data.get("token_ids")
    top_ids = data.get("top_token_ids")
    return dict(
        logprobs=None if logprobs is None else tuple(logprobs),
        top_logprobs=None if top is None else tuple(dict(d) for d in top),
        token_id_logprobs=(
            None if by_id is None else tuple({int(k): v for k, v in d.items()} for d in by_id)
        ),
        token_ids=None if ids is None else tuple(ids),
        top_token_ids=None if top_ids is None else tuple(tuple(t) for t in top_ids),
    )


_SPECIAL = (
    "logprobs",
    "top_logprobs",
    "token_id_logprobs",
    "token_ids",
    "top_token_ids",
    "cached",
)


def _finish(data: Mapping[str, Any]) -> FinishReason | None:
    """The stored finish reason as the enum. Files written before the enum hold the engine's
    "stop" for both EOS and a stop string; the stored `stop` tells them apart, as it does for
    a fresh result (`FinishReason.of`), so old cache files replay unchanged."""
    raw = data.get("finish_reason")
    return None if raw is None else FinishReason.of(raw, data.get("stop"))


def _completion_from_json(data: Mapping[str, Any]) -> Completion:
    plain = {k: v for k, v in data.items() if k not in _SPECIAL}
    plain["finish_reason"] = _finish(data)
    return Completion(**plain, **_logprob_fields(data), cached=True)


def _delta_from_json(data: Mapping[str, Any]) -> Delta:
    fields_ = _logprob_fields(data)
    fields_["token_ids"] = fields_["token_ids"] or ()
    plain = {k: v for k, v in data.items() if k not in _SPECIAL}
    plain["finish_reason"] = _finish(data)
    return Delta(**plain, **fields_, cached=True)


def _prompt_json(prompt: Prompt) -> str | dict[str, list[int]]:
    """A text prompt keys as itself (so keys recorded before token prompts still match)."""
    return {"ids": list(prompt.ids)} if isinstance(prompt, TokenPrompt) else prompt


def _prompt_summary(prompt: Prompt) -> str:
    if isinstance(prompt, TokenPrompt):
        return f"<{len(prompt.ids)} token ids, ending {list(prompt.ids[-8:])}>"
    return prompt


def _problem_json(problem: Problem) -> dict[str, str]:
    return {"id": problem.id, "question": problem.question}


def _chain_json(chain: Chain) -> dict[str, Any]:
    """What a verifier may read off a chain: its steps, and logprobs where sampled (the
    confidence verifiers score those, so the same text sampled differently must miss)."""
    out: dict[str, Any] = {"steps": list(chain.steps)}
    if chain.logprobs is not None:
        out["logprobs"] = list(chain.logprobs)
    if chain.top_logprobs is not None:
        out["top_logprobs"] = [list(t) for t in chain.top_logprobs]
    return out


class CachedGenerator:
    """A Generator that records its inner generator's calls and replays them.

    `inner` is a generator or a zero-arg factory that builds one when first needed (replay
    then never builds it while every call and prompt hits). `name` (default: the inner's) is
    part of every key; `fingerprint` (default: `name`) keys the recorded prompts and should
    cover everything rendering depends on (build.py passes the whole backend config).
    """

    def __init__(
        self,
        inner: Generator | Callable[[], Generator],
        cache: CallCache,
        mode: Mode = "auto",
        *,
        name: str | None = None,
        fingerprint: Any = None,
    ) -> None:
        self._inner = _Lazy(inner, lambda x: hasattr(x, "complete"))
        self.cache = cache
        self.mode = _check_mode(mode)
        self.name: str = name if name is not None else self._inner.get().name
        self.fingerprint = self.name if fingerprint is None else fingerprint
        self._rendered: set[str] = set()  # render keys already written by this wrapper

    @property
    def inner(self) -> Generator:
        return cast(Generator, self._inner.get())

    def __getattr__(self, attr: str) -> Any:
        # backend extras (e.g. `tokenizer`); builds the inner generator, never starts it
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def render(self, problem: Problem, chain: Chain | None = None) -> str:
        key = cache_key(
            {
                "kind": "render",
                "generator": self.fingerprint,
                "problem": _problem_json(problem),
                "steps": list(chain.steps) if chain else [],
            }
        )
        if self.mode == "replay":
            hit = self.cache.get("renders", key)
            if hit is not None:
                return cast(str, hit)
            return self.inner.render(problem, chain)  # pure text work: no engine needed
        prompt = self.inner.render(problem, chain)
        if key not in self._rendered:
            self.cache.put("renders", key, prompt, owner=self.name, summary=problem.id)
            self._rendered.add(key)
        return prompt

    def _key(self, prompt: Prompt, sampling: Sampling, kind: str = "generate") -> str:
        return cache_key(
            {
                "kind": kind,
                "generator": self.name,
                "prompt": _prompt_json(prompt),
                "sampling": asdict(sampling),
            }
        )

    # pure text work of the inner generator: needs its tokenizer, never its engine
    def tokenize(self, text: str) -> tuple[int, ...]:
        return tuple(self.inner.tokenize(text))  # type: ignore[attr-defined]

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self.inner.detokenize(ids))  # type: ignore[attr-defined]

    def chat(self, messages: Messages) -> str:
        return str(self.inner.chat(messages))  # type: ignore[attr-defined]

    @property
    def thinking(self) -> Any:
        return getattr(self.inner, "thinking", None)

    async def stream(self, prompt: Prompt, sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """Replays a recorded stream delta by delta, or streams live and records what the
        caller consumed (an aborted stream is recorded up to its abort, marked incomplete).

        A replay that consumes past the end of an incomplete recording is a miss: the recorded
        run stopped there, so this one asked for something else. In auto mode an incomplete
        recording is not used at all (the caller may want more than was kept): it streams live.
        """
        key = self._key(prompt, sampling, "stream")
        hit = None if self.mode == "record" else self.cache.get("streams", key)
        if hit is not None and (hit["complete"] or self.mode == "replay"):
            for data in hit["deltas"]:
                yield _delta_from_json(data)
            if not hit["complete"]:
                raise CacheMiss(
                    f"replay: {self.cache.path} recorded the stream of generator "
                    f"{self.name!r} for prompt {_short(_prompt_summary(prompt))} only up to "
                    f"an abort after {len(hit['deltas'])} deltas, and this run reads on; "
                    "record it again with the same config (cache.mode=record or auto)."
                )
            return
        if hit is None and self.mode == "replay":
            raise CacheMiss(
                f"replay: {self.cache.path} holds no stream of generator {self.name!r} "
                f"with prompt {_short(_prompt_summary(prompt))} and {sampling}. Record it "
                "first (cache.mode=record or auto) with the same config and seed."
            )
        deltas: list[dict[str, Any]] = []
        complete = False
        inner = self.inner.stream(prompt, sampling)  # type: ignore[attr-defined]
        try:
            async for delta in inner:
                deltas.append(_completion_to_json(delta))
                complete = delta.finish_reason is not None
                yield delta
        finally:
            await inner.aclose()
            kept = hit is not None and len(hit["deltas"]) >= len(deltas)
            if not kept:
                self.cache.put(
                    "streams",
                    key,
                    {"deltas": deltas, "complete": complete},
                    owner=self.name,
                    summary=_prompt_summary(prompt)[-200:],
                )

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        key = self._key(prompt, sampling)
        if self.mode != "record":
            hit = self.cache.get("generator_calls", key)
            if hit is not None:
                return [_completion_from_json(c) for c in hit]
            if self.mode == "replay":
                stored = self.cache.count("generator_calls", self.name)
                raise CacheMiss(
                    f"replay: {self.cache.path} holds no call of generator {self.name!r} "
                    f"with prompt {_short(_prompt_summary(prompt))} "
                    f"(ends {_prompt_summary(prompt)[-40:]!r}) and {sampling} "
                    f"({stored} calls of this generator recorded). Record it first "
                    "(cache.mode=record or auto) with the same config and seed."
                )
        completions = await self.inner.complete(prompt, sampling)
        self.cache.put(
            "generator_calls",
            key,
            [_completion_to_json(c) for c in completions],
            owner=self.name,
            summary=_prompt_summary(prompt)[-200:],
            overwrite=self.mode == "record",
        )
        return completions

    def start(self) -> None:
        """Start the inner engine, except in replay mode (which must never need it)."""
        if self.mode == "replay":
            return
        start = getattr(self.inner, "start", None)
        if start is not None:
            start()

    def close(self) -> None:
        """Close the inner generator if it was ever built."""
        close = getattr(self._inner.built, "close", None)
        if close is not None:
            close()


class CachedVerifier:
    """A Verifier that records its inner verifier's scores (and token cost) and replays them.

    `inner` is a verifier or a zero-arg factory. Keys cover `name` (default: the inner's) and
    `kind` (default: the inner's module.qualname; build.py passes the config's `_target_`, the
    same string for a class target, so keys do not depend on whether the inner was built).
    """

    def __init__(
        self,
        inner: Verifier | Callable[[], Verifier],
        cache: CallCache,
        mode: Mode = "auto",
        *,
        name: str | None = None,
        kind: str | None = None,
    ) -> None:
        self._inner = _Lazy(inner, lambda x: hasattr(x, "score"))
        self.cache = cache
        self.mode = _check_mode(mode)
        self.name: str = name if name is not None else self._inner.get().name
        if kind is None:
            cls = type(self._inner.get())
            kind = f"{cls.__module__}.{cls.__qualname__}"
        self.kind = kind

    @property
    def inner(self) -> Verifier:
        return cast(Verifier, self._inner.get())

    def __getattr__(self, attr: str) -> Any:
        # any other attribute builds the inner verifier (a model load, for some) when asked
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    async def score(self, problem: Problem, chains: list[Chain]) -> list[list[float]]:
        key = cache_key(
            {
                "kind": "verify",
                "verifier": self.name,
                "class": self.kind,
                "problem": _problem_json(problem),
                "chains": [_chain_json(c) for c in chains],
            }
        )
        if self.mode != "record":
            hit = self.cache.get("verifier_calls", key)
            if hit is not None:
                return StepScores(hit["scores"], tokens=hit["tokens"], cached=True)
            if self.mode == "replay":
                raise CacheMiss(
                    f"replay: {self.cache.path} holds no call of verifier {self.name!r} "
                    f"({self.kind}) on problem {problem.id!r} with {len(chains)} chain(s) "
                    f"(first: {_short(chains[0].text) if chains else 'none'}). Record it first "
                    "(cache.mode=record or auto) with the same config and seed."
                )
        scores = await self.inner.score(problem, chains)
        value = {
            "scores": [[float(s) for s in row] for row in scores],
            "tokens": int(getattr(scores, "tokens", 0)),
        }
        self.cache.put(
            "verifier_calls",
            key,
            value,
            owner=self.name,
            summary=problem.id,
            overwrite=self.mode == "record",
        )
        return scores


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """A results.jsonl record without the fields a faithful replay may change (see above)."""
    out = {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}
    if isinstance(out.get("ledger"), Mapping):
        out["ledger"] = {k: v for k, v in out["ledger"].items() if k not in VOLATILE_LEDGER_FIELDS}
    return out
