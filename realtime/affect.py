"""Valence and arousal in [-1, 1] from the seven class scores: the expectation of a fixed point per class.

The points place the labels on Russell's circumplex as the affective-computing literature usually does
(e.g. the NRC VAD lexicon's values of the label words, rescaled to [-1, 1] and rounded). They are a
mapping, not a second model: a result that is 60 % anger and 40 % neutral gets 0.6 x anger's point.
"""

from __future__ import annotations

from collections.abc import Mapping

CIRCUMPLEX: dict[str, tuple[float, float]] = {
    # label: (valence, arousal)
    "neutral": (0.0, 0.0),
    "joy": (0.8, 0.5),
    "surprise": (0.2, 0.7),
    "anger": (-0.6, 0.8),
    "fear": (-0.6, 0.6),
    "sadness": (-0.7, -0.4),
    "disgust": (-0.6, 0.3),
}


def valence_arousal(scores: Mapping[str, float]) -> tuple[float, float]:
    """(valence, arousal) of a score dict; labels outside the table count as neutral."""
    total = sum(scores.values()) or 1.0
    valence = sum(p * CIRCUMPLEX.get(label, (0.0, 0.0))[0] for label, p in scores.items()) / total
    arousal = sum(p * CIRCUMPLEX.get(label, (0.0, 0.0))[1] for label, p in scores.items()) / total
    return round(valence, 4), round(arousal, 4)
