"""Interim results: the scheduling rules with stand-in stages, then `run_live.py` at real-time pace on a
long utterance with a real Mosquitto and subscriber.

The provisional results of an utterance must arrive while it is spoken, before its final result,
and never after it; they carry the id the final will have."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import numpy as np
from conftest import SPEECH_RATE_HZ, write_wav
from conversations import VOICES, speak
from mosquitto import Mosquitto
from test_run_live_e2e import needs_checkpoint, run_with_subscriber

from realtime.frames import SpeechSegment, Transcript
from realtime.messages import EmotionResult
from realtime.metrics import PipelineMetrics
from realtime.session.interim import InterimResults

LONG = (
    "We need to finish the report before Friday, or the client will be very unhappy with us, "
    "and then all of us will have to work over the weekend to fix everything that went wrong."
)
SHORT = "Okay, fine, let us do that."


class Speaking:
    """A segmenter stand-in: speech open since `since`, optionally in a pause."""

    def __init__(self) -> None:
        self.speaking_since_s: float | None = None
        self.pausing = False

    def open_samples(self) -> np.ndarray:
        return np.zeros(1600, np.float32)


class Collect:
    def __init__(self) -> None:
        self.results: list[EmotionResult] = []

    def emit_interim(self, result: EmotionResult) -> bool:
        self.results.append(result)
        return True


def make_interim(gate: asyncio.Event | None = None):
    vad, sink, metrics = Speaking(), Collect(), PipelineMetrics()

    async def transcribe(samples: np.ndarray) -> Transcript:
        if gate is not None:
            await gate.wait()
        return Transcript("so far", "en", 0.1, 1.0)

    async def recognize(segment: SpeechSegment, transcript: Transcript) -> EmotionResult:
        return EmotionResult(
            "s", 7, segment.start_s, segment.end_s, transcript.text, "joy", {"joy": 1.0}, {}, "m"
        )

    interim = InterimResults(
        segmenter=vad,
        sink=sink,
        after_s=2.0,
        every_s=1.0,
        metrics=metrics,
        transcribe=transcribe,
        recognize=recognize,
    )
    return interim, vad, sink, metrics


def test_interim_schedule_pauses_and_skips() -> None:
    async def scenario() -> None:
        interim, vad, sink, metrics = make_interim()
        interim.on_audio(1.0, idle=True)  # silence
        vad.speaking_since_s = 1.0
        for now_s in (1.5, 2.9):  # not yet 2 s of speech
            interim.on_audio(now_s, idle=True)
        await asyncio.sleep(0)
        assert not sink.results
        interim.on_audio(3.0, idle=True)
        await asyncio.sleep(0.01)
        assert [(r.start_s, r.end_s, r.utterance_id) for r in sink.results] == [(1.0, 3.0, 7)]
        interim.on_audio(3.5, idle=True)  # not due again before 4.0
        interim.on_audio(4.0, idle=False)  # due, but a final result is being made
        assert metrics.interim_skipped == 1
        vad.pausing = True
        interim.on_audio(5.0, idle=True)  # due, but the speaker pauses
        vad.pausing = False
        interim.on_audio(5.1, idle=True)
        await asyncio.sleep(0.01)
        assert [r.end_s for r in sink.results] == [3.0, 5.1] and metrics.interim_published == 2
        vad.speaking_since_s = 9.0  # a new utterance: its own 2 s wait
        interim.on_audio(10.0, idle=True)
        await asyncio.sleep(0.01)
        assert len(sink.results) == 2
        await interim.close()

    asyncio.run(scenario())


def test_interim_of_a_closed_utterance_is_never_published() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        interim, vad, sink, metrics = make_interim(gate)
        vad.speaking_since_s = 0.0
        interim.on_audio(2.0, idle=True)
        await asyncio.sleep(0)
        interim.on_audio(3.0, idle=True)  # the previous one is still transcribing
        assert metrics.interim_skipped == 1
        interim.utterance_closed()  # the VAD cut the utterance: its final is on the way
        gate.set()
        await asyncio.sleep(0.01)
        assert not sink.results and metrics.interim_stale == 1
        await interim.close()

    asyncio.run(scenario())


@needs_checkpoint
def test_interim_results_come_before_the_final_and_never_after(tmp_path: Path, mosquitto: Mosquitto) -> None:
    silence = np.zeros(SPEECH_RATE_HZ, np.float32)
    audio = np.concatenate([silence, speak(LONG, VOICES[0]), silence, speak(SHORT, VOICES[1]), silence])
    path = write_wav(tmp_path / "long.wav", audio)
    stream_id = f"interim-{uuid.uuid4().hex[:8]}"
    args = ["--source", str(path), "--mqtt", mosquitto.url, "--stream-id", stream_id]
    run = asyncio.run(run_with_subscriber(mosquitto, stream_id, args))
    assert run.returncode == 0, run.stderr[-3000:]

    arrivals = [
        (topic.rsplit("/", 1)[-1], json.loads(payload))
        for topic, payload, _ in run.messages
        if topic.endswith(("/interim", "/utterance"))
    ]
    finals = [m for kind, m in arrivals if kind == "utterance"]
    assert [m["utterance_id"] for m in finals] == [1, 2]
    long_final = next(
        i for i, (kind, m) in enumerate(arrivals) if kind == "utterance" and m["utterance_id"] == 1
    )
    interims = [(i, m) for i, (kind, m) in enumerate(arrivals) if kind == "interim"]
    assert interims, "no interim result for a long utterance"
    assert [m["utterance_id"] for _, m in interims] == sorted(m["utterance_id"] for _, m in interims), (
        arrivals
    )
    for i, interim in interims:
        final = next(
            j
            for j, (kind, m) in enumerate(arrivals)
            if kind == "utterance" and m["utterance_id"] == interim["utterance_id"]
        )
        assert i < final, arrivals
    assert any(m["utterance_id"] == 1 for _, m in interims) and all(
        i < long_final for i, m in interims if m["utterance_id"] == 1
    )
    first = interims[0][1]
    assert first["schema"] == 3 and first["text"] and first["emotion"] in first["scores"]
    assert first["start_s"] == finals[0]["start_s"] and first["end_s"] < finals[0]["end_s"]
    words_heard = [len(m["text"].split()) for _, m in interims]
    assert words_heard[0] < len(finals[0]["text"].split())
