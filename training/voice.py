"""`python -m training voice`: train the voice head (engines/voice_emotion.py) on emotional speech.

Each clip is trimmed to its speech plus 200 ms (what the live VAD hands Whisper), encoded by Whisper on the
short window the live loop uses, and pooled. Training vectors are centred on their speaker's mean (the live
loop subtracts the running mean of the attributed speaker's earlier turns); dev is scored the way the live
loop sees it: each dev speaker's clips in random orders, every clip normalised by the speaker's earlier
clips only. Dev speakers must never appear in training (speaker-independent).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from engines.voice_emotion import SpeakerVoiceNorm, VoiceEmotion, VoiceHead, pool_encoder_states
from engines.whisper_states import (
    HOP_SAMPLES,
    MIN_WINDOW_S,
    TRAILING_SILENCE_S,
    encode_window,
    load_whisper,
    short_window_frames,
)
from training.data import DataError
from training.media import decode_audio, jsonl_clips

log = logging.getLogger(__name__)

TRIM_PAD_S = 0.2
"""Audio kept around the speech, as the live VAD's `speech_pad_ms`."""
TRIM_RANGE_DB = 35.0
"""Blocks quieter than the loudest by more than this are leading or trailing silence."""
EVAL_ORDERS = 5
AUGMENT_ORDERS = 4


def add_voice_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("voice", help="train the voice emotion head on emotional speech (JSONL)")
    parser.add_argument(
        "--train", required=True, help="JSONL with audio paths and emotions (e.g. RAVDESS train)"
    )
    parser.add_argument("--dev", required=True, help="JSONL of other speakers, for the report")
    parser.add_argument("--out", required=True, help="folder for voice_head.npz/.json")
    parser.add_argument("--whisper", help="local CTranslate2 Whisper folder (default: the packaged tiny.en)")
    parser.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--cache", help="pooled-state cache folder (default: ~/.cache/m2fnet-live/voice)")
    return parser


def trim_silence(samples: np.ndarray) -> np.ndarray:
    block = 512
    blocks = len(samples) // block
    if blocks < 2:
        return samples
    rms = np.sqrt((samples[: blocks * block].reshape(blocks, block) ** 2).mean(axis=1)) + 1e-8
    level = 20 * np.log10(rms)
    loud = np.flatnonzero(level > level.max() - TRIM_RANGE_DB)
    pad = int(TRIM_PAD_S * 16000)
    return samples[max(0, loud[0] * block - pad) : (loud[-1] + 1) * block + pad]


