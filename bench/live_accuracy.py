"""Accuracy where users get it: MELD dialogues spoken by espeak-ng, run through the real live loop.

    python bench/live_accuracy.py [--data dev_sent_emo.csv] [--dialogues N] [--checkpoint DIR]

Each dialogue becomes one audio file: one espeak-ng voice per speaker (voices, pitches and rates vary),
turn gaps of 0.7-1.3 s. The real loop (file capture, Silero VAD, Whisper, the causal recognizer with a
fresh context per dialogue) runs over it; each gold utterance takes the label of the published result
that overlaps it most, and one that no result overlaps counts as wrong. Prints live w-F1 and per-class
F1, WER, and the decomposition of the gap on the same utterances: gold text and speakers; generic `S1..Sk`
speakers; no speakers; `!` and `?` turned into `.`; the live transcripts with gold speakers.
Speech and transcripts are cached (`--cache`), so a rerun with another checkpoint costs minutes.
Asserts nothing; the numbers go in the README and the model card.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import logging
import random
import re
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.runtime import env as runtime_env

runtime_env.apply()

from engines.speaker_encoder import load_voice_encoder
from engines.stream import load_recognizer
from engines.text_encoder import CACHE_ROOT
from engines.text_form import generic_speaker_labels
from realtime.frames import SAMPLE_RATE_HZ, Transcript
from realtime.runtime.config import load_live_config
from realtime.runtime.models import utterance_input
from realtime.session.pipeline import Pipeline
from realtime.sources.file import FileSource
from realtime.speakers.attributor import SpeakerAttributor
from realtime.speech.vad import VadSegmenter
from realtime.speech.whisper import Transcriber
from training.data import Dialogue, load_dialogues
from training.media import decode_audio
from training.train import encode_for_checkpoint, predict_probabilities

MELD_DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "meld" / "dev_sent_emo.csv"
VOICES = ("en-us+m1", "en-us+f2", "en-gb+m3", "en-us+f4", "en-gb+m5", "en-us+f1", "en-us+m7", "en+f3")
GAP_S = (0.7, 1.3)
_WORDS = re.compile(r"[a-z0-9']+")


@dataclasses.dataclass
class SpokenDialogue:
    dialogue: Dialogue
    wav: Path
    spans: list[tuple[float, float]]  # gold utterance times in the file


def speak_dialogue(dialogue: Dialogue, folder: Path, seed: int) -> SpokenDialogue:
    """One wav per dialogue (cached): each speaker keeps one voice, pitch and rate throughout."""
    rng = random.Random(f"{seed}/{dialogue.dialogue_id}")
    speakers = list(dict.fromkeys(u.speaker for u in dialogue.utterances))
    voices = rng.sample(VOICES, k=min(len(speakers), len(VOICES)))
    style = {
        s: (voices[i % len(voices)], rng.randint(35, 65), rng.randint(150, 185))
        for i, s in enumerate(speakers)
    }
    gaps = [rng.uniform(*GAP_S) for _ in dialogue.utterances]
    wav = folder / f"{dialogue.dialogue_id}.wav"
    meta = folder / f"{dialogue.dialogue_id}.json"
    if wav.is_file() and meta.is_file():
        spans = [tuple(s) for s in json.loads(meta.read_text())["spans"]]
        return SpokenDialogue(dialogue, wav, spans)
    pieces, spans, now = [np.zeros(int(0.5 * SAMPLE_RATE_HZ), np.float32)], [], 0.5
    for utterance, gap in zip(dialogue.utterances, gaps):
        voice, pitch, rate = style[utterance.speaker]
        raw = folder / "utterance.wav"
        subprocess.run(
            [
                "espeak-ng",
                "-v",
                voice,
                "-p",
                str(pitch),
                "-s",
                str(rate),
                "-w",
                str(raw),
                utterance.text or ".",
            ],
            check=True,
            capture_output=True,
        )
        samples = decode_audio(raw).astype(np.float32)
        spans.append((now, now + len(samples) / SAMPLE_RATE_HZ))
        pieces += [samples, np.zeros(int(gap * SAMPLE_RATE_HZ), np.float32)]
        now = spans[-1][1] + gap
    pcm = (np.clip(np.concatenate(pieces), -1, 1) * 32767).astype(np.int16)
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(pcm.tobytes())
    meta.write_text(json.dumps({"spans": spans}))
    return SpokenDialogue(dialogue, wav, spans)


class CachedTranscriber:
    """The real Transcriber, remembered per segment audio: the VAD cuts the same segments on a rerun."""

    def __init__(self, transcriber: Transcriber, path: Path) -> None:
        self._transcriber = transcriber
        self._path = path
        self._known = json.loads(path.read_text()) if path.is_file() else {}
        self.misses = 0

    def transcribe(self, samples: np.ndarray) -> Transcript:
        key = hashlib.sha1(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()
        if key not in self._known:
            self.misses += 1
            self._known[key] = dataclasses.asdict(self._transcriber.transcribe(samples))
        return Transcript(**self._known[key])

    def save(self) -> None:
        self._path.write_text(json.dumps(self._known))


VOICE_STATES: dict[int, tuple[float, ...] | None] = {}
"""Pooled voice states of each published result (by id), for `--dump`: the fusion is tuned offline."""


class Collector:
    """The published results, and the pooled voice states of each (by start time) for `--dump`."""

    def __init__(self) -> None:
        self.results = []
        self.voices: dict[float, tuple[float, ...] | None] = {}

    def emit(self, result) -> None:
        self.results.append(result)

    def make_input(self, segment, transcript):
        self.voices[round(segment.start_s, 3)] = transcript.voice
        return utterance_input(segment, transcript)


async def run_live(spoken: SpokenDialogue, config, transcriber, recognizer, voices) -> list:
    collector = Collector()
    config.capture.realtime = False
    source = FileSource(spoken.wav, config.capture)
    source.open()
    pipeline = Pipeline(
        stream_id=str(spoken.dialogue.dialogue_id),
        model_id=recognizer.model_id,
        source=source,
        segmenter=VadSegmenter(config.vad),
        transcriber=transcriber,
        session=recognizer.new_session(config.pipeline.max_context_utterances),
        make_input=collector.make_input,
        sinks=[collector],
        attributor=SpeakerAttributor(voices, config.speakers) if voices else None,
        options=config.pipeline,
        realtime=False,
    )
    try:
        await pipeline.run()
    finally:
        source.close()
    for result in collector.results:
        VOICE_STATES[id(result)] = collector.voices.get(round(result.start_s, 3))
    return collector.results


def best_overlap(span: tuple[float, float], results: list):
    best, most = None, 0.0
    for result in results:
        overlap = min(span[1], result.end_s) - max(span[0], result.start_s)
        if overlap > most:
            best, most = result, overlap
    return best


def split_utterances(spoken: list[SpokenDialogue], live_results: list[list]) -> tuple[int, int]:
    """Gold utterances published in more than one result (each result counted for the utterance it
    overlaps most), and of those the ones that are a single sentence: a sentence split in two by a pause
    or a voice change (a several-sentence turn split at a sentence end is the other kind)."""
    split = single = 0
    for item, results in zip(spoken, live_results):
        spans = item.spans
        homes = [
            max(range(len(spans)), key=lambda i: min(spans[i][1], r.end_s) - max(spans[i][0], r.start_s))
            for r in results
        ]
        for i, utterance in enumerate(item.dialogue.utterances):
            if homes.count(i) > 1:
                split += 1
                single += len(re.findall(r"[.!?]+(?=\s+\S)", utterance.text.strip())) == 0
    return split, single


def speaker_accuracy(spoken: list[SpokenDialogue], matched: list[list]) -> float:
    """Share of matched utterances whose live label maps to their true speaker (best mapping per dialogue)."""
    from scipy.optimize import linear_sum_assignment

    right = total = 0
    for item, row in zip(spoken, matched):
        pairs = [(u.speaker, m.speaker) for u, m in zip(item.dialogue.utterances, row) if m is not None]
        truths, labels = sorted({t for t, _ in pairs}), sorted({str(g) for _, g in pairs})
        counts = np.zeros((len(truths), len(labels)))
        for t, g in pairs:
            counts[truths.index(t), labels.index(str(g))] += 1
        rows, cols = linear_sum_assignment(-counts)
        right += int(counts[rows, cols].sum())
        total += len(pairs)
    return 100 * right / max(total, 1)


def words(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower().replace("\u2019", "'")))


def scores(truth: list[str], predicted: list[str | None], labels: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    index = {label: i for i, label in enumerate(labels)}
    t = [index[x] for x in truth]
    p = [index.get(x, -1) if x else -1 for x in predicted]  # -1: missed, always wrong
    per_class = f1_score(t, p, labels=list(range(len(labels))), average=None, zero_division=0)
    return {
        "weighted_f1": 100
        * f1_score(t, p, labels=list(range(len(labels))), average="weighted", zero_division=0),
        "accuracy": 100 * accuracy_score(t, p),
        "per_class": {label: round(100 * f, 1) for label, f in zip(labels, per_class)},
    }


def model_predictions(checkpoint, dialogues: list[Dialogue]) -> list[str]:
    encoded = encode_for_checkpoint(checkpoint, dialogues)
    probs = predict_probabilities(checkpoint.encoder, checkpoint.network, encoded)
    return [checkpoint.labels[int(i)] for p in probs for i in p.argmax(-1)]


def variant(dialogues: list[Dialogue], change) -> list[Dialogue]:
    """Dialogues with `change(dialogue) -> (texts, speakers)` applied."""
    out = []
    for dialogue in dialogues:
        texts, speakers = change(dialogue)
        utterances = [
            dataclasses.replace(u, text=t, speaker=s) for u, t, s in zip(dialogue.utterances, texts, speakers)
        ]
        out.append(dataclasses.replace(dialogue, utterances=utterances))
    return out


def write_transcripts(path: Path, dialogues: list[Dialogue], asr_text: list[list[str]]) -> None:
    """Training data as the live loop hears it; an utterance no result overlapped keeps its gold text."""
    with path.open("w") as out:
        for dialogue, texts in zip(dialogues, asr_text):
            for utterance, text in zip(dialogue.utterances, texts):
                record = {
                    "dialogue_id": dialogue.dialogue_id,
                    "utterance_id": utterance.utterance_id,
                    "speaker": utterance.speaker,
                    "text": text or utterance.text,
                    "emotion": utterance.emotion,
                }
                out.write(json.dumps(record) + "\n")


def write_dump(path: Path, dialogues: list[Dialogue], matched: list[list]) -> None:
    with path.open("w") as out:
        for dialogue, row in zip(dialogues, matched):
            for utterance, result in zip(dialogue.utterances, row):
                voice = VOICE_STATES.get(id(result)) if result else None
                record = {
                    "dialogue_id": dialogue.dialogue_id,
                    "truth": utterance.emotion,
                    "truth_speaker": utterance.speaker,
                    "start_s": result.start_s if result else None,
                    "voice_states": [round(v, 4) for v in voice] if voice else None,
                    "speaker": result.speaker if result else None,
                    "scores": result.scores if result else None,
                    "by_modality": result.by_modality if result else None,
                }
                out.write(json.dumps(record) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MELD_DEV), help="MELD CSV or JSONL (default: MELD dev)")
    parser.add_argument("--dialogues", type=int, default=0, help="first N dialogues only (default: all)")
    parser.add_argument("--skip", type=int, default=0, help="skip the first K dialogues")
    parser.add_argument("--checkpoint", help="causal checkpoint (default: the shipped one)")
    parser.add_argument("--config", help="live YAML options (default: configs/live.yaml defaults)")
    parser.add_argument("--cache", default=str(CACHE_ROOT / "bench" / "live_accuracy"))
    parser.add_argument("--seed", type=int, default=0, help="voices, pitches, rates and gaps")
    parser.add_argument("--out", help="write the numbers as JSON")
    parser.add_argument(
        "--transcripts-out",
        help="write the data set again as JSONL with each utterance's live transcript as text",
    )
    parser.add_argument("--no-decomposition", action="store_true", help="live loop and WER only")
    parser.add_argument(
        "--dump", help="JSONL, one line per gold utterance: truth and what each modality said (fusion tuning)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    config = load_live_config(args.config)
    dialogues = load_dialogues(args.data)[args.skip :]
    if args.dialogues:
        dialogues = dialogues[: args.dialogues]
    folder = Path(args.cache) / f"{Path(args.data).stem}-seed{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    spoken = [speak_dialogue(d, folder, args.seed) for d in dialogues]
    print(
        f"speech: {len(spoken)} dialogues, {sum(len(d.utterances) for d in dialogues)} utterances "
        f"({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    engine = config.engine  # what the live loop runs (backend, precision)
    recognizer = load_recognizer(
        args.checkpoint, engine.backend, engine.precision, engine.artifacts_dir, config.voice
    )
    beam = f"-beam{config.asr.beam_size}" if config.asr.beam_size > 1 else ""
    cache = folder / f"transcripts-{Path(config.asr.model).name}{beam}-voice.json"
    transcriber = CachedTranscriber(Transcriber(config.asr), cache)
    voices = load_voice_encoder() if config.speakers.enabled else None
    started = time.perf_counter()
    live_results = []
    for i, item in enumerate(spoken):
        live_results.append(asyncio.run(run_live(item, config, transcriber, recognizer, voices)))
        if i % 10 == 9:
            transcriber.save()
    transcriber.save()
    live_s = time.perf_counter() - started

    labels = recognizer.labels
    truth = [u.emotion for d in dialogues for u in d.utterances]
    matched = [[best_overlap(span, results) for span in s.spans] for s, results in zip(spoken, live_results)]
    live = [m.emotion if m else None for row in matched for m in row]
    missed = sum(m is None for row in matched for m in row)
    import jiwer

    reference = [words(" ".join(u.text for u in d.utterances)) for d in dialogues]
    hypothesis = [words(" ".join(r.text for r in results)) for results in live_results]
    wer = 100 * jiwer.wer(reference, hypothesis)

    attribution = speaker_accuracy(spoken, matched) if voices else None
    if args.dump:
        write_dump(Path(args.dump), dialogues, matched)
    checkpoint = recognizer.checkpoint
    asr_text = [[m.text if m else "" for m in row] for row in matched]
    if args.transcripts_out:
        write_transcripts(Path(args.transcripts_out), dialogues, asr_text)
    decomposition = {
        "gold text, gold speakers": variant(
            dialogues, lambda d: ([u.text for u in d.utterances], [u.speaker for u in d.utterances])
        ),
        "gold text, generic S1..Sk speakers": variant(
            dialogues,
            lambda d: (
                [u.text for u in d.utterances],
                generic_speaker_labels([u.speaker for u in d.utterances]),
            ),
        ),
        "gold text, no speakers": variant(
            dialogues, lambda d: ([u.text for u in d.utterances], ["" for _ in d.utterances])
        ),
        "gold text, ! and ? turned into .": variant(
            dialogues,
            lambda d: (
                [u.text.replace("!", ".").replace("?", ".") for u in d.utterances],
                [u.speaker for u in d.utterances],
            ),
        ),
    }
    if args.no_decomposition:
        decomposition = {}
    by_id = {d.dialogue_id: texts for d, texts in zip(dialogues, asr_text)}
    if not args.no_decomposition:
        decomposition["live transcripts, gold speakers"] = variant(
            dialogues, lambda d: (by_id[d.dialogue_id], [u.speaker for u in d.utterances])
        )
    report = {
        "data": args.data,
        "dialogues": len(dialogues),
        "utterances": len(truth),
        "checkpoint": str(checkpoint.path),
        "asr_model": config.asr.model,
        "wer": round(wer, 1),
        "missed_utterances": missed,
        "split_utterances": (splits := split_utterances(spoken, live_results))[0],
        "split_single_sentences": splits[1],
        "speaker_attribution_accuracy": attribution,
        "live_seconds": round(live_s, 1),
        "asr_ms_p50": round(
            float(np.median([r.timings_ms.asr for rs in live_results for r in rs] or [0])), 1
        ),
        "asr_cache_misses": transcriber.misses,
        "live": scores(truth, live, labels),
        "decomposition": {
            name: scores(truth, model_predictions(checkpoint, ds), labels)
            for name, ds in decomposition.items()
        },
    }
    print(
        f"\n{report['utterances']} utterances in {report['dialogues']} dialogues of {Path(args.data).name}; "
        f"checkpoint {checkpoint.path.name}; ASR {config.asr.model}; live loop {live_s:.0f} s "
        f"({transcriber.misses} segments transcribed, the rest cached)"
    )
    print(
        f"WER {wer:.1f} %   gold utterances no result overlaps: {missed}   "
        f"published in several results: {report['split_utterances']} "
        f"({report['split_single_sentences']} of them one sentence)"
    )
    if attribution is not None:
        print(f"speaker attribution: {attribution:.1f} % of matched utterances under the best label mapping")
    print(f"{'condition':<38}{'w-F1':>7}{'acc':>7}  per-class F1")
    rows = [("live loop, end to end", report["live"])] + list(report["decomposition"].items())
    for name, s in rows:
        per = " ".join(f"{k[:4]} {v:.0f}" for k, v in s["per_class"].items())
        print(f"{name:<38}{s['weighted_f1']:>7.1f}{s['accuracy']:>7.1f}  {per}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
