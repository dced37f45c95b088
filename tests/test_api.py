"""The Python API (`realtime.api.LiveRecognizer`) driven by pushed audio: espeak-ng sentences made at test
time, pushed in 20-100 ms pieces at 44.1 kHz int16 and 16 kHz float; the real stages (Silero VAD, Whisper
tiny.en, the shipped recognizer) and the real MQTT side (embedded broker, a real subscriber)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import aiomqtt
import jiwer
import numpy as np
import pytest
from conftest import SPEECH_RATE_HZ, SpeechAudio, make_speech, synthesize
from media_fixtures import needs_espeak

from realtime.frames import AudioChunk
from realtime.outputs.events import FinalResult, InterimResult, SpeakerState, UtteranceStarted
from realtime.outputs.mqtt.address import parse_mqtt_url
from realtime.runtime.config import LiveConfig
from realtime.sources.push import PushOptions, PushSource

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "models" / "m2fnet-meld-causal"
needs_checkpoint = pytest.mark.skipif(not CHECKPOINT.is_dir(), reason=f"no checkpoint at {CHECKPOINT}")
WER_BOUND = 0.5
"""Per sentence; Whisper tiny.en on espeak speech is at 0.18-0.27 over a clip (test_run_live_e2e)."""
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def pieces(samples: np.ndarray, rate_hz: int, seed: int = 0) -> list[np.ndarray]:
    """`samples` cut in pieces of 20-100 ms."""
    rng = np.random.default_rng(seed)
    out, start = [], 0
    while start < len(samples):
        n = int(rate_hz * rng.uniform(0.02, 0.1))
        out.append(samples[start : start + n])
        start += n
    return out


def to_44k_int16(samples: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    return np.round(np.clip(resample_poly(samples, 441, 160), -1, 1) * 32767).astype(np.int16)


def collect(source: PushSource) -> list[AudioChunk]:
    async def read() -> list[AudioChunk]:
        return [item async for item in source.stream()]  # type: ignore[misc]

    return asyncio.run(read())


def test_pushed_44k_int16_comes_out_as_contiguous_16k_chunks() -> None:
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(44_100) / 44_100) * 32767).astype(np.int16)

    async def push_and_read() -> list[AudioChunk]:
        source = PushSource()
        for piece in pieces(tone, 44_100):
            source.push_audio(piece, 44_100)
        source.end()
        return [item async for item in source.stream()]  # type: ignore[misc]

    chunks = asyncio.run(push_and_read())
    samples = np.concatenate([c.samples for c in chunks])
    assert abs(len(samples) - SPEECH_RATE_HZ) <= 32
    assert all(len(c.samples) == 512 for c in chunks[:-1])
    starts = [c.start_s for c in chunks]
    assert starts == pytest.approx([i * 512 / SPEECH_RATE_HZ for i in range(len(chunks))])
    assert np.abs(samples[1000:-1000]).max() == pytest.approx(0.5, abs=0.02)


def test_a_gap_in_pushed_time_is_a_gap_in_stream_time() -> None:
    async def push_and_read() -> list[AudioChunk]:
        source = PushSource()
        source.push_audio(np.zeros(1600, np.float32), 16_000, t=2.0)
        source.push_audio(np.zeros(1600, np.float32), 16_000, t=7.0)
        source.end()
        return [item async for item in source.stream()]  # type: ignore[misc]

    chunks = asyncio.run(push_and_read())
    assert chunks[0].start_s == 2.0
    assert next(c.start_s for c in chunks if c.start_s >= 7.0) == 7.0
    assert sum(len(c.samples) for c in chunks) == 3200


def test_a_full_push_queue_drops_the_oldest_audio_counted_and_logged(caplog) -> None:
    async def overfill() -> tuple[PushSource, list[AudioChunk], bool]:
        source = PushSource(options=PushOptions(max_queue_items=4))
        with caplog.at_level(logging.WARNING, logger="realtime.sources.push"):
            for i in range(10):  # ten 32 ms chunks, nobody reading
                source.push_audio(np.full(512, i / 10, np.float32), 16_000)
        try:
            await asyncio.wait_for(source.put_audio(np.zeros(512, np.float32), 16_000), 0.2)
            waited = False
        except TimeoutError:
            waited = True
        source.end()
        return source, [item async for item in source.stream()], waited  # type: ignore[misc]

    source, chunks, put_waited = asyncio.run(overfill())
    assert source.metrics.dropped_audio_chunks == 6
    assert [round(float(c.samples[0]), 1) for c in chunks] == [0.6, 0.7, 0.8, 0.9]
    assert put_waited, "put_audio must wait for room instead of dropping"
    warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1  # the first drop, then every 100th


# The real stages.


@pytest.fixture(scope="module")
def models():
    from realtime.runtime.models import load_models

    return asyncio.run(load_models(LiveConfig()))


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> SpeechAudio:
    return make_speech(tmp_path_factory.mktemp("api") / "sentences.wav")


def assert_heard(finals: list[FinalResult], sentences: tuple[str, ...]) -> None:
    assert len(finals) == len(sentences), [f.text for f in finals]
    for final, sentence in zip(finals, sentences, strict=True):
        assert jiwer.wer(_words(sentence), _words(final.text)) <= WER_BOUND, (sentence, final.text)
        assert final.emotion == max(final.scores, key=final.scores.__getitem__)
        assert -1 <= final.valence <= 1 and 0 <= final.arousal <= 1
    assert [f.utterance_id for f in finals] == list(range(1, len(finals) + 1))


def _words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())


@needs_espeak
@needs_checkpoint
def test_pushed_44k_speech_gives_events_and_mqtt_gets_the_same_results(models, sentences) -> None:
    """Paced like a live call: one FinalResult per sentence, utterance starts and interim results
    before them; the MQTT subscriber receives exactly the final results and speaker states the API got."""
    from realtime.api import LiveRecognizer

    config = LiveConfig()
    config.pipeline.interim_after_s = 1.0
    config.pipeline.interim_every_s = 0.5
    audio = to_44k_int16(sentences.samples)

    async def scenario() -> tuple[list, list[tuple[str, dict]]]:
        async with LiveRecognizer(config, models=models) as rec:
            url = parse_mqtt_url(rec.broker_url)
            async with aiomqtt.Client(url.host, url.port) as client:
                await client.subscribe("m2fnet/#", qos=1)
                received: list[tuple[str, dict]] = []

                async def listen() -> None:
                    async for message in client.messages:
                        topic, payload = str(message.topic), bytes(message.payload)
                        if topic.endswith(("/utterance", "/state")) and payload.startswith(b"{"):
                            received.append((topic, json.loads(payload)))

                listener = asyncio.create_task(listen())
                t = 0.0
                for piece in pieces(audio, 44_100, seed=1):
                    rec.push_audio(piece, 44_100, t=t if t == 0.0 else None)
                    t += len(piece) / 44_100
                    await asyncio.sleep(len(piece) / 44_100)
                rec.end()
                events = [event async for event in rec.events()]
                finals = sum(isinstance(e, FinalResult) for e in events)
                for _ in range(100):  # the broker's copies follow within a moment
                    if sum(topic.endswith("/utterance") for topic, _ in received) >= finals:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.3)
                listener.cancel()
                assert rec.push_metrics.dropped_audio_chunks == 0
            return events, received

    events, received = asyncio.run(scenario())
    finals = [e for e in events if isinstance(e, FinalResult)]
    assert_heard(finals, sentences.sentences)
    starts = [e for e in events if isinstance(e, UtteranceStarted)]
    assert len(starts) >= len(finals)
    for final in finals:  # every final result follows an utterance start at or before its audio
        first = events.index(final)
        assert any(
            isinstance(e, UtteranceStarted) and e.start_s <= final.result.start_s for e in events[:first]
        )
    interims = [e for e in events if isinstance(e, InterimResult)]
    assert interims, "no interim result: the sentences last over interim_after_s"
    for interim in interims:  # an interim result never follows the final result of its utterance
        before = events[: events.index(interim)]
        assert not [
            e for e in before if isinstance(e, FinalResult) and e.utterance_id == interim.utterance_id
        ]
    assert [m for topic, m in received if topic.endswith("/utterance")] == [f.to_dict() for f in finals]
    states = [e for e in events if isinstance(e, SpeakerState)]
    assert len(states) == len(finals)
    mqtt_states = [m for topic, m in received if "/speakers/" in topic]
    assert mqtt_states == [s.to_dict() for s in states]


@needs_espeak
@needs_checkpoint
def test_put_16k_float_as_fast_as_taken_and_flush_cuts_a_turn(models) -> None:
    """Two sentences with no pause between them: `flush()` between them makes two results."""
    from realtime.api import LiveRecognizer

    texts = ("The children were laughing in the garden.", "Could you turn off the lights?")
    first, second = (synthesize(text) for text in texts)
    config = LiveConfig()
    config.pipeline.interim = False

    async def scenario() -> list:
        async with LiveRecognizer(config, models=models) as rec:
            for piece in pieces(first, SPEECH_RATE_HZ, seed=2):
                await rec.put_audio(piece.astype(np.float64), SPEECH_RATE_HZ)
            rec.flush()
            for piece in pieces(second, SPEECH_RATE_HZ, seed=3):
                await rec.put_audio(piece, SPEECH_RATE_HZ)
            rec.end()
            return [event async for event in rec.events()]

    events = asyncio.run(scenario())
    assert_heard([e for e in events if isinstance(e, FinalResult)], texts)


@needs_checkpoint
def test_api_demo_prints_what_run_live_prints() -> None:
    """examples/api_demo.py and `run_live.py --source demo --no-realtime --jsonl -`: the same utterances."""

    def run(*args: str) -> list[dict]:
        done = subprocess.run(
            [sys.executable, *args],
            check=False,
            cwd=REPO,
            env=OFFLINE,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    def same(message: dict) -> tuple:
        return tuple(
            message[k] for k in ("stream_id", "utterance_id", "speaker", "text", "emotion", "scores")
        )

    api = run("examples/api_demo.py")
    cli = run("run_live.py", "--source", "demo", "--no-realtime", "--jsonl", "-")
    assert len(api) >= 5
    assert [same(m) for m in api] == [same(m) for m in cli]


@needs_espeak
@needs_checkpoint
def test_run_file_blocks_and_returns_the_final_results(sentences) -> None:
    from realtime import LiveRecognizer

    finals = LiveRecognizer.run_file(sentences.path)
    assert_heard(finals, sentences.sentences)
    assert finals[0].stream_id == "sentences"
