"""The in-process Python API: `LiveRecognizer`, the models loaded once, typed events out.

    async with LiveRecognizer.from_config() as rec:
        async for event in rec.stream("talk.mp4"):
            if isinstance(event, FinalResult):
                print(event.text, event.emotion)

A stream runs in `realtime.runtime.runtime.Runtime` like one of `run_live.py`'s, MQTT included (an embedded
loopback broker unless `mqtt.url` is set): the API is one more consumer of the stream's events
(`realtime.outputs.events.EventFanout`), so it gets exactly what MQTT gets.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import numpy as np

from realtime.frames import AudioChunk, SpeechSegment, VideoFrame
from realtime.outputs.events import Channel, Event, EventFanout, FinalResult, Segmenter, UtteranceStarted
from realtime.runtime.config import LiveConfig, load_live_config
from realtime.runtime.models import Models
from realtime.runtime.runtime import Runtime, StreamReport
from realtime.sources.push import Cut, PushMetrics, PushOptions, PushSource

logger = logging.getLogger(__name__)

MAX_WAITING_EVENTS = 1000
"""Events of one stream waiting for its reader. Full: the OLDEST is dropped, counted in
`EventQueue.dropped` and logged (a reader that stopped reading must not grow memory)."""

_END = object()


class EventQueue:
    """One stream's events on their way to its reader (a `realtime.runtime.runtime.Runtime` stream tap)."""

    def __init__(self, stream_id: str, max_events: int = MAX_WAITING_EVENTS) -> None:
        self.stream_id = stream_id
        self.dropped = 0
        self._max = max_events
        self._queue: asyncio.Queue[Event | object] = asyncio.Queue()

    def tee(self, channel: Channel) -> Channel:
        return EventFanout(channel, self.put)

    def watch(self, segmenter: Segmenter) -> Segmenter:
        return _WatchedSegmenter(segmenter, self)

    def put(self, event: Event) -> None:
        if self._queue.qsize() >= self._max:
            self._queue.get_nowait()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning("stream %s: events not read, %d dropped so far", self.stream_id, self.dropped)
        self._queue.put_nowait(event)

    def finish(self) -> None:
        self._queue.put_nowait(_END)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while (event := await self._queue.get()) is not _END:
            yield event  # type: ignore[misc]


class _WatchedSegmenter:
    """The VAD, seen from the API: says when an utterance starts and cuts one on a `Cut`."""

    def __init__(self, segmenter: Segmenter, events: EventQueue) -> None:
        self._segmenter = segmenter
        self._events = events
        self._open_s: float | None = None

    def push(self, chunk: AudioChunk) -> list[SpeechSegment]:
        segments = self._segmenter.flush() if isinstance(chunk, Cut) else self._segmenter.push(chunk)
        start_s = getattr(self._segmenter, "speaking_since_s", None)
        if start_s is not None and start_s != self._open_s:
            self._events.put(UtteranceStarted(self._events.stream_id, start_s))
        self._open_s = start_s
        return segments

    def add_frame(self, frame: VideoFrame) -> None:
        self._segmenter.add_frame(frame)

    def flush(self) -> list[SpeechSegment]:
        self._open_s = None
        return self._segmenter.flush()

    def __getattr__(self, name: str) -> Any:
        # The interim hooks (`speaking_since_s`, `pausing`, `open_samples`) are the VAD's own.
        return getattr(self._segmenter, name)


