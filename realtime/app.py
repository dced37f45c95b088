"""Assembles one live stream from a `LiveConfig` with the real stages, and runs it to the end.

Start-up order puts cheap checks first (source, broker) so a user error is reported before the
models load. Shutdown always closes the MQTT side cleanly: queued results, then `offline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TextIO, TypeVar

from engines.stream import checkpoint_path
from realtime.broker import EmbeddedBroker
from realtime.capture import open_source
from realtime.config import LiveConfig
from realtime.frames import SpeechSegment, Transcript
from realtime.metrics import PipelineMetrics
from realtime.pipeline import Pipeline
from realtime.preview import Preview
from realtime.publish import MqttPublisher, PublisherMetrics, parse_mqtt_url
from realtime.sinks import ConsoleSink, JsonlSink
from realtime.speaker_state import SpeakerStateSink
from realtime.speakers import build_attributor, check_enrolment
from realtime.transcribe import Transcriber
from realtime.vad import VadSegmenter

logger = logging.getLogger(__name__)

T = TypeVar("T")

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(slots=True)
class StreamReport:
    stream_id: str
    broker_url: str
    pipeline: PipelineMetrics
    publisher: PublisherMetrics


def default_stream_id(source: str) -> str:
    """`demo`, `mic`, `webcam0`, `live`, or a media file's stem, made safe for an MQTT topic level."""
    name = Path(source).stem if Path(source).suffix else source
    return _TOPIC_UNSAFE.sub("-", name.replace(":", "")).strip("-") or "stream"


async def run_stream(
    config: LiveConfig,
    source: str,
    *,
    console: TextIO | None,
    jsonl: TextIO | None = None,
    on_broker: Callable[[str, str], None] | None = None,
    preview: Preview | None = None,
) -> StreamReport:
    """Run one stream until its source ends or SIGINT/SIGTERM; return what it did.

    `on_broker(url, stream_id)` is called once the broker is reachable and the models are loaded,
    before the first chunk is read. `preview` sees every frame and result (the caller closes it).
    """
    stream_id = config.stream_id or default_stream_id(source)
    address = parse_mqtt_url(config.mqtt.url) if config.mqtt.url else None
    checkpoint_path(config.checkpoint_dir)
    check_enrolment(config.speakers.enrol)
    with _native_stderr_silenced(enabled=_is_device(source) and not logger.isEnabledFor(logging.DEBUG)):
        media = open_source(source, config.capture)
    broker: EmbeddedBroker | None = None
    publisher: MqttPublisher | None = None
    metrics = PipelineMetrics()
    try:
        if address is None:
            broker = EmbeddedBroker()
            address = parse_mqtt_url(await broker.start())
        publisher = MqttPublisher(address, config.mqtt)
        channel = publisher.open_stream(stream_id)
        with _Signals() as signals:
            await publisher.start()
            loaded = await signals.unless_stopped(_load_models(config))
            if loaded is None:
                logger.info("stream %s: stopped before the models were loaded", stream_id)
                return StreamReport(stream_id, address.url, metrics, publisher.metrics)
            transcriber, recognizer = loaded
            if on_broker is not None:
                on_broker(address.url, stream_id)
            sinks = [channel]
            attributor = None
            if config.speakers.enabled:
                loop = asyncio.get_running_loop()
                attributor = await loop.run_in_executor(None, build_attributor, config.speakers)
            if attributor is not None:
                state = SpeakerStateSink(
                    channel, stream_id, config.speakers.ema_factor, present=lambda: attributor.names
                )
                sinks.append(state)
            if console is not None:
                sinks.append(ConsoleSink(console))
            if jsonl is not None:
                sinks.append(JsonlSink(jsonl))
            if preview is not None:
                sinks.append(preview)
            pipeline = Pipeline(
                stream_id=stream_id,
                model_id=recognizer.model_id,
                source=preview.tap(media) if preview is not None else media,
                segmenter=VadSegmenter(config.vad),
                transcriber=transcriber,
                session=recognizer.new_session(config.pipeline.max_context_utterances),
                make_input=utterance_input,
                sinks=sinks,
                options=config.pipeline,
                attributor=attributor,
                interim_sink=channel,
            )
            signals.pipeline = pipeline
            metrics = await pipeline.run()
        logger.info(
            "stream %s: %d utterances published, %d empty transcripts, %d segments dropped",
            stream_id,
            metrics.results,
            metrics.empty_transcripts,
            metrics.segments_dropped,
        )
    finally:
        media.close()
        if publisher is not None:
            await publisher.close()
        if broker is not None:
            await broker.stop()
    return StreamReport(stream_id, address.url, metrics, publisher.metrics)


def _is_device(source: str) -> bool:
    return source in ("mic", "live", "webcam") or source.startswith("webcam:")


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool) -> Iterator[None]:
    """Mute file descriptor 2 while devices are probed.

    ALSA, JACK and OpenCV's backends print their probing noise from C straight to fd 2, which would
    bury the one-line error a missing device gets. Python-level errors are unaffected (raised, not
    printed). Run with -vv to see the noise.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def utterance_input(segment: SpeechSegment, transcript: Transcript):
    """The recognizer's input for one utterance: transcript, its audio and the frames shown meanwhile."""
    from engines.stream import UtteranceInput

    return UtteranceInput(
        text=transcript.text.strip(),
        speaker=None,
        audio=segment.samples,
        frames=[frame.rgb for frame in segment.frames] or None,
    )


async def _load_models(config: LiveConfig):
    """Whisper and the recognizer, loaded side by side in worker threads."""
    import torch

    from engines.stream import load_recognizer

    torch.set_num_threads(1)
    loop = asyncio.get_running_loop()
    transcriber = loop.run_in_executor(None, Transcriber, config.asr)
    engine = config.engine
    recognizer = loop.run_in_executor(
        None, load_recognizer, config.checkpoint_dir, engine.backend, engine.precision, engine.artifacts_dir
    )
    return tuple(await asyncio.gather(transcriber, recognizer))


class _Signals:
    """SIGINT/SIGTERM: the first stops gracefully (or skips start-up), the second aborts the pipeline."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self._stopped = asyncio.Event()
        self._count = 0

    def _handle(self) -> None:
        self._count += 1
        self._stopped.set()
        if self.pipeline is not None:
            if self._count == 1:
                self.pipeline.stop()
            else:
                self.pipeline.abort()

    async def unless_stopped(self, work: Awaitable[T]) -> T | None:
        """Await `work`, or return None as soon as a signal arrives."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.create_task(self._stopped.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if task.done():
            return task.result()
        task.cancel()
        return None

    def __enter__(self) -> Self:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
