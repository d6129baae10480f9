"""One sample as it grows: streamed pieces and forced cues, as text and as exact token ids.

A cut or an extension continues the sample from token ids, never from re-tokenized text, so
the continuation sees the sequence the model itself wrote. Cutting back to a char offset
re-tokenizes only the one piece the offset falls inside.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, replace

from reasoning.types import Delta

Tokenize = Callable[[str], tuple[int, ...]]


@dataclass(frozen=True)
class Piece:
    """A streamed delta (the model's own tokens) or a forced cue (`forced`: prompt material)."""

    text: str
    ids: tuple[int, ...]
    forced: bool = False
    logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[dict[str, float], ...] | None = None
    top_token_ids: tuple[tuple[int, ...], ...] | None = None

    @classmethod
    def of(cls, delta: Delta) -> Piece:
        return cls(
            delta.text, delta.token_ids, False, delta.logprobs, delta.top_logprobs,
            delta.top_token_ids,
        )  # fmt: skip


class Transcript:
    """The pieces of one sample so far; `text` is kept joined for the watchers."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.starts: list[int] = []  # char offset of each piece
        self.text = ""
        self.generated = 0  # the model's own token ids so far (cues left out)
        self.epoch = 0  # bumped by every truncation: what a watcher read before may be gone
        # False once a cut split a piece whose tokens did not survive re-tokenization: its
        # logprobs can no longer be aligned, so none are reported for the sample
        self.aligned = True

    def add(self, piece: Piece) -> None:
        self.starts.append(len(self.text))
        self.pieces.append(piece)
        if not piece.forced:
            self.generated += len(piece.ids)
        # appended to a local that holds the only reference, so CPython grows the string in
        # place: `self.text += ...` on the attribute copied the whole text at every streamed
        # token (quadratic in the sample's length)
        text, self.text = self.text, ""
        text += piece.text
        self.text = text

    def force(self, text: str, tokenize: Tokenize) -> None:
        """Append a cue: written into the sample, but prompt material, not generated tokens."""
        if text:
            self.add(Piece(text, tokenize(text), forced=True))

    def _split(self, at_char: int, tokenize: Tokenize) -> tuple[list[Piece], bool]:
        """The pieces that hold exactly `text[:at_char]`, and whether a split piece kept its
        own first token ids (so its per-token logprobs still line up)."""
        k = bisect.bisect_right(self.starts, at_char) - 1
        if k < 0:
            return [], True
        head = self.pieces[:k]
        piece, offset = self.pieces[k], at_char - self.starts[k]
        if offset >= len(piece.text):
            return [*head, piece], True
        if offset == 0:
            return head, True
        ids = tokenize(piece.text[:offset])
        exact = ids == piece.ids[: len(ids)]
        return [*head, _prefix(piece, piece.text[:offset], ids, exact)], exact or piece.forced

    def prefix_ids(self, at_char: int, tokenize: Tokenize) -> tuple[int, ...]:
        """Token ids of `text[:at_char]` (what a probe at that point continues)."""
        return tuple(i for p in self._split(at_char, tokenize)[0] for i in p.ids)

    def truncate(self, at_char: int, tokenize: Tokenize) -> None:
        """Drop everything from `at_char` on (a cut back to a thought boundary, a close tag)."""
        kept, exact = self._split(at_char, tokenize)
        self.aligned = self.aligned and exact
        self.pieces, self.starts, self.text, self.generated = [], [], "", 0
        self.epoch += 1
        for piece in kept:
            self.add(piece)

    @property
    def ids(self) -> tuple[int, ...]:
        """All token ids in order, cues included: the exact continuation prompt."""
        return tuple(i for p in self.pieces for i in p.ids)

    @property
    def generated_ids(self) -> tuple[int, ...]:
        """The model's own token ids (cues left out), aligned with `logprobs`."""
        return tuple(i for p in self.pieces if not p.forced for i in p.ids)

    def recent_ids(self, window: int) -> list[int]:
        """The last `window` generated token ids (what the repetition test reads)."""
        if window <= 0:
            return []
        chunks: list[tuple[int, ...]] = []
        count = 0
        for piece in reversed(self.pieces):
            if not piece.forced:
                chunks.append(piece.ids)
                count += len(piece.ids)
                if count >= window:
                    break
        return [i for ids in reversed(chunks) for i in ids][-window:]

    def logprobs(self) -> tuple[float, ...] | None:
        return self._joined("logprobs")

    def top_logprobs(self) -> tuple[dict[str, float], ...] | None:
        return self._joined("top_logprobs")

    def top_token_ids(self) -> tuple[tuple[int, ...], ...] | None:
        return self._joined("top_token_ids")

    def _joined(self, field: str) -> tuple | None:  # type: ignore[type-arg]
        generated = [p for p in self.pieces if not p.forced]
        parts = [getattr(p, field) for p in generated]
        if not self.aligned or any(part is None for part in parts):
            return None
        return tuple(x for part in parts for x in part)


def _prefix(piece: Piece, text: str, ids: tuple[int, ...], exact: bool) -> Piece:
    """`piece` cut to `text` (re-tokenized as `ids`); per-token data kept only when `exact`."""
    n = len(ids)
    return replace(
        piece,
        text=text,
        ids=ids,
        logprobs=piece.logprobs[:n] if exact and piece.logprobs is not None else None,
        top_logprobs=piece.top_logprobs[:n] if exact and piece.top_logprobs else None,
        top_token_ids=piece.top_token_ids[:n] if exact and piece.top_token_ids else None,
    )
