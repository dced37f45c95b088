"""Generated conversations between espeak-ng voices, with the true speaker and time of every turn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conftest import SPEECH_RATE_HZ, synthesize, write_wav

VOICES = (
    # (espeak voice, pitch 0-99, rate wpm): variants whose GE2E embeddings differ (same-voice cosine
    # ~0.9, across these ~0.5-0.7); the classic +m1..+f4 variants sit at 0.75-0.85 to each other.
    ("en-us+klatt", 40, 160),
    ("en-us+f5", 80, 170),
    ("en-us+Storm", 40, 170),
    ("en-us+grandma", 60, 150),
)
LINES = (
    "Yes.",
    "Okay, fine.",
    "No way.",
    "Did you see the game last night?",
    "I think we should leave a little earlier tomorrow.",
    "The train was late again, so I walked all the way from the station in the rain.",
    "Honestly, I have no idea what you are talking about.",
    "Could you pass me the salt, please?",
    "We need to finish the report before Friday, or the client will be very unhappy with us.",
    "That is the best news I have heard all week!",
    "Really?",
    "My sister is moving to another city next month and I will miss her a lot.",
    "Let me check my calendar first.",
    "Sure.",
    "I left my keys in the car and now the doors are locked.",
    "Why would anyone paint a kitchen bright orange?",
)
GAP_S = (0.7, 1.2)
"""Silence between turns: above the VAD's 0.5 s pause, so every turn is its own utterance."""


@dataclass(frozen=True)
class Conversation:
    path: Path
    """16 kHz mono 16-bit wav."""
    samples: np.ndarray
    turns: tuple[tuple[int, float, float], ...]
    """(true speaker index, first sound s, last sound s) of every turn."""

    def speaker_at(self, start_s: float, end_s: float) -> int | None:
        """The true speaker who overlaps [start_s, end_s] most, None if nobody does."""
        overlaps = [(min(end_s, e) - max(start_s, s), who) for who, s, e in self.turns]
        best, who = max(overlaps)
        return who if best > 0 else None


def speak(text: str, voice: tuple[str, int, int]) -> np.ndarray:
    """`text` in `voice` (name, pitch, rate), float32 16 kHz, trimmed to its sound."""
    name, pitch, rate = voice
    return synthesize(text, name, pitch, rate)


