"""Training M2FNet on conversation files: fine-tunes the text encoder's top layers jointly with
the dialogue network, evaluates on dev after every epoch and keeps the best epoch."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engines.checkpoint import MEDIA_MODALITIES, Checkpoint, copy_extractor, load_checkpoint, save_checkpoint
from engines.m2fnet import M2FNet
from engines.text_encoder import SplitTextEncoder, load_tokenizer_and_model
from training.batches import IGNORE, EncodedDialogue, collate, encode_dialogues
from training.config import TrainConfig, config_to_dict
from training.data import DataError, Dialogue, check_labels, label_set, load_dialogues
from training.distill import DistillOptions, distillation_loss, soft_targets
from training.features_io import ModalityFeatures
from training.metrics import classification_report
from training.text_augment import live_style
from training.text_cache import TokenStateCache

log = logging.getLogger(__name__)

ModalityVectors = dict[str, tuple[int, dict[str, np.ndarray]]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batches(dialogues: list[EncodedDialogue], size: int, shuffle: bool) -> list[list[EncodedDialogue]]:
    order = list(range(len(dialogues)))
    if shuffle:
        random.shuffle(order)
    return [[dialogues[i] for i in order[s : s + size]] for s in range(0, len(order), size)]


def predict_logits(
    encoder: SplitTextEncoder, network: M2FNet, dialogues: list[EncodedDialogue], batch_size: int = 8
) -> list[torch.Tensor]:
    """Logits (K, C) per dialogue."""
    encoder.eval()
    network.eval()
    out = []
    with torch.no_grad():
        for batch in batches(dialogues, batch_size, shuffle=False):
            features, present, valid, _ = collate(encoder, batch, network.cfg.modalities)
            logits = network(features, present, valid)
            out += [logits[row, : len(d.states)] for row, d in enumerate(batch)]
    return out


def predict_probabilities(
    encoder: SplitTextEncoder, network: M2FNet, dialogues: list[EncodedDialogue], batch_size: int = 8
) -> list[torch.Tensor]:
    """Softmax probabilities (K, C) per dialogue."""
    return [torch.softmax(x, dim=-1) for x in predict_logits(encoder, network, dialogues, batch_size)]


def evaluate_encoded(encoder, network, dialogues: list[EncodedDialogue], labels: list[str]) -> dict:
    probs = predict_probabilities(encoder, network, dialogues)
    truth, predicted = [], []
    for dialogue, p in zip(dialogues, probs):
        keep = dialogue.labels != IGNORE
        truth += dialogue.labels[keep].tolist()
        predicted += p.argmax(-1)[keep].tolist()
    return classification_report(truth, predicted, labels)


def class_weights(dialogues: list[EncodedDialogue], num_labels: int, power: float) -> torch.Tensor:
    counts = Counter(int(x) for d in dialogues for x in d.labels if x != IGNORE)
    total = sum(counts.values())
    weights = torch.tensor([(total / max(counts.get(i, 0), 1)) ** power for i in range(num_labels)])
    return weights / (weights * torch.tensor([counts.get(i, 0) for i in range(num_labels)])).sum() * total


def media_vectors(
    train: dict[str, ModalityFeatures],
    dev: dict[str, ModalityFeatures],
    train_dialogues: list[Dialogue],
    train_path: str | Path,
) -> tuple[ModalityVectors, ModalityVectors]:
    """Checks that each modality's train and dev vectors come from one extractor the checkpoint can carry,
    and that the training file has some; -> vectors for `encode_dialogues`, train and dev."""
    if set(train) != set(dev):
        raise DataError(f"features: the training file has {sorted(train)} but the dev file has {sorted(dev)}")
    keys = [u.key for d in train_dialogues for u in d.utterances]
    for modality in sorted(train):
        ours, theirs = train[modality], dev[modality]
        if modality not in MEDIA_MODALITIES or {ours.modality, theirs.modality} != {modality}:
            raise DataError(f"features: {ours.modality} vectors given as {modality!r} (audio or visual)")
        if ours.extractor_id != theirs.extractor_id or ours.dim != theirs.dim:
            raise DataError(
                f"{modality} features: train ({ours.extractor_id}) and dev ({theirs.extractor_id}) "
                "come from different extractors"
            )
        if ours.extractor_dir is None:
            raise DataError(f"{modality} features of {train_path}: no extractor folder for the checkpoint")
        covered = sum(key in ours.vectors for key in keys)
        if not covered:
            raise DataError(
                f"{train_path}: no utterance has {modality} features (the skipped-*.tsv beside them says why)"
            )
        log.info("%s: %d of %d training utterances have vectors", modality, covered, len(keys))
    return {m: (f.dim, f.vectors) for m, f in train.items()}, {m: (f.dim, f.vectors) for m, f in dev.items()}


def train_model(
    config: TrainConfig,
    train_path: str | Path,
    dev_path: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    train_features: dict[str, ModalityFeatures] | None = None,
    dev_features: dict[str, ModalityFeatures] | None = None,
    extra_meta: dict | None = None,
) -> dict:
    """Trains, keeps the best dev epoch in `out_dir`, returns its dev report.

    `train_features` / `dev_features`: audio/visual vectors of the training and dev files, one table per
    file because `Utterance.key` is only unique inside one file. Their extractor is copied into the
    checkpoint so that evaluation and the live loop compute the same features from raw media."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    torch.set_num_threads(config.optim.threads)
    seed_everything(seed)
    train_dialogues = live_style(load_dialogues(train_path), config.text_augment)
    dev_dialogues = load_dialogues(dev_path)
    labels = label_set(train_dialogues)
    if len(labels) < 2:
        raise DataError(f"{train_path}: needs at least two emotion labels, found {labels}")
    check_labels(dev_dialogues, labels, dev_path)
    train_features, dev_features = train_features or {}, dev_features or {}
    train_vectors, dev_vectors = media_vectors(train_features, dev_features, train_dialogues, train_path)
    modalities = ("text", *sorted(train_vectors, key=MEDIA_MODALITIES.index))
    config.model.modalities = modalities
    config.model.num_labels = len(labels)
    for modality, (dim, _) in train_vectors.items():
        setattr(config.model, f"{modality}_dim", dim)
    config.validate()

    tokenizer, base = load_tokenizer_and_model(config.text.encoder)
    encoder = SplitTextEncoder(base, config.text.finetune_top_layers)
    config.model.text_dim = encoder.hidden_size
    cache = TokenStateCache(f"{config.text.encoder}:{base.name_or_path}", encoder.split_at)
    train_set = encode_dialogues(
        train_dialogues, tokenizer, encoder, cache, config.text, labels, train_vectors
    )
    dev_set = encode_dialogues(dev_dialogues, tokenizer, encoder, cache, config.text, labels, dev_vectors)

    distill = config.distill
    teacher = teacher_probabilities(distill, train_path, labels) if distill.teacher else None
    network = M2FNet(config.model)
    optim = config.optim
    # Deep supervision: a linear probe on the utterance vectors, used in training only.
    utterance_head = torch.nn.Linear(encoder.hidden_size, len(labels))
    groups = [{"params": [*network.parameters(), *utterance_head.parameters()], "lr": optim.head_lr}]
    encoder_params = [p for p in encoder.top_layers.parameters() if p.requires_grad]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": optim.encoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=optim.weight_decay)
    steps = optim.epochs * math.ceil(len(train_set) / optim.dialogues_per_batch)
    warmup = max(1, int(optim.warmup_fraction * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=class_weights(train_set, len(labels), optim.class_weight_power),
        ignore_index=IGNORE,
        label_smoothing=optim.label_smoothing,
    )
    meta = {
        "model_id": out_dir.name,
        "encoder": config.text.encoder,
        "modalities": list(modalities),
        "train_data": str(train_path),
        "dev_data": str(dev_path),
        "seed": seed,
        **({"extractors": {m: f.extractor_id for m, f in train_features.items()}} if train_features else {}),
        **(extra_meta or {}),
    }
    for modality, features in train_features.items():
        copy_extractor(out_dir, modality, features.extractor_dir)
    best: dict = {"weighted_f1": -1.0}
    history = []
    averaging = WeightAverage(encoder, network, optim.average_last_epochs, optim.epochs)
    for epoch in range(1, optim.epochs + 1):
        encoder.train()
        network.train()
        total, count = 0.0, 0
        progress = tqdm(
            batches(train_set, optim.dialogues_per_batch, shuffle=True), desc=f"epoch {epoch}", unit="batch"
        )
        for batch in progress:
            features, present, valid, target = collate(encoder, batch, modalities, optim.modality_dropout)
            logits = network(features, present, valid)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
            if teacher is not None:
                soft = soft_targets(batch, teacher, tuple(logits.shape))
                loss = (1 - distill.weight) * loss + distill.weight * distillation_loss(
                    logits, soft, target, distill.temperature
                )
            if optim.utterance_loss_weight:
                direct = utterance_head(features["text"])
                loss = loss + optim.utterance_loss_weight * loss_fn(
                    direct.reshape(-1, len(labels)), target.reshape(-1)
                )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
            optimizer.step()
            scheduler.step()
            total += loss.item()
            count += 1
            progress.set_postfix(loss=f"{total / count:.3f}")
        report = evaluate_encoded(encoder, network, dev_set, labels)
        history.append(
            {"epoch": epoch, "train_loss": total / count, "dev_weighted_f1": report["weighted_f1"]}
        )
        log.info(
            "epoch %d: train loss %.4f, dev w-F1 %.2f, accuracy %.2f",
            epoch,
            total / count,
            report["weighted_f1"],
            report["accuracy"],
        )
        if averaging.enabled:
            averaging.add(epoch)
        elif report["weighted_f1"] > best["weighted_f1"]:
            best = {**report, "epoch": epoch}
            meta.update(dev=best, history=history, train_seconds=round(time.monotonic() - started, 1))
            save_checkpoint(out_dir, config_to_dict(config), labels, encoder, network, meta)
        elif optim.patience and epoch - best["epoch"] >= optim.patience:
            log.info("no better dev w-F1 for %d epochs: stopping after epoch %d", optim.patience, epoch)
            break
    if averaging.enabled:
        averaging.load_mean()
        best = {**evaluate_encoded(encoder, network, dev_set, labels), "epochs_averaged": averaging.epochs}
        meta.update(dev=best)
        save_checkpoint(out_dir, config_to_dict(config), labels, encoder, network, meta)
        log.info("mean of the weights after epochs %s: dev w-F1 %.2f", averaging.epochs, best["weighted_f1"])
    meta.update(history=history, train_seconds=round(time.monotonic() - started, 1))
    (out_dir / "checkpoint.json").write_text(json.dumps(meta, indent=2) + "\n")
    if not averaging.enabled:
        log.info("best epoch %d: dev w-F1 %.2f", best["epoch"], best["weighted_f1"])
    log.info("%.0f s in all", meta["train_seconds"])
    return best


class WeightAverage:
    """The running mean of the trained weights (network and fine-tuned encoder layers) over the last
    `last` of `epochs` epochs: stochastic weight averaging with one snapshot per epoch."""

    def __init__(self, encoder: SplitTextEncoder, network: M2FNet, last: int, epochs: int):
        self.modules = (encoder.top_layers, network)
        self.enabled = last > 0
        self.first = max(1, epochs - last + 1)
        self.epochs: list[int] = []
        self.sums: list[dict[str, torch.Tensor]] = [{} for _ in self.modules]

    def add(self, epoch: int) -> None:
        if epoch < self.first:
            return
        self.epochs.append(epoch)
        for module, sums in zip(self.modules, self.sums):
            for name, value in module.state_dict().items():
                if value.is_floating_point():
                    sums[name] = sums.get(name, 0) + value.detach().clone()

    def load_mean(self) -> None:
        for module, sums in zip(self.modules, self.sums):
            state = module.state_dict()
            state.update({name: total / len(self.epochs) for name, total in sums.items()})
            module.load_state_dict(state)


def encode_for_checkpoint(checkpoint: Checkpoint, dialogues, modality_vectors: ModalityVectors | None = None):
    cache = TokenStateCache(
        f"{checkpoint.text_config.encoder}:{checkpoint.encoder.frozen.name_or_path}",
        checkpoint.encoder.split_at,
    )
    return encode_dialogues(
        dialogues,
        checkpoint.tokenizer,
        checkpoint.encoder,
        cache,
        checkpoint.text_config,
        checkpoint.labels,
        modality_vectors,
    )


def teacher_probabilities(
    options: DistillOptions, train_path: str | Path, labels: list[str]
) -> dict[str, torch.Tensor]:
    """dialogue id -> (K, C) teacher probabilities at `options.temperature`, columns in `labels` order."""
    teacher = load_checkpoint(options.teacher)
    if sorted(teacher.labels) != sorted(labels):
        raise DataError(f"distill.teacher {options.teacher}: labels {teacher.labels} differ from {labels}")
    order = torch.tensor([teacher.labels.index(label) for label in labels])
    dialogues = load_dialogues(train_path)
    logits = predict_logits(teacher.encoder, teacher.network, encode_for_checkpoint(teacher, dialogues))
    return {
        d.dialogue_id: torch.softmax(x[:, order] / options.temperature, dim=-1)
        for d, x in zip(dialogues, logits)
    }
