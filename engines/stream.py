"""Streaming inference: one session per conversation stream, holding its rolling causal context.

Each new utterance is encoded once (text, and audio / visual with the checkpoint's own extractors when
it was trained with them); M2FNet then runs over the last N utterances and the newest row is the
result. The networks run behind engines/engine.py, so the numpy context does not care which backend
runs them. Blocking: the live loop calls `add` from an executor, never the event loop.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engines.backends import load_engines
from engines.checkpoint import Checkpoint, check_checkpoint_files, load_checkpoint
from engines.engine import EngineOptions, Engines
from engines.errors import CheckpointError
from engines.text_encoder import build_input
from engines.voice_emotion import VoiceEmotion, VoiceHead, VoiceOptions, fuse, load_voice_head

if TYPE_CHECKING:
    from engines.visual_extractor import FramePreparer

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "models" / "m2fnet-meld-causal"


@dataclass
class UtteranceInput:
    text: str
    speaker: str | None = None
    audio: np.ndarray | None = None  # the utterance's 16 kHz mono float32 samples
    frames: list[np.ndarray] | None = None  # RGB frames shown during the utterance
    voice: np.ndarray | None = None  # pooled Whisper encoder states (engines.voice_emotion)


@dataclass
class EmotionPrediction:
    emotion: str
    scores: dict[str, float]
    modalities: dict[str, bool]  # which modalities this prediction actually used
    features_ms: float
    fusion_ms: float
    by_modality: dict[str, dict[str, float]] = field(default_factory=dict)
    """What each branch said on its own: "text" (the checkpoint's network) and "voice" when it ran."""


@dataclass
class _ContextEntry:
    text: str
    speaker: str
    text_vector: np.ndarray
    features: dict[str, np.ndarray | None] = field(default_factory=dict)


class Recognizer:
    """A loaded causal checkpoint and its engines; cheap to share between sessions (read-only weights)."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        engines: Engines,
        voice_head: VoiceHead | None = None,
        voice_options: VoiceOptions | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.engines = engines
        self.labels = checkpoint.labels
        self.model_id = checkpoint.model_id
        self.modalities = checkpoint.model_config.modalities
        if voice_head is not None and voice_head.labels != list(self.labels):
            raise CheckpointError(
                f"voice model labels {voice_head.labels} differ from the checkpoint's {list(self.labels)}"
            )
        self.voice_head = voice_head
        self.voice_options = voice_options or VoiceOptions()

    def new_session(self, max_context_utterances: int = 12) -> RecognizerSession:
        return RecognizerSession(self, max_context_utterances)

    def add_many(self, items: list[tuple[RecognizerSession, UtteranceInput]]) -> list[EmotionPrediction]:
        """`session.add(utterance)` for each pair, the texts encoded in one padded call (several streams'
        utterances waiting at once); the rest runs per session. Results are those of one by one.
        `features_ms` counts the shared text call plus the utterance's own media features. Pays with
        torch (8 sessions: 188 against 228 ms one by one), not with ONNX Runtime (119 against 119 ms;
        bench/emotion_batching.py), so the live runtime calls it one utterance at a time (`add`)."""
        if len({id(session) for session, _ in items}) < len(items):
            raise ValueError("add_many: one utterance per session (each one's context includes the last)")
        started = time.perf_counter()
        inputs = [session._text_input(utterance) for session, utterance in items]
        width = max(len(sequence) for sequence, _ in inputs)
        pad_id = self.checkpoint.tokenizer.pad_token_id or 0
        ids = np.full((len(inputs), width), pad_id, dtype=np.int64)
        attention = np.zeros(ids.shape, dtype=np.int64)
        target = np.zeros(ids.shape, dtype=bool)
        for row, (sequence, (start, end)) in enumerate(inputs):
            ids[row, : len(sequence)] = sequence
            attention[row, : len(sequence)] = 1
            target[row, start:end] = True
        vectors = self.engines.text.encode(ids, attention, target)
        text_ms = (time.perf_counter() - started) * 1000
        out = []
        for (session, utterance), vector in zip(items, vectors):
            started = time.perf_counter()
            media = session._media_features(utterance) if self.engines.audio or self.engines.visual else {}
            session.context.append(_ContextEntry(utterance.text, utterance.speaker or "", vector, media))
            features_ms = text_ms + (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            probs, present = session._fuse()
            by_modality = {"text": self._scores(probs)}
            used = {
                m: bool(present[m][0, -1]) if m in present else False for m in ("text", "audio", "visual")
            }
            if session.voice is not None and utterance.voice is not None:
                voice = session.voice.read(utterance.voice, utterance.speaker or "")
                by_modality["voice"] = self._scores(voice.probabilities)
                weight = self.voice_options.effective_weight(voice.distance)
                probs = list(fuse(np.asarray(probs), voice.probabilities, session.voice.head, weight))
                used["audio"] = True
            fusion_ms = (time.perf_counter() - started) * 1000
            best = max(range(len(probs)), key=probs.__getitem__)
            out.append(
                EmotionPrediction(
                    emotion=self.labels[best],
                    scores=self._scores(probs),
                    modalities=used,
                    features_ms=features_ms,
                    fusion_ms=fusion_ms,
                    by_modality=by_modality,
                )
            )
        return out

    def _scores(self, probs) -> dict[str, float]:
        return {label: round(float(p), 6) for label, p in zip(self.labels, probs)}


class RecognizerSession:
    def __init__(self, recognizer: Recognizer, max_context_utterances: int) -> None:
        if max_context_utterances < 1:
            raise ValueError("max_context_utterances must be at least 1")
        self.recognizer = recognizer
        # Older utterances fall out of the window by design: the model is causal and windowed.
        self.context: deque[_ContextEntry] = deque(maxlen=max_context_utterances)
        # Face detectors are not thread-safe and a session runs on one executor thread: one per session,
        # started on first use, in that thread.
        self._frame_preparer: FramePreparer | None = None
        self.voice = VoiceEmotion(recognizer.voice_head) if recognizer.voice_head is not None else None
        """The voice head with this stream's per-speaker statistics."""

    def _media_features(self, utterance: UtteranceInput) -> dict[str, np.ndarray | None]:
        """Audio/visual vectors for the modalities the checkpoint uses; None (masked) where the input is
        missing, never a made-up vector."""
        # Imported here: a text-only checkpoint never loads the media stack.
        from engines.media_features import audio_vector, visual_vector
        from engines.visual_extractor import FramePreparer

        engines = self.recognizer.engines
        out: dict[str, np.ndarray | None] = {}
        if engines.audio is not None:
            out["audio"] = None if utterance.audio is None else audio_vector(engines.audio, utterance.audio)
        if engines.visual is not None:
            visual = None
            if utterance.frames:
                if self._frame_preparer is None:
                    self._frame_preparer = FramePreparer(engines.visual.config)
                prepared = self._frame_preparer(utterance.frames)
                visual = None if prepared is None else visual_vector(engines.visual, prepared)
            # Frames without a face still count, as in training: extraction keeps such a clip with its
            # scene half and a zero face half (face_present is recorded, not used to mask).
            out["visual"] = visual
        return out

    def preview(self, utterance: UtteranceInput) -> EmotionPrediction:
        """What `add` would predict for `utterance`, leaving the context as it was (interim results of an
        utterance still being spoken)."""
        saved = list(self.context)
        saved_voices = self.voice.norm.snapshot() if self.voice is not None else None
        try:
            return self.add(utterance)
        finally:
            self.context.clear()
            self.context.extend(saved)
            if self.voice is not None and saved_voices is not None:
                self.voice.norm.restore(saved_voices)

    def add(self, utterance: UtteranceInput) -> EmotionPrediction:
        return self.recognizer.add_many([(self, utterance)])[0]

    def _text_input(self, utterance: UtteranceInput) -> tuple[list[int], tuple[int, int]]:
        """Token ids of the utterance with its causal context, and its own token span."""
        checkpoint = self.recognizer.checkpoint
        texts = [e.text for e in self.context] + [utterance.text]
        speakers = [e.speaker for e in self.context] + [utterance.speaker or ""]
        return build_input(checkpoint.tokenizer, texts, speakers, len(texts) - 1, checkpoint.text_config)

    def _fuse(self) -> tuple[list[float], dict[str, np.ndarray]]:
        """Class probabilities of the newest utterance over the context, and which modalities were present."""
        checkpoint = self.recognizer.checkpoint
        entries = list(self.context)
        k = len(entries)
        features = {"text": np.stack([e.text_vector for e in entries])[None]}
        present = {"text": np.ones((1, k), dtype=bool)}
        for modality in self.recognizer.modalities:
            if modality != "text":
                dim = checkpoint.model_config.input_dim(modality)
                rows = [e.features.get(modality) for e in entries]
                present[modality] = np.array([[r is not None for r in rows]])
                features[modality] = np.stack(
                    [r if r is not None else np.zeros(dim, np.float32) for r in rows]
                )[None]
        logits = self.recognizer.engines.fusion.logits(features, present, np.ones((1, k), dtype=bool))[0, -1]
        return softmax(logits.astype(np.float64)).tolist(), present


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def checkpoint_path(checkpoint_dir: str | Path | None = None) -> Path:
    """The checkpoint directory to use (default: the one shipped in models/), checked cheaply."""
    path = Path(checkpoint_dir) if checkpoint_dir else SHIPPED_CHECKPOINT
    check_checkpoint_files(path)
    return path


def load_recognizer(
    checkpoint_dir: str | Path | None = None,
    backend: str = "torch",
    precision: str = "fp32",
    artifacts_dir: str | None = None,
    voice: VoiceOptions | None = None,
) -> Recognizer:
    """Loads a causal checkpoint (default: the one shipped in models/) on `backend` (torch|onnx|auto);
    the other arguments are those of `EngineOptions`. `voice`: the voice branch (None: words only)."""
    path = checkpoint_path(checkpoint_dir)
    checkpoint = load_checkpoint(path)
    if not checkpoint.model_config.causal or checkpoint.text_config.future_utterances:
        raise CheckpointError(
            f"checkpoint {path}: not causal (it reads future utterances); live use needs a model "
            "trained with configs/causal.yaml"
        )
    head = load_voice_head(voice.model_dir) if voice is not None and voice.model_dir else None
    engines = load_engines(checkpoint, EngineOptions(backend, precision, artifacts_dir))
    return Recognizer(checkpoint, engines, head, voice)
