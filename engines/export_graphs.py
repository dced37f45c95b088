"""Export-ready wrappers of the networks: positional tensor inputs, named dynamic axes, example inputs.

Each wrapper computes exactly what the eager module computes in eval mode, in a form the tracer can
follow (no dicts, no data-dependent indexing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from engines.checkpoint import Checkpoint, load_extractors


@dataclass
class GraphSpec:
    name: str
    module: nn.Module
    example: tuple
    axes: dict
    """{"inputs": {name: {axis: label}}, "outputs": {...}} in the graph's input order."""


class TextGraph(nn.Module):
    """Token ids -> utterance vector: the frozen bottom and the fine-tuned top layers in one graph."""

    def __init__(self, encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.encoder.top(self.encoder.bottom(input_ids, attention), attention, target)


class FusionGraph(nn.Module):
    """M2FNet with positional inputs: valid, text, then (features, present) per media modality."""

    def __init__(self, network) -> None:
        super().__init__()
        self.network = network
        self.media = tuple(m for m in network.cfg.modalities if m != "text")

    def forward(self, valid: torch.Tensor, text: torch.Tensor, *media: torch.Tensor) -> torch.Tensor:
        features, present = {"text": text}, {"text": valid}
        for index, modality in enumerate(self.media):
            features[modality], present[modality] = media[2 * index], media[2 * index + 1]
        return self.network(features, present, valid)


class AudioGraph(nn.Module):
    """Waveform -> (learned embedding, log-mel). The STFT is a convolution with a windowed DFT basis:
    the exporter has no complex numbers; it matches `torch.stft` to float rounding."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        n_fft, mel = model.mel.n_fft, model.mel
        bins = n_fft // 2 + 1
        angle = 2 * math.pi * torch.arange(bins)[:, None] * torch.arange(n_fft)[None] / n_fft
        window = mel.window[None]
        self.register_buffer("real", (torch.cos(angle) * window)[:, None], persistent=False)
        self.register_buffer("imag", (-torch.sin(angle) * window)[:, None], persistent=False)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel = self.model.mel
        half = mel.n_fft // 2
        padded = nn.functional.pad(wave[:, None], (half, half), mode="reflect")
        real = nn.functional.conv1d(padded, self.real, stride=mel.hop)
        imag = nn.functional.conv1d(padded, self.imag, stride=mel.hop)
        power = (real**2 + imag**2)[..., :-1]
        log_spec = torch.clamp(mel.filters @ power, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        spectrogram = ((log_spec + 4.0) / 4.0).unsqueeze(1)
        return self.model.forward_mel(spectrogram), spectrogram[:, 0]


class VisualGraph(nn.Module):
    """The visual extractor with every face slot encoded, then weighted: in eval mode an empty slot
    (weight 0) contributes nothing, as in the eager module that skips it."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        scenes: torch.Tensor,
        frame_mask: torch.Tensor,
        faces: torch.Tensor,
        face_weights: torch.Tensor,
        geometry: torch.Tensor,
    ) -> torch.Tensor:
        from engines.visual_extractor import _masked_max

        model = self.model
        b, f = frame_mask.shape
        scene = _masked_max(model.scene(scenes.flatten(0, 1)).view(b, f, -1), frame_mask)
        extra = geometry.flatten(0, 2) if model.config.use_geometry else None
        face = model.face(faces.flatten(0, 2), extra).view(b, f, face_weights.shape[2], -1)
        weighted = (face * face_weights.unsqueeze(-1)).sum(dim=2)
        has_face = (face_weights > 0).any(dim=2) & frame_mask
        return torch.cat([scene, _masked_max(weighted, has_face)], dim=1)


def _text_spec(checkpoint: Checkpoint) -> GraphSpec:
    ids = torch.randint(1000, 2000, (2, 16))
    target = torch.zeros(2, 16, dtype=torch.bool)
    target[:, 4:10] = True
    tokens = {0: "batch", 1: "tokens"}
    axes = {
        "inputs": {"input_ids": tokens, "attention": tokens, "target": tokens},
        "outputs": {"vector": {0: "batch"}},
    }
    return GraphSpec("text", TextGraph(checkpoint.encoder), (ids, torch.ones_like(ids), target), axes)


def _fusion_spec(checkpoint: Checkpoint) -> GraphSpec:
    cfg = checkpoint.model_config
    dialogue = {0: "batch", 1: "utterances"}
    inputs = {"valid": dialogue, "text": dialogue}
    example = [torch.ones(2, 5, dtype=torch.bool), torch.randn(2, 5, cfg.text_dim)]
    for modality in cfg.modalities[1:]:
        inputs[modality], inputs[f"{modality}_present"] = dialogue, dialogue
        example += [torch.randn(2, 5, cfg.input_dim(modality)), torch.ones(2, 5, dtype=torch.bool)]
    axes = {"inputs": inputs, "outputs": {"logits": dialogue}}
    return GraphSpec("fusion", FusionGraph(checkpoint.network), tuple(example), axes)


def audio_spec(model) -> GraphSpec:
    axes = {
        "inputs": {"wave": {0: "batch", 1: "samples"}},
        "outputs": {"embedding": {0: "batch"}, "mel": {0: "batch", 2: "frames"}},
    }
    return GraphSpec("audio", AudioGraph(model), (torch.randn(1, 16_000) * 0.1,), axes)


def visual_spec(model) -> GraphSpec:
    c = model.config
    frames, slots = 3, 2
    scenes = torch.randn(1, frames, 3, c.scene_px, c.scene_px)
    faces = torch.randn(1, frames, slots, 3, c.face_px, c.face_px)
    weights = torch.tensor([[[0.7, 0.3], [1.0, 0.0], [0.0, 0.0]]])
    from engines.faces import GEOMETRY_NAMES

    geometry = torch.randn(1, frames, slots, len(GEOMETRY_NAMES))
    clip = {0: "batch", 1: "frames"}
    slot = {0: "batch", 1: "frames", 2: "faces"}
    axes = {
        "inputs": {"scenes": clip, "frame_mask": clip, "faces": slot, "face_weights": slot, "geometry": slot},
        "outputs": {"vector": {0: "batch"}},
    }
    example = (scenes, torch.ones(1, frames, dtype=torch.bool), faces, weights, geometry)
    return GraphSpec("visual", VisualGraph(model), example, axes)


def graph_specs(checkpoint: Checkpoint) -> list[GraphSpec]:
    """Every network the checkpoint runs live."""
    specs = [_text_spec(checkpoint), _fusion_spec(checkpoint)]
    extractors = load_extractors(checkpoint)
    if "audio" in extractors:
        specs.append(audio_spec(extractors["audio"]))
    if "visual" in extractors:
        specs.append(visual_spec(extractors["visual"]))
    return specs
