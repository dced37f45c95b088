"""Training configuration: typed dataclasses, and the one place that maps a YAML file onto them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from engines.m2fnet import M2FNetConfig
from engines.text_encoder import TextEncoderConfig
from engines.yaml_config import build_dataclass
from training.data import DataError
from training.distill import DistillOptions
from training.recipe import RecipeOptions
from training.text_augment import TextAugmentOptions

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class OptimConfig:
    epochs: int = 8
    dialogues_per_batch: int = 4
    encoder_lr: float = 5e-5  # learning rate of the fine-tuned text encoder layers
    head_lr: float = 2e-4  # learning rate of M2FNet (dialogue encoders, fusion, head)
    weight_decay: float = 1e-4  # paper: 5e-5..5e-4
    warmup_fraction: float = 0.1  # of all steps, linear warm-up then linear decay
    class_weight_power: float = 0.5  # CE weight per class = (n / count) ** power; 0 = unweighted
    label_smoothing: float = 0.0
    utterance_loss_weight: float = 0.0  # extra CE on the text vectors alone: a direct signal for the encoder
    modality_dropout: float = 0.2  # chance to hide a non-text modality per utterance while training
    threads: int = 1  # torch threads; on 2 shared cores one thread is fastest
    patience: int = 0  # stop after this many epochs without a better dev w-F1; 0 runs all `epochs`
    average_last_epochs: int = 0
    """Keep the mean of the weights after each of the last N epochs instead of the best dev epoch:
    no choice on dev (which over-fits it), a flatter optimum. 0 keeps the best epoch; `patience` is
    then ignored."""


@dataclass
class TrainConfig:
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    model: M2FNetConfig = field(default_factory=M2FNetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    media: RecipeOptions = field(default_factory=RecipeOptions)
    """Extractor pretraining and feature extraction for `train --modalities text,audio[,visual]`."""
    text_augment: TextAugmentOptions = field(default_factory=TextAugmentOptions)
    """Training text made to look like live transcripts (training/text_augment.py)."""
    distill: DistillOptions = field(default_factory=DistillOptions)
    """Soft labels from a full-context teacher checkpoint (training/distill.py)."""

    def validate(self) -> None:
        if self.model.causal and self.text.future_utterances:
            raise DataError(
                "config: a causal model cannot read future utterances (text.future_utterances must be 0)"
            )
        if self.distill.teacher and not (Path(self.distill.teacher) / "model.safetensors").is_file():
            raise DataError(
                f"config: distill.teacher {self.distill.teacher}: no checkpoint there (model.safetensors)"
            )
        if self.text.speaker_labels not in ("names", "generic"):
            raise DataError(
                f"config: text.speaker_labels must be 'names' or 'generic', not '{self.text.speaker_labels}'"
            )


SECTIONS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def load_config(name_or_path: str | None) -> TrainConfig:
    """`None` -> configs/default.yaml; a bare name -> configs/NAME.yaml; else a YAML path."""
    path = Path(name_or_path) if name_or_path else CONFIG_DIR / "default.yaml"
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{path.name}.yaml"
    if not path.is_file():
        raise DataError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise DataError(f"{path}: invalid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a mapping with sections {', '.join(SECTIONS)}")
    config = build_dataclass(TrainConfig, _sections(raw), str(path), DataError)
    config.validate()
    return config


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(values: dict) -> TrainConfig:
    """The inverse of `config_to_dict`; a checkpoint written before a section existed gets its defaults."""
    return build_dataclass(TrainConfig, _sections(values), "config", DataError)


def _sections(values: dict) -> dict:
    """An empty section (`optim:` with nothing under it) means its defaults."""
    return {name: {} if section is None else section for name, section in values.items()}
