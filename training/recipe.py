"""The one-command recipe's media half: pretrain each extractor on the training file with the triplet loss,
then extract cached features for the training and dev files. `train --modalities` calls this.

Re-running reuses an extractor trained on the same training file with the same options, and the feature
cache resumes, so an interrupted recipe does not start over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.extractor_store import ExtractorError, read_meta
from engines.media_format import MEDIA_MODALITIES
from training.data import DataError, load_dialogues
from training.extract import ExtractOptions, extract_features
from training.features_io import ModalityFeatures, file_sha1, load_features
from training.pretrain import PretrainOptions, linear_probe, pretrain_extractor

logger = logging.getLogger(__name__)


@dataclass
class RecipeOptions:
    pretrain: PretrainOptions = field(default_factory=PretrainOptions)
    extract: ExtractOptions = field(default_factory=ExtractOptions)


@dataclass
class PreparedModality:
    """One modality's features for the training and dev files (kept apart: Utterance.key is only unique
    inside one file)."""

    modality: str
    train: ModalityFeatures
    dev: ModalityFeatures
    features_dir: Path
    """Pass to `train --features` to reuse without re-extracting."""
    dev_probe_accuracy: float | None
    """Logistic regression on the training vectors, scored on dev: how much emotion the extractor carries."""


def _options_digest(options: PretrainOptions) -> str:
    return hashlib.sha1(
        json.dumps(dataclasses.asdict(options), sort_keys=True, default=str).encode()
    ).hexdigest()[:12]


def _reusable(extractor_dir: Path, data_sha1: str, options_digest: str) -> bool:
    try:
        notes = read_meta(extractor_dir).get("notes", {})
    except ExtractorError:
        return False
    return notes.get("data_sha1") == data_sha1 and notes.get("options_digest") == options_digest


def _probe(train: ModalityFeatures, dev: ModalityFeatures, train_path: Path, dev_path: Path) -> float | None:
    def table(features: ModalityFeatures, path: Path) -> tuple[np.ndarray, list[str]]:
        pairs = [
            (features.vectors[u.key], u.emotion)
            for d in load_dialogues(path)
            for u in d.utterances
            if u.key in features.vectors
        ]
        return (np.stack([v for v, _ in pairs]) if pairs else np.zeros((0, features.dim))), [
            e for _, e in pairs
        ]

    x_train, y_train = table(train, train_path)
    x_dev, y_dev = table(dev, dev_path)
    if len(set(y_train)) < 2 or not len(x_dev):
        return None
    return linear_probe(x_train, np.array(y_train), x_dev, np.array(y_dev))


def prepare_modalities(
    modalities: list[str],
    train_path: str | Path,
    dev_path: str | Path,
    work_dir: str | Path,
    options: RecipeOptions | None = None,
) -> dict[str, PreparedModality]:
    """For each of "audio" / "visual" in `modalities` (others, such as "text", are not media and are left
    to the caller): `work_dir/<m>-extractor/` and `work_dir/<m>-features/`."""
    options = options or RecipeOptions()
    unknown = [m for m in modalities if m not in MEDIA_MODALITIES and m != "text"]
    if unknown:
        raise DataError(f"--modalities: unknown modality {', '.join(unknown)} (expected text, audio, visual)")
    train_path, dev_path, work = Path(train_path), Path(dev_path), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, PreparedModality] = {}
    for modality in [m for m in modalities if m in MEDIA_MODALITIES]:
        extractor_dir = work / f"{modality}-extractor"
        features_dir = work / f"{modality}-features"
        digest, data_sha1 = _options_digest(options.pretrain), file_sha1(train_path)
        if _reusable(extractor_dir, data_sha1, digest):
            logger.info("%s: reusing the %s extractor in %s", train_path, modality, extractor_dir)
        else:
            notes = {"data_sha1": data_sha1, "options_digest": digest}
            result = pretrain_extractor(modality, train_path, extractor_dir, options.pretrain, notes=notes)
            logger.info(
                "%s extractor %s trained on %d clips",
                modality,
                result.extractor_id,
                len(result.train_media.inputs),
            )
        for path in (train_path, dev_path):
            report = extract_features(path, modality, features_dir, extractor_dir, options.extract)
            for data_file, skipped in report.items():
                logger.info("%s %s features: %s", data_file, modality, skipped.summary())
        train = load_features(features_dir, train_path)
        dev = load_features(features_dir, dev_path)
        accuracy = _probe(train, dev, train_path, dev_path)
        if accuracy is not None:
            logger.info("%s features: linear-probe accuracy on %s = %.3f", modality, dev_path.name, accuracy)
        out[modality] = PreparedModality(modality, train, dev, features_dir, accuracy)
    return out
