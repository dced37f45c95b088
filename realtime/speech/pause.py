"""Where to force-split an utterance that reached its maximum length: in the longest pause near the end.

Measured by bench/vad_split.py on a 51 s espeak-ng monologue against espeak's own word timing, at every
possible limit with a 1.25 s search window (949 windows that hold a pause between words): the frame of
lowest speech probability fell inside a word in 6.5 % of them (Silero dips for a frame inside some words
and lags a pause by 2-3 frames), the frame of lowest energy in 8.2 % (stop closures are silent too), the
middle of the longest quiet stretch of 80 ms or more that the VAD also heard as a pause in none (nor in
the 209 other windows where it found one). Pauses between words there last 150-350 ms, quiet stretches
inside words at most 50 ms.
"""

from __future__ import annotations

import numpy as np

BLOCK_SAMPLES = 160
"""10 ms at 16 kHz: the resolution of the quiet-stretch search (a 32 ms frame is too coarse)."""
QUIET_FRACTION = 0.03
"""A block is quiet below this fraction (-30 dB) of the window's loud blocks (its 95th RMS percentile)..."""
NOISE_FLOOR_FACTOR = 2.0
"""... or below this multiple of its quietest block, so that a pause in background noise still counts..."""
MAX_QUIET_FRACTION = 0.25
"""... but never above this fraction (-12 dB) of the loud blocks, or an even sound would be all quiet."""
MIN_PAUSE_BLOCKS = 8
"""80 ms: a shorter quiet stretch is taken for a consonant closure, not a pause between words."""
VAD_LAG_FRAMES = 3
"""Silero's probability falls this many frames after the sound stops: a quiet stretch counts as a pause
when the probability is below threshold in it or in the frames just after it."""


def find_pause(
    samples: np.ndarray, probabilities: np.ndarray, frame_samples: int, threshold: float
) -> int | None:
    """Offset into `samples` of the middle of the longest pause, or None when the window has none.

    `probabilities[i]` is the VAD's for `samples[i * frame_samples : (i + 1) * frame_samples]`. A pause
    is a run of at least `MIN_PAUSE_BLOCKS` quiet 10 ms blocks during which (allowing for the VAD's lag)
    some frame is below `threshold`: energy finds where the sound stops, the VAD tells a pause from a
    silent consonant closure.
    """
    blocks = len(samples) // BLOCK_SAMPLES
    if blocks == 0:
        return None
    rms = np.sqrt(np.mean(np.square(samples[: blocks * BLOCK_SAMPLES].reshape(blocks, -1)), axis=1))
    loud = float(np.percentile(rms, 95))
    floor = min(max(QUIET_FRACTION * loud, NOISE_FLOOR_FACTOR * float(rms.min())), MAX_QUIET_FRACTION * loud)
    quiet = rms < floor
    heard = np.asarray(probabilities) < threshold
    best: tuple[int, int] | None = None
    for start, stop in _runs(quiet):
        if stop - start < MIN_PAUSE_BLOCKS:
            continue
        first_frame = start * BLOCK_SAMPLES // frame_samples
        last_frame = (stop * BLOCK_SAMPLES - 1) // frame_samples + VAD_LAG_FRAMES
        if heard[first_frame : last_frame + 1].any() and (best is None or stop - start >= best[1] - best[0]):
            best = (start, stop)
    if best is None:
        return None
    return (best[0] + best[1]) * BLOCK_SAMPLES // 2


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in `mask`."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))
