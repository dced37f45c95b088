"""`python -m training pretrain-extractor`: trains an audio or visual extractor as a triplet network.

M2FNet section 3.3: triplets mined by emotion label inside class-balanced batches, loss
20 * adaptive-margin triplet + 5 * VICReg covariance + 1 * VICReg variance, Adam lr 1e-4, wd 1e-6.
The paper trains 60 (audio) / 100 (visual) epochs on a GPU; the defaults here are small for a CPU.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engines.audio_extractor import AudioExtractor, AudioExtractorConfig, embed_audio, raw_prosody
from engines.errors import MediaError
from engines.extractor_store import new_extractor, save_extractor
from engines.visual_extractor import (
    FramePreparer,
    VisualExtractor,
    VisualExtractorConfig,
    VisualInput,
    collate_visual,
)
from training.augment import AudioAugmentOptions, add_noise, random_crop, time_warp
from training.data import DataError
from training.losses import TripletLossOptions, extractor_loss, mine_triplets
from training.media import DecodeOptions, SkipReport, decode_audio, decode_frames, load_media

logger = logging.getLogger(__name__)


@dataclass
class PretrainOptions:
    epochs: int = 10
    """Passes over the (capped) training clips."""
    batch_size: int = 32
    lr: float = 1e-4
    """Adam learning rate (paper)."""
    weight_decay: float = 1e-6
    """Adam weight decay (paper)."""
    mining: str = "semihard"
    """"semihard" (FaceNet, on the batch's own embeddings) or "random" negatives."""
    max_clips: int = 2000
    """Clips kept for training, class-balanced: bounds memory (decoded media is held) and time on a CPU."""
    store_audio_s: float = 8.0
    """Middle part of each audio clip kept in memory; training crops `augment.crop_s` from it."""
    flip_prob: float = 0.5
    """Visual augmentation: horizontal mirror (expressions are near-symmetric)."""
    seed: int = 0
    progress: bool = True
    loss: TripletLossOptions = field(default_factory=TripletLossOptions)
    augment: AudioAugmentOptions = field(default_factory=AudioAugmentOptions)
    audio: AudioExtractorConfig = field(default_factory=AudioExtractorConfig)
    visual: VisualExtractorConfig = field(default_factory=VisualExtractorConfig)
    decode: DecodeOptions = field(default_factory=DecodeOptions)


@dataclass
class TrainingMedia:
    """Decoded clips of one data file, ready for the extractor."""

    inputs: list  # int16 sample arrays (audio) or VisualInput (visual)
    labels: np.ndarray
    keys: list[str]
    classes: list[str]
    report: SkipReport


@dataclass
class PretrainResult:
    extractor_dir: Path
    extractor_id: str
    history: list[dict]
    """Per epoch: mean loss parts and seconds."""
    train_media: TrainingMedia


def _balanced_cap(labels: list[str], cap: int, rng: np.random.Generator) -> list[int]:
    """Indices of at most `cap` items, as class-balanced as the data allows."""
    order = rng.permutation(len(labels))
    if len(labels) <= cap:
        return sorted(order.tolist())
    by_class: dict[str, list[int]] = {}
    for i in order:
        by_class.setdefault(labels[i], []).append(int(i))
    quota = cap // len(by_class)
    chosen = [i for items in by_class.values() for i in items[:quota]]
    rest = [i for items in by_class.values() for i in items[quota:]]
    return sorted(chosen + rest[: cap - len(chosen)])


def load_training_media(
    data: str | Path,
    modality: str,
    options: PretrainOptions,
    classes: list[str] | None = None,
    work_dir: str | Path | None = None,
) -> TrainingMedia:
    """Decodes the clips of a JSONL / MELD file (a MELD.Raw folder or IEMOCAP root: its train split; the
    IEMOCAP JSONL files go to `work_dir/iemocap/`)."""
    sources = load_media(data, work_dir)
    if len(sources) > 1:
        sources = [s for s in sources if s.data_file.name.lower().startswith("train")] or sources[:1]
    source = sources[0]
    report = SkipReport()
    report.extend(source.report)
    clips = [c for c in source.clips if c.utterance.emotion]
    classes = classes or sorted({c.utterance.emotion for c in clips})
    clips = [c for c in clips if c.utterance.emotion in classes]
    rng = np.random.default_rng(options.seed)
    clips = [clips[i] for i in _balanced_cap([c.utterance.emotion for c in clips], options.max_clips, rng)]
    preparer = FramePreparer(options.visual) if modality == "visual" else None
    inputs, labels, keys = [], [], []
    try:
        for clip in tqdm(
            clips,
            desc=f"decode {source.data_file.name}",
            unit="clip",
            disable=not options.progress,
            file=sys.stderr,
        ):
            path = clip.audio_path if modality == "audio" else clip.video_path
            if path is None:
                report.add(clip.key, f"no {modality} path")
                continue
            try:
                if modality == "audio":
                    samples = decode_audio(path, options.decode)
                    keep = int(options.store_audio_s * 16_000)
                    if len(samples) > keep:
                        start = (len(samples) - keep) // 2
                        samples = samples[start : start + keep]
                    item = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
                else:
                    item = preparer(decode_frames(path, options.decode, clip.video_start_s, clip.video_end_s))
                    if item is None:
                        raise MediaError("no video frames")
            except MediaError as error:
                report.add(f"{clip.key} ({path})", str(error))
                continue
            except Exception as error:  # noqa: BLE001 - one odd file must not end the run
                report.add(f"{clip.key} ({path})", f"unreadable: {type(error).__name__}")
                continue
            inputs.append(item)
            labels.append(classes.index(clip.utterance.emotion))
            keys.append(clip.key)
    finally:
        if preparer is not None:
            preparer.close()
    return TrainingMedia(inputs, np.asarray(labels, dtype=np.int64), keys, classes, report)


def _batches(labels: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Class-balanced batches: every anchor has positives and negatives in its batch."""
    classes = np.unique(labels)
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}
    per_class = max(2, batch_size // len(classes))
    out = []
    for _ in range(math.ceil(len(labels) / batch_size)):
        chosen = (
            classes
            if len(classes) * 2 <= batch_size
            else rng.choice(classes, size=max(2, batch_size // 2), replace=False)
        )
        batch = []
        for c in chosen:
            for _ in range(min(per_class, int((labels == c).sum()))):
                if not pools[c]:
                    pools[c] = list(rng.permutation(np.flatnonzero(labels == c)))
                batch.append(pools[c].pop())
        out.append(np.asarray(batch))
    return out


def _audio_batch(
    model: AudioExtractor, items: list[np.ndarray], options: PretrainOptions, rng, generator
) -> torch.Tensor:
    length = int(options.augment.crop_s * model.config.sample_rate_hz)
    waves = np.stack([random_crop(x.astype(np.float32) / 32767, length, rng) for x in items])
    wave = add_noise(torch.from_numpy(waves), options.augment, generator)
    mel = time_warp(model.mel(wave), options.augment, generator)
    return model.forward_mel(mel)


def _visual_batch(
    model: VisualExtractor, items: list[VisualInput], options: PretrainOptions, rng
) -> torch.Tensor:
    batch = collate_visual(items)
    flip = torch.from_numpy(rng.random(len(items)) < options.flip_prob)
    if flip.any():
        batch.scenes[flip] = batch.scenes[flip].flip(-1)
        batch.faces[flip] = batch.faces[flip].flip(-1)
    return model(batch)


def train_extractor(
    modality: str, media: TrainingMedia, options: PretrainOptions
) -> tuple[torch.nn.Module, list[dict]]:
    if len(set(media.labels.tolist())) < 2:
        raise DataError("triplet training needs at least two emotion labels with usable clips")
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    model = new_extractor(modality, options.audio if modality == "audio" else options.visual)
    if modality == "audio" and model.config.prosody:
        model.fit_prosody_scaling(
            np.stack([raw_prosody(model, x.astype(np.float32) / 32767) for x in media.inputs])
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    history = []
    for epoch in range(options.epochs):
        model.train()
        started, sums, steps = time.monotonic(), {"total": 0.0, "amt": 0.0, "cov": 0.0, "var": 0.0}, 0
        for index in _batches(media.labels, options.batch_size, rng):
            items = [media.inputs[i] for i in index]
            if modality == "audio":
                z = _audio_batch(model, items, options, rng, generator)
            else:
                z = _visual_batch(model, items, options, rng)
            labels = torch.from_numpy(media.labels[index])
            a, p, n = mine_triplets(labels, z.detach() if options.mining == "semihard" else None, generator)
            if len(a) == 0:
                continue
            parts = extractor_loss(z[a], z[p], z[n], options.loss)
            optimizer.zero_grad()
            parts.total.backward()
            optimizer.step()
            for name in sums:
                sums[name] += float(getattr(parts, name).detach())
            steps += 1
        record = {
            "epoch": epoch + 1,
            **{k: v / max(steps, 1) for k, v in sums.items()},
            "seconds": time.monotonic() - started,
        }
        history.append(record)
        logger.info(
            "epoch %d: loss %.4f (amt %.4f cov %.4f var %.4f) %.1f s",
            *[record[k] for k in ("epoch", "total", "amt", "cov", "var", "seconds")],
        )
    return model.eval(), history


@torch.inference_mode()
def embed_media(model: torch.nn.Module, media: TrainingMedia, batch_size: int = 16) -> np.ndarray:
    """(N, out_dim) embeddings of decoded clips, computed as extraction does (whole clip, eval mode)."""
    model.eval()
    if isinstance(model, AudioExtractor):
        return np.stack([embed_audio(model, x.astype(np.float32) / 32767) for x in media.inputs])
    rows = [
        model(collate_visual(media.inputs[i : i + batch_size])).numpy()
        for i in range(0, len(media.inputs), batch_size)
    ]
    return np.concatenate(rows).astype(np.float32)


def linear_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, seed: int = 0
) -> float:
    """Accuracy of a standardised logistic regression fitted on train, scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1, random_state=seed))
    probe.fit(train_x, train_y)
    return float((probe.predict(test_x) == test_y).mean())


