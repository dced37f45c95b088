"""Whisper on utterances one by one against one batched call, as the multi-stream runtime would do it.

    python bench/asr_batching.py [CLIP] [--sizes 1 2 4 8] [--repeats 3]

The utterances are the demo clip's (or CLIP's), cut by the real VAD. For each batch size k, k of
them (cycled) are transcribed one by one with `Transcriber.transcribe` and together with
`Transcriber.transcribe_batch`; prints the best wall time of each over `--repeats` and how many texts
differ. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime import runtime_env

runtime_env.apply()

from realtime.capture import CaptureOptions, open_source
from realtime.frames import AudioChunk
from realtime.transcribe import AsrOptions, Transcriber
from realtime.vad import VadOptions, VadSegmenter


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
    transcriber = Transcriber(AsrOptions())
    transcriber.transcribe(audio[0])  # warm-up
    seconds = [len(a) / 16_000 for a in audio]
    print(f"{len(audio)} utterances of {min(seconds):.1f}-{max(seconds):.1f} s; 1 CTranslate2 thread")
    print(
        f"{'k':>3}{'one by one ms':>15}{'batched ms':>12}{'per utt 1x1':>13}{'per utt batch':>15}{'texts differ':>14}"
    )
    for k in args.sizes:
        batch = [audio[i % len(audio)] for i in range(k)]
        single_ms, singles = best_of(args.repeats, lambda b=batch: [transcriber.transcribe(a) for a in b])
        batch_ms, batched = best_of(args.repeats, lambda b=batch: transcriber.transcribe_batch(b))
        differ = sum(a.text != b.text for a, b in zip(singles, batched))
        print(
            f"{k:>3}{single_ms:>15.0f}{batch_ms:>12.0f}{single_ms / k:>13.0f}{batch_ms / k:>15.0f}{differ:>14}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
