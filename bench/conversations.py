"""Turn-taking of real voices through the live loop: are turns cut apart, is each person one speaker, how soon.

    python bench/conversations.py [--actors 13-16] [--seeds 0 1 2] [--realtime] [--set vad.min_silence_ms=250]

Conversations of 2, 3 and 4 RAVDESS actors (tests/conversations.py: every turn a random clip of its
actor, so a random emotion, trimmed to its voice; gaps from the last voiced sample to the next turn's
first drawn in [-0.2, 1.0] s, negative gaps overlap) and, as a second row, the espeak-ng conversations
of bench/speakers.py. The real loop (Silero VAD, Whisper, voice embeddings and speaker clustering, the
recognizer; the Pipeline that run_live.py builds, config configs/live.yaml) runs over each file.
Prints per clip kind: segmentation recall (a turn is found when exactly one result covers most of it
and covers no other turn), turns merged, false splits (a turn published in several results), speakers
found (distinct labels published) against the truth, attribution accuracy (best one-to-one mapping,
a turn without a result counts as wrong), the same two after the speaker corrections that later
results carried (`speaker_revisions`: "rev"), and with --realtime (paced capture, Whisper uncached) end of
speech -> result p50/p95: from a turn's last voiced sample to the moment the sink got the result that
holds it, over all turns and ("cut") over the turns that ended a VAD segment (the front part of a
voice-change split is published only once the whole segment has ended). Tune on actors 1-12, report on 13-16 (the voice head never heard them). RAVDESS is CC
BY-NC-SA 4.0: the audio is read from ../shared and written only to the cache folder.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
# tests/ first (its conversations.py, not this file), the project before bench/ (bench/engines.py).
sys.path[:0] = [str(ROOT / "tests"), str(ROOT), str(ROOT / "bench")]

from realtime.runtime import env as runtime_env

runtime_env.apply()

from conversations import (
    RAVDESS,
    REAL_KINDS,
    RealConversation,
    RealTurn,
    attribution_accuracy,
    make_conversation,
    make_real_conversation,
    ravdess_rows,
    segmentation,
)

from engines.text_encoder import CACHE_ROOT
from realtime.frames import AudioChunk
from realtime.runtime.config import LiveConfig, check_ranges, load_live_config
from realtime.runtime.models import utterance_input
from realtime.session.pipeline import Pipeline
from realtime.sources.file import FileSource
from realtime.speakers.attributor import SpeakerAttributor
from realtime.speech.vad import VadSegmenter

CACHE = CACHE_ROOT / "bench" / "conversations"


@dataclass
class Received:
    result: object
    at_s: float
    """time.monotonic() when the sink got it."""


class _Collector:
    def __init__(self) -> None:
        self.received: list[Received] = []

    def emit(self, result) -> None:
        self.received.append(Received(result, time.monotonic()))


class _NoInterim:
    """Interim results are computed as in the runtime, and dropped here."""

    def emit_interim(self, result) -> bool:
        return True


class _TimedSource:
    """The file source, remembering when each audio chunk arrived (stream time -> wall clock)."""

    def __init__(self, source: FileSource) -> None:
        self._source = source
        self.offsets: list[float] = []

    async def stream(self) -> AsyncIterator:
        async for item in self._source.stream():
            if isinstance(item, AudioChunk):
                self.offsets.append(time.monotonic() - item.end_s)
            yield item

    def wall_s(self, stream_s: float) -> float:
        # A paced chunk never arrives before its end: the earliest arrival is the clock's origin.
        return min(self.offsets) + stream_s


async def run_live(
    path: Path, config: LiveConfig, models: dict, realtime: bool
) -> tuple[list[Received], _TimedSource]:
    config = copy.deepcopy(config)
    config.capture.realtime = realtime
    source = _TimedSource(FileSource(path, config.capture))
    collector = _Collector()
    attributor = SpeakerAttributor(models["voices"], config.speakers) if config.speakers.enabled else None
    pipeline = Pipeline(
        stream_id=path.stem,
        model_id=models["recognizer"].model_id,
        source=source,
        segmenter=VadSegmenter(config.vad),
        transcriber=models["asr" if realtime else "cached_asr"],
        session=models["recognizer"].new_session(config.pipeline.max_context_utterances),
        make_input=utterance_input,
        sinks=[collector],
        options=config.pipeline,
        attributor=attributor,
        interim_sink=_NoInterim(),
        realtime=realtime,
    )
    try:
        await pipeline.run()
    finally:
        source._source.close()
    return collector.received, source


@dataclass
class KindScore:
    turns: int = 0
    found: int = 0
    merged: int = 0
    split: int = 0
    right: float = 0.0
    right_revised: float = 0.0
    speakers: list[tuple[int, int]] = None  # (found, true) per conversation
    speakers_revised: list[tuple[int, int]] = None
    latency_ms: list[float] = None
    latency_cut_ms: list[float] = None
    """Latency of the turns that ended a VAD segment (not the front part of a split)."""

    def __post_init__(self) -> None:
        self.speakers, self.speakers_revised, self.latency_ms, self.latency_cut_ms = [], [], [], []

    def add(self, turns: tuple[RealTurn, ...], received: list[Received], source: _TimedSource | None) -> None:
        results = [r.result for r in received]
        seg = segmentation(turns, results)
        self.turns += seg.turns
        self.found += seg.found
        self.merged += seg.merged
        self.split += seg.split
        self.right += attribution_accuracy([t.speaker for t in turns], seg.labels) * seg.turns
        labels = {r.speaker for r in results if r.speaker is not None}
        self.speakers.append((len(labels), len({t.speaker for t in turns})))
        revised = with_revisions(results)
        self.right_revised += (
            attribution_accuracy([t.speaker for t in turns], segmentation(turns, revised).labels) * seg.turns
        )
        labels = {r.speaker for r in revised if r.speaker is not None}
        self.speakers_revised.append((len(labels), len({t.speaker for t in turns})))
        if source is not None:
            for r, item in enumerate(received):
                held = [t for t, h in zip(turns, seg.held_by) if h == r]
                if held:
                    latency = (item.at_s - source.wall_s(held[-1].end_s)) * 1000
                    self.latency_ms.append(latency)
                    # The front part of a voice-change split waits for the end of the whole segment.
                    split_off = r + 1 < len(results) and abs(results[r + 1].start_s - results[r].end_s) < 1e-6
                    if not split_off:
                        self.latency_cut_ms.append(latency)

    def row(self, name: str) -> str:
        exact = sum(f == t for f, t in self.speakers)
        exact_revised = sum(f == t for f, t in self.speakers_revised)
        found = "/".join(str(f) for f, _ in self.speakers)
        latency = "  ".join(
            f"{np.percentile(values, 50):5.0f} {np.percentile(values, 95):5.0f}"
            if values
            else f"{'-':>5} {'-':>5}"
            for values in (self.latency_ms, self.latency_cut_ms)
        )
        return (
            f"{name:<20}{self.turns:>6}{100 * self.found / self.turns:>8.1f}{self.merged:>7}{self.split:>7}"
            f"   {found + ' of ' + str(self.speakers[0][1]):<16}{exact:>2}/{len(self.speakers):<3}"
            f"{100 * self.right / self.turns:>7.1f}{100 * self.right_revised / self.turns:>6.1f}"
            f"{exact_revised:>4}/{len(self.speakers):<3}  {latency}"
        )


def with_revisions(results: list) -> list:
    """The results, each with the speaker the last later result's `speaker_revisions` gave it."""
    speaker = {r.utterance_id: r.speaker for r in results}
    for result in results:
        speaker.update(result.speaker_revisions)
    return [dataclasses.replace(r, speaker=speaker[r.utterance_id]) for r in results]


