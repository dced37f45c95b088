"""Counters and latency summaries of the live loop, shared by the pipeline, the CLI and the benchmark."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

LATENCY_WINDOW = 4096
"""Samples kept per latency series. When full, the oldest sample is discarded (the window slides):
percentiles describe the most recent samples, while `count` and `total_ms` stay exact."""


@dataclass(slots=True)
class LatencyStats:
    """A bounded window of durations in milliseconds, with exact count and total."""

    count: int = 0
    total_ms: float = 0.0
    recent_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def add(self, value_ms: float) -> None:
        self.count += 1
        self.total_ms += value_ms
        self.recent_ms.append(value_ms)

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) of the window; NaN when empty."""
        if not self.recent_ms:
            return float("nan")
        return float(np.percentile(np.fromiter(self.recent_ms, dtype=np.float64), q))

    def window_since(self, count_before: int) -> LatencyStats:
        """The samples added since `count` was `count_before` (as many as the window still holds)."""
        new = min(self.count - count_before, len(self.recent_ms))
        recent = list(self.recent_ms)[len(self.recent_ms) - new :] if new > 0 else []
        return LatencyStats(count=new, total_ms=sum(recent), recent_ms=deque(recent, maxlen=LATENCY_WINDOW))

    def summary(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50_ms": self.percentile(50),
            "p95_ms": self.percentile(95),
            "mean_ms": self.total_ms / self.count if self.count else float("nan"),
        }


@dataclass(slots=True)
class PipelineMetrics:
    """What one stream's loop did; every drop and skip is counted here."""

    audio_chunks: int = 0
    video_frames: int = 0
    segments: int = 0
    forced_splits: int = 0
    """Segments cut because they reached `vad.max_utterance_s` (in a pause when there was one)."""
    forced_splits_without_pause: int = 0
    """Of those, the ones cut at the limit because the last `vad.split_search_s` held no pause."""
    voice_splits: int = 0
    """Segments split where the voice changed without a pause (`realtime/speakers/voice_change.py`)."""
    voice_cuts_while_open: int = 0
    """Utterances cut while still open because another voice took over (`realtime/session/voice_watch.py`)."""
    early_turn_ends: int = 0
    """Utterances ended after `pipeline.sentence_end_ms` of pause because their transcript ends a sentence."""
    speculations: int = 0
    """Pauses whose final work started before the VAD confirmed them (`realtime/session/turn_end.py`)."""
    speculations_used: int = 0
    """Of those, the ones whose utterance did end there (their work is the final one)."""
    speculations_discarded: int = 0
    """Of those, the ones dropped because speech resumed (their Whisper call was spent for nothing)."""
    segments_dropped: int = 0
    """Segments discarded because the ASR queue was full (realtime mode only)."""
    empty_transcripts: int = 0
    """Segments whose transcript was empty after the silence-hallucination filter: not published."""
    results: int = 0
    stream_end_s: float = 0.0
    """Stream time of the last audio sample seen."""
    wall_s: float = 0.0
    """Wall time from the start of `Pipeline.run` to the last result."""
    interim_published: int = 0
    """Interim results handed to the interim sink."""
    interim_skipped: int = 0
    """Interim results due while final-result work was queued or running (or one was in flight)."""
    interim_stale: int = 0
    """Interim results dropped because their utterance ended meanwhile, or had no words yet."""
    vad_chunk: LatencyStats = field(default_factory=LatencyStats)
    """VAD cost per audio chunk (it runs inline on the event loop)."""
    vad: LatencyStats = field(default_factory=LatencyStats)
    asr: LatencyStats = field(default_factory=LatencyStats)
    speaker: LatencyStats = field(default_factory=LatencyStats)
    """Speaker attribution per utterance (embedding + clustering), on the recognizer's thread."""
    features: LatencyStats = field(default_factory=LatencyStats)
    fusion: LatencyStats = field(default_factory=LatencyStats)
    segment_to_publish: LatencyStats = field(default_factory=LatencyStats)
    interim: LatencyStats = field(default_factory=LatencyStats)
    """Work per published interim result (ASR + speaker lookup + recognizer preview)."""

    @property
    def real_time_factor(self) -> float:
        """Processing wall time over media duration (below 1: faster than real time)."""
        return self.wall_s / self.stream_end_s if self.stream_end_s > 0 else float("nan")
