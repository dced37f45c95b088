"""ROS 2 output: hri_msgs-shaped messages from real results, the `mqtt_client` parameter file against the
topics the publisher really produces, the node's MQTT side on a real Mosquitto, and its missing-ROS exit."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import re
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import aiomqtt
import pytest
import yaml

from realtime.affect import valence_arousal
from realtime.consumers.ros2.__main__ import bridge, subscriptions
from realtime.consumers.ros2.messages import (
    live_speech,
    result_expression,
    ros_name,
    speaker_state_expression,
    translate,
    voice_id,
)
from realtime.messages import EmotionResult
from realtime.outputs.mqtt.address import BrokerAddress
from realtime.outputs.mqtt.publisher import MqttPublisher
from realtime.outputs.speaker_state import SpeakerStateSink

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "configs" / "ros2" / "mqtt_client.params.yaml"
# A ROS 2 name token: no leading digit, no repeated or trailing underscore.
ROS_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$")
ROS_TOPIC = re.compile(r"^(/[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*)+$")
RCLPY_REASON = "rclpy is not installable from PyPI or Debian here"


def result(
    speaker: str | None = "S1",
    scores: dict[str, float] | None = None,
    stream_id: str = "demo",
    utterance_id: int = 1,
) -> EmotionResult:
    scores = scores or {"neutral": 0.1, "joy": 0.6, "anger": 0.3}
    return EmotionResult(
        stream_id=stream_id,
        utterance_id=utterance_id,
        start_s=1.0,
        end_s=2.5,
        text="That is wonderful news.",
        emotion=max(scores, key=scores.__getitem__),
        scores=scores,
        modalities={"text": True},
        model="m2fnet-meld-causal",
        speaker=speaker,
        wall_time="2026-12-01T10:20:30.456+00:00",
    )


def test_result_becomes_an_expression_on_its_voice():
    message = result(scores={"neutral": 0.1, "joy": 0.6, "anger": 0.3}).to_dict()
    topic, expression = result_expression(message)
    assert topic == "/humans/voices/demo_S1/expression"
    assert expression["expression"] == "happy"
    assert (expression["valence"], expression["arousal"]) == (message["valence"], message["arousal"])
    assert expression["valence"] == pytest.approx(0.6 * 0.8 + 0.3 * -0.6)
    assert expression["confidence"] == pytest.approx(0.6)
    assert expression["header"]["frame_id"] == "voice_demo_S1"
    stamp = expression["header"]["stamp"]
    assert stamp["sec"] == int(datetime.fromisoformat(message["wall_time"]).timestamp())
    assert stamp["nanosec"] == 456_000_000


@pytest.mark.parametrize(
    ("label", "hri"),
    [
        ("neutral", "neutral"),
        ("joy", "happy"),
        ("surprise", "surprised"),
        ("anger", "angry"),
        ("sadness", "sad"),
        ("disgust", "disgusted"),
        ("fear", "scared"),
        ("bored", "bored"),
    ],
)
def test_every_label_has_its_hri_name(label, hri):
    _, expression = result_expression(
        result(scores={label: 0.9, "neutral" if label != "neutral" else "joy": 0.1}).to_dict()
    )
    assert expression["expression"] == hri


def test_a_message_without_valence_gets_it_from_its_scores():
    message = result(scores={"sadness": 0.7, "fear": 0.3}).to_dict()
    del message["valence"], message["arousal"]
    _, expression = result_expression(message)
    assert (expression["valence"], expression["arousal"]) == valence_arousal({"sadness": 0.7, "fear": 0.3})
    assert expression["valence"] < 0


def test_speaker_state_becomes_the_smoothed_expression():
    class Channel:
        def publish_retained(self, subtopic: str, payload: str) -> None:
            pass

    sink = SpeakerStateSink(Channel(), "demo", ema_factor=0.5)
    sink.emit(result(scores={"joy": 0.9, "anger": 0.1}, utterance_id=1))
    sink.emit(result(scores={"joy": 0.1, "anger": 0.9}, utterance_id=2))
    state = sink.speaker_message("S1")
    topic, expression = speaker_state_expression(state)
    assert topic == "/humans/voices/demo_S1/expression"
    assert expression["expression"] == {"joy": "happy", "anger": "angry"}[state["emotion"]]
    assert (expression["valence"], expression["arousal"]) == valence_arousal(state["scores"])
    assert expression["confidence"] == pytest.approx(state["scores"][state["emotion"]])


def test_final_and_interim_text_become_live_speech():
    message = result().to_dict()
    topic, final = live_speech(message, final=True)
    assert topic == "/humans/voices/demo_S1/speech"
    assert final["final"] == "That is wonderful news." and final["incremental"] == ""
    _, interim = live_speech(message, final=False)
    assert interim["incremental"] == "That is wonderful news." and interim["final"] == ""
    assert math.isnan(final["confidence"])


@pytest.mark.parametrize(
    ("stream", "speaker", "expected"),
    [
        ("demo", "S1", "demo_S1"),
        ("front door", "José", "front_door_Jose"),
        ("2nd-floor", None, "v2nd_floor"),
        ("a__b_", "__", "a_b"),
        ("", "😀", "v"),
    ],
)
def test_voice_ids_are_ros_name_safe(stream, speaker, expected):
    voice = voice_id(stream, speaker)
    assert voice == expected
    assert ROS_TOKEN.match(voice)
    assert ROS_TOPIC.match(f"/humans/voices/{voice}/expression")
    assert ros_name(voice) == voice


def test_translate_routes_each_topic():
    message = result().to_dict()
    kinds = lambda out: [(topic.rsplit("/", 1)[-1], kind) for topic, kind, _ in out]
    assert kinds(translate("m2fnet/demo/utterance", message)) == [
        ("speech", "LiveSpeech"),
        ("expression", "Expression"),
    ]
    assert kinds(translate("m2fnet/demo/utterance", message, smoothed=True)) == [("speech", "LiveSpeech")]
    assert kinds(translate("m2fnet/demo/interim", message)) == [("speech", "LiveSpeech")]
    state = {
        "stream_id": "demo",
        "speaker": "S1",
        "emotion": "joy",
        "scores": {"joy": 1.0},
        "wall_time": message["wall_time"],
    }
    assert kinds(translate("m2fnet/demo/speakers/S1/state", state, smoothed=True)) == [
        ("expression", "Expression")
    ]
    assert translate("m2fnet/demo/speakers/S1/state", state) == []
    assert translate("m2fnet/demo/state", {"speakers": {}}, smoothed=True) == []


def published_topics(prefix: str, stream_id: str, speakers: list[str]) -> set[str]:
    """Every topic the real publisher queues for one stream: interim, result, speaker and summary states."""
    publisher = MqttPublisher(BrokerAddress("localhost", 1883))
    publisher.options.topic_prefix = prefix
    channel = publisher.open_stream(stream_id)
    channel.emit_interim(result(speakers[0], stream_id=stream_id))
    sink = SpeakerStateSink(channel, stream_id)
    for number, speaker in enumerate(speakers, start=1):
        item = result(speaker, stream_id=stream_id, utterance_id=number)
        channel.emit(item)
        sink.emit(item)
    topics = set()
    while (message := publisher.outbox.peek()) is not None:
        topics.add(message.topic)
        publisher.outbox.pop()
    return topics


def test_mqtt_client_params_map_real_topics_to_ros_topics():
    params = yaml.safe_load(PARAMS.read_text())
    (node,) = params.values()
    mqtt2ros = node["ros__parameters"]["bridge"]["mqtt2ros"]
    topics = mqtt2ros["mqtt_topics"]
    stream_id = topics[0].split("/")[1]
    speakers = sorted({t.split("/")[3] for t in topics if "/speakers/" in t})
    produced = published_topics(topics[0].split("/")[0], stream_id, speakers)
    assert {t.rsplit("/", 1)[-1] for t in topics} >= {"utterance", "interim", "state"}
    for topic in topics:
        assert topic in produced, f"{topic} is not a topic the publisher produces ({sorted(produced)})"
        entry = mqtt2ros[topic]
        assert entry["primitive"] is True
        assert ROS_TOPIC.match(entry["ros_topic"]), entry["ros_topic"]
        # Retained MQTT topics: late ROS subscribers get the last message too (`latched` is ignored on ROS 2).
        qos = entry["advanced"]["ros"].get("qos", {})
        assert (qos.get("durability") == "transient_local") is topic.endswith("/state"), topic
        assert "latched" not in entry["advanced"]["ros"]
    assert len({mqtt2ros[t]["ros_topic"] for t in topics}) == len(topics)
    assert set(mqtt2ros) == {"mqtt_topics", *topics}


def test_the_node_subscribes_to_what_the_publisher_produces():
    produced = published_topics("m2fnet", "kitchen", ["S1"])
    for smoothed in (False, True):
        filters = subscriptions("m2fnet/", smoothed)
        heard = {t for t in produced if any(aiomqtt.Topic(t).matches(f) for f in filters)}
        wanted = {"m2fnet/kitchen/utterance", "m2fnet/kitchen/interim"}
        assert heard == (wanted | {"m2fnet/kitchen/speakers/S1/state"} if smoothed else wanted)


def test_bridge_turns_broker_messages_into_ros_messages(mosquitto):
    stream_id = f"ros-{uuid.uuid4().hex[:6]}"
    got: list[tuple[str, str, dict]] = []

    async def scenario() -> None:
        task = asyncio.create_task(
            bridge(mosquitto.url, "m2fnet", False, lambda *m: got.append(m), ca_file=None)
        )
        await asyncio.sleep(0.5)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish(f"m2fnet/{stream_id}/interim", result(stream_id=stream_id).to_json(), qos=1)
            await client.publish(
                f"m2fnet/{stream_id}/utterance", result(stream_id=stream_id).to_json(), qos=1
            )
            await client.publish(f"m2fnet/{stream_id}/status", "online", qos=1)
        for _ in range(50):
            if len(got) >= 3:
                break
            await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(scenario())
    voice = voice_id(stream_id, "S1")
    assert [(topic, kind) for topic, kind, _ in got] == [
        (f"/humans/voices/{voice}/speech", "LiveSpeech"),
        (f"/humans/voices/{voice}/speech", "LiveSpeech"),
        (f"/humans/voices/{voice}/expression", "Expression"),
    ]
    assert got[0][2]["incremental"] and got[1][2]["final"] and got[2][2]["expression"] == "happy"


@pytest.mark.skipif(importlib.util.find_spec("rclpy") is not None, reason="rclpy is installed here")
def test_without_rclpy_the_node_says_so_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "realtime.consumers.ros2", "--broker", "mqtt://127.0.0.1:1"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "rclpy is not installed" in lines[0] and "ROS 2" in lines[0]
    assert "Traceback" not in done.stderr


def test_rclpy_publishing():
    """The rclpy half (`ros_publisher`) needs ROS 2; documented in docs/ros2.md."""
    if importlib.util.find_spec("rclpy") is None:
        pytest.skip(RCLPY_REASON)
    import rclpy

    from realtime.consumers.ros2.__main__ import ros_publisher

    rclpy.init()
    node = rclpy.create_node("m2fnet_voices_test")
    try:
        publish = ros_publisher(node)
        topic, message = result_expression(result().to_dict())
        publish(topic, "Expression", message)
        assert topic in {name for name, _ in node.get_topic_names_and_types()}
    finally:
        node.destroy_node()
        rclpy.shutdown()
