"""Whisper on utterances one by one against one batched call, as the multi-stream runtime would do it.

    python bench/asr_batching.py [CLIP] [--sizes 1 2 4 8] [--repeats 3]

The utterances are the demo clip's (or CLIP's), cut by the real VAD. For each batch size k, k of
them (cycled) are transcribed one by one with `Transcriber.transcribe` and together with
`Transcriber.transcribe_batch` (beam 5, and greedy as `asr.greedy_batch_utterances` decodes a crowded
batch); prints the best wall time of each over `--repeats` and how many texts differ from one by one. Then the two halves apart, on 10 s windows: the encoder on k windows in one call against k
calls, and greedy decoding of k encoded windows in one call. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.runtime import env as runtime_env

runtime_env.apply()

import numpy as np

from realtime.frames import AudioChunk
from realtime.sources.feed import CaptureOptions
from realtime.sources.open import open_source
from realtime.speech.vad import VadOptions, VadSegmenter
from realtime.speech.whisper import AsrOptions, Transcriber


async def utterances(source: str) -> list:
    media = open_source(source, CaptureOptions(realtime=False))
    segmenter = VadSegmenter(VadOptions())
    out = []
    async for item in media.stream():
        if isinstance(item, AudioChunk):
            out += [s.samples for s in segmenter.push(item)]
    return out + [s.samples for s in segmenter.flush()]


def best_of(repeats: int, work) -> tuple[float, list]:
    best, result = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best * 1000, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", default="demo")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    audio = asyncio.run(utterances(args.clip))
    transcriber = Transcriber(AsrOptions(greedy_batch_utterances=0))
    greedy = Transcriber(AsrOptions(greedy_batch_utterances=1))
    transcriber.transcribe(audio[0])  # warm-up
    greedy.transcribe_batch(audio[:2])
    seconds = [len(a) / 16_000 for a in audio]
    print(f"{len(audio)} utterances of {min(seconds):.1f}-{max(seconds):.1f} s; 1 CTranslate2 thread")
    print(
        f"{'k':>3}{'one by one ms':>15}{'batched ms':>12}{'per utt 1x1':>13}{'per utt batch':>15}"
        f"{'texts differ':>14}{'greedy batch ms':>17}{'greedy differ':>15}"
    )
    for k in args.sizes:
        batch = [audio[i % len(audio)] for i in range(k)]
        single_ms, singles = best_of(args.repeats, lambda b=batch: [transcriber.transcribe(a) for a in b])
        batch_ms, batched = best_of(args.repeats, lambda b=batch: transcriber.transcribe_batch(b))
        greedy_ms, greedy_texts = best_of(args.repeats, lambda b=batch: greedy.transcribe_batch(b))
        differ = sum(a.text != b.text for a, b in zip(singles, batched))
        greedy_differ = sum(a.text != b.text for a, b in zip(singles, greedy_texts))
        print(
            f"{k:>3}{single_ms:>15.0f}{batch_ms:>12.0f}{single_ms / k:>13.0f}{batch_ms / k:>15.0f}{differ:>14}"
            f"{greedy_ms:>17.0f}{greedy_differ:>15}"
        )
    print(f"{'k':>3}{'encode 1 call ms':>18}{'encode k calls ms':>19}{'decode k together ms':>22}")
    model = transcriber._model
    tokenizer = transcriber._tokenizer("en")
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    for k in args.sizes:
        features = np.stack([window(model, audio[i % len(audio)]) for i in range(k)])
        one_ms, _ = best_of(args.repeats, lambda f=features: model.encode(f))
        each_ms, _ = best_of(args.repeats, lambda f=features: [np.asarray(model.encode(x)) for x in f])
        encoded = model.encode(features)
        decode_ms, _ = best_of(
            args.repeats, lambda e=encoded, k=k: model.model.generate(e, [prompt] * k, beam_size=1)
        )
        print(f"{k:>3}{one_ms:>18.0f}{each_ms:>19.0f}{decode_ms:>22.0f}")
    return 0


def window(model, audio: np.ndarray, frames: int = 1000) -> np.ndarray:
    """Log-mel features of `audio` padded to a 10 s window, as the short-window path encodes them."""
    features = model.feature_extractor(audio)[:, :-1]
    return np.pad(features, ((0, 0), (0, frames - features.shape[-1])))


if __name__ == "__main__":
    sys.exit(main())
