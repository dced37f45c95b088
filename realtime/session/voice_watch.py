"""Another voice takes over while the utterance is still open: cut there now, not once the segment ends.

Without a pause the VAD keeps both people's speech in one segment; the voice-change split
(`realtime/speakers/voice_change.py`) separates them, but only when the whole segment has ended, so
the first person's result waited for the second person to stop. Here the same search runs while the
utterance is spoken: every `CHECK_EVERY_S` the 1 s voice windows of the new audio are embedded (the
earlier ones are kept, so the cost does not grow with the utterance), a dip in similarity that more
audio has `SETTLED_POINTS` confirmed is checked on the two sides as wholes, and a change found cuts the
open segment there: the first part goes on to Whisper while the second person is still talking.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ, SpeechSegment
from realtime.metrics import PipelineMetrics
from realtime.speakers.voice_change import HOP_S, WINDOW_S, cuts_from_windows, may_split

CHECK_EVERY_S = 0.5
"""Open speech between two searches."""
SETTLED_POINTS = 1
"""Later similarity points (of `HOP_S` each) a dip needs before it counts: the dip at the edge of the
audio heard so far is often the start of a deeper one a little later."""


class OpenSegment(Protocol):
    """`realtime.speech.vad.VadSegmenter`'s view of the utterance being spoken."""

    @property
    def speaking_since_s(self) -> float | None: ...
    def open_samples(self) -> np.ndarray: ...
    def split_open(self, offset: int) -> list[SpeechSegment]: ...


class WindowVoices(Protocol):
    """`realtime.speakers.attributor.SpeakerAttributor`'s voice-change helpers."""

    def voice_windows(self, samples: np.ndarray) -> np.ndarray: ...
    def distinct_parts(self, samples: np.ndarray, cuts: list[int]) -> list[int]: ...


class VoiceWatch:
    """`on_audio` after each chunk; returns the front part when the open segment was cut."""

    def __init__(
        self,
        segmenter: OpenSegment,
        voices: WindowVoices,
        run: Callable[..., Awaitable[Any]],
        metrics: PipelineMetrics,
        *,
        below: float,
        wait_for_search: bool,
    ) -> None:
        """`run(function, *args)` runs the `voices` work where the voice encoder lives (its thread)."""
        self._segmenter = segmenter
        self._voices = voices
        self._run = run
        self._metrics = metrics
        self._below = below
        self._wait = wait_for_search
        self._since: float | None = None
        self._search: asyncio.Task[int | None] | None = None
        self._reset()

    async def on_audio(self) -> list[SpeechSegment]:
        since = self._segmenter.speaking_since_s
        if since != self._since:  # a new utterance (or silence): what was found is moot
            self._since = since
            self._forget()
            self._reset()
        if since is None:
            return []
        if self._search is None:
            samples = self._segmenter.open_samples()
            if len(samples) - self._searched < CHECK_EVERY_S * SAMPLE_RATE_HZ or not may_split(len(samples)):
                return []
            self._searched = len(samples)
            self._search = asyncio.create_task(self._find(samples))
            if self._wait:
                await asyncio.wait({self._search})
        if not self._search.done():
            return []
        task, self._search = self._search, None
        cut = None if task.cancelled() or task.exception() is not None else task.result()
        if cut is None:
            return []
        segments = self._segmenter.split_open(cut)
        self._metrics.voice_cuts_while_open += len(segments)
        self._since = self._segmenter.speaking_since_s
        self._reset()
        return segments

    async def _find(self, samples: np.ndarray) -> int | None:
        """Embed the windows not embedded yet, then the first settled change the whole-part check keeps."""
        hop, window = round(HOP_S * SAMPLE_RATE_HZ), round(WINDOW_S * SAMPLE_RATE_HZ)
        first = len(self._vectors) * hop
        if len(samples) - first >= window:
            new = await self._run(self._voices.voice_windows, samples[first:])
            if len(new):
                self._vectors = np.concatenate([self._vectors, new]) if len(self._vectors) else new
        cuts = [
            c
            for c in cuts_from_windows(self._vectors, samples, self._below, settled=SETTLED_POINTS)
            if c not in self._rejected
        ]
        if not cuts:
            return None
        kept = await self._run(self._voices.distinct_parts, samples, cuts[:1])
        if not kept:
            self._rejected.add(cuts[0])
            return None
        return kept[0]

    async def close(self) -> None:
        task = self._forget()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _reset(self) -> None:
        self._searched = 0
        self._vectors = np.zeros((0, 0), np.float32)
        self._rejected: set[int] = set()

    def _forget(self) -> asyncio.Task[int | None] | None:
        task, self._search = self._search, None
        if task is not None:
            task.cancel()
        return task
