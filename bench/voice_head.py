"""What the voice head is made of, measured: features, speaker normalisation, and the cost per utterance.

    python bench/voice_head.py [--data ../shared/datasets/ravdess]

Trains on RAVDESS actors 1-12 and scores actors 13-16 (never heard in training), 7 classes, weighted F1:
the Whisper tiny.en encoder states pooled (mean, mean+std), with the prosodic functionals of
engines/prosody.py appended, each without and with the speaker normalisation the live loop does (the
running mean of the speaker's earlier turns, clips in random orders). Then the time the live loop adds
per utterance: pooling the states it already has, and the head. Asserts nothing; numbers go in
docs/voice.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines import prosody
from engines.voice_emotion import VoiceEmotion, load_voice_head, pool_encoder_states
from engines.whisper_states import HOP_SAMPLES, load_whisper
from training.media import decode_audio, jsonl_clips
from training.voice import fit_head, pooled_states, trim_silence

RAVDESS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "ravdess"


def prosody_features(data: Path, model) -> np.ndarray:
    out = []
    for clip in jsonl_clips(data):
        audio = trim_silence(decode_audio(clip.audio_path).astype(np.float32))
        out.append(prosody.functionals(audio, model.feature_extractor(audio)))
    return np.stack(out)


def running_norm_f1(head, vectors, emotions, speakers, orders: int = 5) -> float:
    from sklearn.metrics import f1_score

    runs = []
    for seed in range(orders):
        voice = VoiceEmotion(head)
        predicted = [""] * len(vectors)
        for i in np.random.default_rng(seed).permutation(len(vectors)):
            predicted[i] = head.labels[int(voice.read(vectors[i], speakers[i]).probabilities.argmax())]
        runs.append(100 * f1_score(emotions, predicted, average="weighted"))
    return float(np.mean(runs))


def plain_f1(vectors_train, y_train, vectors_dev, y_dev) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(vectors_train)
    model = LogisticRegression(C=0.3, max_iter=5000).fit(scaler.transform(vectors_train), y_train)
    return 100 * f1_score(y_dev, model.predict(scaler.transform(vectors_dev)), average="weighted")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(RAVDESS))
    args = parser.parse_args()
    data = Path(args.data)
    cache = Path.home() / ".cache" / "m2fnet-live" / "voice"
    train_x, train_y, train_s = pooled_states(str(data / "train.jsonl"), None, cache)
    dev_x, dev_y, dev_s = pooled_states(str(data / "dev.jsonl"), None, cache)
    labels = load_voice_head().labels
    model = load_whisper()
    started = time.perf_counter()
    train_p, dev_p = (
        prosody_features(data / "train.jsonl", model),
        prosody_features(data / "dev.jsonl", model),
    )
    prosody_ms = (time.perf_counter() - started) * 1000 / (len(train_p) + len(dev_p))
    width = train_x.shape[1] // 2
    variants = {
        "whisper mean": (train_x[:, :width], dev_x[:, :width]),
        "whisper mean+std (shipped)": (train_x, dev_x),
        "whisper mean+std + prosody": (np.hstack([train_x, train_p]), np.hstack([dev_x, dev_p])),
        "prosody alone": (train_p, dev_p),
    }
    print(f"RAVDESS dev actors 13-16, {len(dev_y)} clips, 7 classes, weighted F1")
    print(f"{'features':<30}{'no speaker norm':>17}{'speaker history':>17}")
    for name, (train, dev) in variants.items():
        head = fit_head(train, train_y, train_s, labels, c=0.3)
        print(
            f"{name:<30}{plain_f1(train, train_y, dev, dev_y):>17.1f}"
            f"{running_norm_f1(head, dev, dev_y, dev_s):>17.1f}"
        )
    head = load_voice_head()
    voice = VoiceEmotion(head)
    encoded = np.random.default_rng(0).normal(size=(1, 500, width)).astype(np.float32)
    started = time.perf_counter()
    for i in range(1000):
        voice.read(pool_encoder_states(encoded, 300), f"S{i % 4}")
    head_ms = time.perf_counter() - started
    print(
        f"added per utterance: pooling + head {head_ms:.3f} ms (1,000 calls); "
        f"prosody functionals would add {prosody_ms:.1f} ms (3 s clip ~ {3 * 16000 // HOP_SAMPLES} frames)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
