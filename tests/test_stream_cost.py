"""What a streamed token costs the toolkit: incremental state instead of rescans and copies.

Each structure here is fed one streamed piece at a time and must give exactly what the whole-text
(or whole-window) function gives; the time checks use sizes where the quadratic versions these
replaced took tens of seconds and the linear ones well under one, so load on the machine cannot
flip them.
"""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasoning.prompts import ThinkingFormat
from trim.repetition import NgramRepeats, repeats_ngram
from trim.transcript import Piece, Transcript

THINK = ThinkingFormat("<think>", "</think>")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["<", "think", ">", "</", "/", "<think>", "</think>", "a", "b c", "\n"]),
        max_size=30,
    ),
    st.sampled_from(["", "<think>\n", "x</think>"]),
)
def test_the_thinking_tracker_agrees_with_is_open_on_every_prefix(
    pieces: list[str], head: str
) -> None:
    tracker = THINK.tracker(head)
    text = head
    assert tracker.inside == THINK.is_open(text)
    for piece in pieces:
        text += piece
        assert tracker.feed(piece) == THINK.is_open(text), (head, pieces)
        assert tracker.closed == (THINK.close in text)


def test_a_tag_split_over_pieces_is_seen() -> None:
    tracker = THINK.tracker()
    for piece in ["<", "th", "ink", ">", "hmm", "</", "think", ">", "42"]:
        tracker.feed(piece)
    assert not tracker.inside and tracker.closed
    tracker = THINK.tracker("<think>\n")
    assert tracker.inside and tracker.feed("still </thi")  # half a close tag: still inside
    assert not tracker.feed("nk> done") and tracker.closed


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 3), max_size=120),
    st.integers(1, 12),
    st.integers(1, 4),
    st.integers(2, 4),
)
def test_the_sliding_ngram_counter_agrees_with_the_window_recount(
    ids: list[int], window: int, ngram: int, repeats: int
) -> None:
    loops = NgramRepeats(window=window, ngram=ngram, repeats=repeats)
    for end in range(1, len(ids) + 1):
        loops.extend(ids[end - 1 : end])
        expected = repeats_ngram(ids[:end], window=window, ngram=ngram, repeats=repeats)
        assert loops.hit == expected, (ids[:end], window, ngram, repeats)


def test_a_long_stream_costs_linear_time_in_the_transcript() -> None:
    # 200k one-token pieces (~1M chars): appending to the attribute copied the text at every
    # piece (about 25 s here); in place it is a few tenths of a second
    transcript = Transcript()
    started = time.process_time()
    for i in range(200_000):
        transcript.add(Piece("tok ", (i,)))
        if i % 1000 == 0:
            assert transcript.text.endswith("tok ")
    spent = time.process_time() - started
    assert len(transcript.text) == 800_000 and transcript.generated == 200_000
    assert spent < 5.0, spent


def test_recent_ids_read_only_the_window() -> None:
    transcript = Transcript()
    rng = random.Random(0)
    ids = [rng.randrange(50) for _ in range(300)]
    for k in range(0, 300, 3):
        transcript.add(Piece("x", tuple(ids[k : k + 3])))
        transcript.force("cue", lambda text: (999,))
    assert transcript.recent_ids(7) == ids[-7:]
    assert transcript.recent_ids(0) == [] and transcript.recent_ids(10_000) == ids
    assert transcript.generated == 300


def test_a_cut_starts_the_loop_detector_over(monkeypatch: pytest.MonkeyPatch) -> None:
    from trim import TrimR
    from trim.trimr import TrimRWatch

    watch = TrimRWatch(TrimR(window=6, ngram=2, repeats=3), None, None)  # type: ignore[arg-type]
    transcript = Transcript()
    for token in [1, 2, 1, 2]:
        transcript.add(Piece("t", (token,)))
    assert not watch._looping(transcript)  # (1,2) twice
    transcript.truncate(2, lambda text: ())  # back to [1, 2]
    transcript.add(Piece("t", (1,)))
    transcript.add(Piece("t", (2,)))
    # after the cut the window is [1, 2, 1, 2]: (1, 2) twice, not the four times a detector
    # that kept the cut ids would have counted
    assert not watch._looping(transcript)
    transcript.add(Piece("t", (1,)))
    transcript.add(Piece("t", (2,)))
    assert watch._looping(transcript)  # now three times


def test_the_loop_detector_reads_each_generated_id_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # the repetition test used to read the whole window (512 ids by default) at every token;
    # fed only the new ids, a 2,000-token stream reads 2,000 ids in all
    from trim import TrimR
    from trim.trimr import TrimRWatch

    read: list[int] = []
    real = Transcript.recent_ids

    def counted(self: Transcript, window: int) -> list[int]:
        out = real(self, window)
        read.append(len(out))
        return out

    monkeypatch.setattr(Transcript, "recent_ids", counted)
    watch = TrimRWatch(TrimR(), None, None)  # type: ignore[arg-type]
    transcript = Transcript()
    for token in range(2000):
        transcript.add(Piece("t", (token,)))
        assert not watch._looping(transcript)  # all ids distinct: never a loop
    assert sum(read) == 2000, sum(read)
