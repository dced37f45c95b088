"""The published record of one utterance (`EmotionResult`), its JSON form (schema 3) and its console line.

Schema 2 added `valence`, `arousal` and `by_modality` to schema 1; schema 3 adds `speaker_revisions`.
No earlier field changed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engines.media_format import MODALITIES
from realtime.affect import valence_arousal

SCHEMA_VERSION = 3

# Status words of a stream (retained on `P/S/status` and `P/S/available`) and of a node.
ONLINE = "online"
OFFLINE = "offline"
SOURCE_LOST = "source_lost"
"""A network source is reconnecting; `online` again once frames flow."""


def utc_now_iso() -> str:
    """Wall-clock time as ISO 8601 with an explicit UTC offset and millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(slots=True)
class StageTimings:
    """Per-utterance cost of each stage, in milliseconds."""

    vad: float = 0.0
    """VAD compute spent on this utterance's audio."""
    asr: float = 0.0
    """Whisper transcription of the utterance (the whole call when several streams share one)."""
    speaker: float = 0.0
    """Speaker attribution: voice embedding and re-clustering (0 when attribution is off); the whole
    embedding call when several streams' utterances share one. It runs while Whisper transcribes."""
    features: float = 0.0
    """Text, audio and visual feature extraction in the recognizer."""
    fusion: float = 0.0
    """M2FNet context encoders, fusion and classifier."""
    segment_to_publish: float = 0.0
    """From the VAD closing the segment until the result is handed to the sinks (MQTT, console, JSONL)."""

    def to_dict(self) -> dict[str, float]:
        return {
            "vad": round(self.vad, 2),
            "asr": round(self.asr, 2),
            "speaker": round(self.speaker, 2),
            "features": round(self.features, 2),
            "fusion": round(self.fusion, 2),
            "segment_to_publish": round(self.segment_to_publish, 2),
        }


@dataclass(slots=True)
class EmotionResult:
    """One recognised utterance of one stream, as published."""

    stream_id: str
    """Stable id of the stream; part of the MQTT topic."""
    utterance_id: int
    """Increases by one per published utterance of the stream, starting at 1."""
    start_s: float
    """Stream time of the utterance start, in seconds."""
    end_s: float
    """Stream time of the utterance end, in seconds."""
    text: str
    """Whisper transcript."""
    emotion: str
    """The most probable label."""
    scores: dict[str, float]
    """Probability per label, summing to 1."""
    modalities: dict[str, bool]
    """Which of text, audio and visual the recognizer actually used."""
    model: str
    """Id of the recognizer checkpoint."""
    timings_ms: StageTimings = field(default_factory=StageTimings)
    """Per-stage cost of this utterance."""
    speaker: str | None = None
    """Who said it: `S1`, `S2`, ... per stream in order of first appearance, or an enrolled name;
    None when speaker attribution is off."""
    wall_time: str = field(default_factory=utc_now_iso)
    """ISO 8601 wall-clock time when the result was made."""
    by_modality: dict[str, dict[str, float]] = field(default_factory=dict)
    """What each branch said alone: "text" (the words in their context), "voice" (how they were said)
    when the voice branch ran; `scores` is their fusion."""
    host: str | None = None
    """The cluster host that served the stream (`realtime.cluster`); None outside a cluster."""
    speaker_revisions: dict[int, str] = field(default_factory=dict)
    """Earlier utterance id -> its speaker now: the voices heard since regrouped those utterances
    (`SpeakerAttributor.revisions`). Empty on interim results."""

    def to_dict(self) -> dict[str, Any]:
        """The schema-3 message, keys in the documented order."""
        valence, arousal = valence_arousal(self.scores)
        return {
            "schema": SCHEMA_VERSION,
            "stream_id": self.stream_id,
            "utterance_id": self.utterance_id,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "wall_time": self.wall_time,
            "speaker": self.speaker,
            "text": self.text,
            "emotion": self.emotion,
            "scores": _rounded(self.scores),
            "valence": valence,
            "arousal": arousal,
            "by_modality": {name: _rounded(scores) for name, scores in self.by_modality.items()},
            "modalities": {name: bool(self.modalities.get(name, False)) for name in MODALITIES},
            "timings_ms": self.timings_ms.to_dict(),
            "model": self.model,
            "host": self.host,
            "speaker_revisions": [
                {"utterance_id": utterance_id, "speaker": speaker}
                for utterance_id, speaker in sorted(self.speaker_revisions.items())
            ],
        }

    def to_json(self) -> str:
        """One line of JSON (no newline inside), UTF-8 text kept as is."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {label: round(float(p), 4) for label, p in scores.items()}


def format_console_line(result: EmotionResult) -> str:
    """One human-readable line, e.g. `[  3.10-  5.42] #2 joy     0.81 T+A  "Hello there."  (812 ms)`."""
    used = "+".join(name[0].upper() for name in MODALITIES if result.modalities.get(name, False)) or "-"
    confidence = result.scores.get(result.emotion, 0.0)
    return (
        f"[{result.start_s:7.2f}-{result.end_s:7.2f}] #{result.utterance_id} "
        f"{result.emotion:<8} {confidence:.2f} {used:<5} {json.dumps(result.text, ensure_ascii=False)}"
        f"  ({result.timings_ms.segment_to_publish:.0f} ms)"
    )