def pretrain_extractor(
    modality: str,
    data: str | Path,
    out_dir: str | Path,
    options: PretrainOptions | None = None,
    dev: str | Path | None = None,
    notes: dict | None = None,
) -> PretrainResult:
    """Trains on `data` and saves the extractor folder to `out_dir` (with `notes` in its extractor.json).
    With `dev`, a linear probe trained on the training embeddings is scored on dev and noted too."""
    options = options or PretrainOptions()
    if modality not in ("audio", "visual"):
        raise DataError(f"--modality: expected audio or visual, got {modality!r}")
    media = load_training_media(data, modality, options, work_dir=out_dir)
    logger.info(
        "%s: %d clips for %s pretraining, %s", data, len(media.inputs), modality, media.report.summary()
    )
    model, history = train_extractor(modality, media, options)
    notes = {
        **(notes or {}),
        "data": str(Path(data).resolve()),
        "classes": media.classes,
        "clips": len(media.inputs),
        "history": history,
    }
    if dev is not None:
        dev_media = load_training_media(dev, modality, options, classes=media.classes)
        if len(dev_media.inputs):
            notes["dev_probe_accuracy"] = linear_probe(
                embed_media(model, media), media.labels, embed_media(model, dev_media), dev_media.labels
            )
            logger.info(
                "%s extractor: linear probe accuracy on %s = %.3f", modality, dev, notes["dev_probe_accuracy"]
            )
    extractor_id = save_extractor(model, out_dir, notes=notes)
    media.report.write(Path(out_dir) / "skipped.tsv")
    return PretrainResult(Path(out_dir), extractor_id, history, media)


