"""Speaker attribution on generated conversations: accuracy, speakers found, and the cost per utterance.

    python bench/speakers.py [--seeds 3 4 5 6 7] [--turns 24]

For 2, 3 and 4 espeak-ng voices (tests/conversations.py), each conversation goes through the real
Silero VAD and `SpeakerAttributor` with the packaged voice encoder, at 1 torch thread. Prints, per
conversation, the accuracy under the best mapping of labels to true speakers, the distinct labels
published and the speakers alive at the end; then p50/p95 of the embedding and clustering time per
utterance. Asserts nothing. Needs espeak-ng and ffmpeg.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the generated-media helpers the tests use

import numpy as np
import torch
from conversations import attribute_conversation, best_mapping_accuracy, make_conversation

from engines.speaker_encoder import load_voice_encoder
from realtime.speakers.attributor import SpeakerOptions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5, 6, 7])
    parser.add_argument("--turns", type=int, default=24)
    parser.add_argument("--threshold", type=float, default=SpeakerOptions().threshold)
    args = parser.parse_args()
    torch.set_num_threads(1)
    encoder = load_voice_encoder()
    embed_ms: list[float] = []
    cluster_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_speakers in (2, 3, 4):
            scores = []
            for seed in args.seeds:
                conversation = make_conversation(
                    Path(tmp) / f"c{n_speakers}-{seed}.wav", n_speakers, args.turns, seed
                )
                options = SpeakerOptions(threshold=args.threshold)
                result = attribute_conversation(conversation, encoder, options)
                accuracy = best_mapping_accuracy(result.truth, result.labels)
                scores.append(accuracy)
                embed_ms += [t.embed_ms for t in result.turns]
                cluster_ms += [t.cluster_ms for t in result.turns]
                print(
                    f"{n_speakers} voices seed {seed}: {len(result.labels)} utterances, accuracy {accuracy:.3f}, "
                    f"labels published {len(set(result.labels))}, speakers at the end {result.alive}"
                )
            print(f"{n_speakers} voices: mean accuracy {np.mean(scores):.3f}, min {np.min(scores):.3f}")
    print(
        f"embedding per utterance p50 {np.percentile(embed_ms, 50):.1f} ms p95 {np.percentile(embed_ms, 95):.1f} ms; "
        f"clustering p50 {np.percentile(cluster_ms, 50):.2f} ms p95 {np.percentile(cluster_ms, 95):.2f} ms "
        f"({len(embed_ms)} utterances, 1 thread)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
