"""Utterance-level prosodic and spectral functionals (pitch, loudness, tempo, cepstral shape).

They are what decades of speech-emotion work found to carry emotion (eGeMAPS / ComParE functionals), and
they need no training data. The audio extractor appends them to its learned embedding: a ResNet trained
from scratch on a few thousand clips learns what those clips teach, and these keep the general cues in
reach of the fusion head.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engines.media_format import SAMPLE_RATE_HZ

HOP = 160  # 10 ms
PITCH_WINDOW = 640  # 40 ms: two periods of a 50 Hz voice
MIN_F0_HZ, MAX_F0_HZ = 60.0, 400.0
OCTAVE_COST = 0.05  # per octave of lag, see pitch_track
VOICING_THRESHOLD = 0.6  # normalised autocorrelation peak of a voiced frame (0.45 let octave slips in)
ACTIVE_RANGE_DB = 40.0  # frames quieter than the loudest by more than this are pauses
N_CEPSTRA = 20

NAMES = (
    [f"mfcc{i}_mean" for i in range(N_CEPSTRA)]
    + [f"mfcc{i}_std" for i in range(N_CEPSTRA)]
    + [f"mfcc{i}_delta_std" for i in range(N_CEPSTRA)]
    + ["loudness_mean", "loudness_std", "loudness_p10", "loudness_p90", "loudness_range", "loudness_slope"]
    + ["active_ratio"]
    + ["f0_mean", "f0_std", "f0_p10", "f0_p90", "f0_range", "f0_slope", "f0_delta_abs", "voiced_ratio"]
    + ["syllable_rate"]
)
DIM = len(NAMES)


def _frames(samples: np.ndarray, width: int) -> np.ndarray:
    padded = np.pad(samples, (width // 2, width // 2))
    return sliding_window_view(padded, width)[::HOP]


def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II rows: log-mel -> cepstra."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    matrix = np.cos(np.pi / n_in * (n + 0.5) * k) * np.sqrt(2.0 / n_in)
    matrix[0] /= np.sqrt(2.0)
    return matrix.astype(np.float32)


def _slope(values: np.ndarray) -> float:
    """Least-squares slope per second of a 10 ms contour."""
    if len(values) < 2:
        return 0.0
    t = np.arange(len(values)) * HOP / SAMPLE_RATE_HZ
    t = t - t.mean()
    return float((t * (values - values.mean())).sum() / (t * t).sum())


def _spread(values: np.ndarray) -> list[float]:
    """mean, std, p10, p90, p90 - p10."""
    if len(values) == 0:
        return [0.0] * 5
    p10, p90 = np.percentile(values, [10, 90])
    return [float(values.mean()), float(values.std()), float(p10), float(p90), float(p90 - p10)]


def pitch_track(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 10 ms frame: F0 in octaves relative to 100 Hz, and voicing strength (0-1).

    Autocorrelation of a Hann-windowed frame divided by the window's own autocorrelation (Boersma 1993),
    which keeps long lags from being penalised and so avoids most octave errors."""
    frames = _frames(samples, PITCH_WINDOW).astype(np.float64)
    frames = frames - frames.mean(axis=1, keepdims=True)
    window = np.hanning(PITCH_WINDOW)
    n_fft = 2 * PITCH_WINDOW
    acf = np.fft.irfft(np.abs(np.fft.rfft(frames * window, n_fft)) ** 2, n_fft)[:, :PITCH_WINDOW]
    window_acf = np.fft.irfft(np.abs(np.fft.rfft(window, n_fft)) ** 2, n_fft)[:PITCH_WINDOW]
    normalised = (acf / np.maximum(acf[:, :1], 1e-12)) / (window_acf / window_acf[0])
    low, high = int(SAMPLE_RATE_HZ / MAX_F0_HZ), int(SAMPLE_RATE_HZ / MIN_F0_HZ)
    band = normalised[:, low : high + 1]
    lags = np.arange(low, high + 1)
    # Octave cost (Praat): every multiple of the period correlates as well as the period itself, so
    # longer lags pay a little per octave and the shortest good one wins.
    best = (band - OCTAVE_COST * np.log2(lags / low)).argmax(axis=1)
    strength = band[np.arange(len(band)), best]
    # Parabolic interpolation of the peak for sub-sample lag precision.
    left = band[np.arange(len(band)), np.maximum(best - 1, 0)]
    right = band[np.arange(len(band)), np.minimum(best + 1, band.shape[1] - 1)]
    curvature = left - 2 * strength + right
    shift = np.where(
        np.abs(curvature) > 1e-9, 0.5 * (left - right) / np.where(curvature == 0, 1, curvature), 0
    )
    lag = low + best + np.clip(shift, -0.5, 0.5)
    return np.log2(SAMPLE_RATE_HZ / lag / 100.0), np.clip(strength, 0.0, 1.0)


def functionals(samples: np.ndarray, log_mel: np.ndarray) -> np.ndarray:
    """(DIM,) float32 for one utterance: 16 kHz mono samples in [-1, 1] and their log-mel (n_mels, frames)
    from the extractor's own front end, so both see the same frames."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    power = (_frames(samples, 400).astype(np.float64) ** 2).mean(axis=1)
    loudness = 10 * np.log10(power + 1e-10)
    n = min(len(loudness), log_mel.shape[1])
    loudness, log_mel = loudness[:n], log_mel[:, :n]
    active = loudness > loudness.max() - ACTIVE_RANGE_DB
    active &= loudness > -70.0  # digital silence is never speech
    out: list[float] = []
    cepstra = (
        _dct_matrix(log_mel.shape[0], N_CEPSTRA) @ log_mel[:, active]
        if active.sum()
        else np.zeros((N_CEPSTRA, 0))
    )
    if cepstra.shape[1] >= 2:
        out += cepstra.mean(axis=1).tolist() + cepstra.std(axis=1).tolist()
        out += np.diff(cepstra, axis=1).std(axis=1).tolist()
    else:
        out += [0.0] * (3 * N_CEPSTRA)
    speech = loudness[active]
    out += _spread(speech) + [_slope(speech)]
    out.append(float(active.mean()) if n else 0.0)
    f0, strength = pitch_track(samples)
    voiced = active & (strength[:n] > VOICING_THRESHOLD)
    contour = f0[:n][voiced]
    out += _spread(contour) + [_slope(contour)]
    out.append(float(np.abs(np.diff(contour)).mean()) if len(contour) >= 2 else 0.0)
    out.append(float(voiced.sum() / max(active.sum(), 1)))
    out.append(_syllable_rate(loudness, active))
    return np.asarray(out, dtype=np.float32)


def _syllable_rate(loudness: np.ndarray, active: np.ndarray) -> float:
    """Loudness peaks (syllable nuclei: local maxima 3 dB over the dips around them) per active second."""
    if active.sum() < 3:
        return 0.0
    smooth = np.convolve(loudness, np.ones(5) / 5, mode="same")
    peaks, dip = 0, smooth[0]
    for i in range(1, len(smooth) - 1):
        dip = min(dip, smooth[i])
        if active[i] and smooth[i - 1] <= smooth[i] > smooth[i + 1] and smooth[i] - dip >= 3.0:
            peaks += 1
            dip = smooth[i]
    return peaks / (active.sum() * HOP / SAMPLE_RATE_HZ)
