"""Interim results: provisional transcript, emotion and speaker of the utterance still being spoken.

They are scheduled around the final results, which always come first: an interim result starts only
when it is due, the speaker is not pausing, and no final-result work is queued or running (else it is
skipped and counted); it reuses the stream's ASR and recognizer threads (one step at a time), never
changes the stream's context or speakers, and is published only while its utterance is still open,
so it can never follow that utterance's final result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np

from realtime.frames import SpeechSegment, Transcript
from realtime.messages import EmotionResult
from realtime.metrics import PipelineMetrics

logger = logging.getLogger(__name__)


class OpenUtterance(Protocol):
    """`realtime.speech.vad.VadSegmenter`'s view of the utterance being spoken."""

    @property
    def speaking_since_s(self) -> float | None: ...
    @property
    def pausing(self) -> bool: ...
    def open_samples(self) -> np.ndarray: ...


class InterimSink(Protocol):
    """`realtime.outputs.mqtt.publisher.StreamChannel`: provisional results on `<prefix>/<stream>/interim`."""

    def emit_interim(self, result: EmotionResult) -> bool: ...


class InterimResults:
    """One stream's interim results. Call `on_audio` after each chunk, `utterance_closed` when the VAD
    cuts a segment, and `close` when the stream ends."""

    def __init__(
        self,
        *,
        segmenter: OpenUtterance,
        sink: InterimSink,
        after_s: float,
        every_s: float,
        metrics: PipelineMetrics,
        transcribe: Callable[[np.ndarray], Awaitable[Transcript]],
        recognize: Callable[[SpeechSegment, Transcript], Awaitable[EmotionResult]],
    ) -> None:
        """`transcribe` and `recognize` run on the stream's own ASR and recognizer threads; `recognize`
        must leave the context and speakers untouched and give the id the final result will have."""
        self._segmenter = segmenter
        self._sink = sink
        self._after_s = after_s
        self._every_s = every_s
        self._metrics = metrics
        self._transcribe = transcribe
        self._recognize = recognize
        self._task: asyncio.Task[None] | None = None
        self._start_s: float | None = None
        self._next_s: float | None = None
        self._generation = 0

    def utterance_closed(self) -> None:
        """The open utterance was cut: an interim result of it still in flight is now stale."""
        self._generation += 1

    def on_audio(self, now_s: float, idle: bool) -> None:
        """Start an interim result if one is due at stream time `now_s`.

        Due: the utterance has lasted `after_s`, then every `every_s`, and the speaker is not pausing
        (the utterance may be about to end: work started now would hold up its final). When due but
        not `idle` (final-result work queued or running) or the previous one unfinished: skipped and
        counted in `interim_skipped`. A final that arrives while an interim step runs waits for that
        one step (measured: bench/interim.py).
        """
        start_s = self._segmenter.speaking_since_s
        if start_s is None:
            self._start_s = None
            return
        if start_s != self._start_s:
            self._start_s, self._next_s = start_s, start_s + self._after_s
        if self._next_s is None or now_s < self._next_s or self._segmenter.pausing:
            return
        self._next_s = now_s + self._every_s
        if not idle or (self._task is not None and not self._task.done()):
            self._metrics.interim_skipped += 1
            return
        segment = SpeechSegment(
            segment_id=-1, start_s=start_s, end_s=now_s, samples=self._segmenter.open_samples()
        )
        self._task = asyncio.create_task(self._run(segment, self._generation), name="interim")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, segment: SpeechSegment, generation: int) -> None:
        started = time.perf_counter()
        transcript = await self._transcribe(segment.samples)
        if not transcript.has_words or generation != self._generation:
            self._metrics.interim_stale += 1
            return
        result = await self._recognize(segment, transcript)
        if generation != self._generation:
            self._metrics.interim_stale += 1
            return
        if self._sink.emit_interim(result):
            self._metrics.interim_published += 1
        self._metrics.interim.add((time.perf_counter() - started) * 1000)