def add_pretrain_extractor_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrain-extractor", help="train an audio or visual extractor with the triplet loss"
    )
    parser.add_argument("--modality", required=True, choices=("audio", "visual"))
    parser.add_argument(
        "--data",
        required=True,
        help="training JSONL with audio/video paths, a MELD CSV, a MELD.Raw folder or an IEMOCAP root "
        "(their train split)",
    )
    parser.add_argument("--out", required=True, help="extractor folder to write")
    parser.add_argument("--dev", default=None, help="optional dev file: report a linear-probe accuracy")
    defaults = PretrainOptions()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--max-clips", type=int, default=defaults.max_clips)
    parser.add_argument("--width", type=int, default=None, help="ResNet18 stage-1 channels (64 = paper size)")
    parser.add_argument(
        "--no-hinge", action="store_true", help="the triplet loss exactly as printed, without max(0, .)"
    )
    parser.add_argument(
        "--no-prosody", action="store_true", help="audio: the paper's 300-d output, no prosodic functionals"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run_pretrain_extractor(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    options = PretrainOptions(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_clips=args.max_clips,
        seed=args.seed,
        progress=not args.no_progress,
    )
    options.loss.hinge = not args.no_hinge
    options.audio.prosody = not args.no_prosody
    if args.width is not None:
        options.audio.width = options.visual.width = args.width
    try:
        result = pretrain_extractor(args.modality, args.data, args.out, options, dev=args.dev)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    last = result.history[-1] if result.history else {}
    print(
        f"{result.extractor_id}: {len(result.train_media.inputs)} clips, {len(result.history)} epochs, final loss {last.get('total', float('nan')):.4f} -> {result.extractor_dir}"
    )
    return 0
