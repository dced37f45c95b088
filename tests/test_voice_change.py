"""Voice changes inside one segment: the rule on known window vectors, the cut at a quiet frame, the
parts' times and frames, and two espeak-ng voices without a pause through the packaged encoder."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SPEECH_RATE_HZ
from conversations import VOICES, speak

from realtime.frames import SpeechSegment, VideoFrame
from realtime.speakers.voice_change import HOP_S, WINDOW_S, change_points, may_split, split_segment


class StepEmbedder:
    """Windows starting before `change_s` have voice A, the others voice B (orthogonal)."""

    def __init__(self, change_s: float) -> None:
        self.change_s = change_s

    def embed_windows(self, samples: np.ndarray, window_s: float, hop_s: float) -> np.ndarray:
        count = int((len(samples) / SPEECH_RATE_HZ - window_s) / hop_s) + 1
        vectors = np.zeros((max(count, 0), 2), np.float32)
        for i in range(len(vectors)):
            middle = i * hop_s + window_s / 2
            vectors[i, 0 if middle < self.change_s else 1] = 1.0
        return vectors


def test_one_voice_is_never_split() -> None:
    samples = np.full(5 * SPEECH_RATE_HZ, 0.1, np.float32)
    assert change_points(StepEmbedder(change_s=99.0), samples, below=0.6) == []


def test_a_change_is_cut_at_the_quietest_frame_near_it() -> None:
    samples = np.full(4 * SPEECH_RATE_HZ, 0.1, np.float32)
    quiet = int(2.1 * SPEECH_RATE_HZ)
    samples[quiet : quiet + 800] = 0.0  # a 50 ms dip 0.1 s after the change
    cuts = change_points(StepEmbedder(change_s=2.0), samples, below=0.6)
    assert len(cuts) == 1
    assert quiet <= cuts[0] <= quiet + 800


def test_short_segments_and_minus_one_never_split() -> None:
    assert not may_split(int(1.5 * SPEECH_RATE_HZ))
    samples = np.full(4 * SPEECH_RATE_HZ, 0.1, np.float32)
    assert change_points(StepEmbedder(change_s=2.0), samples, below=-1.0) == []


def test_parts_keep_their_own_times_audio_and_frames() -> None:
    samples = np.arange(3 * SPEECH_RATE_HZ, dtype=np.float32)
    frames = [VideoFrame(np.zeros((2, 2, 3), np.uint8), 10.0 + t) for t in (0.5, 1.5, 2.5)]
    segment = SpeechSegment(7, 10.0, 13.0, samples, frames)
    first, second = split_segment(segment, [SPEECH_RATE_HZ])
    assert (first.start_s, first.end_s, second.start_s, second.end_s) == (10.0, 11.0, 11.0, 13.0)
    assert len(first.samples) + len(second.samples) == len(samples)
    assert [f.time_s for f in first.frames] == [10.5]
    assert [f.time_s for f in second.frames] == [11.5, 12.5]
    assert split_segment(segment, []) == [segment]


@pytest.fixture(scope="module")
def encoder():
    import torch

    from engines.speaker_encoder import load_voice_encoder

    torch.set_num_threads(1)
    return load_voice_encoder()


def test_two_voices_without_a_pause_are_cut_between_them(encoder) -> None:
    first = speak("The train was late again, so I walked all the way from the station.", VOICES[0])
    second = speak("My sister is moving to another city next month, I will miss her.", VOICES[1])
    samples = np.concatenate([first, second])
    cuts = change_points(encoder, samples, below=0.6)
    assert len(cuts) == 1
    assert abs(cuts[0] - len(first)) < (WINDOW_S / 2 + HOP_S) * SPEECH_RATE_HZ
    assert change_points(encoder, np.concatenate([first, first]), below=0.6) == []
