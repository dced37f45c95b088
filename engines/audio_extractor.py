"""Audio feature extractor (M2FNet section 3.3): log-mel spectrogram -> ResNet18 -> linear to 300 dims,
followed by standardised prosodic functionals (engines/prosody.py) unless `prosody` is off.

The same module runs in training (batched waveforms, augmented by training/augment.py) and live
(`embed_audio` on one utterance's samples), so live features match the cached training features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from faster_whisper.feature_extractor import FeatureExtractor
from torch import nn

from engines import prosody
from engines.resnet import ResNetConfig, ResNetTrunk

logger = logging.getLogger(__name__)


@dataclass
class AudioExtractorConfig:
    sample_rate_hz: int = 16_000
    window_samples: int = 400
    """25 ms analysis window at 16 kHz (paper)."""
    hop_samples: int = 160
    """10 ms hop (paper)."""
    n_mels: int = 128
    """Mel bins (paper)."""
    embedding_dim: int = 300
    """Size of the learned (triplet-trained) embedding (paper: 300)."""
    prosody: bool = True
    """Append pitch / loudness / tempo / cepstral functionals to the embedding. Off = the paper's 300-d
    output; on, the fusion head keeps the classic emotion cues even where the from-scratch ResNet learned
    little (small or unlike training data)."""
    width: int = 32
    """ResNet18 stage-1 channels. 64 is the paper's ResNet18; 32 runs ~4x faster on a CPU and is the
    default because extractors are trained from scratch here on small data."""
    max_input_s: float = 12.0
    """Longer inputs keep their middle part: bounds live latency and mis-cut clips (MELD has minutes-long ones)."""
    min_input_s: float = 0.1
    """Shorter inputs are zero-padded to this length so the ResNet's downsampling has something to act on."""

    @property
    def out_dim(self) -> int:
        """Feature size fed to M2FNet."""
        return self.embedding_dim + (prosody.DIM if self.prosody else 0)


class LogMel(nn.Module):
    """Whisper-style log-mel (faster-whisper's Slaney filters and scaling) computed in torch, so a batch of
    waveforms becomes a batch of spectrograms in one call."""

    def __init__(self, config: AudioExtractorConfig) -> None:
        super().__init__()
        self.hop = config.hop_samples
        self.n_fft = config.window_samples
        filters = FeatureExtractor.get_mel_filters(
            config.sample_rate_hz, config.window_samples, config.n_mels
        )
        self.register_buffer("filters", torch.from_numpy(filters.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(config.window_samples), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) float in [-1, 1] -> (B, 1, n_mels, frames)."""
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        power = spec[..., :-1].abs() ** 2
        log_spec = torch.clamp(self.filters @ power, min=1e-10).log10()
        # Per-utterance floor 80 dB under the peak (Whisper); absolute level is kept because loudness is an
        # emotion cue.
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return ((log_spec + 4.0) / 4.0).unsqueeze(1)


class AudioExtractor(nn.Module):
    """Waveform (B, samples) at 16 kHz -> (B, 300)."""

    def __init__(self, config: AudioExtractorConfig | None = None) -> None:
        super().__init__()
        self.config = config or AudioExtractorConfig()
        self.mel = LogMel(self.config)
        resnet = ResNetConfig(in_channels=1, width=self.config.width)
        self.trunk = ResNetTrunk(resnet)
        freq_bins = -(-self.config.n_mels // 32)
        # Pool over time only and keep the (coarse) frequency axis: pitch lives in where energy sits on it,
        # and global pooling over frequency would make the net re-learn position from padding artefacts.
        self.project = nn.Linear(2 * resnet.out_channels * freq_bins, self.config.embedding_dim)
        if self.config.prosody:
            # Standardisation of the functionals, fitted on the training clips by `fit_prosody_scaling`.
            self.register_buffer("prosody_mean", torch.zeros(prosody.DIM))
            self.register_buffer("prosody_std", torch.ones(prosody.DIM))

    def forward_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, frames) -> learned embedding (B, embedding_dim): what the triplet loss trains."""
        maps = self.trunk(mel)
        pooled = torch.cat([maps.mean(dim=3), maps.amax(dim=3)], dim=1)
        return self.project(pooled.flatten(1))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.forward_mel(self.mel(wave))

    def fit_prosody_scaling(self, functionals: np.ndarray) -> None:
        """Mean / std of (N, prosody.DIM) functionals of the training clips."""
        values = torch.from_numpy(np.asarray(functionals, dtype=np.float32))
        self.prosody_mean.copy_(values.mean(dim=0))
        self.prosody_std.copy_(
            values.std(dim=0).clamp(min=1e-3) if len(values) > 1 else torch.ones(prosody.DIM)
        )


def fit_length(samples: np.ndarray, config: AudioExtractorConfig) -> np.ndarray:
    """Crops to the middle `max_input_s` and zero-pads to `min_input_s` (see the config fields)."""
    longest = int(config.max_input_s * config.sample_rate_hz)
    shortest = max(int(config.min_input_s * config.sample_rate_hz), config.window_samples)
    if len(samples) > longest:
        start = (len(samples) - longest) // 2
        samples = samples[start : start + longest]
    if len(samples) < shortest:
        samples = np.pad(samples, (0, shortest - len(samples)))
    return samples


def _front_end(model: AudioExtractor, samples_16k: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    samples = fit_length(np.asarray(samples_16k, dtype=np.float32).reshape(-1), model.config)
    return samples, model.mel(torch.from_numpy(samples).unsqueeze(0))


@torch.inference_mode()
def raw_prosody(model: AudioExtractor, samples_16k: np.ndarray) -> np.ndarray:
    """Unscaled functionals of one utterance, from exactly the input `embed_audio` sees."""
    samples, mel = _front_end(model, samples_16k)
    return prosody.functionals(samples, mel[0, 0].numpy())


@torch.inference_mode()
def embed_audio(model: AudioExtractor, samples_16k: np.ndarray) -> np.ndarray | None:
    """One utterance's mono 16 kHz samples -> (out_dim,) float32; None when there are no samples, so the
    caller masks the audio modality instead of feeding a made-up vector."""
    if np.asarray(samples_16k).size == 0:
        return None
    model.eval()
    samples, mel = _front_end(model, samples_16k)
    learned = model.forward_mel(mel)[0]
    if not model.config.prosody:
        return learned.numpy().astype(np.float32)
    raw = torch.from_numpy(prosody.functionals(samples, mel[0, 0].numpy()))
    scaled = (raw - model.prosody_mean) / model.prosody_std
    return torch.cat([learned, scaled]).numpy().astype(np.float32)
