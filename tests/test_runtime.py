"""Frames-in / events-out harness of the multi-stream runtime: three streams on shared stand-in models.

The sources, VAD, Whisper and recognizer are test_pipeline.py's scripted stand-ins (a stream's samples
carry its number and the chunk index, so every event names where it came from); the MQTT side is
real (the embedded broker, a real subscriber).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import threading
from dataclasses import dataclass, field

import aiomqtt
import numpy as np
import pytest
from test_pipeline import CHUNK, EveryNChunks, ListSource, RecordingSession, make_input

from engines.errors import MediaError
from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, Transcript
from realtime.outputs.mqtt.address import MqttSettingError
from realtime.runtime.config import LiveConfig
from realtime.runtime.models import Models
from realtime.runtime.runtime import Runtime

STREAM_BASE = 1000
"""Sample value of chunk i of stream s: s * STREAM_BASE + i."""


def harness_config() -> LiveConfig:
    """The stand-in segmenter and recognizer offer no interim hooks: interim results off."""
    config = LiveConfig()
    config.pipeline.interim = False
    return config


def stream_chunks(stream: int, n: int) -> list[AudioChunk]:
    return [
        AudioChunk(np.full(CHUNK, stream * STREAM_BASE + i, np.float32), i * CHUNK / SAMPLE_RATE_HZ)
        for i in range(n)
    ]


class FailingSource(ListSource):
    """Delivers its items, then fails as a lost camera or a corrupt file would."""

    async def stream(self):
        async for item in super().stream():
            yield item
        raise MediaError("cannot decode media file 'broken.mp4': Invalid data found")


class ReconnectingSource(ListSource):
    """Reports a lost and regained connection halfway, as `realtime.sources.network.NetworkSource` does."""

    def __init__(self, items: list[AudioChunk]) -> None:
        super().__init__(items)
        self.on_status = None

    async def stream(self):
        async for item in super().stream():
            if self.on_status is not None and item.start_s == self.items[len(self.items) // 2].start_s:
                self.on_status("source_lost")
                await asyncio.sleep(0.05)
                self.on_status("online")
            yield item


class BatchAsr:
    """`transcribe_batch` naming each segment by stream and first chunk; records the batch sizes."""

    def __init__(self, delay_s: float = 0.02) -> None:
        self.delay_s = delay_s
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def encode_ahead(self, samples: np.ndarray) -> np.ndarray:
        return samples

    def transcribe_batch(self, batch: list[np.ndarray]) -> list[Transcript]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(len(batch))
        threading.Event().wait(self.delay_s)
        out = []
        for samples in batch:
            stream, chunk = divmod(int(samples[0]), STREAM_BASE)
            out.append(Transcript(f"stream {stream} chunk {chunk}.", "en", 0.1, 5.0))
        return out


@dataclass
class FakeRecognizer:
    model_id: str = "fake"
    sessions: list[RecordingSession] = field(default_factory=list)

    def new_session(self, max_context_utterances: int) -> RecordingSession:
        self.sessions.append(RecordingSession())
        return self.sessions[-1]


async def collect(url: str, into: list[tuple[str, str]], ready: asyncio.Event) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as client:
        await client.subscribe("m2fnet/#", qos=1)
        ready.set()
        async for message in client.messages:
            into.append((str(message.topic), message.payload.decode()))


@pytest.fixture(scope="module")
def three_streams() -> dict:
    """Streams 1 and 3 play 40 chunks (4 utterances each); stream 2 fails after 25 (2 utterances)."""
    asr, recognizer = BatchAsr(), FakeRecognizer()
    console, jsonl = io.StringIO(), io.StringIO()
    messages: list[tuple[str, str]] = []

    async def scenario() -> list:
        config = harness_config()
        config.capture.realtime = False
        models = Models(asr, recognizer)
        async with Runtime(
            config,
            console=console,
            jsonl=jsonl,
            label_console=True,
            node_id="box",
            models=models,
            make_segmenter=lambda _options: EveryNChunks(10),
            make_input=make_input,
            handle_signals=False,
        ) as runtime:
            ready = asyncio.Event()
            subscriber = asyncio.create_task(collect(runtime.broker_url, messages, ready))
            await ready.wait()
            await runtime.add_stream(ListSource(stream_chunks(1, 40)), "one")
            await runtime.add_stream(FailingSource(stream_chunks(2, 25)), "two")
            await runtime.add_stream(ReconnectingSource(stream_chunks(3, 40)), "three")
            reports = await runtime.wait()
        await asyncio.sleep(0.3)
        subscriber.cancel()
        await asyncio.gather(subscriber, return_exceptions=True)
        return reports

    reports = asyncio.run(scenario())
    results = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    return {
        "reports": reports,
        "results": results,
        "console": console.getvalue(),
        "asr": asr,
        "recognizer": recognizer,
        "messages": messages,
    }


def test_every_utterance_of_every_stream_comes_out_with_ids_per_stream(three_streams: dict) -> None:
    by_stream: dict[str, list[dict]] = {}
    for result in three_streams["results"]:
        by_stream.setdefault(result["stream_id"], []).append(result)
    assert [r["text"] for r in by_stream["one"]] == [f"stream 1 chunk {i}." for i in (0, 10, 20, 30)]
    assert [r["text"] for r in by_stream["three"]] == [f"stream 3 chunk {i}." for i in (0, 10, 20, 30)]
    for results in by_stream.values():
        assert [r["utterance_id"] for r in results] == list(range(1, len(results) + 1))


def test_streams_interleave_and_share_whisper_calls(three_streams: dict) -> None:
    order = [r["stream_id"] for r in three_streams["results"]]
    first_of_three, last_of_one = order.index("three"), len(order) - 1 - order[::-1].index("one")
    assert first_of_three < last_of_one, order
    asr = three_streams["asr"]
    assert max(asr.batches) > 1 and sum(asr.batches) == len(three_streams["results"])
    assert asr.threads == {"asr-batch"}


def test_each_stream_keeps_its_own_causal_context(three_streams: dict) -> None:
    sessions = three_streams["recognizer"].sessions
    assert len(sessions) == 3
    for number, session in zip((1, 2, 3), sessions):
        assert all(u["text"].startswith(f"stream {number} ") for u in session.seen)
    # One executor thread serves the recognizer for every stream.
    assert set().union(*(s.threads for s in sessions)) == {"emotion_0"}


def test_a_failing_source_ends_its_stream_only(three_streams: dict) -> None:
    reports = {r.stream_id: r for r in three_streams["reports"]}
    assert isinstance(reports["two"].error, MediaError)
    assert reports["one"].error is None and reports["three"].error is None
    assert reports["one"].pipeline.results == reports["three"].pipeline.results == 4
    # What it heard before failing (25 chunks: two full utterances and a cut one) was still published.
    two = [r["text"] for r in three_streams["results"] if r["stream_id"] == "two"]
    assert two == ["stream 2 chunk 0.", "stream 2 chunk 10.", "stream 2 chunk 20."]


def test_console_lines_start_with_the_stream_id(three_streams: dict) -> None:
    lines = three_streams["console"].splitlines()
    assert len(lines) == len(three_streams["results"])
    assert {line.split(" ", 1)[0] for line in lines} == {"one", "two", "three"}


def test_availability_of_the_process_and_of_each_stream(three_streams: dict) -> None:
    messages = three_streams["messages"]
    assert ("m2fnet/box/available", "online") in messages
    assert messages[-1] == ("m2fnet/box/available", "offline")
    for stream in ("one", "two", "three"):
        status = [p for t, p in messages if t == f"m2fnet/{stream}/status"]
        available = [p for t, p in messages if t == f"m2fnet/{stream}/available"]
        lost = ["source_lost", "online"] if stream == "three" else []
        assert status == ["online", *lost, "offline"], (stream, messages)
        assert available == ["online", "offline"], (stream, messages)
    published = [json.loads(p)["stream_id"] for t, p in messages if t.endswith("/utterance")]
    assert sorted(published) == sorted(r["stream_id"] for r in three_streams["results"])


def run_until_signals(signals: int) -> tuple[list, FakeRecognizer]:
    """Three endless streams; after a few results each, send SIGTERM `signals` times to this process."""
    recognizer = FakeRecognizer()
    jsonl = io.StringIO()

    async def scenario() -> list:
        config = harness_config()
        runtime = Runtime(
            config,
            jsonl=jsonl,
            models=Models(BatchAsr(delay_s=0.05), recognizer),
            make_segmenter=lambda _options: EveryNChunks(10),
            make_input=make_input,
        )
        async with runtime:
            for number in (1, 2, 3):
                await runtime.add_stream(ListSource(stream_chunks(number, 5), forever=True), f"s{number}")
            while jsonl.getvalue().count("\n") < 6:
                await asyncio.sleep(0.01)
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.sleep(0)
            async with asyncio.timeout(30):
                return await runtime.wait()

    return asyncio.run(scenario()), recognizer


def test_sigterm_drains_every_stream() -> None:
    reports, recognizer = run_until_signals(1)
    assert [r.stream_id for r in reports] == ["s1", "s2", "s3"]
    for report, session in zip(reports, recognizer.sessions):
        assert report.error is None
        # Graceful: every segment cut, including the one the VAD held at the signal, was published.
        assert report.pipeline.results == report.pipeline.segments == len(session.seen) > 0


def test_a_second_signal_aborts_every_stream() -> None:
    reports, _ = run_until_signals(2)
    assert [r.stream_id for r in reports] == ["s1", "s2", "s3"]


def test_the_signals_are_borrowed_while_running_and_given_back() -> None:
    """The handlers in place before (a CLI's `engines.interrupts`, here pytest's) are back after close."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    async def scenario() -> None:
        async with Runtime(harness_config(), models=Models(BatchAsr(), FakeRecognizer())):
            assert all(signal.getsignal(sig) is not handler for sig, handler in before.items())

    asyncio.run(scenario())
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_add_stream_opens_a_source_spec_and_names_a_bad_one(tmp_path) -> None:
    async def scenario() -> None:
        models = Models(BatchAsr(), FakeRecognizer())
        async with Runtime(harness_config(), models=models, handle_signals=False) as runtime:
            with pytest.raises(MediaError, match="missing.mp4"):
                await runtime.add_stream(str(tmp_path / "missing.mp4"), "bad")
            with pytest.raises(MqttSettingError, match="two streams"):
                await runtime.add_stream(ListSource([]), "a")
                await runtime.add_stream(ListSource([]), "a")
            await runtime.wait()

    asyncio.run(scenario())


