"""The models every stream shares: Whisper, the emotion recognizer and the voice encoder, loaded
side by side, and the recognizer's input for one utterance."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from realtime.frames import SpeechSegment, Transcript
from realtime.runtime.config import LiveConfig
from realtime.session.pipeline import EmotionSession
from realtime.speakers.attributor import Embedder, enrol
from realtime.speech.whisper_batching import BatchTranscriber


class EmotionModel(Protocol):
    """`engines.stream.Recognizer`: shared weights, one session (causal context) per stream."""

    model_id: str

    def new_session(self, max_context_utterances: int) -> EmotionSession: ...


@dataclass(slots=True)
class Models:
    transcriber: BatchTranscriber
    recognizer: EmotionModel
    voices: Embedder | None = None
    """The voice encoder shared by every stream's speaker attribution; None when attribution is off."""
    enrolled: dict[str, np.ndarray] = field(default_factory=dict)
    """Enrolled name -> unit voice embedding (`--speaker NAME=FILE`)."""


def utterance_input(segment: SpeechSegment, transcript: Transcript) -> Any:
    """The recognizer's input for one utterance: transcript, its audio and the frames shown meanwhile."""
    from engines.stream import UtteranceInput

    return UtteranceInput(
        text=transcript.text.strip(),
        speaker=None,
        audio=segment.samples,
        frames=[frame.rgb for frame in segment.frames] or None,
        voice=np.asarray(transcript.voice, dtype=np.float32) if transcript.voice is not None else None,
    )


async def load_models(config: LiveConfig) -> Models:
    """Whisper and the recognizer, loaded side by side in worker threads."""
    import torch

    from engines.stream import load_recognizer
    from realtime.speech.whisper import Transcriber

    torch.set_num_threads(1)
    engine = config.engine
    transcriber, recognizer, voices = await asyncio.gather(
        asyncio.to_thread(Transcriber, config.asr),
        asyncio.to_thread(
            load_recognizer,
            config.checkpoint_dir,
            engine.backend,
            engine.precision,
            engine.artifacts_dir,
            config.voice,
        ),
        asyncio.to_thread(_load_voices, config),
    )
    return Models(transcriber, recognizer, *(voices or (None, {})))


def _load_voices(config: LiveConfig) -> tuple[Embedder, dict[str, np.ndarray]] | None:
    if not config.speakers.enabled:
        return None
    from engines.speaker_encoder import load_voice_encoder

    encoder = load_voice_encoder()
    return encoder, enrol(encoder, config.speakers.enrol)
