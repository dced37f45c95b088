"""`python -m training {train,evaluate,predict,extract,pretrain-extractor,voice}`: the training command line."""

from __future__ import annotations

from engines import interrupts

if __name__ == "__main__":  # imported (by a test), it leaves the signals alone
    interrupts.install()

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from engines.cli_logging import configure_cli_logging

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    from training.extract import add_extract_parser
    from training.pretrain import add_pretrain_extractor_parser
    from training.voice import add_voice_parser

    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train M2FNet, keep the best dev epoch")
    train.add_argument("--config", help="configs/NAME.yaml, a bare NAME, or a YAML path (default: default)")
    train.add_argument("--train", required=True, help="training conversations (.csv MELD layout or .jsonl)")
    train.add_argument("--dev", required=True, help="development conversations, for epoch selection")
    train.add_argument("--out", required=True, help="checkpoint directory to write")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--features", help="DIR[,DIR]: audio/visual feature folders made by `extract` for both files"
    )
    train.add_argument(
        "--modalities",
        help="text,audio[,visual]: the whole recipe in one command (pretrain the extractors on --train, "
        "extract, train); options in the config's media section",
    )
    evaluate = commands.add_parser("evaluate", help="weighted F1, accuracy, per-class scores")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--report", help="JSON report path; a confusion-matrix PNG is saved beside it")
    _add_backend_arguments(evaluate)
    predict = commands.add_parser("predict", help="one JSON line per utterance")
    predict.add_argument("--checkpoint", required=True)
    predict.add_argument("--data", required=True)
    predict.add_argument("--out", required=True, help="JSONL output path")
    _add_backend_arguments(predict)
    add_extract_parser(commands)
    add_pretrain_extractor_parser(commands)
    add_voice_parser(commands)
    return parser


