"""The M2FNet network (Chudasama et al., CVPRW 2022): dialogue-level encoders and attention fusion.

Inputs are per-utterance feature vectors for each modality of a batch of dialogues (B, K, dim).
A modality the data lacks is not built at all; a modality missing for some utterances is masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from engines.media_format import MODALITIES


@dataclass
class M2FNetConfig:
    num_labels: int = 7
    modalities: tuple[str, ...] = ("text",)  # which of text/audio/visual the model was built with
    text_dim: int = 384  # width of the utterance text features (the text encoder's hidden size)
    audio_dim: int = 300  # audio extractor output (paper: 300)
    visual_dim: int = 600  # visual extractor output, scene + face (paper: 600)
    hidden_dim: int = 384  # D_T: every modality is projected to this width before the dialogue encoders
    dialogue_layers: int = 1  # N transformer layers over the dialogue, per modality (paper: 1 on MELD)
    dialogue_heads: int = 8
    feedforward_dim: int = 768
    fusion_layers: int = 5  # m stacked multi-head-attention fusion layers (paper: 5)
    fusion_heads: int = 8
    dropout: float = 0.4  # paper: 0.4-0.5
    causal: bool = False  # past-only context (live): no utterance attends to a later one
    max_utterances: int = 256  # longest dialogue the position table covers

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or "text" not in self.modalities:
            raise ValueError(
                f"modalities must include 'text' and be among {MODALITIES}, got {self.modalities}"
            )

    def input_dim(self, modality: str) -> int:
        return {"text": self.text_dim, "audio": self.audio_dim, "visual": self.visual_dim}[modality]


def attention_mask(valid: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, K) valid-utterance flags -> (B, K, K) bool, True where query i may attend key j."""
    allowed = valid[:, None, :] & valid[:, :, None]
    if causal:
        k = valid.shape[1]
        allowed = allowed & torch.ones(k, k, dtype=torch.bool, device=valid.device).tril()[None]
    return allowed


class MaskedAttention(nn.Module):
    """Multi-head attention whose rows with no allowed key return zeros instead of NaN."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        b, n, d = q.shape
        h = self.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, h, d // h).transpose(1, 2)

        scores = split(self.query(q)) @ split(self.key(k)).transpose(-1, -2) / math.sqrt(d // h)
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        has_key = allowed.any(-1)[:, None, :, None]
        weights = torch.softmax(scores.masked_fill(~has_key, 0.0), dim=-1) * has_key
        mixed = (self.dropout(weights) @ split(self.value(v))).transpose(1, 2).reshape(b, n, d)
        return self.out(mixed)


class DialogueLayer(nn.Module):
    """Pre-norm transformer encoder layer over the utterances of a dialogue."""

    def __init__(self, cfg: M2FNetConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_dim)
        self.attention = MaskedAttention(cfg.hidden_dim, cfg.dialogue_heads, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.hidden_dim)
        self.feedforward = nn.Sequential(
            nn.Linear(cfg.hidden_dim, cfg.feedforward_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.feedforward_dim, cfg.hidden_dim),
        )
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.dropout(self.attention(y, y, y, allowed))
        return x + self.dropout(self.feedforward(self.norm2(x)))


class DialogueEncoder(nn.Module):
    """N layers over the dialogue, each wrapped in the paper's extra skip connection."""

    def __init__(self, cfg: M2FNetConfig, input_dim: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(input_dim, cfg.hidden_dim))
        self.position = nn.Embedding(cfg.max_utterances, cfg.hidden_dim)
        nn.init.normal_(self.position.weight, std=0.02)  # N(0, 1) would drown the utterance features
        self.layers = nn.ModuleList(DialogueLayer(cfg) for _ in range(cfg.dialogue_layers))
        self.norm = nn.LayerNorm(cfg.hidden_dim)

    def forward(self, features: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(features.shape[1], device=features.device).clamp(
            max=self.position.num_embeddings - 1
        )
        x = self.project(features) + self.position(positions)[None]
        for layer in self.layers:
            x = x + layer(x, allowed)
        return self.norm(x)


class FusionLayer(nn.Module):
    """Text is query and value; each other modality is the key of its own attention."""

    def __init__(self, cfg: M2FNetConfig, key_modalities: tuple[str, ...]) -> None:
        super().__init__()
        self.key_modalities = key_modalities
        self.attentions = nn.ModuleDict(
            {m: MaskedAttention(cfg.hidden_dim, cfg.fusion_heads, cfg.dropout) for m in key_modalities}
        )
        self.merge = nn.Linear(cfg.hidden_dim * (1 + len(key_modalities)), cfg.hidden_dim)
        self.norm = nn.LayerNorm(cfg.hidden_dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, text: torch.Tensor, keys: dict[str, torch.Tensor], allowed: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        parts = [text] + [self.attentions[m](text, keys[m], text, allowed[m]) for m in self.key_modalities]
        return self.norm(text + self.dropout(self.merge(torch.cat(parts, dim=-1))))


class M2FNet(nn.Module):
    def __init__(self, cfg: M2FNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoders = nn.ModuleDict({m: DialogueEncoder(cfg, cfg.input_dim(m)) for m in cfg.modalities})
        self.key_modalities = tuple(m for m in cfg.modalities if m != "text")
        self.fusion = nn.ModuleList(FusionLayer(cfg, self.key_modalities) for _ in range(cfg.fusion_layers))
        width = cfg.hidden_dim * len(cfg.modalities)
        self.head = nn.Sequential(
            nn.Dropout(cfg.dropout),
            nn.Linear(width, cfg.hidden_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden_dim, cfg.num_labels),
        )

    def forward(
        self,
        features: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor],
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """features[m]: (B, K, dim_m); present[m]: (B, K) bool, modality available per utterance;
        valid: (B, K) bool, real (non-padding) utterances. Returns logits (B, K, num_labels)."""
        base = attention_mask(valid, self.cfg.causal)
        encoded, allowed = {}, {}
        for m in self.cfg.modalities:
            usable = valid & present[m] if m != "text" else valid
            allowed[m] = base & usable[:, None, :]
            encoded[m] = self.encoders[m](features[m], allowed[m]) * usable[..., None]
        fused = encoded["text"]
        for layer in self.fusion:
            fused = layer(fused, encoded, allowed)
        head_input = [fused] + [encoded[m] for m in self.key_modalities]
        return self.head(torch.cat(head_input, dim=-1))