class StreamVoices:
    """Voice embedder for the harness: one voice per stream (from its samples); records its threads."""

    def __init__(self) -> None:
        self.threads: set[str] = set()

    def embed(self, samples: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        vector = np.zeros(8)
        vector[int(samples[0]) // STREAM_BASE] = 1.0
        return vector

    def embed_many(self, utterances: list[np.ndarray]) -> list[np.ndarray]:
        return [self.embed(samples) for samples in utterances]


def test_speakers_of_several_streams_are_embedded_on_the_recognizer_thread() -> None:
    """Each stream labels its own speakers; the shared voice encoder runs on the recognizer's thread
    (ahead, while Whisper transcribes), and every utterance is still attributed once."""
    from test_pipeline import Input

    voices, recognizer, jsonl = StreamVoices(), FakeRecognizer(), io.StringIO()

    async def scenario() -> list:
        config = harness_config()
        config.capture.realtime = False
        async with Runtime(
            config,
            jsonl=jsonl,
            models=Models(BatchAsr(), recognizer, voices=voices),
            make_segmenter=lambda _options: EveryNChunks(10),
            make_input=lambda s, t: Input(make_input(s, t)),
            handle_signals=False,
        ) as runtime:
            await runtime.add_stream(ListSource(stream_chunks(1, 30)), "one")
            await runtime.add_stream(ListSource(stream_chunks(2, 30)), "two")
            return await runtime.wait()

    reports = asyncio.run(scenario())
    results = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    assert (
        sorted((r["stream_id"], r["speaker"]) for r in results) == [("one", "S1")] * 3 + [("two", "S1")] * 3
    )
    assert [r.pipeline.speaker.count for r in reports] == [3, 3]
    assert voices.threads == {t for s in recognizer.sessions for t in s.threads}
    assert all(t.startswith("emotion") for t in voices.threads)


class PassThroughPreview:
    """What `Runtime` needs of `realtime.outputs.preview.Preview`: a tap wrapping the source, a sink."""

    def tap(self, source):
        class Tap:
            def __init__(self, inner):
                self.inner = inner

            def stream(self):
                return self.inner.stream()

        return Tap(source)

    def emit(self, result) -> None:
        pass


def test_a_previewed_network_source_still_reports_source_lost() -> None:
    async def scenario() -> None:
        models = Models(BatchAsr(), FakeRecognizer())
        source = ReconnectingSource(stream_chunks(1, 12))
        async with Runtime(harness_config(), models=models, handle_signals=False) as runtime:
            await runtime.add_stream(source, "cam", preview=PassThroughPreview())
            assert source.on_status is not None  # wired to the stream's status topic, past the preview
            await runtime.wait()

    asyncio.run(scenario())
