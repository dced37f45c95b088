"""Frames-in / events-out harness of the live loop.

Most stages here are stand-ins so that control flow (ordering, end of stream, stop, full queues,
empty transcripts, executors) can be driven exactly. The last test feeds known speech through the
real VAD and Whisper; every stage is real in test_run_live_e2e.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import SpeechAudio

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, SpeechSegment, Transcript, VideoFrame
from realtime.messages import EmotionResult
from realtime.session.pipeline import Pipeline, PipelineOptions

CHUNK = 512


def chunks(n: int, start: int = 0) -> list[AudioChunk]:
    """`n` 32 ms chunks; every sample holds its chunk index, so a segment's samples name its chunks."""
    return [
        AudioChunk(np.full(CHUNK, i, np.float32), i * CHUNK / SAMPLE_RATE_HZ) for i in range(start, start + n)
    ]


class ListSource:
    def __init__(self, items: list[AudioChunk | VideoFrame], forever: bool = False) -> None:
        self.items, self.forever = items, forever
        self.closed = False

    async def stream(self):
        try:
            for item in self.items:
                await asyncio.sleep(0)
                yield item
            index = len(self.items)
            while self.forever:
                await asyncio.sleep(0.005)
                yield chunks(1, index)[0]
                index += 1
        finally:
            self.closed = True


