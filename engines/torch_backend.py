"""The eager PyTorch backend: today's modules behind the numpy interface of engines/engine.py."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from engines.checkpoint import Checkpoint, load_extractors
from engines.engine import EngineOptions, Engines
from engines.m2fnet import M2FNet
from engines.text_encoder import SplitTextEncoder


class TorchText:
    def __init__(self, encoder: SplitTextEncoder) -> None:
        self.encoder = encoder

    @torch.inference_mode()
    def encode(self, input_ids: np.ndarray, attention: np.ndarray, target: np.ndarray) -> np.ndarray:
        ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention)
        hidden = self.encoder.bottom(ids, mask)
        return self.encoder.top(hidden, mask, torch.from_numpy(target)).numpy()


class TorchFusion:
    def __init__(self, network: M2FNet) -> None:
        self.network = network

    @torch.inference_mode()
    def logits(
        self, features: dict[str, np.ndarray], present: dict[str, np.ndarray], valid: np.ndarray
    ) -> np.ndarray:
        valid_t = torch.from_numpy(valid)
        tensors = {m: torch.from_numpy(features[m]) for m in self.network.cfg.modalities}
        masks = {m: torch.from_numpy(present[m]) for m in self.network.cfg.modalities if m != "text"}
        masks["text"] = valid_t
        return self.network(tensors, masks, valid_t).numpy()


class TorchAudio:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config = model.config
        self.prosody_scale = prosody_scale(model)

    @torch.inference_mode()
    def embed(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mel = self.model.mel(torch.from_numpy(wave))
        return self.model.forward_mel(mel).numpy(), mel[:, 0].numpy()


class TorchVisual:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config = model.config

    @torch.inference_mode()
    def embed(
        self,
        scenes: np.ndarray,
        frame_mask: np.ndarray,
        faces: np.ndarray,
        face_weights: np.ndarray,
        geometry: np.ndarray,
    ) -> np.ndarray:
        from engines.visual_extractor import VisualBatch

        arrays = (scenes, frame_mask, faces, face_weights, geometry)
        return self.model(VisualBatch(*(torch.from_numpy(a) for a in arrays))).numpy()


def prosody_scale(model: nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    if not model.config.prosody:
        return None
    return model.prosody_mean.numpy(), model.prosody_std.numpy()


def torch_engines(checkpoint: Checkpoint, options: EngineOptions) -> Engines:
    """Eager engines over the checkpoint's own modules (shared, read-only in eval mode)."""
    torch.set_num_threads(options.threads)
    extractors = load_extractors(checkpoint)
    return Engines(
        backend="torch",
        precision="fp32",
        text=TorchText(checkpoint.encoder),
        fusion=TorchFusion(checkpoint.network),
        audio=TorchAudio(extractors["audio"]) if "audio" in extractors else None,
        visual=TorchVisual(extractors["visual"]) if "visual" in extractors else None,
    )
