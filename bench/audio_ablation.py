"""What each half of the audio extractor carries, on generated speech with an audio-only emotion cue.

    python bench/audio_ablation.py [--strength 0.35] [--repeats 6] [--epochs 15]

espeak-ng speaks one neutral sentence with class-dependent pitch, rate and loudness (plus per-clip
jitter), in voices that differ between train and test (speaker-independent). Linear-probe accuracy on
the test voices for: the ResNet embedding untrained / triplet-trained, the prosodic functionals alone,
and the full extractor output. `--strength` < 1 moves the classes towards neutral (harder). Prints a
table; asserts nothing. Needs espeak-ng.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the generated-media helpers the tests use

import torch
from media_fixtures import make_audio_cue_set

from engines.audio_extractor import AudioExtractorConfig
from engines.extractor_store import new_extractor
from training.pretrain import PretrainOptions, embed_media, linear_probe, load_training_media, train_extractor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strength", type=float, default=0.35)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--width", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = PretrainOptions(
        epochs=args.epochs,
        lr=1e-3,
        batch_size=24,
        progress=False,
        audio=AudioExtractorConfig(width=args.width),
    )
    with tempfile.TemporaryDirectory() as folder:
        train_file, test_file = make_audio_cue_set(Path(folder), repeats=args.repeats, strength=args.strength)
        train = load_training_media(train_file, "audio", options)
        test = load_training_media(test_file, "audio", options, classes=train.classes)
        torch.manual_seed(0)
        untrained = new_extractor("audio", options.audio)
        started = time.monotonic()
        trained, _ = train_extractor("audio", train, options)
        seconds = time.monotonic() - started
    untrained.load_state_dict(
        {**untrained.state_dict(), **{k: v for k, v in trained.state_dict().items() if "prosody" in k}}
    )
    split = options.audio.embedding_dim
    vectors = {
        name: (embed_media(m, train), embed_media(m, test))
        for name, m in (("untrained", untrained), ("trained", trained))
    }
    rows = [
        (
            "ResNet embedding, untrained",
            vectors["untrained"][0][:, :split],
            vectors["untrained"][1][:, :split],
        ),
        (
            "ResNet embedding, triplet-trained",
            vectors["trained"][0][:, :split],
            vectors["trained"][1][:, :split],
        ),
        ("prosodic functionals alone", vectors["trained"][0][:, split:], vectors["trained"][1][:, split:]),
        ("untrained ResNet + functionals", *vectors["untrained"]),
        ("trained ResNet + functionals (default)", *vectors["trained"]),
    ]
    chance = 1 / len(train.classes)
    print(
        f"{len(train.inputs)} train / {len(test.inputs)} test clips, {len(train.classes)} classes "
        f"(chance {chance:.3f}), cue strength {args.strength}, pretraining {seconds:.0f} s"
    )
    print(f"{'features':42s} probe accuracy on unseen voices")
    for name, x_train, x_test in rows:
        print(f"{name:42s} {linear_probe(x_train, train.labels, x_test, test.labels):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