class EveryNChunks:
    """Cuts a segment every `n` audio chunks; frames since the last cut go with it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.audio: list[AudioChunk] = []
        self.frames: list[VideoFrame] = []
        self.next_id = 0

    def push(self, chunk: AudioChunk) -> list[SpeechSegment]:
        self.audio.append(chunk)
        return [self._cut()] if len(self.audio) == self.n else []

    def add_frame(self, frame: VideoFrame) -> None:
        self.frames.append(frame)

    def flush(self) -> list[SpeechSegment]:
        return [self._cut()] if self.audio else []

    def _cut(self) -> SpeechSegment:
        segment = SpeechSegment(
            segment_id=self.next_id,
            start_s=self.audio[0].start_s,
            end_s=self.audio[-1].end_s,
            samples=np.concatenate([c.samples for c in self.audio]),
            frames=self.frames,
            vad_ms=0.1,
        )
        self.next_id += 1
        self.audio, self.frames = [], []
        return segment


class ScriptedAsr:
    """Names a segment by its first chunk index; silent chunk indices give an empty transcript."""

    def __init__(self, silent_from: set[int] = frozenset(), delay_s: float = 0.0) -> None:
        self.silent_from, self.delay_s = silent_from, delay_s
        self.threads: set[str] = set()

    def transcribe(self, samples: np.ndarray) -> Transcript:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        first = int(samples[0])
        text = "" if first in self.silent_from else f"utterance from chunk {first}."
        return Transcript(text=text, language="en", no_speech_prob=0.9 if not text else 0.1, asr_ms=5.0)


@dataclass
class Prediction:
    emotion: str
    scores: dict[str, float]
    modalities: dict[str, bool]
    features_ms: float = 1.0
    fusion_ms: float = 2.0


@dataclass
class RecordingSession:
    """Keeps every input, like a causal context, and says how many it has seen."""

    seen: list[dict] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)

    def add(self, utterance: dict) -> Prediction:
        self.threads.add(threading.current_thread().name)
        self.seen.append(utterance)
        visual = bool(utterance["frames"])
        return Prediction(
            "neutral", {"neutral": 0.7, "joy": 0.3}, {"text": True, "audio": True, "visual": visual}
        )


class ListSink:
    def __init__(self) -> None:
        self.results: list[EmotionResult] = []

    def emit(self, result: EmotionResult) -> None:
        self.results.append(result)


def make_input(segment: SpeechSegment, transcript: Transcript) -> dict:
    return {"text": transcript.text, "audio": segment.samples, "frames": [f.rgb for f in segment.frames]}


def build(
    source: ListSource,
    asr: ScriptedAsr,
    n: int = 10,
    segmenter: EveryNChunks | None = None,
    realtime: bool = True,
    **options: object,
) -> tuple[Pipeline, ListSink, RecordingSession]:
    sink, session = ListSink(), RecordingSession()
    pipeline = Pipeline(
        stream_id="harness",
        model_id="fake",
        source=source,
        segmenter=segmenter or EveryNChunks(n),
        transcriber=asr,
        session=session,
        make_input=make_input,
        sinks=[sink],
        options=PipelineOptions(**options),
        realtime=realtime,
    )
    return pipeline, sink, session


def test_events_out_match_frames_in_at_end_of_stream() -> None:
    frame = VideoFrame(np.zeros((4, 4, 3), np.uint8), 0.05)
    items = chunks(1) + [frame] + chunks(34, start=1)  # 35 chunks: 3 full segments + a flushed tail of 5
    asr = ScriptedAsr()
    pipeline, sink, session = build(ListSource(items), asr, realtime=False)
    metrics = asyncio.run(pipeline.run())

    assert [r.utterance_id for r in sink.results] == [1, 2, 3, 4]
    assert [r.text for r in sink.results] == [f"utterance from chunk {i}." for i in (0, 10, 20, 30)]
    assert sink.results[-1].end_s == pytest.approx(35 * CHUNK / SAMPLE_RATE_HZ)
    assert sink.results[0].modalities["visual"] and not sink.results[1].modalities["visual"]
    assert all(r.timings_ms.asr == 5.0 and r.timings_ms.fusion == 2.0 for r in sink.results)
    assert all(r.timings_ms.segment_to_publish >= 0 for r in sink.results)
    assert len(session.seen) == 4 and session.seen[0]["audio"].shape == (10 * CHUNK,)
    assert (metrics.audio_chunks, metrics.video_frames, metrics.segments, metrics.results) == (35, 1, 4, 4)
    assert metrics.segment_to_publish.count == 4


def test_blocking_stages_run_off_the_event_loop() -> None:
    asr = ScriptedAsr()
    pipeline, _, session = build(ListSource(chunks(20)), asr, realtime=False)
    asyncio.run(pipeline.run())
    assert asr.threads == {"asr-harness_0"}
    assert session.threads == {"emotion-harness_0"}


def test_empty_transcripts_are_counted_not_published() -> None:
    asr = ScriptedAsr(silent_from={10})
    pipeline, sink, _ = build(ListSource(chunks(30)), asr, realtime=False)
    metrics = asyncio.run(pipeline.run())
    assert [r.text for r in sink.results] == ["utterance from chunk 0.", "utterance from chunk 20."]
    assert [r.utterance_id for r in sink.results] == [1, 2]
    assert metrics.empty_transcripts == 1


def test_forced_splits_are_counted() -> None:
    class ForcedEveryNChunks(EveryNChunks):
        """Every cut is forced by the length limit; every other one found no pause to fall in."""

        def _cut(self) -> SpeechSegment:
            segment = super()._cut()
            segment.forced_split = True
            segment.forced_without_pause = segment.segment_id % 2 == 1
            return segment

    segmenter = ForcedEveryNChunks(10)
    pipeline, _, _ = build(ListSource(chunks(40)), ScriptedAsr(), segmenter=segmenter, realtime=False)
    metrics = asyncio.run(pipeline.run())
    assert (metrics.segments, metrics.forced_splits, metrics.forced_splits_without_pause) == (4, 4, 2)


def test_stop_finishes_the_in_flight_utterance() -> None:
    source = ListSource([], forever=True)

    async def scenario() -> tuple[Pipeline, ListSink]:
        pipeline, sink, _ = build(source, ScriptedAsr(), n=10)
        run = asyncio.create_task(pipeline.run())
        while len(sink.results) < 2:
            await asyncio.sleep(0.01)
        pipeline.stop()
        await asyncio.wait_for(run, 10)
        return pipeline, sink

    pipeline, sink = asyncio.run(scenario())
    assert source.closed
    ids = [r.utterance_id for r in sink.results]
    assert ids == list(range(1, len(ids) + 1))
    # The last result is the partial utterance the VAD was holding when capture stopped.
    assert pipeline.metrics.segments == len(ids)
    assert sink.results[-1].end_s == pytest.approx(pipeline.metrics.stream_end_s)


def test_full_asr_queue_drops_oldest_in_realtime_and_counts_it() -> None:
    asr = ScriptedAsr(delay_s=0.05)
    pipeline, sink, _ = build(ListSource(chunks(100)), asr, n=5, segment_queue_size=1, realtime=True)
    metrics = asyncio.run(pipeline.run())
    assert metrics.segments == 20
    assert metrics.segments_dropped > 0
    assert metrics.results + metrics.segments_dropped == metrics.segments
    assert [r.utterance_id for r in sink.results] == list(range(1, metrics.results + 1))


def test_full_asr_queue_waits_without_realtime() -> None:
    asr = ScriptedAsr(delay_s=0.01)
    pipeline, sink, _ = build(ListSource(chunks(100)), asr, n=5, segment_queue_size=1, realtime=False)
    metrics = asyncio.run(pipeline.run())
    assert metrics.segments_dropped == 0 and metrics.results == 20 == len(sink.results)


def test_stage_error_propagates_and_stops_the_loop() -> None:
    class BrokenAsr(ScriptedAsr):
        def transcribe(self, samples: np.ndarray) -> Transcript:
            raise RuntimeError("asr broke")

    source = ListSource([], forever=True)
    pipeline, _, _ = build(source, BrokenAsr())
    with pytest.raises(RuntimeError, match="asr broke"):
        asyncio.run(asyncio.wait_for(pipeline.run(), 10))
    assert source.closed


def test_abort_returns_at_once() -> None:
    async def scenario() -> Pipeline:
        pipeline, _, _ = build(ListSource([], forever=True), ScriptedAsr(delay_s=0.2))
        run = asyncio.create_task(pipeline.run())
        await asyncio.sleep(0.3)
        pipeline.abort()
        await asyncio.wait_for(run, 5)
        return pipeline

    pipeline = asyncio.run(scenario())
    assert pipeline.metrics.segments > 0


def test_real_vad_and_whisper_frames_in_events_out(espeak_wav: SpeechAudio) -> None:
    """Chunks of known speech in; one event per sentence out, at the sentence's time, with its words."""
    import jiwer

    from realtime.speech.vad import VadOptions, VadSegmenter
    from realtime.speech.whisper import AsrOptions, Transcriber

    samples = espeak_wav.samples
    items = [AudioChunk(samples[i : i + CHUNK], i / SAMPLE_RATE_HZ) for i in range(0, len(samples), CHUNK)]
    sink, session = ListSink(), RecordingSession()
    pipeline = Pipeline(
        stream_id="real",
        model_id="recording",
        source=ListSource(items),
        segmenter=VadSegmenter(VadOptions()),
        transcriber=Transcriber(AsrOptions()),
        session=session,
        make_input=make_input,
        sinks=[sink],
        realtime=False,
    )
    metrics = asyncio.run(pipeline.run())

    assert len(sink.results) == len(espeak_wav.sentences), [r.text for r in sink.results]
    for result, (start_s, end_s) in zip(sink.results, espeak_wav.spans_s, strict=True):
        assert result.start_s <= start_s + 0.1 and result.end_s >= end_s - 0.1
        assert result.start_s >= start_s - 0.5 and result.end_s <= end_s + 0.6
    normalise = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces()])
    wer = jiwer.wer([normalise(s) for s in espeak_wav.sentences], [normalise(r.text) for r in sink.results])
    assert wer <= 0.35, [r.text for r in sink.results]
    assert [u["text"] for u in session.seen] == [r.text for r in sink.results]
    assert metrics.empty_transcripts == 0 and metrics.vad_chunk.count == len(items)