def pooled_states(data: str, whisper_dir: str | None, cache: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """(clips, 768) pooled encoder states, emotions and speakers of a JSONL file (cached per file)."""
    clips = jsonl_clips(data)
    if not clips:
        raise DataError(f"{data}: no utterances")
    missing = [c.utterance.source for c in clips if c.audio_path is None or not Path(c.audio_path).is_file()]
    if missing:
        raise DataError(
            f"{data}: {len(missing)} utterance(s) without a readable audio file, e.g. {missing[0]}"
        )
    key = hashlib.sha1(f"{Path(data).resolve()}|{whisper_dir}|{TRIM_PAD_S}".encode()).hexdigest()[:16]
    path = cache / f"{key}.npy"
    emotions = [c.utterance.emotion for c in clips]
    speakers = [c.utterance.speaker for c in clips]
    if path.is_file():
        return np.load(path), emotions, speakers
    model = load_whisper(whisper_dir)
    started = time.perf_counter()
    vectors = []
    for clip in clips:
        audio = trim_silence(decode_audio(clip.audio_path).astype(np.float32))
        frames = len(audio) // HOP_SAMPLES
        encoded = encode_window(model, audio, short_window_frames(frames, MIN_WINDOW_S, TRAILING_SILENCE_S))
        vectors.append(pool_encoder_states(encoded, frames))
    log.info("%s: %d clips encoded in %.0f s", data, len(clips), time.perf_counter() - started)
    cache.mkdir(parents=True, exist_ok=True)
    out = np.stack(vectors)
    np.save(path, out)
    return out, emotions, speakers


def _running_norm(standard: np.ndarray, speakers: list[str], prior: float, seed: int) -> np.ndarray:
    """Each vector minus the shrunk mean of its speaker's earlier vectors, in a random order."""
    norm = SpeakerVoiceNorm(prior)
    out = np.empty_like(standard)
    for i in np.random.default_rng(seed).permutation(len(standard)):
        out[i] = norm.normalise(speakers[i], standard[i])
    return out


def fit_head(
    vectors: np.ndarray,
    emotions: list[str],
    speakers: list[str],
    labels: list[str],
    c: float,
    prior: float = 1.0,
) -> VoiceHead:
    from sklearn.linear_model import LogisticRegression

    mean, scale = vectors.mean(axis=0), vectors.std(axis=0) + 1e-6
    standard = (vectors - mean) / scale
    speaker_ids = np.array(speakers)
    centred = standard.copy()
    for speaker in set(speakers):
        rows = speaker_ids == speaker
        centred[rows] -= standard[rows].mean(axis=0)
    # Live, a speaker's mean is known only from the turns heard so far: train on that too.
    seen_so_far = [_running_norm(standard, speakers, prior, seed) for seed in range(AUGMENT_ORDERS)]
    targets = np.array([labels.index(e) for e in emotions] * (1 + AUGMENT_ORDERS))
    model = LogisticRegression(C=c, max_iter=5000).fit(np.vstack([centred, *seen_so_far]), targets)
    weight = np.zeros((len(labels), vectors.shape[1]), np.float32)
    bias = np.full(len(labels), -30.0, np.float32)  # a class never seen in training is never predicted
    weight[model.classes_] = model.coef_
    bias[model.classes_] = model.intercept_
    return VoiceHead(labels, mean.astype(np.float32), scale.astype(np.float32), weight, bias, prior)


def evaluate_head(
    head: VoiceHead, vectors: np.ndarray, emotions: list[str], speakers: list[str], orders: int = EVAL_ORDERS
) -> dict:
    """Weighted F1 as the live loop would score each clip: after the speaker's earlier clips (random
    orders, averaged), and with no earlier clip at all (a speaker's first turn)."""
    from sklearn.metrics import confusion_matrix, f1_score

    labels = head.labels
    truth = [labels.index(e) for e in emotions]
    runs, matrix = [], np.zeros((len(labels), len(labels)), int)
    per_class = np.zeros(len(labels))
    for seed in range(orders):
        order = np.random.default_rng(seed).permutation(len(vectors))
        voice = VoiceEmotion(head)
        predicted = np.zeros(len(vectors), int)
        for i in order:
            predicted[i] = int(voice.read(vectors[i], speakers[i]).probabilities.argmax())
        runs.append(100 * f1_score(truth, predicted, average="weighted"))
        per_class += 100 * f1_score(
            truth, predicted, labels=range(len(labels)), average=None, zero_division=0
        )
        matrix += confusion_matrix(truth, predicted, labels=range(len(labels)))
    first = [int(VoiceEmotion(head).read(v, "new").probabilities.argmax()) for v in vectors]
    return {
        "weighted_f1_mean": round(float(np.mean(runs)), 2),
        "weighted_f1_orders": [round(r, 2) for r in runs],
        "weighted_f1_first_turn": round(100 * f1_score(truth, first, average="weighted"), 2),
        "per_class_f1": {label: round(f / orders, 1) for label, f in zip(labels, per_class)},
        "confusion_rows_truth_cols_predicted": {"labels": labels, "counts": matrix.tolist()},
    }


def run_voice(args: argparse.Namespace) -> int:
    from engines.stream import SHIPPED_CHECKPOINT

    labels = json.loads((SHIPPED_CHECKPOINT / "labels.json").read_text())
    cache = Path(args.cache) if args.cache else Path.home() / ".cache" / "m2fnet-live" / "voice"
    train_x, train_y, train_s = pooled_states(args.train, args.whisper, cache)
    dev_x, dev_y, dev_s = pooled_states(args.dev, args.whisper, cache)
    unknown = sorted(set(train_y + dev_y) - set(labels))
    if unknown:
        raise DataError(f"emotions {unknown} are not among the recognizer's labels {labels}")
    shared = sorted(set(train_s) & set(dev_s))
    if shared:
        raise DataError(f"{args.dev}: speakers {shared} are also in {args.train} (dev must be unseen voices)")
    started = time.perf_counter()
    head = fit_head(train_x, train_y, train_s, labels, args.c)
    report = evaluate_head(head, dev_x, dev_y, dev_s)
    head.meta = {
        "trained_on": str(args.train),
        "train_clips": len(train_y),
        "train_speakers": len(set(train_s)),
        "c": args.c,
        "dev": {"data": str(args.dev), "clips": len(dev_y), **report},
        "licence": "weights trained on RAVDESS inherit CC BY-NC-SA 4.0 (non-commercial) when trained on it",
    }
    head.save(args.out)
    print(
        f"voice head: dev w-F1 {report['weighted_f1_mean']:.2f} (speaker history, mean of {EVAL_ORDERS} orders), "
        f"{report['weighted_f1_first_turn']:.2f} on a first turn; fit {time.perf_counter() - started:.1f} s "
        f"-> {args.out}"
    )
    return 0
