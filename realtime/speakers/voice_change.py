"""Speaker changes inside one VAD segment: the next person often starts before the pause that would cut.

Voice embeddings of 1 s windows every 0.25 s slide over the segment; where the window just before a
point and the window just after it are less similar than `SpeakerOptions.change_below` (and less than
at the neighbouring points), the voice changed. The segment is cut at the quietest 32 ms frame within
0.3 s of that point, so no word is cut in two, and each part becomes its own utterance (transcript,
speaker, emotion). Parts are at least 0.8 s long. Tuned on RAVDESS actors 1-12 (bench/conversations.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Protocol

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ, SpeechSegment

WINDOW_S = 1.0
"""Voice window on each side of a candidate change: shorter windows embed too noisily."""
HOP_S = 0.25
"""Step between candidate change points."""
MIN_PART_S = 0.8
"""Shortest part a split may leave (a short reply such as 'Yes.' stays with its neighbour)."""
SEARCH_S = 0.3
"""The cut goes to the quietest frame within this much of the change point."""
_QUIET_FRAME = 512
"""32 ms: Silero's frame, the unit of the cut search."""
_QUIET_STEP = 160


class WindowEmbedder(Protocol):
    """`engines.speaker_encoder.VoiceEncoder`."""

    def embed_windows(self, samples: np.ndarray, window_s: float, hop_s: float) -> np.ndarray: ...


def may_split(n_samples: int) -> bool:
    """Long enough to hold two voices (a window on each side of a change and two parts)."""
    return n_samples >= 2 * round(max(WINDOW_S, MIN_PART_S) * SAMPLE_RATE_HZ)


def change_points(embedder: WindowEmbedder, samples: np.ndarray, below: float) -> list[int]:
    """Sample offsets where the voice changes (cut points at quiet frames), in order; [] for none."""
    if below <= -1 or not may_split(len(samples)):
        return []
    return cuts_from_windows(embedder.embed_windows(samples, WINDOW_S, HOP_S), samples, below)


def cuts_from_windows(vectors: np.ndarray, samples: np.ndarray, below: float, settled: int = 0) -> list[int]:
    """`change_points` from the unit vectors of the 1 s windows every `HOP_S` from the start of `samples`.

    `settled`: a candidate needs this many later points (audio still being heard: a dip at the end of
    what has arrived may only be the edge of a deeper one)."""
    window, hop, min_part = (round(s * SAMPLE_RATE_HZ) for s in (WINDOW_S, HOP_S, MIN_PART_S))
    lag = window // hop
    if len(vectors) <= lag:
        return []
    similarity = np.einsum("ij,ij->i", vectors[:-lag], vectors[lag:])
    cuts: list[int] = []
    for i, value in enumerate(similarity[: len(similarity) - settled]):
        if value >= below:
            continue
        if (i > 0 and similarity[i - 1] < value) or (i + 1 < len(similarity) and similarity[i + 1] <= value):
            continue  # not the local minimum
        point = (i + lag) * hop
        if point < min_part or len(samples) - point < min_part:
            continue
        cut = _quietest(samples, point)
        if cut - (cuts[-1] if cuts else 0) >= min_part and len(samples) - cut >= min_part:
            cuts.append(cut)
    return cuts


def _quietest(samples: np.ndarray, point: int) -> int:
    """The middle of the quietest 32 ms frame within `SEARCH_S` of `point`."""
    reach = round(SEARCH_S * SAMPLE_RATE_HZ)
    low, high = max(0, point - reach), min(len(samples) - _QUIET_FRAME, point + reach)
    if high <= low:
        return point
    starts = np.arange(low, high + 1, _QUIET_STEP)
    squares = np.concatenate([[0.0], np.cumsum(np.asarray(samples, np.float64) ** 2)])
    energy = squares[starts + _QUIET_FRAME] - squares[starts]
    return int(starts[int(np.argmin(energy))] + _QUIET_FRAME // 2)


def split_segment(segment: SpeechSegment, cuts: list[int]) -> list[SpeechSegment]:
    """The segment cut at these sample offsets: parts with their own times, audio and video frames."""
    if not cuts:
        return [segment]
    edges = [0, *cuts, len(segment.samples)]
    parts = []
    for start, end in itertools.pairwise(edges):
        start_s = segment.start_s + start / SAMPLE_RATE_HZ
        end_s = segment.start_s + end / SAMPLE_RATE_HZ
        frames = [f for f in segment.frames if start_s <= f.time_s < end_s]
        parts.append(
            dataclasses.replace(
                segment, start_s=start_s, end_s=end_s, samples=segment.samples[start:end], frames=frames
            )
        )
    return parts