class Input(dict):
    """The harness input, with the `speaker` attribute the pipeline sets (as on `UtteranceInput`)."""

    speaker: str | None = None


class AlternatingSpeakers:
    """Stand-in attributor: odd utterances S1 (enrolled as Ana), even ones S2."""

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.calls = 0
        self.embedded: list[int] = []
        self.keys: list[int] = []

    def embed(self, samples: np.ndarray):
        from realtime.speakers.attributor import Voice

        self.threads.add(threading.current_thread().name)
        self.embedded.append(int(samples[0]))
        return Voice(np.ones(4), len(samples) / 16_000, embed_ms=3.0)

    def assign(self, voice, key):
        from realtime.speakers.attributor import SpeakerTurn

        self.threads.add(threading.current_thread().name)
        self.calls += 1
        self.keys.append(key)
        label = "S1" if self.calls % 2 else "S2"
        # The third utterance shows the first was S2's after all.
        revised = ((1, "S2"),) if self.calls == 3 else ()
        return SpeakerTurn(
            label=label,
            name="Ana" if label == "S1" else label,
            embed_ms=voice.embed_ms,
            cluster_ms=0.5,
            revised=revised,
        )


def test_speaker_reaches_the_model_input_and_the_message() -> None:
    sink, session, attributor = ListSink(), RecordingSession(), AlternatingSpeakers()
    seen_speakers: list[str | None] = []

    def make_speaker_input(segment: SpeechSegment, transcript: Transcript) -> Input:
        return Input(make_input(segment, transcript))

    original_add = session.add

    def add(utterance: Input) -> Prediction:
        seen_speakers.append(utterance.speaker)
        return original_add(utterance)

    session.add = add  # type: ignore[method-assign]
    pipeline = Pipeline(
        stream_id="harness",
        model_id="fake",
        source=ListSource(chunks(40)),
        segmenter=EveryNChunks(10),
        transcriber=ScriptedAsr(),
        session=session,
        make_input=make_speaker_input,
        sinks=[sink],
        realtime=False,
        attributor=attributor,
    )
    metrics = asyncio.run(pipeline.run())
    assert seen_speakers == ["S1", "S2", "S1", "S2"]
    assert [r.speaker for r in sink.results] == ["Ana", "S2", "Ana", "S2"]
    assert attributor.keys == [r.utterance_id for r in sink.results] == [1, 2, 3, 4]
    assert [r.speaker_revisions for r in sink.results] == [{}, {}, {1: "S2"}, {}]
    assert all(r.timings_ms.speaker == pytest.approx(3.5) for r in sink.results)
    assert attributor.threads == session.threads and all(t.startswith("emotion-") for t in attributor.threads)
    assert metrics.speaker.count == 4


