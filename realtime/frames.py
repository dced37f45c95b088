"""Typed records that flow through the live loop: capture -> segment -> transcribe -> extract -> fuse -> publish."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from engines.media_format import SAMPLE_RATE_HZ

_WORD = re.compile(r"\w")


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono float32 samples in [-1, 1] at 16 kHz; `start_s` is stream time of the first sample."""

    samples: np.ndarray
    start_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + len(self.samples) / SAMPLE_RATE_HZ


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """One RGB uint8 frame (H, W, 3) shown at stream time `time_s`."""

    rgb: np.ndarray
    time_s: float


@dataclass(slots=True)
class SpeechSegment:
    """One utterance cut by the VAD, with the video frames that fall inside it."""

    segment_id: int
    start_s: float
    end_s: float
    samples: np.ndarray
    frames: list[VideoFrame] = field(default_factory=list)
    forced_split: bool = False
    """True when the segment was cut because it reached the maximum utterance length (in the longest
    pause just before it, when there was one), not after a pause long enough to end it."""
    forced_without_pause: bool = False
    """True when that forced cut found no pause to fall in and cut at the limit, maybe mid-word."""
    vad_ms: float = 0.0
    """VAD compute time spent on this segment's audio."""
    cut_monotonic_s: float = 0.0
    """time.monotonic() when the VAD closed the segment; the origin of `segment_to_publish`."""


@dataclass(frozen=True, slots=True)
class Transcript:
    """Whisper's text for one segment; `text` is "" when the segment was judged silence."""

    text: str
    language: str
    no_speech_prob: float
    asr_ms: float
    avg_logprob: float = 0.0
    """Mean log-probability of the decoded tokens (with `no_speech_prob`, the silence rule's input)."""
    filtered: str = ""
    """Why the text was blanked: "empty", "no_speech" or "hallucination"; "" when it was kept."""
    voice: tuple[float, ...] | None = None
    """Mean and std of the Whisper encoder states over the utterance (engines.voice_emotion), for the
    voice head; None for an utterance transcribed without a short window (over 30 s)."""

    @property
    def has_words(self) -> bool:
        """Whisper heard at least one word (punctuation or blanks alone are not published)."""
        return _WORD.search(self.text) is not None