def _add_backend_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--backend",
        choices=["torch", "onnx", "auto"],
        default="torch",
        help="what runs the networks: eager torch, ONNX Runtime (compiled on first use), or auto "
        "(onnx when installed)",
    )
    command.add_argument("--precision", choices=["fp32", "int8"], default="fp32", help="int8: onnx only")
    command.add_argument(
        "--artifacts", help="onnx graphs made by `python -m engines compile --out DIR` (default: the cache)"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_cli_logging()
    from engines.errors import CheckpointError
    from engines.extractor_store import ExtractorError
    from training.data import DataError

    try:
        return COMMANDS[args.command](args)
    except (DataError, CheckpointError, ExtractorError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run_train(args) -> int:
    import torch

    from training.config import load_config
    from training.train import train_model

    config = load_config(args.config)
    torch.set_num_threads(config.optim.threads)
    command = "python -m training " + " ".join(sys.argv[1:]) if sys.argv else ""
    extra_meta = {"command": command}
    train_features, dev_features, folders = _media_features(args, config)
    if folders:
        extra_meta["features_dirs"] = folders
    best = train_model(
        config,
        args.train,
        args.dev,
        args.out,
        seed=args.seed,
        train_features=train_features,
        dev_features=dev_features,
        extra_meta=extra_meta,
    )
    chosen = (
        f"mean of epochs {best['epochs_averaged']}"
        if "epochs_averaged" in best
        else f"best epoch {best['epoch']}"
    )
    print(f"{chosen}: dev weighted F1 {best['weighted_f1']:.2f} -> {args.out}")
    return 0


def _names(option: str, value: str) -> list[str]:
    from training.data import DataError

    names = [n.strip() for n in value.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise DataError(f"{option}: {value!r} names something twice")
    return names


def _media_features(args, config) -> tuple[dict, dict, dict[str, str]]:
    """-> train and dev features per audio/visual modality, and the folder each came from: read from
    --features folders, or made by the recipe for --modalities."""
    from training.data import DataError, check_labels, label_set, load_dialogues
    from training.features_io import load_features, table_name

    if args.features and args.modalities:
        raise DataError("--features and --modalities: give one (--modalities makes what --features reads)")
    train, dev, folders = {}, {}, {}
    if args.modalities:
        from engines.text_encoder import CACHE_ROOT
        from training.recipe import prepare_modalities

        modalities = _names("--modalities", args.modalities)
        if "text" not in modalities:
            raise DataError("--modalities: must include text (audio and visual are fused into the text)")
        # Fail on the data before minutes of extractor pretraining, not after.
        labels = label_set(load_dialogues(args.train))
        check_labels(load_dialogues(args.dev), labels, args.dev)
        # Keyed by the training file, so a rerun (another --out or seed) reuses extractors and features.
        work_dir = CACHE_ROOT / "recipe" / table_name(args.train)
        prepared_modalities = prepare_modalities(modalities, args.train, args.dev, work_dir, config.media)
        for modality, prepared in prepared_modalities.items():
            train[modality], dev[modality] = prepared.train, prepared.dev
            folders[modality] = str(prepared.features_dir)
            log.info("%s features: %s (reuse with --features)", modality, prepared.features_dir)
    for folder in _names("--features", args.features or ""):
        features = load_features(folder, args.train)
        if features.modality in train:
            raise DataError(f"--features: two {features.modality} folders")
        train[features.modality], dev[features.modality] = features, load_features(folder, args.dev)
        folders[features.modality] = folder
    return train, dev, folders


def _load(args):
    """-> checkpoint and a `DialoguePrediction` per dialogue, through the chosen backend."""
    import time

    import torch

    from engines.backends import load_engines
    from engines.checkpoint import load_checkpoint
    from engines.engine import EngineOptions
    from training.data import check_labels, load_dialogues
    from training.engine_predict import PredictionTiming, predict_dialogues

    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint)
    dialogues = load_dialogues(args.data)
    check_labels(dialogues, checkpoint.labels, args.data)
    engines = load_engines(checkpoint, EngineOptions(args.backend, args.precision, args.artifacts))
    vectors = _media_vectors(checkpoint, args.data, dialogues)
    timing, started = PredictionTiming(), time.perf_counter()
    predictions = predict_dialogues(engines, checkpoint, dialogues, vectors, timing=timing)
    log.info(
        "backend %s %s: %.1f s (text %.1f s, fusion %.2f s)",
        engines.backend,
        engines.precision,
        time.perf_counter() - started,
        timing.text_s,
        timing.fusion_s,
    )
    return checkpoint, predictions


def _media_vectors(checkpoint, data: str, dialogues) -> dict | None:
    """Audio/visual vectors of `data` made by the checkpoint's own extractors; None for a text-only model."""
    if not checkpoint.media_modalities:
        return None
    from training.extract import checkpoint_features

    vectors = {}
    total = sum(len(d.utterances) for d in dialogues)
    for modality in checkpoint.media_modalities:
        features = checkpoint_features(checkpoint.path, modality, data)
        vectors[modality] = (features.dim, features.vectors)
        covered = sum(u.key in features.vectors for d in dialogues for u in d.utterances)
        log.info("%s: %d of %d utterances have vectors; the rest are masked", modality, covered, total)
    return vectors


def run_evaluate(args) -> int:
    from training.metrics import classification_report, save_confusion_matrix

    checkpoint, predictions = _load(args)
    truth = [int(x) for p in predictions for x in p.labels]
    predicted = [int(x) for p in predictions for x in p.probabilities.argmax(-1)]
    report = classification_report(truth, predicted, checkpoint.labels)
    print(
        f"weighted_f1 {report['weighted_f1']:.2f}  accuracy {report['accuracy']:.2f}  "
        f"macro_f1 {report['macro_f1']:.2f}  n_utterances {report['n_utterances']}"
    )
    for label, scores in report["per_class"].items():
        print(
            f"  {label:>10}  f1 {scores['f1']:6.2f}  precision {scores['precision']:6.2f}  "
            f"recall {scores['recall']:6.2f}  support {scores['support']}"
        )
    if args.report:
        path = Path(args.report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        save_confusion_matrix(truth, predicted, checkpoint.labels, path.with_suffix(".confusion.png"))
    return 0


def run_predict(args) -> int:
    checkpoint, predictions = _load(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as handle:
        for prediction in predictions:
            for utterance, row in zip(prediction.dialogue.utterances, prediction.probabilities.tolist()):
                record = {
                    "dialogue_id": utterance.dialogue_id,
                    "utterance_id": utterance.utterance_id,
                    "speaker": utterance.speaker,
                    "text": utterance.text,
                    "predicted": checkpoint.labels[max(range(len(row)), key=row.__getitem__)],
                    "probabilities": {label: round(v, 6) for label, v in zip(checkpoint.labels, row)},
                }
                handle.write(json.dumps(record) + "\n")
    print(f"wrote {sum(len(p.labels) for p in predictions)} predictions -> {out}")
    return 0


def run_extract(args) -> int:
    from training.extract import run_extract as run

    return run(args)


def run_pretrain_extractor(args) -> int:
    from training.pretrain import run_pretrain_extractor as run

    return run(args)


def run_voice(args) -> int:
    from training.voice import run_voice as run

    return run(args)


COMMANDS = {
    "train": run_train,
    "evaluate": run_evaluate,
    "predict": run_predict,
    "extract": run_extract,
    "pretrain-extractor": run_pretrain_extractor,
    "voice": run_voice,
}

if __name__ == "__main__":
    interrupts.run_cli(main)
