"""Interim results: `run_live.py` at real-time pace on a long utterance, a real Mosquitto and subscriber.

The provisional results of an utterance must arrive while it is spoken, before its final result,
and never after it; they carry the id the final will have and must not change the final."""

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

LONG = (
    "We need to finish the report before Friday, or the client will be very unhappy with us, "
    "and then all of us will have to work over the weekend to fix everything that went wrong."
)
SHORT = "Okay, fine, let us do that."


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
    assert first["schema"] == 1 and first["text"] and first["emotion"] in first["scores"]
    assert first["start_s"] == finals[0]["start_s"] and first["end_s"] < finals[0]["end_s"]
    words_heard = [len(m["text"].split()) for _, m in interims]
    assert words_heard[0] < len(finals[0]["text"].split())
