"""Emotion from the voice: a linear head over the Whisper encoder states the live loop already computes.

The words of "Kids are talking by the door" say nothing of how it was said; the voice does. Whisper's
encoder sees the utterance anyway (to transcribe it), so its states, mean- and std-pooled over the
utterance's frames, cost nothing to get. A logistic-regression head reads them after two
normalisations: a global standardisation (from training) and the subtraction of the running mean of the
same speaker's earlier utterances. The second one removes who is speaking from how they speak: on RAVDESS
dev actors (never seen in training) it is what takes the head from 67 to ~78 w-F1 (docs/voice.md).

The head's weights are trained on RAVDESS (CC BY-NC-SA 4.0): they inherit non-commercial terms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.errors import CheckpointError

ENCODER_HOP_FRAMES = 2
"""Whisper's encoder halves the mel frame rate (10 ms mel frames -> 20 ms states)."""

DISTANCE_FADE = 0.05
SHIPPED_VOICE_MODEL = Path(__file__).resolve().parent.parent / "models" / "voice-ravdess"


def pool_encoder_states(encoded: np.ndarray, mel_frames: int) -> np.ndarray:
    """(2 * width,) float32: mean and std of the encoder states that cover the utterance (the rest of a
    padded window is silence and says nothing about the voice)."""
    states = np.asarray(encoded, dtype=np.float32).reshape(-1, np.shape(encoded)[-1])
    used = states[: max(1, min(len(states), -(-mel_frames // ENCODER_HOP_FRAMES)))]
    return np.concatenate([used.mean(axis=0), used.std(axis=0)]).astype(np.float32)


@dataclass
class VoiceHead:
    """What `python -m training voice` writes: standardisation, speaker-normalisation prior, linear layer."""

    labels: list[str]
    mean: np.ndarray  # (dim,) training mean of the pooled states
    scale: np.ndarray  # (dim,) training std
    weight: np.ndarray  # (classes, dim)
    bias: np.ndarray  # (classes,)
    speaker_prior: float = 1.0
    """Pseudo-count of the global mean in a speaker's running mean: the first utterance of a new voice is
    read against the training population, later ones more and more against the speaker's own."""
    meta: dict = field(default_factory=dict)

    def probabilities(self, standardised: np.ndarray) -> np.ndarray:
        logits = self.weight @ standardised + self.bias
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / "voice_head.npz", mean=self.mean, scale=self.scale, weight=self.weight, bias=self.bias
        )
        info = {"labels": self.labels, "speaker_prior": self.speaker_prior, **self.meta}
        (folder / "voice_head.json").write_text(json.dumps(info, indent=2) + "\n")


def load_voice_head(folder: str | Path = SHIPPED_VOICE_MODEL) -> VoiceHead:
    """A head folder; a relative path not found from the working directory is read from the project
    root (so `models/voice-ravdess` in configs/live.yaml works from anywhere)."""
    folder = Path(folder)
    if not folder.is_absolute() and not folder.exists():
        folder = SHIPPED_VOICE_MODEL.parent.parent / folder
    arrays_path, info_path = folder / "voice_head.npz", folder / "voice_head.json"
    for path in (arrays_path, info_path):
        if not path.is_file():
            raise CheckpointError(f"voice model: {path} is missing (train one with `python -m training voice`)")
    try:
        info = json.loads(info_path.read_text())
        arrays = np.load(arrays_path)
        head = VoiceHead(
            labels=list(info.pop("labels")),
            mean=arrays["mean"].astype(np.float32),
            scale=arrays["scale"].astype(np.float32),
            weight=arrays["weight"].astype(np.float32),
            bias=arrays["bias"].astype(np.float32),
            speaker_prior=float(info.pop("speaker_prior", 1.0)),
            meta=info,
        )
    except (ValueError, KeyError, OSError) as exc:
        raise CheckpointError(f"voice model: cannot read {folder} ({exc})") from None
    if head.weight.shape != (len(head.labels), len(head.mean)):
        raise CheckpointError(f"voice model: {arrays_path} weight shape {head.weight.shape} does not match")
    return head


class SpeakerVoiceNorm:
    """Running mean of each speaker's standardised voice vectors (one per stream session)."""

    def __init__(self, prior: float, max_speakers: int = 64) -> None:
        self.prior = prior
        self.max_speakers = max_speakers
        self._sums: dict[str, tuple[np.ndarray, int]] = {}

    def normalise(self, speaker: str, vector: np.ndarray, learn: bool = True) -> np.ndarray:
        """`vector` minus the shrunk mean of the speaker's earlier vectors; `learn` adds it to them."""
        total, count = self._sums.get(speaker, (np.zeros_like(vector), 0))
        out = vector - total / (count + self.prior)
        if learn:
            if speaker not in self._sums and len(self._sums) >= self.max_speakers:
                self._sums.pop(next(iter(self._sums)))  # the oldest voice goes: memory stays bounded
            self._sums[speaker] = (total + vector, count + 1)
        return out


    def snapshot(self) -> dict[str, tuple[np.ndarray, int]]:
        return dict(self._sums)  # values are replaced, never changed in place

    def restore(self, sums: dict[str, tuple[np.ndarray, int]]) -> None:
        self._sums = dict(sums)


@dataclass(slots=True)
class VoiceReading:
    probabilities: np.ndarray
    distance: float
    """RMS of the standardised states: how far this voice is from the voices the head was trained on
    (unseen RAVDESS actors 0.8-1.3, espeak-ng voices 1.6-3.3)."""


class VoiceEmotion:
    """The head plus one stream's speaker statistics: `read(pooled, speaker)`."""

    def __init__(self, head: VoiceHead) -> None:
        self.head = head
        self.norm = SpeakerVoiceNorm(head.speaker_prior)

    def read(self, pooled: np.ndarray, speaker: str, learn: bool = True) -> VoiceReading:
        standardised = (np.asarray(pooled, dtype=np.float32) - self.head.mean) / self.head.scale
        probabilities = self.head.probabilities(self.norm.normalise(speaker, standardised, learn))
        return VoiceReading(probabilities, float(np.sqrt(np.mean(standardised**2))))


@dataclass
class VoiceOptions:
    """The voice branch of the live recognizer and how much its say weighs against the words."""

    model_dir: str | None = str(SHIPPED_VOICE_MODEL)
    """Voice head folder (`python -m training voice`); None: words only (the commercial-safe choice: the
    shipped head is trained on RAVDESS, CC BY-NC-SA 4.0)."""
    weight: float = 6.0
    """Exponent of the voice's likelihood ratio in the fused scores (0: the voice is published in
    `by_modality` but does not move the result). Large: neutral words said angrily are `anger`."""
    max_distance: float = 1.45
    """Voices farther than this from the training voices (`VoiceReading.distance`) are not trusted:
    the head has never heard their like (synthetic speech, another microphone chain), so the words
    decide. Their voice scores are still published."""

    def effective_weight(self, distance: float) -> float:
        """`weight`, faded out over ~0.1 around `max_distance`."""
        return self.weight / (1.0 + math.exp(min(50.0, (distance - self.max_distance) / DISTANCE_FADE)))


def fuse(text: np.ndarray, voice: np.ndarray, head: VoiceHead, weight: float) -> np.ndarray:
    """Product of experts: the words' probabilities times the voice's likelihood ratio against what the
    head says of an average voice (softmax of its bias), raised to `weight`. A voice that carries nothing
    (a flat synthetic voice, once its speaker mean is removed) leaves the words' result as it was instead
    of pulling it toward the head's favourite class."""
    null = head.probabilities(np.zeros_like(head.mean))
    log = np.log(np.maximum(text, 1e-9)) + weight * (np.log(np.maximum(voice, 1e-9)) - np.log(null))
    exp = np.exp(log - log.max())
    return exp / exp.sum()
