"""One small inference interface for the networks: numpy in, numpy out, so backends swap freely.

The live loop and evaluation only see these protocols; `torch` (eager, the training code) and `onnx`
(ONNX Runtime over graphs compiled from the checkpoint) implement them, and a TensorRT backend can drop
in beside them. Tokenising, face detection and the prosodic functionals stay outside, in numpy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "auto")
PRECISIONS = ("fp32", "int8")


@dataclass
class EngineOptions:
    """Which backend runs the networks (`engine:` in configs/live.yaml)."""

    backend: str = "auto"
    """`torch` (eager), `onnx` (ONNX Runtime; the checkpoint compiles on first use) or `auto`: `onnx`
    whenever onnxruntime and onnx are installed (measured faster on every component, bench/engines.py),
    else `torch`."""
    precision: str = "fp32"
    """`fp32`, or `int8` (ONNX only: dynamically quantised weights of the linear layers)."""
    artifacts_dir: str | None = None
    """Compiled artifacts made by `python -m engines compile --out DIR`; None: the cache directory,
    compiled there on first use."""
    threads: int = 1
    """Threads per component: on two shared cores one thread each is the fastest (see STACK.md)."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


class TextEngine(Protocol):
    def encode(self, input_ids: np.ndarray, attention: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(B, S) int64 token ids, (B, S) int64 attention (0 = padding), (B, S) bool tokens of the target
        utterance -> (B, H) float32 utterance vectors: the frozen and the fine-tuned layers in one go."""
        ...


class FusionEngine(Protocol):
    def logits(
        self, features: dict[str, np.ndarray], present: dict[str, np.ndarray], valid: np.ndarray
    ) -> np.ndarray:
        """features[m]: (B, K, dim_m) float32; present[m]: (B, K) bool for audio/visual; valid: (B, K) bool
        real utterances -> (B, K, labels) float32 logits."""
        ...


class AudioEngine(Protocol):
    config: object
    """The extractor's `AudioExtractorConfig` (input length, prosody)."""
    prosody_scale: tuple[np.ndarray, np.ndarray] | None
    """Mean and std that standardise the prosodic functionals; None when the extractor has no prosody."""

    def embed(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(1, samples) float32 at 16 kHz, already cut to length -> the learned embedding (1, E) and the
        log-mel (1, n_mels, frames) that the prosodic functionals read."""
        ...


class VisualEngine(Protocol):
    config: object
    """The extractor's `VisualExtractorConfig` (frame sampling and face crops happen before the engine)."""

    def embed(
        self,
        scenes: np.ndarray,
        frame_mask: np.ndarray,
        faces: np.ndarray,
        face_weights: np.ndarray,
        geometry: np.ndarray,
    ) -> np.ndarray:
        """The arrays of `visual_extractor.VisualBatch` as numpy -> (B, 2 * branch_dim) float32."""
        ...


@dataclass
class Engines:
    """The networks of one checkpoint behind one backend."""

    backend: str
    """The backend actually running (`auto` resolved)."""
    precision: str
    text: TextEngine
    fusion: FusionEngine
    audio: AudioEngine | None = None
    visual: VisualEngine | None = None


def whisper_runtime() -> tuple[str, str]:
    """CTranslate2 device and compute type for Whisper, the one place that chooses them: float16 on a
    CUDA device, int8 on the CPU."""
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        return "cuda", "float16"
    return "cpu", "int8"