HEADER = (
    f"{'clip kind':<20}{'turns':>6}{'recall%':>8}{'merged':>7}{'splits':>7}   {'speakers found':<16}"
    f"{'exact':>6}{'attr%':>7}{'rev%':>6}{'exact':>8}  {'p50ms':>5} {'p95ms':>5}  {'cut p50':>5} {'p95':>5}"
)


def load_models(config: LiveConfig) -> dict:
    import torch
    from live_accuracy import CachedTranscriber

    from engines.speaker_encoder import load_voice_encoder
    from engines.stream import load_recognizer
    from realtime.speech.whisper import Transcriber

    torch.set_num_threads(1)
    engine = config.engine
    asr = Transcriber(config.asr)
    beam = f"-beam{config.asr.beam_size}"
    CACHE.mkdir(parents=True, exist_ok=True)
    return {
        "asr": asr,
        "cached_asr": CachedTranscriber(asr, CACHE / f"transcripts-{Path(config.asr.model).name}{beam}.json"),
        "recognizer": load_recognizer(
            config.checkpoint_dir, engine.backend, engine.precision, engine.artifacts_dir, config.voice
        ),
        "voices": load_voice_encoder(),
    }


def apply_settings(config: LiveConfig, settings: list[str]) -> None:
    """`section.key=value` (YAML value) onto the config, range-checked like a config file."""
    for setting in settings:
        name, _, value = setting.partition("=")
        section, key = name.split(".")
        target = getattr(config, section)
        if not hasattr(target, key):
            raise SystemExit(f"--set {setting}: no option {name}")
        setattr(target, key, yaml.safe_load(value))
    check_ranges(config, "--set")


