"""Forced splits of a long monologue fall in a pause between words, and lose or repeat no audio."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from espeak_words import MONOLOGUE, SpokenWords, speak_words
from test_vad import feed

from realtime.frames import SAMPLE_RATE_HZ, SpeechSegment
from realtime.speech.vad import FRAME_SAMPLES, VadOptions, VadSegmenter

MAX_UTTERANCE_S = 7.0
PAUSE_SAMPLES = SAMPLE_RATE_HZ // 10
"""A silence between words of 100 ms or more is a pause (espeak's last 110-340 ms here)."""
FPS = 10.0


@pytest.fixture(scope="module")
def monologue() -> SpokenWords:
    return speak_words(MONOLOGUE)


def split(spoken: SpokenWords, search_s: float, fps: float = 0.0) -> list[SpeechSegment]:
    options = VadOptions(max_utterance_s=MAX_UTTERANCE_S, split_search_s=search_s)
    return feed(VadSegmenter(options), spoken.samples, chunk_sizes=[1000, 333, 4096], fps=fps)


def checked_cuts(spoken: SpokenWords, segments: list[SpeechSegment]) -> list[tuple[float, str | None]]:
    """(cut time, word it cuts or None) of each forced split with a pause in its search window."""
    search = int(VadOptions().split_search_s * SAMPLE_RATE_HZ)
    pauses = spoken.pauses(PAUSE_SAMPLES)
    cuts = []
    for segment in segments[:-1]:
        if not segment.forced_split:
            continue
        # Where the old behaviour cut: the last frame end before the segment passes its maximum length.
        start = round(segment.start_s * SAMPLE_RATE_HZ)
        limit = (start + int(MAX_UTTERANCE_S * SAMPLE_RATE_HZ)) // FRAME_SAMPLES * FRAME_SAMPLES
        # The VAD hears a pause a few frames late: one that ends just before the limit is not yet known.
        if any(limit - search <= a and b <= limit - 3 * FRAME_SAMPLES for a, b in pauses):
            cut = round(segment.end_s * SAMPLE_RATE_HZ)
            cuts.append((segment.end_s, spoken.cuts_word(cut)))
    return cuts


def test_forced_splits_fall_between_words(monologue):
    segments = split(monologue, VadOptions().split_search_s)
    cuts = checked_cuts(monologue, segments)
    assert len(cuts) >= 4, "the monologue no longer forces enough splits with a pause before the limit"
    assert [word for _, word in cuts] == [None] * len(cuts), cuts
    for segment in segments[:-1]:
        assert segment.end_s - segment.start_s <= MAX_UTTERANCE_S
        if segment.forced_split and not segment.forced_without_pause:
            # A split that says it found a pause cuts no word, whatever the ground truth's pause length.
            assert monologue.cuts_word(round(segment.end_s * SAMPLE_RATE_HZ)) is None


def test_cutting_at_the_limit_cuts_words(monologue):
    """The check above can fail: the old behaviour (cut at the limit) cuts words in two."""
    segments = split(monologue, 0.0)
    cuts = checked_cuts(monologue, segments)
    assert len([word for _, word in cuts if word is not None]) >= 2, cuts
    assert all(s.forced_without_pause for s in segments if s.forced_split)


def test_split_audio_and_frames_are_the_stream_once(monologue):
    """Segments joined by forced splits are contiguous: their samples concatenate to exactly the stream
    between the first one's start and the last one's end (the speech pad lies only at those two ends),
    and each video frame goes to the one segment its time falls in."""
    segments = split(monologue, VadOptions().split_search_s, fps=FPS)
    assert sum(s.forced_split for s in segments) >= 5
    frame_times = np.arange(int(len(monologue.samples) / SAMPLE_RATE_HZ * FPS) + 1) / FPS
    chains: list[list[SpeechSegment]] = [[segments[0]]]
    for previous, segment in itertools.pairwise(segments):
        if previous.forced_split:
            assert segment.start_s == previous.end_s
            chains[-1].append(segment)
        else:
            chains.append([segment])
    for chain in chains:
        first = round(chain[0].start_s * SAMPLE_RATE_HZ)
        joined = np.concatenate([s.samples for s in chain])
        np.testing.assert_array_equal(joined, monologue.samples[first : first + len(joined)])
        assert first + len(joined) == round(chain[-1].end_s * SAMPLE_RATE_HZ)
        times = [f.time_s for s in chain for f in s.frames]
        assert times == [t for t in frame_times if chain[0].start_s <= t < chain[-1].end_s]
    for segment in segments:
        assert all(segment.start_s <= f.time_s < segment.end_s for f in segment.frames)


class _AlwaysSpeech(VadSegmenter):
    """Silero stubbed: every frame is speech, so only the audio can show a pause."""

    def _probability(self, frame: np.ndarray) -> float:
        return 0.9


def test_without_a_pause_the_cut_is_at_the_limit():
    loud = np.random.default_rng(2).normal(0, 0.1, SAMPLE_RATE_HZ * 20).astype(np.float32)
    loud[SAMPLE_RATE_HZ * 5 : SAMPLE_RATE_HZ * 5 + 3200] = 0.0  # silent, but the VAD heard speech
    options = VadOptions(max_utterance_s=6.0)
    segments = feed(_AlwaysSpeech(options), loud)
    old = feed(_AlwaysSpeech(VadOptions(max_utterance_s=6.0, split_search_s=0.0)), loud)
    assert [(s.start_s, s.end_s) for s in segments] == [(s.start_s, s.end_s) for s in old]
    forced = [s for s in segments if s.forced_split]
    assert len(forced) == 3 and all(s.forced_without_pause for s in forced)
    assert forced[0].end_s == (6 * SAMPLE_RATE_HZ // FRAME_SAMPLES) * FRAME_SAMPLES / SAMPLE_RATE_HZ
