"""The published record: schema-3 JSON keys, types and order, and the console line."""

from __future__ import annotations

import json
from datetime import datetime

from realtime.messages import EmotionResult, StageTimings, format_console_line

SCHEMA_KEYS = [
    "schema",
    "stream_id",
    "utterance_id",
    "start_s",
    "end_s",
    "wall_time",
    "speaker",
    "text",
    "emotion",
    "scores",
    "valence",
    "arousal",
    "by_modality",
    "modalities",
    "timings_ms",
    "model",
    "host",
    "speaker_revisions",
]
TIMING_KEYS = ["vad", "asr", "speaker", "features", "fusion", "segment_to_publish"]


def make_result(**overrides: object) -> EmotionResult:
    fields = {
        "stream_id": "cam-1",
        "utterance_id": 3,
        "start_s": 1.23456,
        "end_s": 2.5,
        "text": "I can't believe it — wow!",
        "emotion": "surprise",
        "scores": {"neutral": 0.1, "surprise": 0.8, "joy": 0.1},
        "modalities": {"text": True, "audio": True, "visual": False},
        "model": "m2fnet-meld-causal",
        "timings_ms": StageTimings(vad=0.4, asr=812.345, features=20.0, fusion=3.0, segment_to_publish=850.0),
    }
    fields.update(overrides)
    return EmotionResult(**fields)


def test_json_has_exactly_the_schema_keys_in_order() -> None:
    message = json.loads(make_result().to_json())
    assert list(message) == SCHEMA_KEYS
    assert list(message["timings_ms"]) == TIMING_KEYS
    assert message["schema"] == 3
    assert message["speaker"] is None
    assert message["speaker_revisions"] == []
    assert message["host"] is None  # outside a cluster
    assert message["utterance_id"] == 3 and isinstance(message["utterance_id"], int)
    assert message["start_s"] == 1.235 and message["end_s"] == 2.5
    assert message["scores"] == {"neutral": 0.1, "surprise": 0.8, "joy": 0.1}
    assert message["modalities"] == {"text": True, "audio": True, "visual": False}
    assert message["text"] == "I can't believe it — wow!"


def test_wall_time_is_iso8601_with_offset() -> None:
    stamp = datetime.fromisoformat(make_result().to_dict()["wall_time"])
    assert stamp.utcoffset() is not None


def test_missing_modalities_are_reported_false() -> None:
    message = make_result(modalities={"text": True}).to_dict()
    assert message["modalities"] == {"text": True, "audio": False, "visual": False}


def test_json_is_one_line() -> None:
    assert "\n" not in make_result(text="line one\nline two").to_json()


def test_console_line() -> None:
    line = format_console_line(make_result())
    assert "\n" not in line
    assert "#3" in line and "surprise" in line and "0.80" in line and "T+A" in line
    assert "I can't believe it" in line and "850 ms" in line


def test_by_modality_and_affect_follow_the_scores() -> None:
    voice = {"neutral": 0.0, "surprise": 0.0, "anger": 1.0}
    message = make_result(
        emotion="anger", scores={"anger": 1.0}, by_modality={"text": {"neutral": 1.0}, "voice": voice}
    ).to_dict()
    assert message["by_modality"] == {"text": {"neutral": 1.0}, "voice": voice}
    assert message["valence"] < -0.5 and message["arousal"] > 0.5  # anger: unpleasant and aroused
    calm = make_result(scores={"neutral": 1.0}).to_dict()
    assert (calm["valence"], calm["arousal"]) == (0.0, 0.0) and calm["by_modality"] == {}


def test_speaker_revisions_are_listed_by_utterance_id() -> None:
    message = json.loads(make_result(speaker="S1", speaker_revisions={5: "S2", 2: "S3"}).to_json())
    assert message["speaker_revisions"] == [
        {"utterance_id": 2, "speaker": "S3"},
        {"utterance_id": 5, "speaker": "S2"},
    ]
