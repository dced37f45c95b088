"""The live loop of one stream: capture -> VAD -> [queue] -> ASR -> [queue] -> emotion -> sinks.

Stages are injected (anything with the methods of the Protocols below), so the same wiring runs the
real stages from `run_live.py` and a frames-in/events-out harness in tests. Blocking work (Whisper,
the recognizer) runs on dedicated single-thread executors, never on the event loop; the VAD is cheap
(well under a millisecond per 32 ms chunk) and runs inline, its cost counted per chunk.

With an attributor, the recognizer's thread says who spoke (`realtime/speakers/attributor.py`): the label goes
into the model's text input and the name into the message. The voice embedding needs only the audio,
so it is computed on the recognizer's thread while Whisper transcribes (the two threads overlap
instead of taking turns); once the text is back only the clustering is left. With an interim sink, provisional
results of the utterance being spoken are published around the final ones (`realtime/session/interim.py`).

Control: when the source ends (or `stop()` is called: SIGINT/SIGTERM), capture stops, the VAD is
flushed so the utterance being spoken is cut, and every queued utterance is processed and handed
to the sinks before `run()` returns. `abort()` (a second signal) cancels at once instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from realtime.frames import AudioChunk, SpeechSegment, Transcript, VideoFrame
from realtime.messages import EmotionResult, StageTimings
from realtime.metrics import PipelineMetrics
from realtime.session.interim import InterimResults, InterimSink
from realtime.session.turn_end import Prepared, TurnEnd
from realtime.session.voice_watch import VoiceWatch
from realtime.sources.feed import Source
from realtime.speakers.voice_batch import VoiceBatch
from realtime.speakers.voice_change import may_split, split_segment

logger = logging.getLogger(__name__)


class Segmenter(Protocol):
    def push(self, chunk: AudioChunk) -> list[SpeechSegment]: ...
    def add_frame(self, frame: VideoFrame) -> None: ...
    def flush(self) -> list[SpeechSegment]: ...


class SpeechRecognizer(Protocol):
    def transcribe(self, samples: Any) -> Transcript: ...


class EmotionSession(Protocol):
    """`engines.stream.RecognizerSession`: `add(UtteranceInput) -> EmotionPrediction`."""

    def add(self, utterance: Any) -> Any: ...


class ResultSink(Protocol):
    def emit(self, result: EmotionResult) -> None: ...


class SpeakerAttribution(Protocol):
    """`realtime.speakers.attributor.SpeakerAttributor`: `embed(samples) -> Voice` (audio only, learns nothing),
    `assign(voice, key) -> SpeakerTurn` (label, name, costs, earlier utterances' revised speakers by
    their `key`, the utterance id); `identify(samples) -> SpeakerTurn | None`
    looks up a known voice without learning from it. Optional `changes(samples) -> list[int]`: where
    the voice changes inside a segment; the segment is split there before Whisper."""

    def embed(self, samples: Any) -> Any: ...
    def assign(self, voice: Any, key: int) -> Any: ...
    def identify(self, samples: Any) -> Any: ...


@dataclass(slots=True)
class PipelineOptions:
    """Context size and queue bounds of one stream."""

    max_context_utterances: int = 12
    """Previous utterances of this stream the recognizer attends to (its causal window)."""
    segment_queue_size: int = 8
    """Utterances cut by the VAD awaiting Whisper. Full policy: see `Pipeline._enqueue_segment`."""
    utterance_queue_size: int = 8
    """Transcribed utterances awaiting the recognizer. Full: Whisper waits (backpressure); the
    recognizer is several times faster than Whisper, so this only fills if the recognizer stalls."""
    interim: bool = True
    """Publish provisional results of an utterance still being spoken (realtime input only)."""
    interim_after_s: float = 2.0
    """An utterance gets interim results once it has lasted this long."""
    interim_every_s: float = 1.0
    """Stream time between two interim attempts of one utterance."""
    speculate: bool = True
    """Transcribe a pause's utterance before the VAD confirms the pause ends it (`realtime/session/turn_end.py`):
    the result comes ~one Whisper call sooner; a pause that turns out mid-utterance costs a wasted call."""
    speculate_after_ms: int = 200
    """While Whisper is idle that work starts this far into a pause; below `vad.speech_pad_ms` (200) it
    starts before the trailing pad is heard, which `sentence_end_ms` below ~400 needs to end turns that
    soon (the voice is embedded again once the pad is heard)."""
    sentence_end_ms: int = 400
    """A pause this long ends the utterance when its transcript already ends a sentence (. ? !); longer
    pauses wait for `vad.min_silence_ms`. 0: always wait. Needs `speculate`."""
    watch_voice: bool = True
    """Search the utterance being spoken for another voice taking over (with speaker attribution), and
    cut it there at once (`realtime/session/voice_watch.py`) instead of when the whole segment ends."""


@dataclass(slots=True)
class _Transcribed:
    segment: SpeechSegment
    transcript: Transcript
    voice: asyncio.Future[Any] | None = None
    """The speaker embedding, started on the recognizer's thread when Whisper took the segment."""


