"""Many streams in one process: one runtime owns the models (models.py), the MQTT side and the signals.

Shared by every stream: one Whisper behind a `BatchingTranscriber` (utterances of different streams
that are ready together share one call), one recognizer (each stream has its own `RecognizerSession`,
so its own causal context) on one executor thread, one MQTT connection, and the embedded broker when
no URL is given. Each stream keeps its own source, VAD, queues, utterance ids and metrics.

A stream that fails (its source stops for good, a decode error) ends alone: it is logged, its status
goes `offline` and the others go on. SIGINT/SIGTERM stop every stream gracefully (what was heard is
still published); a second signal aborts them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Self, TextIO

from engines import interrupts
from engines.errors import MediaError
from realtime.frames import SpeechSegment, Transcript
from realtime.metrics import PipelineMetrics
from realtime.outputs.events import StreamTap
from realtime.outputs.mqtt.address import BrokerAddress, MqttSettingError, parse_mqtt_url
from realtime.outputs.mqtt.broker import EmbeddedBroker
from realtime.outputs.mqtt.publisher import DeliveryStats, MqttPublisher, PublisherMetrics, StreamChannel
from realtime.outputs.mqtt.stats import StreamStats
from realtime.outputs.preview import Preview
from realtime.outputs.sinks import ConsoleSink, JsonlSink, LineWriter
from realtime.outputs.speaker_state import SpeakerStateSink
from realtime.runtime.config import LiveConfig
from realtime.runtime.models import Models, load_models, utterance_input
from realtime.session.pipeline import FinalWork, Pipeline, ResultSink, Segmenter
from realtime.sources.feed import DeviceError, Source
from realtime.sources.open import open_source
from realtime.speakers.attributor import SpeakerAttributor
from realtime.speakers.voice_batch import VoiceBatch, timed_voices
from realtime.speech.vad import VadOptions, VadSegmenter
from realtime.speech.whisper_batching import BatchingMetrics, BatchingTranscriber

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StreamReport:
    stream_id: str
    broker_url: str
    pipeline: PipelineMetrics
    publisher: PublisherMetrics
    error: Exception | None = None
    """Why the stream ended early (its source failed), or None."""
    delivery: DeliveryStats = field(default_factory=DeliveryStats)
    """Results produced and acknowledged by the broker; final once the runtime is closed."""


@dataclass(slots=True)
class StreamProgress:
    next_utterance_id: int
    published_until_s: float
    """Stream time where the last published utterance ended."""
    heard_s: float
    """Stream time of the last audio read."""
    report: StreamReport | None
    """Set once the stream has ended."""


@dataclass(slots=True)
class _Stream:
    stream_id: str
    source: Source
    channel: StreamChannel
    pipeline: Pipeline
    stats: StreamStats
    task: asyncio.Task[StreamReport] | None = None
    report: StreamReport | None = field(default=None)


class Runtime:
    """`async with Runtime(config) as rt: await rt.add_stream(...); reports = await rt.wait()`."""

    def __init__(
        self,
        config: LiveConfig,
        *,
        console: TextIO | None = None,
        jsonl: TextIO | None = None,
        label_console: bool = False,
        node_id: str | None = None,
        models: Models | None = None,
        make_segmenter: Callable[[VadOptions], Segmenter] = VadSegmenter,
        make_input: Callable[[SpeechSegment, Transcript], Any] = utterance_input,
        handle_signals: bool = True,
        host: str | None = None,
    ) -> None:
        """`label_console` starts console lines with the stream id (several streams). `node_id` names
        the process-level `<prefix>/<node>/available` that carries the last will (see `MqttPublisher`).
        `models`, `make_segmenter` and `make_input` replace the real stages (a test harness). `host`
        names this process in every result (a cluster host, `realtime.cluster`)."""
        self.host = host
        self.config = config
        self.models = models
        self.broker_url = ""
        self.batching_metrics = BatchingMetrics()
        self._console = LineWriter(console) if console is not None else None
        self._jsonl_writer = LineWriter(jsonl) if jsonl is not None else None
        self._jsonl = JsonlSink(self._jsonl_writer) if self._jsonl_writer is not None else None
        self._label_console = label_console
        self._node_id = node_id
        self._handle_signals = handle_signals
        self._make_segmenter = make_segmenter
        self._make_input = make_input
        self._broker: EmbeddedBroker | None = None
        self._publisher: MqttPublisher | None = None
        self._batcher: BatchingTranscriber | None = None
        self._voices: VoiceBatch | None = None
        """Voice embeddings of the streams' utterances, batched when several ask at once."""
        self._emotion_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emotion")
        self._final_work = FinalWork()
        """Shared by the streams: one stream's interim results never delay another's final results."""
        self._streams: dict[str, _Stream] = {}
        self._stopped = asyncio.Event()
        self._signals = 0
        self._saved_signals: dict[int, interrupts.Handler] = {}
        self._delivery: asyncio.Future[None] | None = None
        """The final delivery of the outbox while closing; `abort()` (a second signal) cancels it."""
        self._active = 0
        self._stats_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def stopped(self) -> bool:
        """A signal (or `stop()`) arrived: no new streams, the running ones are finishing."""
        return self._stopped.is_set()

    async def start(self) -> None:
        """Broker, MQTT connection, then the models. `BrokerUnreachableError` if the broker is away.

        The signals are taken over last: until the models are loaded there is nothing to finish, and a
        signal interrupts the start-up (`engines.interrupts`)."""
        address = await self._start_broker()
        self.broker_url = address.url
        self._publisher = MqttPublisher(address, self.config.mqtt, node_id=self._node_id)
        await self._publisher.start()
        if self.models is None:
            self.models = await load_models(self.config)
        self._batcher = BatchingTranscriber(self.models.transcriber, self.config.batching, self._speaking)
        self.batching_metrics = self._batcher.metrics
        if self.models.voices is not None:
            self._voices = VoiceBatch(timed_voices(self.models.voices.embed_many), self._emotion_pool)
        if self.config.mqtt.stats_interval_s > 0:
            self._stats_task = asyncio.create_task(self._publish_stats(), name="stats")
        if self._handle_signals:
            self._saved_signals = interrupts.lend_to_loop(asyncio.get_running_loop(), self._on_signal)

    def _speaking(self) -> int:
        """Streams in the middle of an utterance (read from Whisper's batching thread)."""
        return sum(s.pipeline.speaking for s in list(self._streams.values()) if s.report is None)

    async def add_stream(
        self,
        source: str | Source,
        stream_id: str,
        config: LiveConfig | None = None,
        preview: Preview | None = None,
        tap: StreamTap | None = None,
        first_utterance_id: int = 1,
    ) -> asyncio.Task[StreamReport]:
        """Start serving a source (a spec for `open_source`, or an opened source); `config` overrides
        the runtime's capture, VAD and pipeline options for this stream; `preview` draws its frames;
        `tap` receives the stream's events beside MQTT (`realtime.api`); `first_utterance_id` continues
        a stream moved from another host. Returns the stream's task.

        Raises `MqttSettingError` for a stream id that is taken or not a valid topic level, and
        `MediaError` / `DeviceError` for a spec that cannot be opened.
        """
        if self._publisher is None or self._batcher is None or self.models is None:
            raise RuntimeError("the runtime is not started (or was stopped while starting)")
        if stream_id in self._streams and self._streams[stream_id].report is None:
            raise MqttSettingError(f"bad MQTT stream id {stream_id!r}: two streams have it")
        config = config or self.config
        if isinstance(source, str):
            source = await asyncio.to_thread(open_source, source, config.capture)
        channel = self._publisher.open_stream(stream_id)
        out = channel if tap is None else tap.tee(channel)
        sinks: list[ResultSink] = [out]
        if self._console is not None:
            sinks.append(ConsoleSink(self._console, prefix=f"{stream_id} " if self._label_console else ""))
        if self._jsonl is not None:
            sinks.append(self._jsonl)
        attributor = None
        if self.models.voices is not None and config.speakers.enabled:
            attributor = SpeakerAttributor(self.models.voices, config.speakers, self.models.enrolled)
            present = lambda a=attributor: a.names
            sinks.append(SpeakerStateSink(out, stream_id, config.speakers.ema_factor, present=present))
        opened = source
        # the source itself, not the preview's wrapper, reports `source_lost` (a network source)
        if preview is not None:
            sinks.append(preview)
            source = preview.tap(source)
        segmenter = await asyncio.to_thread(self._make_segmenter, config.vad)
        if tap is not None:
            segmenter = tap.watch(segmenter)
        pipeline = Pipeline(
            stream_id=stream_id,
            model_id=self.models.recognizer.model_id,
            source=source,
            segmenter=segmenter,
            transcriber=self._batcher,
            session=self.models.recognizer.new_session(config.pipeline.max_context_utterances),
            make_input=self._make_input,
            sinks=sinks,
            options=config.pipeline,
            attributor=attributor,
            interim_sink=out,
            emotion_executor=self._emotion_pool,
            final_work=self._final_work,
            voices=self._voices,
            host=self.host,
            first_utterance_id=first_utterance_id,
            realtime=config.capture.realtime,
        )
        assert self._publisher is not None
        stats = StreamStats(stream_id, pipeline.metrics, channel.delivery, self._publisher.metrics)
        stream = _Stream(stream_id, source, channel, pipeline, stats)
        if hasattr(opened, "on_status"):
            # Network sources report `source_lost` while they reconnect (realtime.sources.network).
            opened.on_status = channel.set_status
        self._streams[stream_id] = stream
        self._active += 1
        self._batcher.set_streams(self._active)
        stream.task = asyncio.create_task(self._serve(stream), name=f"stream-{stream_id}")
        if self.stopped:
            pipeline.stop()
        return stream.task

    def progress(self) -> dict[str, StreamProgress]:
        """Where each stream is, for a cluster host to report (`realtime.cluster`)."""
        return {
            s.stream_id: StreamProgress(
                s.pipeline.next_utterance_id,
                s.pipeline.published_until_s,
                s.pipeline.metrics.stream_end_s,
                s.report,
            )
            for s in self._streams.values()
        }

    def stop_stream(self, stream_id: str, handing_over: bool = False) -> None:
        """Stop capturing on one stream; what it already heard is still published. `handing_over`:
        another process serves it next, so its status is not set `offline`."""
        stream = self._streams[stream_id]
        stream.channel.handing_over = handing_over
        stream.pipeline.stop()

    async def hand_over(self, stream_id: str, within_s: float) -> None:
        """Stop a stream another process will serve next, in a pause when one comes within `within_s`
        (no utterance is cut in two), then without `offline`."""
        pipeline = self._streams[stream_id].pipeline
        deadline = asyncio.get_running_loop().time() + within_s
        while pipeline.speaking and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        self.stop_stream(stream_id, handing_over=True)

    async def wait(self) -> list[StreamReport]:
        """Until every stream has ended; one report per stream, in the order they were added."""
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        return [s.report for s in self._streams.values() if s.report is not None]

    def stop(self) -> None:
        """Stop capturing on every stream; finish and publish what was already heard."""
        self._stopped.set()
        for stream in self._streams.values():
            stream.pipeline.stop()

    def abort(self) -> None:
        """Drop what is in flight; while closing, stop waiting for the broker to take the outbox."""
        for stream in self._streams.values():
            if stream.task is not None and not stream.task.done():
                stream.pipeline.abort()
        if self._delivery is not None:
            self._delivery.cancel()

    async def close(self) -> None:
        """Abort what still runs, then deliver the MQTT outbox (every stream `offline`) and stop.

        The signals stay with the runtime until the end: the delivery is bounded by
        `mqtt.shutdown_drain_timeout_s` and a second signal gives it up (`abort`), where an interrupt
        in the middle would skip the broker's stop."""
        if self._stats_task is not None:
            self._stats_task.cancel()
        running = [s.task for s in self._streams.values() if s.task is not None and not s.task.done()]
        if running:
            self.abort()
            await asyncio.gather(*running, return_exceptions=True)
        if self._batcher is not None:
            await asyncio.to_thread(self._batcher.close)
            m = self.batching_metrics
            logger.info(
                "Whisper: %d utterances in %d calls (largest %d), queue wait p95 %.0f ms, %d full waits",
                m.utterances,
                m.batches,
                m.batch_size_peak,
                m.queue_wait.percentile(95),
                m.full_waits,
            )
        self._emotion_pool.shutdown(wait=False, cancel_futures=True)
        if self._publisher is not None:
            self._delivery = asyncio.ensure_future(self._publisher.close())
            await asyncio.wait({self._delivery})
            if self._delivery.cancelled():
                logger.warning(
                    "stopped waiting for the MQTT broker: %d message(s) not delivered",
                    len(self._publisher.outbox),
                )
            else:
                self._delivery.result()
            for stream in self._streams.values():
                self._log_summary(stream)
        if self._broker is not None:
            await self._broker.stop()
        for writer in (self._console, self._jsonl_writer):
            if writer is not None:
                await asyncio.to_thread(writer.close)
        if self._saved_signals:  # held to the end, see above
            interrupts.take_back(self._saved_signals)
            self._saved_signals = {}

    async def _serve(self, stream: _Stream) -> StreamReport:
        error: Exception | None = None
        try:
            metrics = await stream.pipeline.run()
        except Exception as exc:  # one stream's failure must not end the others
            error, metrics = exc, stream.pipeline.metrics
            if isinstance(exc, MediaError | DeviceError):
                logger.error("stream %s ended: %s", stream.stream_id, exc)
            else:
                logger.exception("stream %s failed", stream.stream_id)
        finally:
            close = getattr(stream.source, "close", None)
            if close is not None:  # release a device as soon as its own stream ends
                close()
            stream.channel.close()
            self._active -= 1
            if self._batcher is not None:
                self._batcher.set_streams(self._active)
        assert self._publisher is not None
        stream.report = StreamReport(
            stream.stream_id,
            self.broker_url,
            metrics,
            self._publisher.metrics,
            error,
            stream.channel.delivery,
        )
        return stream.report

    def _log_summary(self, stream: _Stream) -> None:
        delivery, metrics = stream.channel.delivery, stream.pipeline.metrics
        logger.info(
            "stream %s: %d results produced, %d acknowledged by the broker, %d empty transcripts, "
            "%d segments dropped; segment_to_ack p50 %.0f / p95 %.0f ms",
            stream.stream_id,
            delivery.produced,
            delivery.acknowledged,
            metrics.empty_transcripts,
            metrics.segments_dropped,
            delivery.segment_to_ack.percentile(50),
            delivery.segment_to_ack.percentile(95),
        )

    async def _publish_stats(self) -> None:
        """`<prefix>/<stream>/stats` for every running stream, every `stats_interval_s`."""
        assert self._publisher is not None
        while True:
            await asyncio.sleep(self.config.mqtt.stats_interval_s)
            for stream in self._streams.values():
                if stream.task is not None and not stream.task.done():
                    depths = stream.pipeline.queue_depths()
                    stream.channel.publish_stats(stream.stats.message(depths, len(self._publisher.outbox)))

    async def _start_broker(self) -> BrokerAddress:
        if self.config.mqtt.url:
            return parse_mqtt_url(self.config.mqtt.url)
        self._broker = EmbeddedBroker()
        return parse_mqtt_url(await self._broker.start())

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info("signal: stopping every stream, finishing in-flight utterances")
            self.stop()
        else:
            self.abort()
