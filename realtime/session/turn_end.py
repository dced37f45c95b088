"""End of turn sooner: the final result is prepared during the pause, before the VAD confirms it.

Once a pause is `vad.speech_pad_ms` long, the audio the utterance will keep if it ends there is known, so
its final work that learns nothing (the voice-change split, Whisper, the voice embedding) starts at once.
While Whisper has nothing else to do it starts sooner, `pipeline.speculate_after_ms` into the pause, on
the audio heard so far (all but the rest of the trailing pad): on a busy box the extra calls that pauses
between words cost would delay other streams' finals. If the pause lasts `vad.min_silence_ms`, the VAD cuts the utterance there and the prepared work is
used: only speaker assignment and the recognizer are left. If the prepared transcript ends a sentence, the
pause need only last `pipeline.sentence_end_ms` before the utterance is ended. Speech resuming before
either discards the preparation (a Whisper call already running is spent; `metrics.speculations_discarded`).

With unpaced input (`--no-realtime`) capture waits for each preparation, so where a turn ends does
not depend on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from realtime.frames import SpeechSegment
from realtime.metrics import PipelineMetrics

logger = logging.getLogger(__name__)

_SENTENCE_END = (".", "?", "!")


class PausingSegmenter(Protocol):
    """`realtime.speech.vad.VadSegmenter`'s view of a pause in the utterance being spoken."""

    @property
    def pause_key(self) -> tuple[float, int] | None: ...
    @property
    def pause_ms(self) -> float: ...
    @property
    def pause_cut_samples(self) -> int: ...
    def pause_audio(self) -> np.ndarray: ...
    def end_at_pause(self) -> list[SpeechSegment]: ...


@dataclass(slots=True)
class Prepared:
    """The final work of a segment that learns nothing: where its voice changes, and each part's
    transcript and voice embedding (items as the ASR stage queues them, empty transcripts included)."""

    cuts: list[int]
    items: list[Any]

    def ends_sentence(self) -> bool:
        text = getattr(self.items[-1].transcript, "text", "").rstrip() if self.items else ""
        return text.endswith(_SENTENCE_END) and not text.endswith("..")

    def discard(self) -> None:
        for item in self.items:
            if item.voice is not None:
                item.voice.cancel()


@dataclass(slots=True)
class _Speculation:
    key: tuple[float, int]
    """(segment start time, pause start sample): `VadSegmenter.pause_key`."""
    cut_samples: int
    """Length of the segment if the VAD cuts at this pause."""
    task: asyncio.Task[Prepared]

    def ready(self) -> Prepared | None:
        if not self.task.done() or self.task.cancelled() or self.task.exception() is not None:
            return None
        return self.task.result()


class TurnEnd:
    """Speculative finals of one stream's pauses; `on_audio` after each chunk, `claim` per cut segment."""

    def __init__(
        self,
        segmenter: PausingSegmenter,
        prepare: Callable[[SpeechSegment], Awaitable[Prepared]],
        metrics: PipelineMetrics,
        *,
        start_after_ms: int,
        sentence_end_ms: int,
        wait_for_preparation: bool,
        idle: Callable[[], bool],
    ) -> None:
        """`idle()`: no final work waits for or runs in Whisper (the early start uses only spare time)."""
        self._segmenter = segmenter
        self._prepare = prepare
        self._metrics = metrics
        self._start_after_ms = start_after_ms
        self._idle = idle
        self._sentence_end_ms = sentence_end_ms
        self._wait = wait_for_preparation
        self._current: _Speculation | None = None
        self._claimed: dict[int, _Speculation] = {}

    async def on_audio(self) -> list[SpeechSegment]:
        """Start preparing a pause whose audio is complete (or `start_after_ms` long while Whisper is idle),
        drop a preparation whose pause ended in speech; the segments of an utterance ended early because
        its transcript ends a sentence."""
        key = self._segmenter.pause_key
        if self._current is not None and self._current.key != key:
            self._drop(self._current)
            self._current = None
        if key is None:
            return []
        if self._current is None:
            samples = self._segmenter.pause_audio()
            complete = len(samples) >= self._segmenter.pause_cut_samples
            early = self._segmenter.pause_ms >= self._start_after_ms and self._idle()
            if not (complete or early):
                return []
            preview = SpeechSegment(segment_id=-1, start_s=key[0], end_s=key[0], samples=samples)
            task = asyncio.create_task(self._prepare(preview), name="speculative-final")
            self._current = _Speculation(key, self._segmenter.pause_cut_samples, task)
            self._metrics.speculations += 1
            if self._wait:
                await asyncio.wait({task})
        prepared = self._current.ready()
        if (
            self._sentence_end_ms
            and prepared is not None
            and self._segmenter.pause_ms >= self._sentence_end_ms
            and prepared.ends_sentence()
        ):
            segments = self._segmenter.end_at_pause()
            self._metrics.early_turn_ends += len(segments)
            return segments
        return []

    def segment_cut(self, segment: SpeechSegment) -> None:
        """The VAD cut `segment`: keep the preparation if it was made for a cut at this pause."""
        current, self._current = self._current, None
        if current is None:
            return
        if current.key[0] == segment.start_s and current.cut_samples == len(segment.samples):
            self._claimed[segment.segment_id] = current
        else:
            self._drop(current)

    def segment_dropped(self, segment: SpeechSegment) -> None:
        speculation = self._claimed.pop(segment.segment_id, None)
        if speculation is not None:
            self._drop(speculation)

    async def claim(self, segment: SpeechSegment) -> Prepared | None:
        """The finished preparation of this segment, or None (none made, or it failed: work it again)."""
        speculation = self._claimed.pop(segment.segment_id, None)
        if speculation is None:
            return None
        await asyncio.wait({speculation.task})
        prepared = speculation.ready()
        if prepared is None:
            logger.warning("speculative final of %.2f s failed: transcribed again", segment.start_s)
        else:
            self._metrics.speculations_used += 1
        return prepared

    async def close(self) -> None:
        pending = [s for s in (self._current, *self._claimed.values()) if s is not None]
        self._current = None
        self._claimed.clear()
        for speculation in pending:
            self._drop(speculation)
        await asyncio.gather(*(s.task for s in pending), return_exceptions=True)

    def _drop(self, speculation: _Speculation) -> None:
        self._metrics.speculations_discarded += 1
        if speculation.task.done():
            prepared = speculation.ready()
            if prepared is not None:
                prepared.discard()
        else:
            speculation.task.cancel()  # a Whisper call already running finishes; the rest never starts
