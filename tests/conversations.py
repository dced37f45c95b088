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
