"""A voice embedding per utterance: the GE2E speaker encoder whose weights ship in the `resemblyzer` wheel.

Only the weights file is taken from the package (`resemblyzer/pretrained.pt`, Apache-2.0): importing
`resemblyzer` itself pulls librosa (numba) and webrtcvad (pkg_resources) for work the live loop already
does (16 kHz resampling, VAD). The network (3-layer LSTM over 40 mel bands, a linear layer, ReLU, L2
norm) and its mel front end are rebuilt here and match `resemblyzer.VoiceEncoder.embed_utterance` on
the same, already trimmed, waveform.
"""

from __future__ import annotations

import importlib.metadata
import pickle
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engines.errors import CheckpointError
from engines.media_format import SAMPLE_RATE_HZ

EMBEDDING_DIM = 256
_N_FFT = 400  # 25 ms window
_HOP = 160  # 10 ms step
_N_MELS = 40
_PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
_PARTIALS_PER_S = 1.3
_MIN_COVERAGE = 0.75
_TARGET_DBFS = -30.0


def weights_path() -> Path:
    """`pretrained.pt` inside the installed resemblyzer distribution, found without importing it."""
    try:
        dist = importlib.metadata.distribution("resemblyzer")
    except importlib.metadata.PackageNotFoundError:
        raise CheckpointError(
            "speaker encoder: package resemblyzer is not installed "
            "(pip install --no-deps resemblyzer==0.1.4; scripts/install.sh does it)"
        ) from None
    path = Path(str(dist.locate_file("resemblyzer/pretrained.pt")))
    if not path.is_file():
        raise CheckpointError(f"speaker encoder: weights file {path} is missing")
    return path


class VoiceEncoder(nn.Module):
    """GE2E encoder: mel frames (batch, frames, 40) -> unit-norm, non-negative embeddings (batch, 256)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(_N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, EMBEDDING_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """One utterance's 16 kHz mono float samples -> its unit-norm embedding (256,), float32.

        As resemblyzer: the loudness is raised (never lowered) to -30 dBFS, the utterance is cut into
        1.6 s partials at 1.3 per second, and the partial embeddings are averaged and renormalised.
        """
        return self.embed_many([samples])[0]

    @torch.no_grad()
    def embed_many(self, utterances: list[np.ndarray]) -> list[np.ndarray]:
        """`embed` of several utterances with one LSTM call over all their partials: 8 utterances of
        1.5-4 s took 90 ms against 130 ms one by one here (one thread)."""
        mels, owners = [], []
        for index, samples in enumerate(utterances):
            wav = _raise_volume(np.asarray(samples, dtype=np.float32))
            mel_slices, padded_len = _partial_slices(len(wav))
            if padded_len > len(wav):
                wav = np.pad(wav, (0, padded_len - len(wav)))
            mel = mel_spectrogram(wav)
            mels += [mel[s] for s in mel_slices]
            owners += [index] * len(mel_slices)
        partials = self(torch.from_numpy(np.stack(mels))).numpy()
        owner = np.asarray(owners)
        out = []
        for index in range(len(utterances)):
            mean = partials[owner == index].mean(axis=0)
            out.append((mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32))
        return out

    @torch.no_grad()
    def embed_windows(self, samples: np.ndarray, window_s: float, hop_s: float) -> np.ndarray:
        """Embeddings (windows, 256) of `window_s` windows every `hop_s` over one utterance, the first
        starting at 0 (voice changes inside an utterance); (0, 256) when it is shorter than a window."""
        mel = mel_spectrogram(_raise_volume(np.asarray(samples, dtype=np.float32)))
        frames, step = round(window_s * SAMPLE_RATE_HZ / _HOP), max(1, round(hop_s * SAMPLE_RATE_HZ / _HOP))
        starts = range(0, len(mel) - frames + 1, step)
        if not starts:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return self(torch.from_numpy(np.stack([mel[i : i + frames] for i in starts]))).numpy()


def load_voice_encoder(path: str | Path | None = None) -> VoiceEncoder:
    """The encoder with the packaged weights (or those at `path`), in eval mode, on the CPU."""
    path = Path(path) if path else weights_path()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in checkpoint["model_state"].items() if k.startswith(("lstm.", "linear."))}
        encoder = VoiceEncoder()
        encoder.load_state_dict(state)
    except (OSError, RuntimeError, pickle.UnpicklingError, KeyError, AttributeError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"speaker encoder: cannot load {path} ({reason})") from None
    return encoder.eval()


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """Power mel spectrogram (frames, 40) as librosa.feature.melspectrogram with resemblyzer's settings
    (centred frames, zero padding, periodic Hann window, Slaney mel filters)."""
    padded = np.pad(wav, _N_FFT // 2)
    n_frames = 1 + (len(padded) - _N_FFT) // _HOP
    index = np.arange(_N_FFT)[None, :] + _HOP * np.arange(n_frames)[:, None]
    spectrum = np.abs(np.fft.rfft(padded[index] * _hann(), axis=1)) ** 2
    return (spectrum @ _mel_filters().T).astype(np.float32)


def _raise_volume(wav: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) if len(wav) else 0.0
    if rms <= 0:
        return wav
    change_db = _TARGET_DBFS - 20 * np.log10(rms)
    return wav * np.float32(10 ** (change_db / 20)) if change_db > 0 else wav


def _partial_slices(n_samples: int) -> tuple[list[slice], int]:
    """Mel-frame slices of the partial utterances and the sample count they need (resemblyzer's rule)."""
    n_frames = int(np.ceil((n_samples + 1) / _HOP))
    step = int(np.round(SAMPLE_RATE_HZ / _PARTIALS_PER_S / _HOP))
    starts = range(0, max(1, n_frames - _PARTIAL_FRAMES + step + 1), step)
    slices = [slice(i, i + _PARTIAL_FRAMES) for i in starts]
    last = slices[-1]
    coverage = (n_samples - last.start * _HOP) / (_PARTIAL_FRAMES * _HOP)
    if coverage < _MIN_COVERAGE and len(slices) > 1:
        slices = slices[:-1]
    return slices, slices[-1].stop * _HOP


@cache
def _hann() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)).astype(np.float64)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, hz)


@cache
def _mel_filters() -> np.ndarray:
    """(40, 201) triangular filters from 0 Hz to Nyquist, area-normalised (librosa's norm='slaney')."""
    fft_hz = np.linspace(0, SAMPLE_RATE_HZ / 2, 1 + _N_FFT // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE_HZ / 2), _N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]
