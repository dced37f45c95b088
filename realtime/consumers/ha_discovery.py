"""Home Assistant MQTT discovery: a sensor per stream (and per speaker once one appears) whose state is
the current emotion.

Config topics, for discovery prefix `H`, topic prefix `P` and stream `S`:
`H/sensor/P_S/emotion/config` and `H/sensor/P_S/emotion_<speaker>/config`, retained. The sensors read
`P/S/utterance` and go unavailable with `P/S/available`. Configs are published again when Home
Assistant announces itself on `H/status` (its birth message), as its documentation asks. An empty
retained payload removes a sensor: `python -m realtime.consumers.ha_discovery --mqtt URL --stream-id S --remove`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import ssl
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import aiomqtt

from realtime.messages import OFFLINE, ONLINE
from realtime.outputs.mqtt import topics
from realtime.outputs.mqtt.address import (
    BrokerAddress,
    BrokerUnreachableError,
    MqttSettingError,
    parse_mqtt_url,
)
from realtime.outputs.mqtt.connect import mqtt_client
from realtime.outputs.mqtt.publisher import MqttOptions
from realtime.outputs.mqtt.tls import TlsSettingError, describe_connect_error, tls_context
from realtime.outputs.mqtt.topics import check_topic_levels

logger = logging.getLogger(__name__)

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
"""Home Assistant allows only these in the node id and object id of a discovery topic."""
RECONNECT_S = 2.0


@dataclass(slots=True)
class HaDiscoveryOptions:
    """Where the discovery configs go and which results they describe."""

    discovery_prefix: str = "homeassistant"
    """Home Assistant's discovery prefix (its MQTT integration's default is `homeassistant`)."""
    topic_prefix: str = topics.DEFAULT_PREFIX
    """First topic level of the results (as `MqttOptions.topic_prefix`)."""
    max_speakers: int = 32
    """Speaker sensors announced per stream; later new speakers are not announced (logged)."""


def _safe(value: str) -> str:
    return _ID_UNSAFE.sub("_", value).strip("_") or "x"


def node_id(options: HaDiscoveryOptions, stream_id: str) -> str:
    return _safe(f"{options.topic_prefix}_{stream_id}")


def config_topic(options: HaDiscoveryOptions, stream_id: str, speaker: str | None = None) -> str:
    object_id = "emotion" if speaker is None else f"emotion_{_safe(speaker)}"
    return f"{options.discovery_prefix}/sensor/{node_id(options, stream_id)}/{object_id}/config"


def sensor_config(options: HaDiscoveryOptions, stream_id: str, speaker: str | None = None) -> dict[str, Any]:
    """The discovery payload of the stream's sensor, or of one speaker's (state kept between their turns)."""
    node = node_id(options, stream_id)
    results = topics.stream_topic(options.topic_prefix, stream_id, "utterance")
    version = _version()
    if speaker is None:
        name, unique_id, state = "Emotion", f"{node}_emotion", "{{ value_json.emotion }}"
    else:
        # The speaker's sensor keeps its state while others speak: `this.state` is the entity's own.
        said = json.dumps(speaker)
        name, unique_id = f"Emotion {speaker}", f"{node}_emotion_{_safe(speaker)}"
        state = f"{{% if value_json.speaker == {said} %}}{{{{ value_json.emotion }}}}{{% else %}}{{{{ this.state }}}}{{% endif %}}"
    return {
        "name": name,
        "unique_id": unique_id,
        "state_topic": results,
        "value_template": state,
        "json_attributes_topic": results,
        "json_attributes_template": (
            "{{ {'text': value_json.text, 'speaker': value_json.speaker, "
            "'confidence': value_json.scores[value_json.emotion]} | tojson }}"
        ),
        "availability_topic": topics.stream_topic(options.topic_prefix, stream_id, "available"),
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "icon": "mdi:emoticon-outline",
        "device": {
            "identifiers": [node],
            "name": f"m2fnet-live {stream_id}",
            "manufacturer": "m2fnet-live",
            "model": "M2FNet live emotion recognizer",
            "sw_version": version,
        },
        "origin": {"name": "m2fnet-live", "sw_version": version},
    }


def _version() -> str:
    try:
        return metadata.version("m2fnet-live")
    except metadata.PackageNotFoundError:
        return "unknown"


def _client(address: BrokerAddress, tls: ssl.SSLContext | None) -> aiomqtt.Client:
    return mqtt_client(address, tls, "ha")


def _unreachable(address: BrokerAddress, exc: aiomqtt.MqttError) -> BrokerUnreachableError:
    reason = describe_connect_error(exc, address.tls)
    return BrokerUnreachableError(f"cannot reach MQTT broker at {address.url}: {reason}")


class HaAnnouncer:
    """Keeps one stream's discovery configs on the broker while the run lasts."""

    def __init__(
        self,
        address: BrokerAddress,
        options: HaDiscoveryOptions,
        stream_id: str,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """`tls_context`: for an `mqtts://` address (realtime/outputs/mqtt/tls.py)."""
        check_topic_levels(options.discovery_prefix, "Home Assistant discovery prefix")
        self.address = address
        self.tls_context = tls_context
        self.options = options
        self.stream_id = stream_id
        self.speakers: list[str] = []

    async def run(self, connected: asyncio.Future[None]) -> None:
        """Announce, then follow results for new speakers and `H/status` for restarts, until cancelled."""
        results = topics.stream_topic(self.options.topic_prefix, self.stream_id, "utterance")
        status = f"{self.options.discovery_prefix}/status"
        failures = 0
        while True:
            try:
                async with _client(self.address, self.tls_context) as client:
                    await client.subscribe(results, qos=1)
                    await client.subscribe(status, qos=1)
                    await self._announce_all(client)
                    if not connected.done():
                        connected.set_result(None)
                    failures = 0
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        if message.topic.matches(status):
                            if payload == ONLINE.encode():
                                await self._announce_all(client)
                        else:
                            await self._maybe_new_speaker(client, payload)
            except aiomqtt.MqttError as exc:
                if not connected.done():
                    connected.set_exception(_unreachable(self.address, exc))
                    return
                failures += 1
                # One failed attempt is routine (a broker stopping at the end of a run); more are worth a warning.
                level = logging.INFO if failures == 1 else logging.WARNING
                logger.log(level, "HA discovery: MQTT broker %s: %s; retrying", self.address.url, exc)
                await asyncio.sleep(RECONNECT_S)

    async def _announce_all(self, client: aiomqtt.Client) -> None:
        for speaker in (None, *self.speakers):
            await self.publish_config(client, speaker)

    async def publish_config(self, client: aiomqtt.Client, speaker: str | None) -> None:
        payload = json.dumps(sensor_config(self.options, self.stream_id, speaker))
        await client.publish(config_topic(self.options, self.stream_id, speaker), payload, qos=1, retain=True)

    async def _maybe_new_speaker(self, client: aiomqtt.Client, payload: bytes) -> None:
        try:
            speaker = json.loads(payload).get("speaker")
        except (ValueError, AttributeError):
            return
        if not isinstance(speaker, str) or not speaker or speaker in self.speakers:
            return
        if len(self.speakers) >= self.options.max_speakers:
            logger.warning(
                "HA discovery: more than %d speakers; %r not announced", len(self.speakers), speaker
            )
            return
        self.speakers.append(speaker)
        await self.publish_config(client, speaker)


async def remove(
    address: BrokerAddress,
    options: HaDiscoveryOptions,
    stream_id: str,
    wait_s: float = 1.0,
    tls: ssl.SSLContext | None = None,
) -> list[str]:
    """Clear every retained discovery config of the stream (its speakers' too); return their topics."""
    pattern = f"{options.discovery_prefix}/sensor/{node_id(options, stream_id)}/+/config"
    found: list[str] = []
    try:
        async with _client(address, tls) as client:
            await client.subscribe(pattern, qos=1)
            try:
                async with asyncio.timeout(wait_s):
                    async for message in client.messages:
                        if message.retain and message.payload:
                            found.append(str(message.topic))
            except TimeoutError:
                pass
            for topic in found:
                await client.publish(topic, b"", qos=1, retain=True)
    except aiomqtt.MqttError as exc:
        raise _unreachable(address, exc) from None
    return found


async def announce_once(
    address: BrokerAddress, options: HaDiscoveryOptions, stream_id: str, tls: ssl.SSLContext | None = None
) -> str:
    """Publish the stream's config (no speakers) and return its topic."""
    announcer = HaAnnouncer(address, options, stream_id, tls)
    try:
        async with _client(address, tls) as client:
            await announcer.publish_config(client, None)
    except aiomqtt.MqttError as exc:
        raise _unreachable(address, exc) from None
    return config_topic(options, stream_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m realtime.consumers.ha_discovery", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--mqtt", required=True, help="mqtt[s]://[user:pass@]host:port")
    parser.add_argument("--mqtt-ca", metavar="FILE", help="CA of an mqtts:// broker (default: system store)")
    parser.add_argument("--stream-id", required=True)
    parser.add_argument("--discovery-prefix", default="homeassistant")
    parser.add_argument("--topic-prefix", default=topics.DEFAULT_PREFIX)
    parser.add_argument(
        "--remove", action="store_true", help="clear the stream's configs instead of publishing"
    )
    args = parser.parse_args(argv)
    options = HaDiscoveryOptions(discovery_prefix=args.discovery_prefix, topic_prefix=args.topic_prefix)
    try:
        check_topic_levels(options.discovery_prefix, "Home Assistant discovery prefix")
        check_topic_levels(args.stream_id, "stream id")
        address = parse_mqtt_url(args.mqtt)
        tls = tls_context(address.tls, MqttOptions(ca_file=args.mqtt_ca))
        if args.remove:
            removed = asyncio.run(remove(address, options, args.stream_id, tls=tls))
            print(f"removed {len(removed)} config(s): {' '.join(removed)}")
        else:
            print(f"published {asyncio.run(announce_once(address, options, args.stream_id, tls))}")
    except (MqttSettingError, TlsSettingError, BrokerUnreachableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
