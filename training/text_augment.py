"""Training text as the live loop will see it: fewer subtitle exclamation and question marks.

MELD's subtitles put `!` on about 60 % of joyful and angry lines; Whisper writes it on a quarter of
emotional speech at most and synthetic voices almost never get one. A model that learns `!` as the
emotion loses it live, so each training utterance keeps its marks only with a given chance. The choice is
fixed per utterance (seeded by its key), so the frozen layers' token-state cache stays valid across epochs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass

from training.data import Dialogue


@dataclass
class TextAugmentOptions:
    exclamation_keep_prob: float = 1.0
    """Chance that a training utterance keeps its `!` (otherwise each becomes `.`); 1 keeps the subtitles'."""
    question_keep_prob: float = 1.0
    """Chance that a training utterance keeps its `?` (otherwise each becomes `.`)."""
    seed: int = 0
    """Which utterances lose their marks; independent of the training seed so runs share the cache."""


def live_style(dialogues: list[Dialogue], options: TextAugmentOptions) -> list[Dialogue]:
    """Training dialogues with marks dropped as configured; dev and test are never changed."""
    if options.exclamation_keep_prob >= 1.0 and options.question_keep_prob >= 1.0:
        return dialogues
    out = []
    for dialogue in dialogues:
        utterances = []
        for utterance in dialogue.utterances:
            rng = random.Random(hashlib.sha256(f"{options.seed}/{utterance.key}".encode()).digest())
            text = utterance.text
            if rng.random() >= options.exclamation_keep_prob:
                text = text.replace("!", ".")
            if rng.random() >= options.question_keep_prob:
                text = text.replace("?", ".")
            utterances.append(dataclasses.replace(utterance, text=text))
        out.append(dataclasses.replace(dialogue, utterances=utterances))
    return out
