"""A pipecat processor: the emotion of each user turn, from the user's own audio (and camera).

    emotion = EmotionProcessor(recognizer, EmotionParams(append_to_context=True))
    pipeline = Pipeline([transport.input(), emotion, stt, context_aggregator.user(), llm, ...])

`EmotionProcessor` passes every frame on unchanged. It copies `InputAudioRawFrame`s (and
`InputImageRawFrame`s) into a push stream of a `realtime.LiveRecognizer` and pushes an `EmotionFrame`
downstream per recognised utterance. A `UserStoppedSpeakingFrame` (pipecat's turn end) cuts the utterance
there, so utterances follow pipecat's turns when the pipeline has a VAD or turn analyser; without one, this
project's VAD cuts them at pauses. The result comes about a second after the turn ends (Whisper and the
recognizer run first), so with `append_to_context` the emotion lands after the user's message.

Needs the `pipecat` extra (`pipecat-ai`, see docs/api.md for the install).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputImageRawFrame,
    LLMMessagesAppendFrame,
    StartFrame,
    SystemFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from realtime.api import LiveRecognizer, PushStream
from realtime.outputs.events import FinalResult

logger = logging.getLogger(__name__)


@dataclass
class EmotionFrame(SystemFrame):
    """The emotion of one user utterance (a system frame: it overtakes queued data frames)."""

    label: str
    """The most probable emotion (MELD's seven: neutral, joy, surprise, anger, sadness, disgust, fear)."""
    scores: dict[str, float]
    """Probability per label."""
    valence: float
    """-1 (unpleasant) .. 1 (pleasant), from the scores."""
    arousal: float
    """0 (calm) .. 1 (excited), from the scores."""
    speaker: str | None
    """`S1`, `S2`, ... or an enrolled name; None with speaker attribution off."""
    text: str
    """What Whisper heard (this project's transcript, not the pipeline's STT)."""
    message: dict[str, Any] = field(default_factory=dict)
    """The full schema-3 message, as published on MQTT."""


@dataclass(slots=True)
class EmotionParams:
    append_to_context: bool = False
    """Also push an `LLMMessagesAppendFrame` (run_llm=False) describing the emotion, for the user
    context aggregator downstream."""
    context_role: str = "developer"
    """Role of that message: pipecat's task-instruction role; "system" or "user" for adapters without it."""
    cut_on_turn_end: bool = True
    """A `UserStoppedSpeakingFrame` ends the utterance in progress."""
    stream_id: str = "pipecat"
    """Stream id of this pipeline in the results (and on MQTT); made unique per recognizer."""


class EmotionProcessor(FrameProcessor):
    """Emotion per user turn from the pipeline's input audio; see the module docstring."""

    def __init__(
        self, recognizer: LiveRecognizer, params: EmotionParams | None = None, **kwargs: Any
    ) -> None:
        """`recognizer`: started (`async with LiveRecognizer.from_config() as rec`) and shared by any
        number of pipelines: its models are loaded once; each processor has its own push stream."""
        super().__init__(**kwargs)
        self._recognizer = recognizer
        self._params = params or EmotionParams()
        self._push: PushStream | None = None
        self._reader: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._push = self._recognizer.open_push(self._params.stream_id)
            self._reader = self.create_task(self._read_events(self._push), name="emotion-events")
        elif self._push is not None and direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, InputAudioRawFrame):
                # Waits only while the recognizer's own queue is full (it reads far faster than real time).
                await self._push.put_audio(frame.audio, frame.sample_rate, channels=frame.num_channels)
            elif isinstance(frame, InputImageRawFrame):
                image = _rgb(frame)
                if image is not None:
                    await self._push.put_frame(image, self._push.now_s)
            elif isinstance(frame, UserStoppedSpeakingFrame) and self._params.cut_on_turn_end:
                self._push.flush()
            elif isinstance(frame, EndFrame):
                # What the user said last still gets its EmotionFrame, before the EndFrame.
                self._push.end()
                if self._reader is not None:
                    await self._reader
                    self._reader = None
            elif isinstance(frame, CancelFrame):
                await self._stop_reading()
        await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await self._stop_reading()
        await super().cleanup()

    async def _stop_reading(self) -> None:
        if self._push is not None:
            self._push.end()
        if self._reader is not None:
            await self.cancel_task(self._reader)
            self._reader = None

    async def _read_events(self, push: PushStream) -> None:
        async for event in push.events():
            if not isinstance(event, FinalResult):
                continue
            await self.push_frame(emotion_frame(event))
            if self._params.append_to_context:
                message = {"role": self._params.context_role, "content": context_line(event)}
                await self.push_frame(LLMMessagesAppendFrame(messages=[message], run_llm=False))


def emotion_frame(result: FinalResult) -> EmotionFrame:
    return EmotionFrame(
        label=result.emotion,
        scores=dict(result.scores),
        valence=result.valence,
        arousal=result.arousal,
        speaker=result.speaker,
        text=result.text,
        message=result.to_dict(),
    )


def context_line(result: FinalResult) -> str:
    """One line for the LLM: who, how they sounded, what they said."""
    who = f"The user ({result.speaker})" if result.speaker else "The user"
    return (
        f"{who} sounded {result.emotion} (valence {result.valence:+.2f}, arousal {result.arousal:.2f}) "
        f'when saying: "{result.text}"'
    )


def _rgb(frame: InputImageRawFrame) -> np.ndarray | None:
    """The frame as RGB uint8 (H, W, 3); None (logged) for a format other than raw RGB / RGBA."""
    channels = {"RGB": 3, "RGBA": 4}.get((frame.format or "RGB").upper())
    width, height = frame.size
    if channels is None or len(frame.image) != width * height * channels:
        logger.debug("image frame %s (%s bytes) skipped: not raw RGB/RGBA", frame.format, len(frame.image))
        return None
    return np.frombuffer(frame.image, np.uint8).reshape(height, width, channels)[..., :3]
