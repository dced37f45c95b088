"""Audio and visual vectors of one utterance through any backend's engines (engines/engine.py).

The numpy work around the networks lives here: cutting the input to length and the prosodic
functionals for audio; the prepared frames (detection runs before, in `FramePreparer`) for visual.
"""

from __future__ import annotations

import numpy as np

from engines import prosody
from engines.audio_extractor import fit_length
from engines.engine import AudioEngine, VisualEngine
from engines.visual_extractor import VisualInput, collate_visual


def audio_vector(engine: AudioEngine, samples_16k: np.ndarray) -> np.ndarray | None:
    """(out_dim,) float32, as `audio_extractor.embed_audio` computes it; None when there are no samples,
    so the caller masks the modality."""
    if np.asarray(samples_16k).size == 0:
        return None
    samples = fit_length(np.asarray(samples_16k, dtype=np.float32).reshape(-1), engine.config)
    learned, mel = engine.embed(samples[None])
    if engine.prosody_scale is None:
        return learned[0].astype(np.float32)
    mean, std = engine.prosody_scale
    scaled = (prosody.functionals(samples, mel[0]) - mean) / std
    return np.concatenate([learned[0], scaled]).astype(np.float32)


def visual_vector(engine: VisualEngine, prepared: VisualInput) -> np.ndarray:
    """(2 * branch_dim,) float32 for one utterance's prepared frames."""
    batch = collate_visual([prepared])
    arrays = (batch.scenes, batch.frame_mask, batch.faces, batch.face_weights, batch.geometry)
    return engine.embed(*(a.numpy() for a in arrays))[0].astype(np.float32)
