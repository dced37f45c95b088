"""Emotion of real voices through the live loop: conversations of RAVDESS actors saying neutral words.

    python bench/voice_conversations.py [--split dev] [--conversations 24] [--config configs/live.yaml]

Each conversation puts 2, 3 or 4 actors of the split (dev: 13-16, never heard by the voice head) in turn,
6 turns each, every turn a random clip of that actor (one of two neutral sentences in one of 7 emotions),
trimmed to its speech, with gaps of 0.6-1.0 s so that today's VAD separates the turns (turn-taking itself
is bench/conversations.py's subject). The real live loop runs over each file (--no-realtime); each turn
takes the result that overlaps it most. Prints fused, words-only and voice-only w-F1 and speaker
attribution; `--dump` writes what each modality said per turn, with the pooled voice states (fusion
tuning, docs/voice.md). RAVDESS is CC BY-NC-SA 4.0: the audio is read from ../shared, never written into
the project.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from realtime.runtime import env as runtime_env

runtime_env.apply()

import live_accuracy as la

from engines.speaker_encoder import load_voice_encoder
from engines.stream import load_recognizer
from engines.text_encoder import CACHE_ROOT
from realtime.runtime.config import load_live_config
from realtime.speech.whisper import Transcriber
from training.data import Dialogue, Utterance
from training.media import decode_audio
from training.voice import trim_silence

RAVDESS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "ravdess"
TURNS_PER_SPEAKER = 6


def build(split: str, count: int, gap_s: tuple[float, float], folder: Path) -> list[la.SpokenDialogue]:
    rows = [json.loads(line) for line in (RAVDESS / f"{split}.jsonl").read_text().splitlines()]
    by_actor: dict[str, list[dict]] = {}
    for row in rows:
        by_actor.setdefault(row["speaker"], []).append(row)
    spoken = []
    for number in range(count):
        rng = random.Random(number)
        actors = rng.sample(sorted(by_actor), min(len(by_actor), (2, 3, 4)[number % 3]))
        pieces, spans, utterances, now, last = [np.zeros(8000, np.float32)], [], [], 0.5, None
        for turn in range(TURNS_PER_SPEAKER * len(actors)):
            actor = rng.choice([a for a in actors if a != last])
            last = actor
            row = rng.choice(by_actor[actor])
            samples = trim_silence(decode_audio(RAVDESS / row["audio"]).astype(np.float32))
            gap = rng.uniform(*gap_s)
            spans.append((now, now + len(samples) / 16000))
            pieces += [samples, np.zeros(int(gap * 16000), np.float32)]
            now = spans[-1][1] + gap
            utterances.append(Utterance(str(number), str(turn), actor, row["text"], row["emotion"]))
        wav = folder / f"{split}-{number}-{gap_s[0]}-{gap_s[1]}.wav"
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(16000)
            out.writeframes((np.clip(np.concatenate(pieces), -1, 1) * 32767).astype(np.int16).tobytes())
        spoken.append(la.SpokenDialogue(Dialogue(str(number), utterances), wav, spans))
    return spoken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="dev", choices=("train", "dev"))
    parser.add_argument("--conversations", type=int, default=24)
    parser.add_argument("--gap", default="0.6,1.0", help="turn gaps, min,max seconds")
    parser.add_argument("--config", help="live YAML options (default: the defaults)")
    parser.add_argument("--dump", help="JSONL per turn: truth, speaker, by_modality, voice states")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    folder = CACHE_ROOT / "bench" / "voice_conversations"
    folder.mkdir(parents=True, exist_ok=True)
    low, high = (float(x) for x in args.gap.split(","))
    spoken = build(args.split, args.conversations, (low, high), folder)
    config = load_live_config(args.config)
    engine = config.engine
    recognizer = load_recognizer(None, engine.backend, engine.precision, engine.artifacts_dir, config.voice)
    transcriber = la.CachedTranscriber(Transcriber(config.asr), folder / "transcripts.json")
    voices = load_voice_encoder()
    results = [asyncio.run(la.run_live(s, config, transcriber, recognizer, voices)) for s in spoken]
    transcriber.save()
    matched = [[la.best_overlap(span, found) for span in s.spans] for s, found in zip(spoken, results)]
    if args.dump:
        la.write_dump(Path(args.dump), [s.dialogue for s in spoken], matched)
    truth = [u.emotion for s in spoken for u in s.dialogue.utterances]
    labels = recognizer.labels
    print(f"{len(truth)} turns in {len(spoken)} conversations, {sum(map(len, results))} results")
    for name, pick in (
        ("fused (published)", lambda m: m.emotion),
        ("words only", lambda m: max(m.by_modality["text"], key=m.by_modality["text"].get)),
        ("voice only", lambda m: max(m.by_modality["voice"], key=m.by_modality["voice"].get)
         if "voice" in m.by_modality else None),
    ):  # fmt: skip
        predicted = [pick(m) if m else None for row in matched for m in row]
        print(f"{name:<20} w-F1 {la.scores(truth, predicted, labels)['weighted_f1']:.1f}")
    found = [len({r.speaker for r in rs}) for rs in results]
    true = [len({u.speaker for u in s.dialogue.utterances}) for s in spoken]
    exact = sum(f == t for f, t in zip(found, true))
    print(
        f"speaker attribution {la.speaker_accuracy(spoken, matched):.1f} %; speakers found exactly in "
        f"{exact} of {len(spoken)} conversations (found - true: {[f - t for f, t in zip(found, true)]})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
