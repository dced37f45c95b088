"""How short Whisper's short window may get: WER, full-window redos and time per utterance.

    python bench/asr_window.py [--dialogues 40] [--min-window 10 8 6] [--beam 5]

The utterances are MELD dev's, spoken by espeak-ng as `bench/live_accuracy.py` caches them (run that
first), each cut at its gold span plus 0.2 s. For every `asr.min_window_s` given, all of them are
transcribed one by one on one thread: WER against the gold text, how many short-window results were
redone on the full 30 s window (a repetition or an unsure decoder), and the mean and p95 time. The
encoder's cost grows with the window, and several streams share one Whisper (`bench/multistream.py`).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.runtime import env as runtime_env

runtime_env.apply()

import jiwer
import numpy as np

from engines.text_encoder import CACHE_ROOT
from realtime.frames import SAMPLE_RATE_HZ
from realtime.speech.whisper import AsrOptions, Transcriber
from training.data import load_dialogues

MELD_DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "meld" / "dev_sent_emo.csv"
PAD_S = 0.2


class RedoCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "redoing on 30 s" in record.getMessage()


def utterances(folder: Path, count: int) -> list[tuple[np.ndarray, str]]:
    out = []
    for dialogue in load_dialogues(MELD_DEV)[:count]:
        wav, meta = folder / f"{dialogue.dialogue_id}.wav", folder / f"{dialogue.dialogue_id}.json"
        if not wav.is_file():
            raise SystemExit(f"error: {wav} missing: run bench/live_accuracy.py first")
        with wave.open(str(wav)) as handle:
            samples = (
                np.frombuffer(handle.readframes(handle.getnframes()), np.int16).astype(np.float32) / 32768
            )
        for utterance, (start, end) in zip(dialogue.utterances, json.loads(meta.read_text())["spans"]):
            cut = samples[int(max(0.0, start - PAD_S) * SAMPLE_RATE_HZ) : int((end + PAD_S) * SAMPLE_RATE_HZ)]
            out.append((cut, utterance.text))
    return out


def words(text: str) -> str:
    return " ".join(
        "".join(c if c.isalnum() or c == "'" else " " for c in text.lower().replace("\u2019", "'")).split()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=40)
    parser.add_argument("--min-window", type=float, nargs="+", default=[10.0, 8.0, 6.0])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--cache", default=str(CACHE_ROOT / "bench" / "live_accuracy" / "dev_sent_emo-seed0"))
    args = parser.parse_args()
    counter = RedoCounter()
    logging.getLogger("realtime.speech.whisper").addHandler(counter)
    logging.getLogger("realtime.speech.whisper").setLevel(logging.INFO)
    items = utterances(Path(args.cache), args.dialogues)
    lengths = [len(a) / SAMPLE_RATE_HZ for a, _ in items]
    print(
        f"{len(items)} utterances, {np.median(lengths):.1f} s median, {np.percentile(lengths, 95):.1f} s p95"
    )
    print(f"{'min_window_s':>12} {'WER %':>6} {'redone':>6} {'mean ms':>8} {'p95 ms':>7}")
    for window in args.min_window:
        transcriber = Transcriber(AsrOptions(min_window_s=window, beam_size=args.beam, encoder_workers=1))
        transcriber.transcribe(items[0][0])
        counter.count = 0
        hypotheses, times = [], []
        for audio, _ in items:
            started = time.perf_counter()
            hypotheses.append(words(transcriber.transcribe(audio).text))
            times.append((time.perf_counter() - started) * 1000)
        reference = [words(text) or "empty" for _, text in items]
        wer = 100 * jiwer.wer(reference, [h or "" for h in hypotheses])
        print(
            f"{window:>12.1f} {wer:>6.1f} {counter.count:>6} {np.mean(times):>8.0f} {np.percentile(times, 95):>7.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
