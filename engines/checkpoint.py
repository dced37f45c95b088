"""Checkpoint directories: safetensors weights, the resolved config, the label list, the encoder id.

Layout: `config.yaml` (reusable as `--config`), `labels.json`, `checkpoint.json` (encoder id,
modalities, metrics, provenance), `model.safetensors` (M2FNet + fine-tuned text layers, float16),
and `<modality>_extractor/` for each non-text modality the model was trained with.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from engines.errors import CheckpointError
from engines.m2fnet import M2FNet, M2FNetConfig
from engines.media_format import MEDIA_MODALITIES
from engines.text_encoder import SplitTextEncoder, TextEncoderConfig, load_tokenizer_and_model

WEIGHTS = "model.safetensors"


@dataclass
class Checkpoint:
    text_config: TextEncoderConfig
    model_config: M2FNetConfig
    labels: list[str]
    tokenizer: object
    encoder: SplitTextEncoder
    network: M2FNet
    path: Path
    meta: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return self.meta.get("model_id", self.path.name)

    @property
    def media_modalities(self) -> tuple[str, ...]:
        return tuple(m for m in self.model_config.modalities if m in MEDIA_MODALITIES)


def extractor_path(checkpoint_dir: str | Path, modality: str) -> Path:
    """Where a checkpoint keeps the extractor that computes its `modality` features from raw media."""
    return Path(checkpoint_dir) / f"{modality}_extractor"


def copy_extractor(out_dir: Path, modality: str, source: Path) -> None:
    target = extractor_path(out_dir, modality)
    if Path(source).resolve() == target.resolve():
        return
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


def load_extractors(checkpoint: Checkpoint) -> dict[str, nn.Module]:
    """modality -> extractor (eval mode) for each audio/visual input of the checkpoint; {} for text only."""
    if not checkpoint.media_modalities:
        return {}
    # Lazy: text-only checkpoints never load the media stack.
    from engines.extractor_store import ExtractorError, load_extractor

    try:
        return {m: load_extractor(extractor_path(checkpoint.path, m)) for m in checkpoint.media_modalities}
    except ExtractorError as error:
        raise CheckpointError(f"checkpoint {checkpoint.path}: {error}") from None


def save_checkpoint(
    out_dir: Path,
    config: dict,
    labels: list[str],
    encoder: SplitTextEncoder,
    network: M2FNet,
    meta: dict,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {f"m2fnet.{k}": v for k, v in network.state_dict().items()}
    state.update(encoder.top_state_dict())
    # float16 halves the file (the shipped checkpoint must stay small); evaluation reads this file.
    save_file(
        {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}, str(out_dir / WEIGHTS)
    )
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    (out_dir / "checkpoint.json").write_text(json.dumps(meta, indent=2) + "\n")


def check_checkpoint_files(path: Path) -> None:
    """Cheap check, so that a wrong path fails before anything slow starts."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path}: no such directory")
    for name in ("config.yaml", "labels.json", "checkpoint.json", WEIGHTS):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path}: missing {name}")


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    check_checkpoint_files(path)
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
        labels = json.loads((path / "labels.json").read_text())
        meta = json.loads((path / "checkpoint.json").read_text())
        text_config = TextEncoderConfig(**config["text"])
        model_config = M2FNetConfig(**config["model"])
    except (yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path}: unreadable config ({error})") from None
    for modality in model_config.modalities:
        if modality in MEDIA_MODALITIES and not extractor_path(path, modality).is_dir():
            raise CheckpointError(f"checkpoint {path}: missing {extractor_path(path, modality).name}/")
    tokenizer, base = load_tokenizer_and_model(text_config.encoder)
    encoder = SplitTextEncoder(base, text_config.finetune_top_layers)
    network = M2FNet(model_config)
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"checkpoint {path}: unreadable {WEIGHTS} ({error})") from None
    state = {k: v.float() for k, v in state.items()}
    try:
        network.load_state_dict(
            {k.removeprefix("m2fnet."): v for k, v in state.items() if k.startswith("m2fnet.")}
        )
        encoder.load_top_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(
            f"checkpoint {path}: weights do not match its config ({str(error).splitlines()[0]})"
        ) from None
    encoder.eval()
    network.eval()
    return Checkpoint(text_config, model_config, labels, tokenizer, encoder, network, path, meta)
