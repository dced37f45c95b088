"""Per-speaker retained state: the smoothing rule on known results, then the retained topics left on a
real Mosquitto by `run_live.py` on a generated two-voice conversation."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import aiomqtt
import pytest
from conversations import best_mapping_accuracy, make_conversation
from mosquitto import Mosquitto
from test_run_live_e2e import child_env, needs_checkpoint, run_live_args

from realtime.messages import EmotionResult
from realtime.outputs.speaker_state import SpeakerStateSink


class Retained:
    def __init__(self) -> None:
        self.topics: dict[str, dict] = {}

    def publish_retained(self, subtopic: str, payload: str) -> None:
        if payload:
            self.topics[subtopic] = json.loads(payload)
        else:  # an empty retained message clears the topic
            del self.topics[subtopic]


def result(utterance_id: int, speaker: str | None, scores: dict[str, float], seconds: float = 2.0):
    return EmotionResult(
        stream_id="room",
        utterance_id=utterance_id,
        start_s=10.0 * utterance_id,
        end_s=10.0 * utterance_id + seconds,
        text="hi.",
        emotion=max(scores, key=scores.__getitem__),
        scores=scores,
        modalities={"text": True},
        model="m",
        speaker=speaker,
    )


def test_state_smooths_each_speaker_apart() -> None:
    channel = Retained()
    sink = SpeakerStateSink(channel, "room", ema_factor=0.5)
    sink.emit(result(1, "S1", {"joy": 0.8, "anger": 0.2}))
    sink.emit(result(2, "S2", {"joy": 0.1, "anger": 0.9}, seconds=1.5))
    sink.emit(result(3, "S1", {"joy": 0.2, "anger": 0.8}))
    sink.emit(result(4, None, {"joy": 1.0, "anger": 0.0}))  # attribution off: ignored
    s1 = channel.topics["speakers/S1/state"]
    assert s1["scores"] == {"anger": 0.5, "joy": 0.5} or s1["scores"] == pytest.approx(
        {"anger": 0.5, "joy": 0.5}
    )
    assert s1["last_emotion"] == "anger" and s1["last_utterance_id"] == 3
    assert s1["utterances"] == 2 and s1["speaking_s"] == pytest.approx(4.0)
    s2 = channel.topics["speakers/S2/state"]
    assert s2["emotion"] == "anger" and s2["speaking_s"] == pytest.approx(1.5)
    summary = channel.topics["state"]
    assert summary["speakers"] == {"S1": s1["emotion"], "S2": "anger"}
    assert summary["last_speaker"] == "S1" and summary["utterances"] == 3 and summary["schema"] == 3
    with pytest.raises(ValueError):
        SpeakerStateSink(channel, "room", ema_factor=0.0)


def test_a_speaker_retired_by_a_merge_leaves_the_state() -> None:
    channel, alive = Retained(), {"S1", "S2"}
    sink = SpeakerStateSink(channel, "room", present=lambda: alive)
    sink.emit(result(1, "S1", {"joy": 1.0}))
    sink.emit(result(2, "S2", {"joy": 1.0}))
    alive.discard("S2")  # S2's utterances joined S1's
    sink.emit(result(3, "S1", {"joy": 1.0}))
    assert set(channel.topics) == {"speakers/S1/state", "state"}
    assert channel.topics["state"]["speakers"] == {"S1": "joy"}


async def read_retained(broker: Mosquitto, pattern: str, settle_s: float = 1.5) -> dict[str, dict]:
    """Every retained state message under `pattern`, as a new subscriber receives them."""
    found: dict[str, dict] = {}
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(pattern, qos=1)
        try:
            async with asyncio.timeout(settle_s):
                async for message in client.messages:
                    if message.retain and str(message.topic).endswith("/state"):
                        found[str(message.topic)] = json.loads(message.payload.decode())
        except TimeoutError:
            pass
    return found


@needs_checkpoint
def test_run_live_leaves_speaker_state_on_the_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    conversation = make_conversation(tmp_path / "talk.wav", 2, n_turns=8, seed=21)
    stream_id = f"speakers-{uuid.uuid4().hex[:8]}"
    args = ["--source", str(conversation.path), "--no-realtime", "--jsonl", "-", "--mqtt", mosquitto.url]
    process = subprocess.run(
        run_live_args(*args, "--stream-id", stream_id),
        check=False,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    messages = [json.loads(line) for line in process.stdout.splitlines()]
    assert len(messages) >= 6
    truth = [conversation.speaker_at(m["start_s"], m["end_s"]) for m in messages]
    labels = [m["speaker"] for m in messages]
    assert set(labels) == {"S1", "S2"} and labels[0] == "S1"
    assert best_mapping_accuracy(truth, labels) >= 0.85
    assert all(m["timings_ms"]["speaker"] > 0 for m in messages)

    state = asyncio.run(read_retained(mosquitto, f"m2fnet/{stream_id}/#"))
    summary = state[f"m2fnet/{stream_id}/state"]
    assert set(summary["speakers"]) == {"S1", "S2"} and summary["utterances"] == len(messages)
    assert summary["last_speaker"] == labels[-1]
    for speaker in ("S1", "S2"):
        mine = [m for m in messages if m["speaker"] == speaker]
        retained = state[f"m2fnet/{stream_id}/speakers/{speaker}/state"]
        assert retained["last_utterance_id"] == mine[-1]["utterance_id"]
        assert retained["last_emotion"] == mine[-1]["emotion"]
        assert retained["utterances"] == len(mine)
        assert retained["speaking_s"] == pytest.approx(sum(m["end_s"] - m["start_s"] for m in mine), abs=0.01)
        assert sum(retained["scores"].values()) == pytest.approx(1.0, abs=1e-3)
        assert summary["speakers"][speaker] == retained["emotion"]