class LiveRecognizer:
    """Models loaded once; any number of streams, each an async iterator of events.

    `stream(source)` serves a file, `demo`, `mic`, `webcam` or a URL (the specs of `run_live.py
    --source`). `push_audio` / `push_frame` feed media the caller already has to the push stream, whose
    events `events()` yields; `flush()` cuts its utterance in progress, `end()` ends it.
    """

    def __init__(
        self, config: LiveConfig, *, models: Models | None = None, push: PushOptions | None = None
    ) -> None:
        """`models` reuses models already loaded (`realtime.runtime.runtime.load_models`)."""
        self.config = config
        self.push_options = push or PushOptions()
        self._runtime = Runtime(config, models=models, handle_signals=False, node_id=config.mqtt.node_id)
        self._started = False
        self._ids: set[str] = set()
        self._push: PushStream | None = None
        self._pushes: list[PushStream] = []

    @classmethod
    def from_config(
        cls, config: LiveConfig | str | Path | None = None, checkpoint: str | Path | None = None
    ) -> LiveRecognizer:
        """`config`: a `LiveConfig`, a YAML file (`configs/live.yaml`) or None for the defaults;
        `checkpoint`: a recognizer checkpoint directory (default: the config's, else the shipped one)."""
        if not isinstance(config, LiveConfig):
            config = load_live_config(config)
        if checkpoint is not None:
            config.checkpoint_dir = str(checkpoint)
        return cls(config)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Check the checkpoint and enrolled voices, start MQTT, then load the models."""
        from engines.stream import checkpoint_path
        from realtime.speakers.attributor import check_enrolment

        checkpoint_path(self.config.checkpoint_dir)
        check_enrolment(self.config.speakers.enrol)
        await self._runtime.start()
        self._started = True

    async def close(self) -> None:
        """Abort the streams still running, deliver MQTT's outbox, stop."""
        for push in self._pushes:
            push.end()
        await self._runtime.close()

    @property
    def broker_url(self) -> str:
        """The MQTT broker the results are also published on."""
        return self._runtime.broker_url

    async def stream(
        self, source: str, *, stream_id: str | None = None, realtime: bool | None = None
    ) -> AsyncIterator[Event]:
        """The events of one source until it ends. `realtime`: False reads a file as fast as it can be
        processed (`--no-realtime`), None keeps the config's. A failed source raises its error once
        what was heard has come out. Leaving the loop early aborts the stream."""
        from realtime.runtime.stream_specs import default_stream_id

        config = self.config
        if realtime is not None:
            config = copy.deepcopy(config)
            config.capture.realtime = realtime
        events, task = await self._add(source, stream_id or default_stream_id(source), config)
        try:
            async for event in events:
                yield event
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        report = task.result()
        if report.error is not None:
            raise report.error

    # Push streams: media the caller already has.

    def open_push(self, stream_id: str | None = None) -> PushStream:
        """A new push stream (one per call or robot); `push_audio` and friends use a first one."""
        if not self._started:
            raise RuntimeError("LiveRecognizer is not started: use `async with` or `await start()`")
        return PushStream(self, stream_id or self.config.stream_id or "push")

    def push_audio(
        self, pcm: np.ndarray | bytes, sample_rate_hz: int, t: float | None = None, channels: int = 1
    ) -> None:
        """See `PushStream.push_audio`."""
        self._default_push().push_audio(pcm, sample_rate_hz, t, channels)

    async def put_audio(
        self, pcm: np.ndarray | bytes, sample_rate_hz: int, t: float | None = None, channels: int = 1
    ) -> None:
        """See `PushStream.put_audio`."""
        await self._default_push().put_audio(pcm, sample_rate_hz, t, channels)

    def push_frame(self, image: np.ndarray, t: float) -> None:
        """See `PushStream.push_frame`."""
        self._default_push().push_frame(image, t)

    def flush(self) -> None:
        """See `PushStream.flush`."""
        self._default_push().flush()

    def end(self) -> None:
        """See `PushStream.end`."""
        self._default_push().end()

    @property
    def push_metrics(self) -> PushMetrics:
        return self._default_push().metrics

    def events(self) -> AsyncIterator[Event]:
        """See `PushStream.events`."""
        return self._default_push().events()

    def _default_push(self) -> PushStream:
        if self._push is None:
            self._push = self.open_push()
        return self._push

    async def _add(
        self, source: str | PushSource, stream_id: str, config: LiveConfig
    ) -> tuple[EventQueue, asyncio.Task[StreamReport]]:
        if not self._started:
            raise RuntimeError("LiveRecognizer is not started: use `async with` or `await start()`")
        unique, n = stream_id, 1
        while unique in self._ids:
            n += 1
            unique = f"{stream_id}-{n}"
        self._ids.add(unique)
        events = EventQueue(unique)
        task = await self._runtime.add_stream(source, unique, config, tap=events)
        task.add_done_callback(lambda _: events.finish())
        return events, task

    @classmethod
    def run_file(
        cls,
        path: str | Path,
        config: LiveConfig | str | Path | None = None,
        checkpoint: str | Path | None = None,
        realtime: bool = False,
    ) -> list[FinalResult]:
        """Blocking, for scripts: the final results of a media file (or any `stream` source)."""

        async def collect() -> list[FinalResult]:
            async with cls.from_config(config, checkpoint) as rec:
                return [
                    e async for e in rec.stream(str(path), realtime=realtime) if isinstance(e, FinalResult)
                ]

        return asyncio.run(collect())


class PushStream:
    """A stream of media the caller pushes (`LiveRecognizer.open_push`), and its events."""

    def __init__(self, recognizer: LiveRecognizer, stream_id: str) -> None:
        self.source = PushSource(stream_id, recognizer.config.capture, recognizer.push_options)
        recognizer._pushes.append(self)
        self._opened = asyncio.ensure_future(recognizer._add(self.source, stream_id, recognizer.config))

    @property
    def metrics(self) -> PushMetrics:
        return self.source.metrics

    @property
    def now_s(self) -> float:
        """Stream time at the end of the audio pushed so far."""
        return self.source.now_s

    def push_audio(
        self, pcm: np.ndarray | bytes, sample_rate_hz: int, t: float | None = None, channels: int = 1
    ) -> None:
        """int16 or float samples (or int16 bytes), mono or (samples, channels), at any rate; `t` the
        stream time of the first one (None: right after the last push). Never blocks: a full queue
        drops the oldest pushed audio, counted in `metrics` and logged (`put_audio` waits instead)."""
        self.source.push_audio(pcm, sample_rate_hz, t, channels)

    async def put_audio(
        self, pcm: np.ndarray | bytes, sample_rate_hz: int, t: float | None = None, channels: int = 1
    ) -> None:
        """As `push_audio`, waiting for room instead of dropping."""
        await self.source.put_audio(pcm, sample_rate_hz, t, channels)

    def push_frame(self, image: np.ndarray, t: float) -> None:
        """An RGB uint8 (H, W, 3) frame shown at stream time `t` (the audio's clock)."""
        self.source.push_frame(image, t)

    async def put_frame(self, image: np.ndarray, t: float) -> None:
        """As `push_frame`, waiting for room instead of dropping."""
        await self.source.put_frame(image, t)

    def flush(self) -> None:
        """The utterance in progress ends now (a turn ended); the stream goes on."""
        self.source.cut()

    def end(self) -> None:
        """The stream ends: its utterance in progress is flushed, what was pushed is processed, then
        `events()` ends."""
        self.source.end()

    async def events(self) -> AsyncIterator[Event]:
        """This stream's events until `end()`."""
        events, _ = await self._opened
        async for event in events:
            yield event