def make_conversation(path: Path, n_speakers: int, n_turns: int, seed: int = 0) -> Conversation:
    """`n_turns` turns among the first `n_speakers` VOICES: every speaker talks early, turns never repeat
    the previous speaker, lines (0.4-6 s, some very short) are drawn at random."""
    rng = np.random.default_rng(seed)
    order = list(range(n_speakers))
    while len(order) < n_turns:
        order.append(int(rng.choice([s for s in range(n_speakers) if s != order[-1]])))
    pieces, turns, cursor = [np.zeros(SPEECH_RATE_HZ // 2, np.float32)], [], 0.5
    for who in order:
        spoken = speak(LINES[int(rng.integers(len(LINES)))], VOICES[who])
        turns.append((who, cursor, cursor + len(spoken) / SPEECH_RATE_HZ))
        gap = np.zeros(int(rng.uniform(*GAP_S) * SPEECH_RATE_HZ), np.float32)
        pieces += [spoken, gap]
        cursor += (len(spoken) + len(gap)) / SPEECH_RATE_HZ
    samples = np.round(np.clip(np.concatenate(pieces), -1, 1) * 32767).astype(np.float32) / 32767
    write_wav(path, samples)
    return Conversation(path, samples, tuple(turns))


def best_mapping_accuracy(truth: list[int], labels: list[str]) -> float:
    """Share of turns whose label maps to their true speaker under the best one-to-one mapping."""
    from scipy.optimize import linear_sum_assignment

    names = sorted(set(labels))
    speakers = sorted(set(truth))
    counts = np.zeros((len(names), len(speakers)))
    for who, label in zip(truth, labels):
        counts[names.index(label), speakers.index(who)] += 1
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(truth))


@dataclass
class Attributed:
    """What attribution made of a conversation cut by the real VAD."""

    labels: list[str]
    """Published name per VAD segment that overlaps a turn."""
    truth: list[int]
    """True speaker of the same segments."""
    turns: list
    """`SpeakerTurn` per segment (costs)."""
    alive: int
    """Speakers the attributor holds at the end."""


def attribute_conversation(conversation: Conversation, encoder, options=None, enrolled=None) -> Attributed:
    """Feed the conversation through the real Silero VAD in 32 ms chunks and attribute every segment."""
    from realtime.frames import AudioChunk
    from realtime.speakers.attributor import SpeakerAttributor
    from realtime.speech.vad import VadSegmenter

    vad = VadSegmenter()
    attributor = SpeakerAttributor(encoder, options, enrolled)
    segments = []
    for start in range(0, len(conversation.samples), 512):
        chunk = conversation.samples[start : start + 512]
        segments += vad.push(AudioChunk(chunk, start / SPEECH_RATE_HZ))
    segments += vad.flush()
    result = Attributed([], [], [], 0)
    for segment in segments:
        who = conversation.speaker_at(segment.start_s, segment.end_s)
        if who is None:
            continue
        turn = attributor.assign(attributor.embed(segment.samples))
        result.labels.append(turn.name)
        result.truth.append(who)
        result.turns.append(turn)
    result.alive = len(attributor.speakers)
    return result


RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ravdess"
"""RAVDESS speech (CC BY-NC-SA 4.0): read at run time from ../shared, never written into the project."""
REAL_KINDS = (("2 voices m/f", 2, 12), ("2 voices same sex", 2, 12), ("3 voices", 3, 18), ("4 voices", 4, 24))
"""(name, speakers, turns) of the real-voice conversations; 'same sex' is m/m on even seeds, f/f on odd."""
REAL_GAP_S = (-0.2, 1.0)
"""From one turn's last voiced sample to the next one's first: negative gaps overlap (mixed)."""
_VOICED_BLOCK = 160  # 10 ms
_VOICED_RANGE_DB = 35.0
_TURN_PAD_S = 0.05


@dataclass(frozen=True)
class RealTurn:
    speaker: str
    """RAVDESS actor, e.g. `actor13` (odd numbers male, even female)."""
    emotion: str
    start_s: float
    """First voiced sample."""
    end_s: float
    """Last voiced sample: where end-of-speech latency is measured from."""


@dataclass(frozen=True)
class RealConversation:
    kind: str
    seed: int
    path: Path
    samples: np.ndarray
    turns: tuple[RealTurn, ...]


def voiced_bounds(samples: np.ndarray) -> tuple[int, int]:
    """First and last sample of the 10 ms blocks within 35 dB of the loudest one."""
    blocks = len(samples) // _VOICED_BLOCK
    frames = samples[: blocks * _VOICED_BLOCK].reshape(blocks, _VOICED_BLOCK).astype(np.float64)
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(level > level.max() - _VOICED_RANGE_DB)
    return int(loud[0] * _VOICED_BLOCK), int((loud[-1] + 1) * _VOICED_BLOCK)


def ravdess_rows(actors: range | list[int], root: Path = RAVDESS) -> dict[str, list[dict]]:
    """Actor -> its clips' JSONL rows (train.jsonl and dev.jsonl), for the actor numbers given."""
    import json

    wanted = {f"actor{a:02d}" for a in actors}
    rows: dict[str, list[dict]] = {}
    for split in ("train", "dev"):
        for line in (root / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row["speaker"] in wanted:
                rows.setdefault(row["speaker"], []).append(row)
    return rows


def pick_actors(rows: dict[str, list[dict]], kind: str, n_speakers: int, seed: int) -> list[str]:
    """The voices of one conversation: a male and a female, two of one sex, or any `n_speakers`."""
    rng = np.random.default_rng(seed)
    male = sorted(a for a in rows if int(a[5:]) % 2 == 1)
    female = sorted(a for a in rows if int(a[5:]) % 2 == 0)
    if kind.endswith("m/f"):
        return [str(rng.choice(male)), str(rng.choice(female))]
    if kind.endswith("same sex"):
        pool = male if seed % 2 == 0 else female
        return [str(a) for a in rng.choice(pool, 2, replace=False)]
    return [str(a) for a in rng.choice(sorted(rows), n_speakers, replace=False)]


def make_real_conversation(
    path: Path,
    rows: dict[str, list[dict]],
    kind: str,
    n_speakers: int,
    n_turns: int,
    seed: int,
    gap_s: tuple[float, float] = REAL_GAP_S,
    root: Path = RAVDESS,
) -> RealConversation:
    """Turns of RAVDESS actors (each turn a random clip, so a random emotion), trimmed to their voice
    (+-50 ms), gaps drawn uniformly in `gap_s`; every speaker talks early, no one twice in a row."""
    from training.media import decode_audio

    rng = np.random.default_rng(seed)
    actors = pick_actors(rows, kind, n_speakers, seed)
    order = [actors[i] for i in rng.permutation(n_speakers)]
    while len(order) < n_turns:
        order.append(str(rng.choice([a for a in actors if a != order[-1]])))
    pad = int(_TURN_PAD_S * SPEECH_RATE_HZ)
    placed, turns, cursor = [], [], 0.6
    for actor in order:
        row = rows[actor][int(rng.integers(len(rows[actor])))]
        audio = decode_audio(root / row["audio"]).astype(np.float32)
        first, last = voiced_bounds(audio)
        clip = audio[max(0, first - pad) : last + pad]
        lead = (first - max(0, first - pad)) / SPEECH_RATE_HZ
        start_s = cursor if not turns else turns[-1].end_s + float(rng.uniform(*gap_s))
        turns.append(RealTurn(actor, row["emotion"], start_s, start_s + (last - first) / SPEECH_RATE_HZ))
        placed.append((round((start_s - lead) * SPEECH_RATE_HZ), clip))
    total = max(at + len(clip) for at, clip in placed) + SPEECH_RATE_HZ
    samples = np.zeros(total, np.float32)
    for at, clip in placed:
        samples[at : at + len(clip)] += clip
    samples = np.round(np.clip(samples, -1, 1) * 32767).astype(np.float32) / 32767
    write_wav(path, samples)
    return RealConversation(kind, seed, path, samples, tuple(turns))


@dataclass
class Segmentation:
    """How published results cut a conversation's turns (each result: `start_s`, `end_s`, `speaker`)."""

    turns: int
    found: int
    """Turns that exactly one result holds (covers most of), holding no other turn."""
    merged: int
    """Turns held by a result that holds other turns too."""
    split: int
    """Turns that are the main turn of several results (one turn published in pieces)."""
    labels: list[str | None]
    """Speaker of the result overlapping each turn most (None: no result overlaps it)."""
    held_by: list[int | None]
    """Index of the result holding each turn."""


def segmentation(turns: tuple[RealTurn, ...], results: list) -> Segmentation:
    def overlap(turn: RealTurn, result) -> float:
        return max(0.0, min(turn.end_s, result.end_s) - max(turn.start_s, result.start_s))

    holds = [
        [r for r, res in enumerate(results) if overlap(t, res) > 0.5 * (t.end_s - t.start_s)] for t in turns
    ]
    held_count = [sum(r in h for h in holds) for r in range(len(results))]
    home = [
        max(range(len(turns)), key=lambda t: overlap(turns[t], res)) if turns else None for res in results
    ]
    found = merged = split = 0
    labels, held_by = [], []
    for t, turn in enumerate(turns):
        found += len(holds[t]) == 1 and held_count[holds[t][0]] == 1
        merged += any(held_count[r] > 1 for r in holds[t])
        split += sum(1 for r, h in enumerate(home) if h == t and overlap(turn, results[r]) > 0) > 1
        best = max(range(len(results)), key=lambda r: overlap(turn, results[r]), default=None)
        labels.append(
            results[best].speaker if best is not None and overlap(turn, results[best]) > 0 else None
        )
        held_by.append(holds[t][0] if len(holds[t]) == 1 else None)
    return Segmentation(len(turns), found, merged, split, labels, held_by)


def attribution_accuracy(truth: list[str], labels: list[str | None]) -> float:
    """`best_mapping_accuracy` where a turn without a result counts as wrong."""
    pairs = [(t, label) for t, label in zip(truth, labels) if label is not None]
    if not pairs:
        return 0.0
    names = {name: i for i, name in enumerate(sorted({t for t, _ in pairs}))}
    right = best_mapping_accuracy([names[t] for t, _ in pairs], [label for _, label in pairs])
    return right * len(pairs) / len(truth)
