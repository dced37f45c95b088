"""The published MQTT messages as ROS4HRI (REP 155) messages, as plain dicts: no ROS needed to build or test them.

REP 155 gives `hri_msgs/Expression` to faces only; we publish it per voice, on
`/humans/voices/<voice>/expression`, beside the standard `hri_msgs/LiveSpeech` on
`/humans/voices/<voice>/speech` (docs/ros2.md). A voice is one speaker of one stream: `S1` of stream
`kitchen` is voice `kitchen_S1`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from realtime.affect import valence_arousal

EXPRESSION_TOPIC = "/humans/voices/{voice}/expression"
SPEECH_TOPIC = "/humans/voices/{voice}/speech"

# hri_msgs/Expression's constants for the recognizer's seven labels; other labels pass through.
EXPRESSIONS: dict[str, str] = {
    "neutral": "neutral",
    "joy": "happy",
    "surprise": "surprised",
    "anger": "angry",
    "sadness": "sad",
    "disgust": "disgusted",
    "fear": "scared",
}

UNKNOWN_CONFIDENCE = math.nan
"""`LiveSpeech.confidence`: Whisper's transcript carries no confidence in the published message."""


def ros_name(text: str) -> str:
    """`text` as one ROS 2 name token: ASCII letters, digits and single underscores, not starting with a
    digit or ending with `_` (`José` -> `Jose`, `front door` -> `front_door`, `2nd` -> `v2nd`)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    token = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", ascii_text)).strip("_")
    if not token or token[0].isdigit():
        token = f"v{token}"
    return token


def voice_id(stream_id: str, speaker: str | None) -> str:
    """The ROS voice id of a speaker of a stream; the stream alone when attribution is off (`speaker` None)."""
    return ros_name(stream_id if speaker is None else f"{stream_id}_{speaker}")


def header(wall_time: str, voice: str) -> dict[str, Any]:
    """`std_msgs/Header` from the message's ISO 8601 `wall_time`, in the voice's frame (`voice_<id>`, REP 155)."""
    moment = datetime.fromisoformat(wall_time)
    seconds = math.floor(moment.timestamp())
    nanoseconds = moment.microsecond * 1000
    return {"stamp": {"sec": seconds, "nanosec": nanoseconds}, "frame_id": f"voice_{voice}"}


def expression(label: str, scores: Mapping[str, float], wall_time: str, voice: str) -> dict[str, Any]:
    """`hri_msgs/Expression`: the label's hri name, valence and arousal of `scores`, the label's probability."""
    valence, arousal = valence_arousal(scores)
    return {
        "header": header(wall_time, voice),
        "expression": EXPRESSIONS.get(label, label),
        "valence": valence,
        "arousal": arousal,
        "confidence": float(scores.get(label, 0.0)),
    }


def result_expression(result: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(ROS topic, `hri_msgs/Expression`) of a result on `<prefix>/<stream>/utterance` (or `/interim`)."""
    voice = voice_id(result["stream_id"], result.get("speaker"))
    message = expression(result["emotion"], result["scores"], result["wall_time"], voice)
    # Schema 2 carries the pair the publisher computed; schema 1 messages get it computed here.
    if "valence" in result and "arousal" in result:
        message["valence"], message["arousal"] = float(result["valence"]), float(result["arousal"])
    return EXPRESSION_TOPIC.format(voice=voice), message


def speaker_state_expression(state: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(ROS topic, `hri_msgs/Expression`) of `<prefix>/<stream>/speakers/<speaker>/state`: the speaker's
    smoothed emotion (realtime/outputs/speaker_state.py), valence and arousal of the smoothed scores."""
    voice = voice_id(state["stream_id"], state["speaker"])
    return EXPRESSION_TOPIC.format(voice=voice), expression(
        state["emotion"], state["scores"], state["wall_time"], voice
    )


def live_speech(result: Mapping[str, Any], final: bool) -> tuple[str, dict[str, Any]]:
    """(ROS topic, `hri_msgs/LiveSpeech`) of a result: its text as `final` (from `/utterance`) or as
    `incremental` (from `/interim`, the transcript so far)."""
    voice = voice_id(result["stream_id"], result.get("speaker"))
    text = result["text"]
    return SPEECH_TOPIC.format(voice=voice), {
        "header": header(result["wall_time"], voice),
        "incremental": "" if final else text,
        "final": text if final else "",
        "confidence": UNKNOWN_CONFIDENCE,
    }


def translate(topic: str, payload: Mapping[str, Any], smoothed: bool = False) -> list[tuple[str, str, dict]]:
    """What one MQTT message becomes: (ROS topic, `Expression` | `LiveSpeech`, message) for each ROS message.

    `/utterance` gives the final speech and, unless `smoothed`, the utterance's expression; `/interim`
    the incremental speech; `speakers/<speaker>/state` the smoothed expression when `smoothed`. Other
    topics (availability, status, stats, the conversation summary) give nothing.
    """
    kind = topic.rsplit("/", 1)[-1]
    if kind == "utterance":
        speech_topic, speech = live_speech(payload, final=True)
        out = [(speech_topic, "LiveSpeech", speech)]
        if not smoothed:
            ros_topic, message = result_expression(payload)
            out.append((ros_topic, "Expression", message))
        return out
    if kind == "interim":
        ros_topic, message = live_speech(payload, final=False)
        return [(ros_topic, "LiveSpeech", message)]
    if kind == "state" and "/speakers/" in topic and smoothed and payload:
        ros_topic, message = speaker_state_expression(payload)
        return [(ros_topic, "Expression", message)]
    return []
