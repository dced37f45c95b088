"""Where forced splits fall on a long espeak-ng monologue, judged by espeak's own word timing.

    python bench/vad_split.py

1. Cut rules at every possible limit (each 32 ms frame), searching the `split_search_s` before it: the
   lowest speech probability, the lowest energy, and `realtime.speech.pause.find_pause`. For windows that hold a
   pause between words (100 ms or more, ending 3 frames before the limit), how often each cuts a word;
   for the other windows, how often find_pause still finds a "pause" and how often that cuts a word.
2. The real `VadSegmenter` at several `max_utterance_s`, cutting at the limit (`split_search_s` 0, the
   old behaviour) and with the default search: forced splits, splits without a pause, words cut.
3. Cost: Silero per frame (with the probability kept), and one pause search (once per forced split).
Asserts nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the generated-media helpers the tests use

from espeak_words import MONOLOGUE, SpokenWords, speak_words

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk
from realtime.speech.pause import find_pause
from realtime.speech.vad import FRAME_SAMPLES, VadOptions, VadSegmenter

PAUSE_SAMPLES = SAMPLE_RATE_HZ // 10
LAG_SAMPLES = 3 * FRAME_SAMPLES


def frame_probabilities(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Silero's probability of every frame (no segment is ever long enough to be cut) and ms per frame."""
    segmenter = VadSegmenter(VadOptions(max_utterance_s=3600.0))
    probabilities = []
    started = time.perf_counter()
    for offset in range(0, len(samples) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        segmenter.push(AudioChunk(samples[offset : offset + FRAME_SAMPLES], offset / SAMPLE_RATE_HZ))
        probabilities.append(segmenter.last_probability)
    return np.array(probabilities), (time.perf_counter() - started) * 1000 / len(probabilities)


def compare_rules(spoken: SpokenWords, probabilities: np.ndarray, search_s: float) -> None:
    frames = int(search_s * SAMPLE_RATE_HZ) // FRAME_SAMPLES
    pauses = spoken.pauses(PAUSE_SAMPLES)
    rms = np.sqrt(
        np.mean(spoken.samples[: len(probabilities) * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES) ** 2, 1)
    )
    with_pause = {"lowest probability": 0, "lowest energy": 0, "find_pause": 0}
    windows_with, windows_without, found_without, cut_without = 0, 0, 0, 0
    spent_ms: list[float] = []
    for limit in range(frames, len(probabilities) + 1):
        first = limit - frames
        lo, hi = first * FRAME_SAMPLES, limit * FRAME_SAMPLES
        samples = spoken.samples[lo:hi]
        started = time.perf_counter()
        offset = find_pause(samples, probabilities[first:limit], FRAME_SAMPLES, VadOptions().threshold)
        spent_ms.append((time.perf_counter() - started) * 1000)
        if any(lo <= a and b <= hi - LAG_SAMPLES for a, b in pauses):
            windows_with += 1
            cuts = {
                "lowest probability": lo + int(np.argmin(probabilities[first:limit])) * FRAME_SAMPLES,
                "lowest energy": lo + int(np.argmin(rms[first:limit])) * FRAME_SAMPLES,
                "find_pause": hi if offset is None else lo + offset,
            }
            for rule, cut in cuts.items():
                frame_middle = FRAME_SAMPLES // 2 if rule != "find_pause" else 0
                with_pause[rule] += spoken.cuts_word(cut + frame_middle) is not None
        else:
            windows_without += 1
            if offset is not None:
                found_without += 1
                cut_without += spoken.cuts_word(lo + offset) is not None
    print(
        f"search window {frames * FRAME_SAMPLES / SAMPLE_RATE_HZ:.2f} s, {windows_with} windows with a pause:"
    )
    for rule, cut in with_pause.items():
        print(f"  {rule:20s} cuts a word in {cut:4d} ({cut / windows_with:6.1%})")
    print(
        f"  {windows_without} windows without: find_pause found a pause in {found_without}, "
        f"{cut_without} of them inside a word; the others cut at the limit"
    )
    print(f"find_pause: {np.median(spent_ms):.3f} ms per search (median; once per forced split)")


def segmenter_runs(spoken: SpokenWords) -> None:
    for max_s in (6.0, 7.0, 8.0):
        for search_s in (0.0, VadOptions().split_search_s):
            segmenter = VadSegmenter(VadOptions(max_utterance_s=max_s, split_search_s=search_s))
            segments = []
            for offset in range(0, len(spoken.samples), 1000):
                chunk = spoken.samples[offset : offset + 1000]
                segments += segmenter.push(AudioChunk(chunk, offset / SAMPLE_RATE_HZ))
            segments += segmenter.flush()
            forced = [s for s in segments if s.forced_split]
            cut = [
                (s.forced_without_pause, spoken.cuts_word(round(s.end_s * SAMPLE_RATE_HZ))) for s in forced
            ]
            print(
                f"max_utterance_s {max_s:3.0f} split_search_s {search_s:4.2f}: {len(forced)} forced, "
                f"{sum(s.forced_without_pause for s in forced)} without a pause; words cut at a pause "
                f"{[w for limit, w in cut if w and not limit]}, at the limit {[w for limit, w in cut if w and limit]}"
            )


def main() -> None:
    spoken = speak_words(MONOLOGUE)
    print(f"monologue: {len(spoken.samples) / SAMPLE_RATE_HZ:.1f} s, {len(spoken.words)} words")
    probabilities, frame_ms = frame_probabilities(spoken.samples)
    print(f"Silero: {frame_ms:.3f} ms per 32 ms frame (whole step, one thread)")
    compare_rules(spoken, probabilities, VadOptions().split_search_s)
    segmenter_runs(spoken)


if __name__ == "__main__":
    main()
