"""Training-time audio augmentation (M2FNet: time warping and Gaussian noise), and batching crops.

Noise is added to the waveform; time warping acts on the mel spectrogram's time axis (SpecAugment-style),
because stretching the waveform itself would also shift pitch, which is an emotion cue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class AudioAugmentOptions:
    crop_s: float = 3.0
    """Training clips are cut (at a random offset) or zero-padded to this length so they batch."""
    noise_prob: float = 0.5
    """Chance that a clip gets Gaussian noise."""
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    """Signal-to-noise range the noise level is drawn from."""
    warp_prob: float = 0.5
    """Chance that a spectrogram is time-warped."""
    warp_max: float = 0.2
    """The warp point moves by up to this fraction of the clip length."""


def random_crop(samples: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if len(samples) >= length:
        start = int(rng.integers(0, len(samples) - length + 1))
        return samples[start : start + length]
    return np.pad(samples, (0, length - len(samples)))


def add_noise(wave: torch.Tensor, options: AudioAugmentOptions, generator: torch.Generator) -> torch.Tensor:
    """(B, samples): Gaussian noise at a random SNR on a random subset of rows."""
    batch = wave.shape[0]
    low, high = options.noise_snr_db
    snr_db = low + (high - low) * torch.rand(batch, 1, generator=generator)
    rms = wave.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=1e-5)
    noise = torch.randn(wave.shape, generator=generator) * rms / 10 ** (snr_db / 20)
    chosen = (torch.rand(batch, 1, generator=generator) < options.noise_prob).float()
    return wave + noise * chosen


def time_warp(mel: torch.Tensor, options: AudioAugmentOptions, generator: torch.Generator) -> torch.Tensor:
    """(B, 1, n_mels, frames): moves a random point of the time axis by up to `warp_max` of the length,
    stretching one side and squeezing the other; the length is unchanged."""
    out = mel.clone()
    frames = mel.shape[-1]
    for row in range(mel.shape[0]):
        if torch.rand(1, generator=generator).item() >= options.warp_prob or frames < 8:
            continue
        centre = int(frames * (0.25 + 0.5 * torch.rand(1, generator=generator).item()))
        shift = int(frames * options.warp_max * (2 * torch.rand(1, generator=generator).item() - 1))
        target = min(max(centre + shift, 2), frames - 2)
        left = F.interpolate(
            mel[row : row + 1, :, :, :centre],
            size=(mel.shape[2], target),
            mode="bilinear",
            align_corners=False,
        )
        right = F.interpolate(
            mel[row : row + 1, :, :, centre:],
            size=(mel.shape[2], frames - target),
            mode="bilinear",
            align_corners=False,
        )
        out[row] = torch.cat([left, right], dim=-1)[0]
    return out