def actor_range(text: str) -> range:
    low, _, high = text.partition("-")
    return range(int(low), int(high or low) + 1)


def real_conversations(actors: range, seeds: list[int], kinds: list[str] | None) -> list[RealConversation]:
    rows = ravdess_rows(actors)
    folder = CACHE / "conversations"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for kind, n_speakers, n_turns in REAL_KINDS:
        if kinds and not any(k in kind for k in kinds):
            continue
        for seed in seeds:
            name = f"{actors.start}-{actors.stop - 1}-{n_speakers}{kind[-3:].replace('/', '')}-{seed}.wav"
            out.append(make_real_conversation(folder / name, rows, kind, n_speakers, n_turns, seed))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--actors", default="13-16", help="RAVDESS actors, e.g. 13-16 (report) or 1-12 (tuning)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="*", help="only clip kinds containing these words")
    parser.add_argument("--config", default=str(ROOT / "configs" / "live.yaml"))
    parser.add_argument("--set", action="append", default=[], help="section.key=value over the config")
    parser.add_argument("--realtime", action="store_true", help="paced capture, uncached Whisper: latency")
    parser.add_argument("--no-generated", action="store_true", help="skip the espeak-ng row")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not RAVDESS.is_dir():
        raise SystemExit(f"RAVDESS not found at {RAVDESS}")
    config = load_live_config(args.config)
    apply_settings(config, args.set)
    models = load_models(config)
    actors = actor_range(args.actors)
    mode = "realtime" if args.realtime else "no-realtime"
    print(f"actors {args.actors}, seeds {args.seeds}, {mode}, settings {args.set or 'config'}")
    print(HEADER)
    scores: dict[str, KindScore] = {}
    started = time.perf_counter()
    for conversation in real_conversations(actors, args.seeds, args.kinds):
        received, source = asyncio.run(run_live(conversation.path, config, models, args.realtime))
        score = scores.setdefault(conversation.kind, KindScore())
        score.add(conversation.turns, received, source if args.realtime else None)
    total = KindScore()
    for kind, score in scores.items():
        print(score.row(kind))
        for field in ("turns", "found", "merged", "split", "right", "right_revised"):
            setattr(total, field, getattr(total, field) + getattr(score, field))
        total.speakers += score.speakers
        total.speakers_revised += score.speakers_revised
        total.latency_ms += score.latency_ms
        total.latency_cut_ms += score.latency_cut_ms
    print(total.row("all real").replace(" of " + str(total.speakers[0][1]), " (mixed)"))
    if not args.no_generated:
        generated = KindScore()
        folder = CACHE / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        for n_speakers in (2, 3, 4):
            for seed in args.seeds:
                conv = make_conversation(
                    folder / f"g{n_speakers}-{seed}.wav", n_speakers, 6 * n_speakers, seed + 3
                )
                turns = tuple(RealTurn(str(who), "", s, e) for who, s, e in conv.turns)
                received, source = asyncio.run(run_live(conv.path, config, models, args.realtime))
                generated.add(turns, received, source if args.realtime else None)
        print(generated.row("generated (espeak)").replace(" of 2", " (2-4)"))
    models["cached_asr"].save()
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
