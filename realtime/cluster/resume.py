"""Where a stream got to, kept on the broker: each result of a cluster stream also goes to the retained
`<prefix>/<stream>/resume` ({next_utterance_id, published_until_s}), so the host it moves to continues
from the last result the broker took, even one published after the supervisor's last check."""

from __future__ import annotations

import asyncio
import contextlib
import json

from realtime.messages import EmotionResult
from realtime.outputs.events import Channel, Segmenter
from realtime.outputs.mqtt.address import parse_mqtt_url
from realtime.outputs.mqtt.connect import mqtt_client
from realtime.outputs.mqtt.tls import tls_context
from realtime.outputs.mqtt.topics import stream_topic
from realtime.runtime.config import LiveConfig

RESUME_READ_TIMEOUT_S = 0.5
"""A retained message comes right after the subscription; none within this means there is none."""


class ResumeTap:
    """A `StreamTap` (realtime.outputs.events) that records every result's position on `resume`.
    `fresh`: a stream starting anew clears what an earlier run of the same id left there."""

    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh

    def tee(self, channel: Channel) -> Channel:
        if self.fresh:
            channel.publish_retained("resume", "")
        return _ResumeChannel(channel)

    def watch(self, segmenter: Segmenter) -> Segmenter:
        return segmenter


class _ResumeChannel:
    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def emit(self, result: EmotionResult) -> None:
        self._channel.emit(result)
        position = {"next_utterance_id": result.utterance_id + 1, "published_until_s": round(result.end_s, 3)}
        self._channel.publish_retained("resume", json.dumps(position))

    def __getattr__(self, name: str):
        return getattr(self._channel, name)


async def read_resume(config: LiveConfig, stream_id: str) -> tuple[int, float] | None:
    """The retained position of `stream_id`, or None when the broker has none."""
    address = parse_mqtt_url(config.mqtt.url or "")
    topic = stream_topic(config.mqtt.topic_prefix, stream_id, "resume")
    async with mqtt_client(address, tls_context(address.tls, config.mqtt), "resume") as client:
        await client.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RESUME_READ_TIMEOUT_S):
                async for message in client.messages:
                    raw = message.payload
                    payload = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw or "")
                    if not payload:
                        return None
                    position = json.loads(payload)
                    return int(position["next_utterance_id"]), float(position["published_until_s"])
    return None
