"""Where a forced split falls: the longest quiet stretch that the VAD also heard as a pause."""

from __future__ import annotations

import numpy as np

from realtime.speech.pause import find_pause

FRAME = 512
THRESHOLD = 0.5


def tone(samples: int, level: float = 0.3) -> np.ndarray:
    return (level * np.sin(np.arange(samples) * 2 * np.pi * 220 / 16_000)).astype(np.float32)


def window(quiet: list[tuple[int, int]], frames: int = 40, background: float = 0.0) -> np.ndarray:
    """`frames` frames of loud tone over `background` noise, silenced over each (start, stop) sample range."""
    samples = tone(frames * FRAME)
    for start, stop in quiet:
        samples[start:stop] = 0.0
    noise = np.random.default_rng(0).normal(0, background, len(samples)) if background else 0.0
    return (samples + noise).astype(np.float32)


def dips(frames: int, low: list[int]) -> np.ndarray:
    probabilities = np.full(frames, 0.95)
    probabilities[low] = 0.1
    return probabilities


def test_cut_in_the_middle_of_a_pause_the_vad_heard():
    samples = window([(8000, 10400)])  # 150 ms
    assert find_pause(samples, dips(40, [19, 20]), FRAME, THRESHOLD) == 9200


def test_the_vad_decides_what_a_pause_is():
    samples = window([(8000, 10400)])
    assert find_pause(samples, dips(40, []), FRAME, THRESHOLD) is None
    # Silero's probability falls a few frames late: a dip just after the quiet stretch still counts.
    assert find_pause(samples, dips(40, [22]), FRAME, THRESHOLD) == 9200
    assert find_pause(samples, dips(40, [30]), FRAME, THRESHOLD) is None


def test_a_consonant_closure_is_not_a_pause():
    samples = window([(8000, 8960)])  # 60 ms of silence inside a "word"
    assert find_pause(samples, dips(40, [16, 17]), FRAME, THRESHOLD) is None


def test_the_longest_pause_wins():
    samples = window([(3200, 5600), (12800, 16000)])  # 150 ms, then 200 ms
    assert find_pause(samples, dips(40, [8, 9, 26, 27, 28]), FRAME, THRESHOLD) == 14400


def test_a_pause_in_background_noise_is_found():
    # The pause holds noise 24 dB below the tone: the window's quietest blocks set the floor.
    samples = window([(8000, 10400)], background=0.015)
    assert find_pause(samples, dips(40, [19, 20]), FRAME, THRESHOLD) == 9200


def test_continuous_sound_has_no_pause():
    assert find_pause(tone(40 * FRAME), dips(40, [5, 6, 7]), FRAME, THRESHOLD) is None
    assert find_pause(np.zeros(100, np.float32), dips(1, [0]), FRAME, THRESHOLD) is None