def test_the_voice_is_embedded_while_whisper_transcribes() -> None:
    """The embedding needs only the audio: it runs on the recognizer's thread during transcription, and
    the recognizer's turn only assigns it. A segment without text is never assigned a speaker."""
    attributor = AlternatingSpeakers()
    embedded = threading.Event()
    original_embed = attributor.embed

    def embed(samples: np.ndarray):
        voice = original_embed(samples)
        embedded.set()
        return voice

    attributor.embed = embed  # type: ignore[method-assign]

    overlapped: list[bool] = []

    class WaitsForTheEmbedding(ScriptedAsr):
        def transcribe(self, samples: np.ndarray) -> Transcript:
            overlapped.append(embedded.wait(5))
            embedded.clear()
            return super().transcribe(samples)

    asr, sink = WaitsForTheEmbedding(silent_from={10}), ListSink()
    pipeline = Pipeline(
        stream_id="harness",
        model_id="fake",
        source=ListSource(chunks(40)),
        segmenter=EveryNChunks(10),
        transcriber=asr,
        session=RecordingSession(),
        make_input=lambda s, t: Input(make_input(s, t)),
        sinks=[sink],
        realtime=False,
        attributor=attributor,
    )
    asyncio.run(pipeline.run())
    assert overlapped == [True] * 4
    assert attributor.embedded == [0, 10, 20, 30]
    assert [r.text for r in sink.results] == [f"utterance from chunk {i}." for i in (0, 20, 30)]
    assert [r.speaker for r in sink.results] == ["Ana", "S2", "Ana"]


class AlwaysSpeaking(EveryNChunks):
    """A segmenter with interim hooks: one utterance open from 0 s that never ends."""

    speaking_since_s = 0.0
    pausing = False

    def push(self, chunk: AudioChunk) -> list[SpeechSegment]:
        self.audio.append(chunk)
        return []

    def flush(self) -> list[SpeechSegment]:
        return []

    def open_samples(self) -> np.ndarray:
        return np.concatenate([c.samples for c in self.audio])


class PacedSource(ListSource):
    async def stream(self):
        for item in self.items:
            await asyncio.sleep(0.005)
            yield item


class InterimSinkStub:
    def __init__(self) -> None:
        self.results: list[EmotionResult] = []

    def emit_interim(self, result: EmotionResult) -> bool:
        self.results.append(result)
        return True


def test_another_streams_final_work_holds_interim_results_back() -> None:
    """Streams share `FinalWork`: while another stream's final result is in flight, this stream's
    interim results are skipped (counted), so previews never delay anybody's finals."""
    from realtime.session.pipeline import FinalWork

    def run(others_running: int) -> tuple[int, int]:
        shared, sink = FinalWork(), InterimSinkStub()
        shared.running = others_running
        session = RecordingSession()
        session.preview = session.add  # type: ignore[attr-defined]
        pipeline = Pipeline(
            stream_id="b",
            model_id="fake",
            source=PacedSource(chunks(120)),
            segmenter=AlwaysSpeaking(10),
            transcriber=ScriptedAsr(),
            session=session,
            make_input=make_input,
            sinks=[ListSink()],
            realtime=True,
            interim_sink=sink,
            final_work=shared,
        )
        metrics = asyncio.run(pipeline.run())
        return len(sink.results), metrics.interim_skipped

    assert run(others_running=0)[0] >= 1
    published, skipped = run(others_running=1)
    assert published == 0 and skipped >= 2
