"""Home Assistant MQTT discovery: payload fields as Home Assistant documents them, and the retained
configs on a real Mosquitto (announce, new speakers, re-announce on HA's birth message, removal)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import aiomqtt
import pytest
from mosquitto import Mosquitto, free_port

from realtime.consumers.ha_discovery import (
    HaAnnouncer,
    HaDiscoveryOptions,
    config_topic,
    remove,
    sensor_config,
)
from realtime.outputs.mqtt.address import parse_mqtt_url

REPO = Path(__file__).resolve().parents[1]

# The MQTT sensor's configuration variables (https://www.home-assistant.io/integrations/sensor.mqtt/)
# and the discovery payload's `origin` (https://www.home-assistant.io/integrations/mqtt/#discovery-payload).
SENSOR_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic", "default_entity_id",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture",
    "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic",
    "last_reset_value_template", "name", "object_id", "options", "payload_available", "payload_not_available",
    "platform", "qos", "state_class", "state_topic", "suggested_display_precision", "unique_id",
    "unit_of_measurement", "value_template", "origin",
}  # fmt: skip
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
    "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}


def test_stream_config_uses_documented_fields() -> None:
    options = HaDiscoveryOptions()
    config = sensor_config(options, "kitchen.cam")
    assert set(config) <= SENSOR_KEYS
    assert set(config["device"]) <= DEVICE_KEYS and set(config["origin"]) <= ORIGIN_KEYS
    assert config["state_topic"] == "m2fnet/kitchen.cam/utterance"
    assert config["availability_topic"] == "m2fnet/kitchen.cam/available"
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    assert config["value_template"] == "{{ value_json.emotion }}"
    assert isinstance(config["device"]["identifiers"], list)
    for key in ("name", "manufacturer", "model", "sw_version"):
        assert config["device"][key]
    # Node and object ids allow [a-zA-Z0-9_-] only; the dot of the stream id is replaced.
    assert config_topic(options, "kitchen.cam") == "homeassistant/sensor/m2fnet_kitchen_cam/emotion/config"
    assert config["unique_id"] == "m2fnet_kitchen_cam_emotion"


def test_speaker_configs_are_distinct_and_keep_their_state() -> None:
    options = HaDiscoveryOptions(discovery_prefix="ha")
    alice, bob = sensor_config(options, "call", "Alice"), sensor_config(options, "call", "Bob K")
    assert set(alice) <= SENSOR_KEYS
    assert alice["unique_id"] != bob["unique_id"] != sensor_config(options, "call")["unique_id"]
    assert config_topic(options, "call", "Bob K") == "ha/sensor/m2fnet_call/emotion_Bob_K/config"
    assert '"Alice"' in alice["value_template"] and "this.state" in alice["value_template"]
    assert alice["device"] == sensor_config(options, "call")["device"], "one device per stream"


async def _retained(broker: Mosquitto, pattern: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(pattern, qos=1)
        try:
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    if message.retain and message.payload:
                        found[str(message.topic)] = json.loads(message.payload)
        except TimeoutError:
            pass
    return found


async def _announce_then_remove(broker: Mosquitto, stream_id: str) -> None:
    options = HaDiscoveryOptions()
    pattern = f"homeassistant/sensor/m2fnet_{stream_id}/+/config"
    announcer = HaAnnouncer(parse_mqtt_url(broker.url), options, stream_id)
    connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(announcer.run(connected))
    await connected
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        for speaker in ("A", "B", "A", None):
            body = {"utterance_id": 1, "text": "hi", "emotion": "joy", "speaker": speaker}
            await client.publish(f"m2fnet/{stream_id}/utterance", json.dumps(body), qos=1)
    async with asyncio.timeout(10):
        while announcer.speakers != ["A", "B"]:
            await asyncio.sleep(0.05)
    configs = await _retained(broker, pattern)
    assert set(configs) == {config_topic(options, stream_id, s) for s in (None, "A", "B")}
    assert configs[config_topic(options, stream_id, "B")] == sensor_config(options, stream_id, "B")

    # Home Assistant restarted: its birth message asks every device to announce again.
    await remove(parse_mqtt_url(broker.url), options, stream_id)
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish("homeassistant/status", "online", qos=1)
    async with asyncio.timeout(10):
        while len(await _retained(broker, pattern)) != 3:
            pass
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    removed = await remove(parse_mqtt_url(broker.url), options, stream_id)
    assert len(removed) == 3
    assert await _retained(broker, pattern) == {}


def test_announce_speakers_rediscovery_and_removal(mosquitto: Mosquitto) -> None:
    asyncio.run(_announce_then_remove(mosquitto, f"ha-{uuid.uuid4().hex[:8]}"))


def test_cli_publishes_removes_and_reports_user_errors(mosquitto: Mosquitto) -> None:
    stream_id = f"ha-{uuid.uuid4().hex[:8]}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "realtime.consumers.ha_discovery", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60, check=False)

    published = cli("--mqtt", mosquitto.url, "--stream-id", stream_id)
    assert published.returncode == 0 and "emotion/config" in published.stdout
    removed = cli("--mqtt", mosquitto.url, "--stream-id", stream_id, "--remove")
    assert removed.returncode == 0 and removed.stdout.startswith("removed 1 config")
    for args, named in (
        (("--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--stream-id", "x"), "cannot reach MQTT broker"),
        (("--mqtt", mosquitto.url, "--stream-id", "a/#"), "a/#"),
        (("--mqtt", mosquitto.url, "--stream-id", "x", "--discovery-prefix", "+"), "discovery prefix"),
    ):
        result = cli(*args)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and named in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("speaker", ["O'Neil", 'say "hi"'])
def test_speaker_names_stay_one_template_literal(speaker: str) -> None:
    template = sensor_config(HaDiscoveryOptions(), "s", speaker)["value_template"]
    assert f"value_json.speaker == {json.dumps(speaker)} %}}" in template
