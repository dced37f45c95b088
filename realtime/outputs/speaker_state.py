"""Retained conversation state of one stream, updated with each attributed utterance.

`<prefix>/<stream>/speakers/<speaker>/state`: that speaker's current (smoothed) emotion, the
exponential moving average of their scores, their last utterance id, utterance count and speaking
time. `<prefix>/<stream>/state`: the speakers heard so far and each one's current emotion. Both are
retained, so a subscriber that joins mid-conversation sees where things stand at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from realtime.messages import SCHEMA_VERSION, EmotionResult, utc_now_iso


class RetainedPublisher(Protocol):
    """`realtime.outputs.mqtt.publisher.StreamChannel`."""

    def publish_retained(self, subtopic: str, payload: str) -> None: ...


@dataclass(slots=True)
class _SpeakerState:
    scores: dict[str, float]
    last_emotion: str
    last_utterance_id: int
    utterances: int = 0
    speaking_s: float = 0.0
    wall_time: str = field(default_factory=utc_now_iso)


class SpeakerStateSink:
    """A result sink: keeps each speaker's smoothed emotion and publishes it, with the summary, retained.

    Utterances without a speaker (attribution off) are ignored. State is per stream and in memory,
    one entry per speaker alive: a speaker retired by a merge (absent from `present()`) is dropped and
    its retained topic cleared (an empty retained message), so the entries stay bounded by
    `SpeakerOptions.max_speakers` plus the enrolled names.
    """

    def __init__(
        self,
        channel: RetainedPublisher,
        stream_id: str,
        ema_factor: float = 0.3,
        present: Callable[[], set[str]] | None = None,
    ) -> None:
        """`ema_factor`: weight of the newest utterance in the smoothed scores (1 = no smoothing).
        `present()`: the speakers alive now (`SpeakerAttributor.names`); None keeps every speaker."""
        if not 0 < ema_factor <= 1:
            raise ValueError("ema_factor must be in (0, 1]")
        self.stream_id = stream_id
        self.ema_factor = ema_factor
        self.speakers: dict[str, _SpeakerState] = {}
        self._channel = channel
        self._present = present
        self._last_speaker: str | None = None
        self._utterances = 0

    def emit(self, result: EmotionResult) -> None:
        if result.speaker is None:
            return
        state = self.speakers.get(result.speaker)
        if state is None:
            state = self.speakers[result.speaker] = _SpeakerState(
                dict(result.scores), result.emotion, result.utterance_id
            )
        else:
            a = self.ema_factor
            labels = set(state.scores) | set(result.scores)
            state.scores = {
                k: a * result.scores.get(k, 0.0) + (1 - a) * state.scores.get(k, 0.0) for k in labels
            }
        state.last_emotion = result.emotion
        state.last_utterance_id = result.utterance_id
        state.utterances += 1
        state.speaking_s += max(0.0, result.end_s - result.start_s)
        state.wall_time = result.wall_time
        self._last_speaker = result.speaker
        self._utterances += 1
        if self._present is not None:
            alive = self._present() | {result.speaker}
            for gone in [name for name in self.speakers if name not in alive]:
                del self.speakers[gone]
                self._channel.publish_retained(f"speakers/{gone}/state", "")
        self._channel.publish_retained(f"speakers/{result.speaker}/state", self._speaker_json(result.speaker))
        self._channel.publish_retained("state", self._summary_json())

    def speaker_message(self, speaker: str) -> dict:
        state = self.speakers[speaker]
        return {
            "schema": SCHEMA_VERSION,
            "stream_id": self.stream_id,
            "speaker": speaker,
            "emotion": _current(state),
            "scores": {label: round(p, 4) for label, p in sorted(state.scores.items())},
            "last_emotion": state.last_emotion,
            "last_utterance_id": state.last_utterance_id,
            "utterances": state.utterances,
            "speaking_s": round(state.speaking_s, 3),
            "wall_time": state.wall_time,
        }

    def summary_message(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "stream_id": self.stream_id,
            "speakers": {name: _current(state) for name, state in self.speakers.items()},
            "last_speaker": self._last_speaker,
            "utterances": self._utterances,
            "wall_time": utc_now_iso(),
        }

    def _speaker_json(self, speaker: str) -> str:
        return json.dumps(self.speaker_message(speaker), ensure_ascii=False, separators=(",", ":"))

    def _summary_json(self) -> str:
        return json.dumps(self.summary_message(), ensure_ascii=False, separators=(",", ":"))


def _current(state: _SpeakerState) -> str:
    """The speaker's current emotion: the most probable label of the smoothed scores."""
    return max(state.scores, key=state.scores.__getitem__)
