"""Another voice takes over while the utterance is still open: cut there now, not once the segment ends.

Without a pause the VAD keeps both people's speech in one segment; the voice-change split
(`realtime/speakers/voice_change.py`) separates them, but only when the whole segment has ended, so
the first person's result waited for the second person to stop. Every `CHECK_EVERY_S` of open speech
the last `TAIL_S` are searched for a change; one found cuts the open segment there, and the first part
goes on to Whisper while the second person is still talking.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ, SpeechSegment
from realtime.metrics import PipelineMetrics
from realtime.speakers.voice_change import may_split

CHECK_EVERY_S = 0.5
"""Open speech between two searches."""
TAIL_S = 3.0
"""Audio searched each time: room for a part and the 1 s voice window on each side of a change."""


class OpenSegment(Protocol):
    """`realtime.speech.vad.VadSegmenter`'s view of the utterance being spoken."""

    @property
    def speaking_since_s(self) -> float | None: ...
    def open_samples(self) -> np.ndarray: ...
    def split_open(self, offset: int) -> list[SpeechSegment]: ...


class VoiceWatch:
    """`on_audio` after each chunk; returns the front part when the open segment was cut."""

    def __init__(
        self,
        segmenter: OpenSegment,
        changes: Callable[[np.ndarray], Awaitable[list[int]]],
        metrics: PipelineMetrics,
        *,
        wait_for_search: bool,
    ) -> None:
        self._segmenter = segmenter
        self._changes = changes
        self._metrics = metrics
        self._wait = wait_for_search
        self._since: float | None = None
        self._searched = 0
        self._search: tuple[int, asyncio.Task[list[int]]] | None = None

    async def on_audio(self) -> list[SpeechSegment]:
        since = self._segmenter.speaking_since_s
        if since != self._since:  # a new utterance (or silence): earlier searches are moot
            self._since, self._searched = since, 0
            self._forget()
        if since is None:
            return []
        if self._search is None:
            samples = self._segmenter.open_samples()
            if len(samples) - self._searched < CHECK_EVERY_S * SAMPLE_RATE_HZ:
                return []
            tail = samples[-round(TAIL_S * SAMPLE_RATE_HZ) :]
            if not may_split(len(tail)):
                return []
            self._searched = len(samples)
            self._search = (len(samples) - len(tail), asyncio.create_task(self._changes(tail)))
            if self._wait:
                await asyncio.wait({self._search[1]})
        offset, task = self._search
        if not task.done():
            return []
        self._search = None
        cuts = [] if task.cancelled() or task.exception() is not None else task.result()
        if not cuts:
            return []
        segments = self._segmenter.split_open(offset + cuts[0])
        self._metrics.voice_cuts_while_open += len(segments)
        self._since, self._searched = self._segmenter.speaking_since_s, 0
        return segments

    async def close(self) -> None:
        task = self._forget()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _forget(self) -> asyncio.Task[list[int]] | None:
        search, self._search = self._search, None
        if search is None:
            return None
        search[1].cancel()
        return search[1]
