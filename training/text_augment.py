"""Training text as the live loop will see it: fewer subtitle marks, and Whisper's own transcripts.

MELD's subtitles put `!` on about 60 % of joyful and angry lines; Whisper writes it on a quarter of
emotional speech at most and synthetic voices almost never get one. A model that learns `!` as the
emotion loses it live, so each training utterance keeps its marks only with a given chance. The choice is
fixed per utterance (seeded by its key), so the frozen layers' token-state cache stays valid across epochs.
Optionally a share of the utterances takes the text the live loop itself heard for the same line spoken
(`bench/live_accuracy.py --transcripts-out`), so the model also learns from real recognition errors.
A share of the dialogues can also lose their speaker names for `S1, S2, ...` (what live attribution
says), so one model reads names where the text has them and generic labels where it does not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass

from engines.text_form import generic_speaker_labels
from training.data import DataError, Dialogue, load_dialogues


@dataclass
class TextAugmentOptions:
    exclamation_keep_prob: float = 1.0
    """Chance that a training utterance keeps its `!` (otherwise each becomes `.`); 1 keeps the subtitles'."""
    question_keep_prob: float = 1.0
    """Chance that a training utterance keeps its `?` (otherwise each becomes `.`)."""
    transcripts: str | None = None
    """JSONL of the training set with the live loop's transcript of each utterance as its text."""
    transcript_prob: float = 0.0
    """Chance that a training utterance takes its live transcript instead of its subtitle."""
    generic_speaker_prob: float = 0.0
    """Chance that a training dialogue's speaker names become `S1, S2, ...` (with `text.speaker_labels: names`)."""
    seed: int = 0
    """Which utterances change; independent of the training seed so runs share the cache."""


def live_style(dialogues: list[Dialogue], options: TextAugmentOptions) -> list[Dialogue]:
    """Training dialogues with marks dropped as configured; dev and test are never changed."""
    heard = _transcripts(options) if options.transcript_prob > 0 else {}
    unchanged = options.exclamation_keep_prob >= 1.0 and options.question_keep_prob >= 1.0
    if unchanged and not heard and options.generic_speaker_prob <= 0.0:
        return dialogues
    out = []
    for dialogue in dialogues:
        utterances = []
        generic = _chance(options, dialogue.dialogue_id).random() < options.generic_speaker_prob
        labels = generic_speaker_labels([u.speaker for u in dialogue.utterances]) if generic else None
        for index, utterance in enumerate(dialogue.utterances):
            rng = _chance(options, utterance.key)
            text = utterance.text
            if rng.random() >= options.exclamation_keep_prob:
                text = text.replace("!", ".")
            if rng.random() >= options.question_keep_prob:
                text = text.replace("?", ".")
            if utterance.key in heard and rng.random() < options.transcript_prob:
                text = heard[utterance.key]
            speaker = labels[index] if labels else utterance.speaker
            utterances.append(dataclasses.replace(utterance, text=text, speaker=speaker))
        out.append(dataclasses.replace(dialogue, utterances=utterances))
    return out


def _chance(options: TextAugmentOptions, key: str) -> random.Random:
    """A generator fixed by the key, so the same lines change in every epoch and run (cache stays valid)."""
    return random.Random(hashlib.sha256(f"{options.seed}/{key}".encode()).digest())


def _transcripts(options: TextAugmentOptions) -> dict[str, str]:
    if not options.transcripts:
        raise DataError("config: text_augment.transcript_prob needs text_augment.transcripts (a JSONL file)")
    return {u.key: u.text for d in load_dialogues(options.transcripts) for u in d.utterances}
