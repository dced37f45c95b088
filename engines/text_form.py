"""The form utterance text takes before tokenisation, shared by training and the live loop.

Subtitles and Whisper transcripts differ in surface form: subtitles shout in capitals and stack
`?!`, `!!!` and `....`; Whisper writes sentence case with one mark. A model trained on one and fed the
other loses accuracy for reasons that have nothing to do with emotion, so both sides pass through the
same normalisation. Speakers are named the way live attribution can name them: `S1`, `S2`, ... in order
of first appearance in the conversation.
"""

from __future__ import annotations

import re

_SHOUTED_WORD = re.compile(r"\b[A-Z][A-Z']+\b")
_KEPT_CAPITALS = frozenset({"I", "OK", "TV", "US", "USA", "UK", "NYC", "DNA", "ID"})
_STACKED_MARKS = re.compile(r"[!?]{2,}")
_DOTS = re.compile(r"\.{2,}|\u2026")
_SPACE_BEFORE_MARK = re.compile(r"\s+([,.!?])")


def normalize_transcript(text: str) -> str:
    """Subtitle or transcript text in the form Whisper writes: sentence case, one mark, `...` for a trail."""
    text = _SHOUTED_WORD.sub(
        lambda m: m.group(0) if m.group(0) in _KEPT_CAPITALS else m.group(0).lower(), text
    )
    text = _STACKED_MARKS.sub(lambda m: "?" if "?" in m.group(0) else "!", text)
    text = _DOTS.sub("...", text)
    text = _SPACE_BEFORE_MARK.sub(r"\1", " ".join(text.split()))
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


def generic_speaker_labels(speakers: list[str]) -> list[str]:
    """`S1`, `S2`, ... per distinct speaker in order of first appearance; empty names stay empty."""
    labels: dict[str, str] = {}
    out = []
    for name in speakers:
        if not name:
            out.append("")
            continue
        if name not in labels:
            labels[name] = f"S{len(labels) + 1}"
        out.append(labels[name])
    return out


def dialogue_speakers(speakers: list[str], speaker_labels: str) -> list[str]:
    """A data set dialogue's speakers as the model was trained to see them (`TextEncoderConfig.speaker_labels`).

    Live speakers come from attribution as `S1..Sk` already and never pass through here."""
    return generic_speaker_labels(speakers) if speaker_labels == "generic" else speakers