class FinalWork:
    """Final-result work in the executors (Whisper or the recognizer), counted over the streams that
    share them; interim results start only while it is zero. Touched on the event loop only."""

    def __init__(self) -> None:
        self.running = 0


_END = object()
"""Control item that follows the last data item through both queues."""


class Pipeline:
    """One stream's loop. Build it, `await run()`, read `metrics`."""

    def __init__(
        self,
        *,
        stream_id: str,
        model_id: str,
        source: Source,
        segmenter: Segmenter,
        transcriber: SpeechRecognizer,
        session: EmotionSession,
        make_input: Callable[[SpeechSegment, Transcript], Any],
        sinks: list[ResultSink],
        options: PipelineOptions | None = None,
        attributor: SpeakerAttribution | None = None,
        interim_sink: InterimSink | None = None,
        emotion_executor: Executor | None = None,
        final_work: FinalWork | None = None,
        voices: VoiceBatch | None = None,
        host: str | None = None,
        first_utterance_id: int = 1,
        realtime: bool = True,
    ) -> None:
        """`make_input(segment, transcript)` builds the recognizer's input (`engines.stream.UtteranceInput`);
        with an `attributor`, its `speaker` is set to the utterance's speaker label before recognition.
        `realtime`: live or paced input (`capture.realtime`, off with `--no-realtime`): a full segment
        queue drops the oldest segment instead of pausing capture, and the turn's work may start early.
        With an `interim_sink` (and `options.interim`, realtime input), the segmenter must also offer
        `speaking_since_s`, `pausing` and `open_samples()`, and the session `preview(utterance)`.

        `emotion_executor`: a single-thread executor shared by the streams of one process, so their
        recognizer calls take turns on one core instead of competing; None gives this stream its own.
        `final_work`: shared likewise, so that no stream's interim results hold up another's finals.
        `voices`: shared likewise, so that streams' voice embeddings asked at once share one call; None
        embeds with the `attributor` on the emotion executor. Unused without an `attributor`.
        `host` names the cluster host in every result; `first_utterance_id` continues the ids of a
        stream that moved from another host (`realtime.cluster`).
        """
        self.stream_id = stream_id
        self.model_id = model_id
        self.options = options or PipelineOptions()
        self.realtime = realtime
        self.metrics = PipelineMetrics()
        self._source = source
        self._segmenter = segmenter
        self._transcriber = transcriber
        self._session = session
        self._make_input = make_input
        self._sinks = sinks
        self._attributor = attributor
        self._interim: InterimResults | None = None
        if interim_sink is not None and self.options.interim and self.realtime:
            self._interim = InterimResults(
                segmenter=segmenter,  # type: ignore[arg-type]
                sink=interim_sink,
                after_s=self.options.interim_after_s,
                every_s=self.options.interim_every_s,
                metrics=self.metrics,
                transcribe=self._transcribe_interim,
                recognize=self._recognize_interim,
            )
        self._final_work = final_work or FinalWork()
        self._voice_watch: VoiceWatch | None = None
        below = getattr(getattr(attributor, "options", None), "change_below", -1.0)
        if self.options.watch_voice and below > -1 and hasattr(segmenter, "split_open"):
            self._voice_watch = VoiceWatch(
                segmenter,  # type: ignore[arg-type]
                attributor,  # type: ignore[arg-type]
                self._on_emotion_thread,
                self.metrics,
                below=below,
                wait_for_search=not self.realtime,
            )
        self._turn_end: TurnEnd | None = None
        if self.options.speculate and hasattr(segmenter, "end_at_pause"):
            self._turn_end = TurnEnd(
                segmenter,  # type: ignore[arg-type]
                self._prepare,
                self.metrics,
                start_after_ms=self.options.speculate_after_ms,
                sentence_end_ms=self.options.sentence_end_ms,
                wait_for_preparation=not self.realtime,
                idle=self._whisper_idle if self.realtime else lambda: True,
            )
        self._segments: asyncio.Queue[SpeechSegment | object] = asyncio.Queue(self.options.segment_queue_size)
        self._utterances: asyncio.Queue[_Transcribed | object] = asyncio.Queue(
            self.options.utterance_queue_size
        )
        self._asr_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"asr-{stream_id}")
        self._own_emotion_pool = emotion_executor is None
        self._emotion_pool = emotion_executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"emotion-{stream_id}"
        )
        self._voices: VoiceBatch | None = None
        """Voice embeddings, only for a stream that attributes speakers."""
        if attributor is not None:
            embed = attributor.embed
            self._voices = voices or VoiceBatch(lambda batch: [embed(s) for s in batch], self._emotion_pool)
        self._stop = asyncio.Event()
        self._aborted = False
        self._tasks: list[asyncio.Task[None]] = []
        self.host = host
        self._next_utterance_id = first_utterance_id
        self.published_until_s = 0.0
        """Stream time where the last published utterance ended: a moved stream resumes there."""
        self._started = 0.0
        self._source_error: Exception | None = None

    def _whisper_idle(self) -> bool:
        """No final work running (in any stream sharing the executors) and none queued in this one."""
        return not self._final_work.running and self._segments.empty() and self._utterances.empty()

    def queue_depths(self) -> dict[str, int]:
        """Items waiting now in the segment (VAD -> Whisper) and utterance (Whisper -> recognizer) queues."""
        return {"segments": self._segments.qsize(), "utterances": self._utterances.qsize()}

    def stop(self) -> None:
        """Stop capturing; finish and publish what was already heard (graceful)."""
        if not self._stop.is_set():
            logger.info("stream %s: stopping capture, finishing in-flight utterances", self.stream_id)
        self._stop.set()

    def abort(self) -> None:
        """Cancel every stage now; queued utterances are lost (logged)."""
        lost = self._segments.qsize() + self._utterances.qsize()
        logger.warning("stream %s: aborted, %d queued utterance(s) discarded", self.stream_id, lost)
        self._aborted = True
        for task in self._tasks:
            task.cancel()

    async def run(self) -> PipelineMetrics:
        """Run until the source ends or `stop()`; every stage error propagates. A source error is raised
        once what was captured before it has been published."""
        self._started = time.perf_counter()
        self._tasks = [
            asyncio.create_task(self._capture(), name=f"capture-{self.stream_id}"),
            asyncio.create_task(self._asr_worker(), name=f"asr-{self.stream_id}"),
            asyncio.create_task(self._emotion_worker(), name=f"emotion-{self.stream_id}"),
        ]
        try:
            await _gather_failfast(self._tasks)
        except asyncio.CancelledError:
            if not self._aborted:
                raise
        finally:
            if self._interim is not None:
                await self._interim.close()
            if self._turn_end is not None:
                await self._turn_end.close()
            if self._voice_watch is not None:
                await self._voice_watch.close()
            self._asr_pool.shutdown(wait=False, cancel_futures=True)
            if self._own_emotion_pool:
                self._emotion_pool.shutdown(wait=False, cancel_futures=True)
        if self._source_error is not None:
            raise self._source_error
        return self.metrics

    async def _capture(self) -> None:
        stream = self._source.stream()
        stop_wait = asyncio.create_task(self._stop.wait())
        try:
            while True:
                next_item = asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({next_item, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if next_item not in done:
                    next_item.cancel()
                    await asyncio.gather(next_item, return_exceptions=True)
                    break
                try:
                    item = next_item.result()
                except StopAsyncIteration:
                    break
                except Exception as exc:  # noqa: BLE001 (any source failure: the stream ends)
                    # A failed source (lost device, corrupt file) ends the stream like its end would:
                    # what was heard is still processed, then `run()` raises the error.
                    self._source_error = exc
                    break
                if isinstance(item, VideoFrame):
                    self.metrics.video_frames += 1
                    self._segmenter.add_frame(item)
                    continue
                self.metrics.audio_chunks += 1
                self.metrics.stream_end_s = max(self.metrics.stream_end_s, item.end_s)
                started = time.perf_counter()
                segments = self._segmenter.push(item)
                self.metrics.vad_chunk.add((time.perf_counter() - started) * 1000)
                for segment in segments:
                    await self._enqueue_segment(segment)
                if self._voice_watch is not None:
                    for segment in await self._voice_watch.on_audio():
                        await self._enqueue_segment(segment)
                if self._turn_end is not None:
                    for segment in await self._turn_end.on_audio():
                        await self._enqueue_segment(segment)
                if self._interim is not None:
                    self._interim.on_audio(item.end_s, self._whisper_idle())
        finally:
            stop_wait.cancel()
            await _close_stream(stream)
        for segment in self._segmenter.flush():
            await self._enqueue_segment(segment)
        # The end marker must not be dropped: wait for room whatever the mode.
        await self._segments.put(_END)

    async def _enqueue_segment(self, segment: SpeechSegment) -> None:
        """Queue a VAD segment for Whisper.

        Full queue, realtime: drop the OLDEST queued segment (counted in `segments_dropped`, logged),
        so latency stays bounded when Whisper cannot keep up with live speech; capture never pauses.
        Full queue, `--no-realtime`: wait (backpressure on the file reader); nothing is lost.
        """
        if segment.cut_monotonic_s <= 0:
            segment.cut_monotonic_s = time.monotonic()
        if self._turn_end is not None:
            self._turn_end.segment_cut(segment)
        if self._interim is not None:
            self._interim.utterance_closed()
        self.metrics.segments += 1
        self.metrics.forced_splits += segment.forced_split
        self.metrics.forced_splits_without_pause += segment.forced_without_pause
        if self.realtime and self._segments.full():
            dropped = self._segments.get_nowait()
            self.metrics.segments_dropped += 1
            if isinstance(dropped, SpeechSegment):
                if self._turn_end is not None:
                    self._turn_end.segment_dropped(dropped)
                logger.warning(
                    "stream %s: ASR queue full (%d), dropped segment %.2f-%.2f s (%d dropped so far)",
                    self.stream_id,
                    self.options.segment_queue_size,
                    dropped.start_s,
                    dropped.end_s,
                    self.metrics.segments_dropped,
                )
        await self._segments.put(segment)

    async def _asr_worker(self) -> None:
        while (segment := await self._segments.get()) is not _END:
            assert isinstance(segment, SpeechSegment)
            prepared = await self._turn_end.claim(segment) if self._turn_end is not None else None
            if prepared is None:
                prepared = await self._prepare(segment)
            else:  # made during the pause: the segment's own fields change, and the voice of a part
                # heard without all of its trailing pad (an early start) is embedded again on the whole
                # part, since the clustering is sensitive to it (attribution -1.5 to -2 points).
                for item, part in zip(prepared.items, split_segment(segment, prepared.cuts), strict=True):
                    if item.voice is not None and len(part.samples) != len(item.segment.samples):
                        item.voice.cancel()
                        item.voice = asyncio.wrap_future(self._voices.submit(part.samples))  # type: ignore[union-attr]
                    item.segment = part
            self.metrics.voice_splits += bool(prepared.cuts)
            for item in prepared.items:
                await self._queue_transcribed(item)
        await self._utterances.put(_END)

    async def _prepare(self, segment: SpeechSegment) -> Prepared:
        """The segment split where the voice changes (one part per speaker), each part transcribed."""
        cuts = await self._voice_cuts(segment)
        return Prepared(cuts, [await self._transcribe(part) for part in split_segment(segment, cuts)])

    async def _voice_cuts(self, segment: SpeechSegment) -> list[int]:
        """Where the voice changes inside the segment; none without an attributor that can tell."""
        if not hasattr(self._attributor, "changes") or not may_split(len(segment.samples)):
            return []
        return await self._on_emotion_thread(self._attributor.changes, segment.samples)  # type: ignore[union-attr]

    async def _on_emotion_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """Voice encoder work runs on the recognizer's thread, which owns the encoder."""
        return await asyncio.get_running_loop().run_in_executor(self._emotion_pool, function, *args)

    async def _transcribe(self, item: SpeechSegment) -> _Transcribed:
        """Whisper (and the voice embedding meanwhile) of one utterance."""
        loop = asyncio.get_running_loop()
        voice = asyncio.wrap_future(self._voices.submit(item.samples)) if self._voices is not None else None
        self._final_work.running += 1
        try:
            transcript = await loop.run_in_executor(
                self._asr_pool, self._transcriber.transcribe, item.samples
            )
        except BaseException:
            if voice is not None:
                voice.cancel()
            raise
        finally:
            self._final_work.running -= 1
        return _Transcribed(item, transcript, voice)

    async def _queue_transcribed(self, transcribed: _Transcribed) -> None:
        """Hand a transcribed utterance to the recognizer, unless Whisper heard no words in it."""
        item, transcript, voice = transcribed.segment, transcribed.transcript, transcribed.voice
        if not transcript.has_words:
            self.metrics.empty_transcripts += 1
            logger.info(
                "stream %s: segment %.2f-%.2f s has no transcript (%s, no_speech_prob %.2f): not published",
                self.stream_id,
                item.start_s,
                item.end_s,
                getattr(transcript, "filtered", "") or "empty",
                transcript.no_speech_prob,
            )
            if voice is not None:
                voice.cancel()
            return
        await self._utterances.put(transcribed)

    async def _emotion_worker(self) -> None:
        loop = asyncio.get_running_loop()
        while (item := await self._utterances.get()) is not _END:
            assert isinstance(item, _Transcribed)
            segment, transcript = item.segment, item.transcript
            self._final_work.running += 1
            try:
                voice = await item.voice if item.voice is not None else None
                prediction, turn = await loop.run_in_executor(
                    self._emotion_pool, self._recognize, segment, transcript, voice
                )
            finally:
                self._final_work.running -= 1
            timings = StageTimings(
                vad=segment.vad_ms,
                asr=transcript.asr_ms,
                speaker=turn.embed_ms + turn.cluster_ms if turn is not None else 0.0,
                features=prediction.features_ms,
                fusion=prediction.fusion_ms,
                segment_to_publish=(time.monotonic() - segment.cut_monotonic_s) * 1000,
            )
            result = self._result(segment, transcript, prediction, turn, timings)
            self._next_utterance_id += 1
            self.published_until_s = segment.end_s
            for sink in self._sinks:
                sink.emit(result)
            self._record(timings)
        self.metrics.wall_s = time.perf_counter() - self._started

    @property
    def next_utterance_id(self) -> int:
        return self._next_utterance_id

    @property
    def speaking(self) -> bool:
        """Someone is in the middle of an utterance on this stream (a final result will follow)."""
        return getattr(self._segmenter, "speaking_since_s", None) is not None

    def _recognize(self, segment: SpeechSegment, transcript: Transcript, voice: Any) -> tuple[Any, Any]:
        """On the recognizer's thread: who spoke (it feeds the model's text input), then the emotion."""
        # The emotion worker handles one utterance at a time: the id its result will carry.
        turn = (
            self._attributor.assign(voice, self._next_utterance_id) if self._attributor is not None else None
        )
        utterance = self._make_input(segment, transcript)
        if turn is not None:
            utterance.speaker = turn.label
        return self._session.add(utterance), turn

    def _result(
        self,
        segment: SpeechSegment,
        transcript: Transcript,
        prediction: Any,
        turn: Any,
        timings: StageTimings,
    ) -> EmotionResult:
        """The message of the next utterance id (final, or interim: the id its final will have)."""
        return EmotionResult(
            stream_id=self.stream_id,
            utterance_id=self._next_utterance_id,
            start_s=segment.start_s,
            end_s=segment.end_s,
            text=transcript.text.strip(),
            emotion=prediction.emotion,
            scores=dict(prediction.scores),
            modalities=dict(prediction.modalities),
            model=self.model_id,
            timings_ms=timings,
            speaker=turn.name if turn is not None else None,
            by_modality=dict(getattr(prediction, "by_modality", {})),
            host=self.host,
            speaker_revisions=dict(getattr(turn, "revised", ())),
        )

    async def _transcribe_interim(self, samples: Any) -> Transcript:
        loop = asyncio.get_running_loop()
        # A shared Whisper (realtime.speech.whisper_batching) serves interims after every stream's finals.
        transcribe = getattr(self._transcriber, "transcribe_interim", self._transcriber.transcribe)
        return await loop.run_in_executor(self._asr_pool, transcribe, samples)

    async def _recognize_interim(self, segment: SpeechSegment, transcript: Transcript) -> EmotionResult:
        loop = asyncio.get_running_loop()
        prediction, turn = await loop.run_in_executor(self._emotion_pool, self._preview, segment, transcript)
        speaker_ms = turn.embed_ms + turn.cluster_ms if turn is not None else 0.0
        timings = StageTimings(
            asr=transcript.asr_ms,
            speaker=speaker_ms,
            features=prediction.features_ms,
            fusion=prediction.fusion_ms,
        )
        return self._result(segment, transcript, prediction, turn, timings)

    def _preview(self, segment: SpeechSegment, transcript: Transcript) -> tuple[Any, Any]:
        """As `_recognize`, learning nothing: the speaker is looked up, the context left as it was."""
        turn = self._attributor.identify(segment.samples) if self._attributor is not None else None
        utterance = self._make_input(segment, transcript)
        if turn is not None:
            utterance.speaker = turn.label
        return self._session.preview(utterance), turn  # type: ignore[attr-defined]

    def _record(self, timings: StageTimings) -> None:
        self.metrics.results += 1
        self.metrics.vad.add(timings.vad)
        self.metrics.asr.add(timings.asr)
        if self._attributor is not None:
            self.metrics.speaker.add(timings.speaker)
        self.metrics.features.add(timings.features)
        self.metrics.fusion.add(timings.fusion)
        self.metrics.segment_to_publish.add(timings.segment_to_publish)


async def _gather_failfast(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for all tasks; on the first failure cancel the rest and raise it."""
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _close_stream(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except RuntimeError:
            # An async generator whose pending __anext__ was just cancelled may refuse aclose().
            logger.debug("capture stream already closing")
