"""Turns dialogues into tensors: cached text token states, optional audio/visual vectors, labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engines.text_encoder import SplitTextEncoder, TextEncoderConfig, build_input
from engines.text_form import dialogue_speakers
from training.data import Dialogue
from training.text_cache import TokenStateCache

IGNORE = -100


@dataclass
class EncodedDialogue:
    dialogue: Dialogue
    states: list[torch.Tensor]  # frozen-layer token states per utterance, (S_i, H) float16
    targets: list[tuple[int, int]]  # token span of the utterance itself inside its context window
    labels: torch.Tensor  # (K,) label index, IGNORE where unlabelled
    features: dict[str, torch.Tensor]  # non-text modality -> (K, dim)
    present: dict[str, torch.Tensor]  # non-text modality -> (K,) bool


def encode_dialogues(
    dialogues: list[Dialogue],
    tokenizer,
    encoder: SplitTextEncoder,
    cache: TokenStateCache,
    text_config: TextEncoderConfig,
    labels: list[str],
    modality_vectors: dict[str, tuple[int, dict[str, np.ndarray]]] | None = None,
) -> list[EncodedDialogue]:
    """`modality_vectors`: modality -> (dim, {utterance key: vector}); a missing key is masked."""
    index = {label: i for i, label in enumerate(labels)}
    sequences, spans = [], []
    for dialogue in dialogues:
        texts = [u.text for u in dialogue.utterances]
        speakers = dialogue_speakers([u.speaker for u in dialogue.utterances], text_config.speaker_labels)
        for i in range(len(texts)):
            sequence, span = build_input(tokenizer, texts, speakers, i, text_config)
            sequences.append(sequence)
            spans.append(span)
    states = cache.states(encoder, sequences)
    out, offset = [], 0
    for dialogue in dialogues:
        k = len(dialogue.utterances)
        features, present = {}, {}
        for modality, (dim, vectors) in (modality_vectors or {}).items():
            found = [vectors.get(u.key) for u in dialogue.utterances]
            present[modality] = torch.tensor([v is not None for v in found])
            features[modality] = torch.stack(
                [
                    torch.as_tensor(v, dtype=torch.float32) if v is not None else torch.zeros(dim)
                    for v in found
                ]
            )
        out.append(
            EncodedDialogue(
                dialogue=dialogue,
                states=states[offset : offset + k],
                targets=spans[offset : offset + k],
                labels=torch.tensor([index.get(u.emotion, IGNORE) for u in dialogue.utterances]),
                features=features,
                present=present,
            )
        )
        offset += k
    return out


def text_vectors(
    encoder: SplitTextEncoder,
    states: list[torch.Tensor],
    targets: list[tuple[int, int]],
    chunk_size: int = 12,
) -> torch.Tensor:
    """Runs the fine-tuned top layers over the utterances -> (N, H).

    Utterances are grouped by length before padding: padding every utterance of a batch to the
    longest one roughly doubled the cost of fine-tuning."""
    order = sorted(range(len(states)), key=lambda i: states[i].shape[0])
    pieces = []
    for begin in range(0, len(order), chunk_size):
        rows = order[begin : begin + chunk_size]
        longest = states[rows[-1]].shape[0]
        hidden = torch.zeros(len(rows), longest, states[0].shape[1])
        attention = torch.zeros(len(rows), longest, dtype=torch.long)
        target = torch.zeros(len(rows), longest, dtype=torch.bool)
        for row, index in enumerate(rows):
            start, end = targets[index]
            hidden[row, : states[index].shape[0]] = states[index].float()
            attention[row, : states[index].shape[0]] = 1
            target[row, start:end] = True
        pieces.append(encoder.top(hidden, attention, target))
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(pieces)[inverse]


def collate(
    encoder: SplitTextEncoder,
    batch: list[EncodedDialogue],
    modalities: tuple[str, ...],
    modality_dropout: float = 0.0,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """-> features, present, valid (B, K) and labels (B, K) for M2FNet."""
    lengths = [len(d.states) for d in batch]
    b, k = len(batch), max(lengths)
    flat = text_vectors(encoder, [s for d in batch for s in d.states], [t for d in batch for t in d.targets])
    text = torch.zeros(b, k, flat.shape[1])
    valid = torch.zeros(b, k, dtype=torch.bool)
    labels = torch.full((b, k), IGNORE, dtype=torch.long)
    features = {"text": text}
    present = {"text": valid}
    for m in modalities:
        if m != "text":
            features[m] = torch.zeros(b, k, batch[0].features[m].shape[1])
            present[m] = torch.zeros(b, k, dtype=torch.bool)
    offset = 0
    for row, dialogue in enumerate(batch):
        n = lengths[row]
        text[row, :n] = flat[offset : offset + n]
        valid[row, :n] = True
        labels[row, :n] = dialogue.labels
        for m in modalities:
            if m != "text":
                features[m][row, :n] = dialogue.features[m]
                keep = dialogue.present[m]
                if modality_dropout:
                    keep = keep & (torch.rand(n) >= modality_dropout)
                present[m][row, :n] = keep
        offset += n
    return features, present, valid, labels
