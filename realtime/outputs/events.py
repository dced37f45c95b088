"""What one stream tells its consumers, as typed events: an utterance started, an interim result, a final
result, a speaker's state. MQTT, the console and `realtime.api.LiveRecognizer` all read the same ones.

`EventFanout` stands where the stream's MQTT channel stood: each call reaches the channel exactly as
before (so the MQTT output is unchanged) and the same record reaches `deliver` as an event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from realtime.affect import valence_arousal
from realtime.frames import AudioChunk, SpeechSegment, VideoFrame
from realtime.messages import SCHEMA_VERSION, EmotionResult


@dataclass(frozen=True, slots=True)
class UtteranceStarted:
    """The VAD heard speech start. Not every start ends in a `FinalResult`: a cough or a segment that
    Whisper finds empty ends without one."""

    stream_id: str
    start_s: float
    """Stream time where the utterance starts (the VAD's padding included)."""


@dataclass(frozen=True, slots=True)
class _Recognized:
    result: EmotionResult
    """The record MQTT publishes; `to_dict()` is the message."""

    @property
    def stream_id(self) -> str:
        return self.result.stream_id

    @property
    def utterance_id(self) -> int:
        return self.result.utterance_id

    @property
    def text(self) -> str:
        return self.result.text

    @property
    def emotion(self) -> str:
        return self.result.emotion

    @property
    def scores(self) -> dict[str, float]:
        return self.result.scores

    @property
    def speaker(self) -> str | None:
        return self.result.speaker

    @property
    def valence(self) -> float:
        return valence_arousal(self.result.scores)[0]

    @property
    def arousal(self) -> float:
        return valence_arousal(self.result.scores)[1]

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()


class InterimResult(_Recognized):
    """A provisional result of the utterance still being spoken (`<prefix>/<stream>/interim`); its
    `utterance_id` is the one its final result will have. Realtime input only."""

    __slots__ = ()


class FinalResult(_Recognized):
    """One recognised utterance: the message of `<prefix>/<stream>/utterance`."""

    __slots__ = ()

    @property
    def speaker_revisions(self) -> dict[int, str]:
        """Earlier utterance id -> its corrected speaker (a transcript kept by the caller applies them)."""
        return self.result.speaker_revisions


@dataclass(frozen=True, slots=True)
class SpeakerState:
    """A speaker's smoothed emotion after one of their utterances: the retained message of
    `<prefix>/<stream>/speakers/<speaker>/state`. Only with speaker attribution on."""

    stream_id: str
    speaker: str
    emotion: str
    """The most probable label of the smoothed scores."""
    scores: dict[str, float]
    """Exponential moving average of the speaker's scores (`speakers.ema_factor`)."""
    last_emotion: str
    last_utterance_id: int
    utterances: int
    speaking_s: float
    wall_time: str

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> SpeakerState:
        return cls(**{name: message[name] for name in cls.__slots__})  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        return {"schema": SCHEMA_VERSION, **fields}


Event = UtteranceStarted | InterimResult | FinalResult | SpeakerState


class Channel(Protocol):
    """`realtime.outputs.mqtt.publisher.StreamChannel`: the calls a stream's pipeline makes on its MQTT topics."""

    def emit(self, result: EmotionResult) -> None: ...
    def emit_interim(self, result: EmotionResult) -> bool: ...
    def publish_retained(self, subtopic: str, payload: str) -> None: ...


class Segmenter(Protocol):
    def push(self, chunk: AudioChunk) -> list[SpeechSegment]: ...
    def add_frame(self, frame: VideoFrame) -> None: ...
    def flush(self) -> list[SpeechSegment]: ...


class StreamTap(Protocol):
    """Given to `Runtime.add_stream`: wraps the stream's channel and segmenter to see its events."""

    def tee(self, channel: Channel) -> Channel: ...
    def watch(self, segmenter: Segmenter) -> Segmenter: ...


class EventFanout:
    """A stream's results to its channel first, then as events to `deliver` (the same objects)."""

    def __init__(self, channel: Channel, deliver: Callable[[Event], None]) -> None:
        self._channel = channel
        self._deliver = deliver

    def emit(self, result: EmotionResult) -> None:
        self._channel.emit(result)
        self._deliver(FinalResult(result))

    def emit_interim(self, result: EmotionResult) -> bool:
        """Whether MQTT took it (the pipeline counts that); the event consumer always gets it."""
        published = self._channel.emit_interim(result)
        self._deliver(InterimResult(result))
        return published

    def publish_retained(self, subtopic: str, payload: str) -> None:
        self._channel.publish_retained(subtopic, payload)
        # An empty payload clears the topic of a speaker retired by a merge: no state to report.
        if payload and subtopic.startswith("speakers/") and subtopic.endswith("/state"):
            self._deliver(SpeakerState.from_message(json.loads(payload)))
