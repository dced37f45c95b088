"""Offline prediction through the engines (engines/engine.py): the live loop's text path and fusion
network on any backend, batched, so `evaluate --backend torch` and `--backend onnx` compare like for like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engines.engine import Engines
from engines.stream import softmax
from engines.text_encoder import build_input
from engines.text_form import dialogue_speakers
from training.batches import IGNORE
from training.data import Dialogue


@dataclass
class DialoguePrediction:
    dialogue: Dialogue
    labels: np.ndarray
    """(K,) label index, IGNORE where the utterance has no known label."""
    probabilities: np.ndarray
    """(K, labels) float32 softmax."""


@dataclass
class PredictionTiming:
    text_s: float = 0.0
    """Seconds spent in the text engine."""
    fusion_s: float = 0.0
    """Seconds spent in the fusion engine."""


def _text_vectors(
    engines: Engines, sequences: list[list[int]], spans: list[tuple[int, int]], batch_size: int
) -> np.ndarray:
    # Sorted by length so padding stays small; order restored at the end.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: np.ndarray | None = None
    for begin in range(0, len(order), batch_size):
        rows = order[begin : begin + batch_size]
        longest = len(sequences[rows[-1]])
        ids = np.zeros((len(rows), longest), np.int64)
        attention = np.zeros_like(ids)
        target = np.zeros(ids.shape, bool)
        for row, index in enumerate(rows):
            ids[row, : len(sequences[index])] = sequences[index]
            attention[row, : len(sequences[index])] = 1
            start, end = spans[index]
            target[row, start:end] = True
        vectors = engines.text.encode(ids, attention, target)
        if out is None:
            out = np.zeros((len(sequences), vectors.shape[1]), np.float32)
        out[rows] = vectors
    return out if out is not None else np.zeros((0, 0), np.float32)


def predict_dialogues(
    engines: Engines,
    checkpoint,
    dialogues: list[Dialogue],
    modality_vectors: dict[str, tuple[int, dict[str, np.ndarray]]] | None = None,
    text_batch: int = 8,
    dialogue_batch: int = 8,
    timing: PredictionTiming | None = None,
) -> list[DialoguePrediction]:
    """Probabilities for every utterance of `dialogues`; `modality_vectors` as in `encode_dialogues`."""
    timing = timing or PredictionTiming()
    sequences, spans = [], []
    for dialogue in dialogues:
        texts = [u.text for u in dialogue.utterances]
        speakers = dialogue_speakers(
            [u.speaker for u in dialogue.utterances], checkpoint.text_config.speaker_labels
        )
        for i in range(len(texts)):
            sequence, span = build_input(checkpoint.tokenizer, texts, speakers, i, checkpoint.text_config)
            sequences.append(sequence)
            spans.append(span)
    started = time.perf_counter()
    vectors = _text_vectors(engines, sequences, spans, text_batch)
    timing.text_s += time.perf_counter() - started
    index = {label: i for i, label in enumerate(checkpoint.labels)}
    media = [m for m in checkpoint.model_config.modalities if m != "text"]
    offsets = np.cumsum([0] + [len(d.utterances) for d in dialogues])
    out = []
    for begin in range(0, len(dialogues), dialogue_batch):
        batch = dialogues[begin : begin + dialogue_batch]
        k = max(len(d.utterances) for d in batch)
        valid = np.zeros((len(batch), k), bool)
        features = {"text": np.zeros((len(batch), k, vectors.shape[1]), np.float32)}
        present = {}
        for m in media:
            features[m] = np.zeros((len(batch), k, checkpoint.model_config.input_dim(m)), np.float32)
            present[m] = np.zeros((len(batch), k), bool)
        for row, dialogue in enumerate(batch):
            n, first = len(dialogue.utterances), offsets[begin + row]
            valid[row, :n] = True
            features["text"][row, :n] = vectors[first : first + n]
            for m in media:
                _, table = (modality_vectors or {}).get(m, (0, {}))
                for col, utterance in enumerate(dialogue.utterances):
                    vector = table.get(utterance.key)
                    if vector is not None:
                        features[m][row, col], present[m][row, col] = vector, True
        started = time.perf_counter()
        probs = softmax(engines.fusion.logits(features, present, valid))
        timing.fusion_s += time.perf_counter() - started
        for row, dialogue in enumerate(batch):
            labels = np.array([index.get(u.emotion, IGNORE) for u in dialogue.utterances])
            out.append(DialoguePrediction(dialogue, labels, probs[row, : len(dialogue.utterances)]))
    return out
