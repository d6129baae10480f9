"""`CachedGenerator` and `CachedVerifier`: a generator or verifier that records its inner
object's calls in a `CallCache` and replays them (modes: reasoning/cache/__init__.py)."""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, cast

from reasoning.cache.call_keys import (
    cache_key,
    chain_json,
    problem_json,
    prompt_json,
    prompt_summary,
    sampling_json,
)
from reasoning.cache.codecs import completion_from_json, completion_to_json, delta_from_json
from reasoning.cache.store import MODES, CallCache, Mode
from reasoning.types import (
    Chain,
    Completion,
    Delta,
    Generator,
    Messages,
    Problem,
    Prompt,
    Sampling,
    StepScores,
    Verifier,
)


class CacheMiss(LookupError):
    """A replay asked for a call that the cache file does not hold."""


def _short(text: str, limit: int = 80) -> str:
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


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
                "problem": problem_json(problem),
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
                "prompt": prompt_json(prompt),
                "sampling": sampling_json(sampling),
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
        A stream never recorded whose one-sample call was recorded whole (`complete`) replays
        that sample as one delta.
        """
        key = self._key(prompt, sampling, "stream")
        hit = None if self.mode == "record" else self.cache.get("streams", key)
        if hit is not None and (hit["complete"] or self.mode == "replay"):
            for data in hit["deltas"]:
                yield delta_from_json(data)
            if not hit["complete"]:
                raise CacheMiss(
                    f"replay: {self.cache.path} recorded the stream of generator "
                    f"{self.name!r} for prompt {_short(prompt_summary(prompt))} only up to "
                    f"an abort after {len(hit['deltas'])} deltas, and this run reads on; "
                    "record it again with the same config (cache.mode=record or auto)."
                )
            return
        if hit is None and self.mode != "record":
            # the same one-sample call recorded whole (a run without a progress feed): its
            # sample as one delta, so a streaming client replays what a batch run recorded
            whole = self.cache.get("generator_calls", self._key(prompt, sampling))
            if whole is not None and len(whole) == 1:
                yield _whole_delta(completion_from_json(whole[0]))
                return
        if hit is None and self.mode == "replay":
            raise CacheMiss(
                f"replay: {self.cache.path} holds no stream of generator {self.name!r} "
                f"with prompt {_short(prompt_summary(prompt))} and {sampling}. Record it "
                "first (cache.mode=record or auto) with the same config and seed."
            )
        deltas: list[dict[str, Any]] = []
        complete = False
        inner = self.inner.stream(prompt, sampling)  # type: ignore[attr-defined]
        try:
            async for delta in inner:
                deltas.append(completion_to_json(delta))
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
                    summary=prompt_summary(prompt)[-200:],
                )

    async def complete(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        key = self._key(prompt, sampling)
        if self.mode != "record":
            hit = self.cache.get("generator_calls", key)
            if hit is not None:
                return [completion_from_json(c) for c in hit]
            if self.mode == "replay":
                stored = self.cache.count("generator_calls", self.name)
                raise CacheMiss(
                    f"replay: {self.cache.path} holds no call of generator {self.name!r} "
                    f"with prompt {_short(prompt_summary(prompt))} "
                    f"(ends {prompt_summary(prompt)[-40:]!r}) and {sampling} "
                    f"({stored} calls of this generator recorded). Record it first "
                    "(cache.mode=record or auto) with the same config and seed."
                )
        completions = await self.inner.complete(prompt, sampling)
        self.cache.put(
            "generator_calls",
            key,
            [completion_to_json(c) for c in completions],
            owner=self.name,
            summary=prompt_summary(prompt)[-200:],
            overwrite=self.mode == "record",
        )
        return completions

    def running_requests(self) -> int:
        """The inner generator's requests in flight (0 when it was never built or does not
        count them): asking never builds it, so a replaying server's gauge needs no engine."""
        count = getattr(self._inner.built, "running_requests", None)
        return int(count()) if count is not None else 0

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
                "problem": problem_json(problem),
                "chains": [chain_json(c) for c in chains],
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


def _whole_delta(c: Completion) -> Delta:
    """A recorded whole sample as the one delta of a stream (every token counted)."""
    return Delta(
        text=c.text,
        token_ids=c.token_ids or (),
        logprobs=c.logprobs,
        top_logprobs=c.top_logprobs,
        top_token_ids=c.top_token_ids,
        token_id_logprobs=c.token_id_logprobs,
        finish_reason=c.finish_reason,
        stop=c.stop,
        prompt_tokens=c.prompt_tokens,
        cached_prompt_tokens=c.cached_prompt_tokens,
        cached=True,
        counted=c.tokens,
    )
