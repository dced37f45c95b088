"""Reads a broker's result topics into an `OverlayState`, reconnecting when the link drops."""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid

import aiomqtt

from realtime.consumers.overlay.state import KINDS, OverlayState
from realtime.outputs.mqtt import topics
from realtime.outputs.mqtt.address import BrokerAddress, BrokerUnreachableError
from realtime.outputs.mqtt.connect import mqtt_client
from realtime.outputs.mqtt.tls import describe_connect_error

logger = logging.getLogger(__name__)

RECONNECT_INITIAL_S = 0.25
RECONNECT_MAX_S = 8.0


async def follow(
    address: BrokerAddress,
    topic_prefix: str,
    state: OverlayState,
    connected: asyncio.Future[None],
    tls_context: ssl.SSLContext | None = None,
) -> None:
    """Subscribe to `<prefix>/+/{utterance,interim,available}` until cancelled.

    `connected` gets the first connection's outcome (`BrokerUnreachableError` naming the URL); later
    losses are retried with backoff. Retained availability arrives on every (re)subscribe.
    `tls_context`: for an `mqtts://` address (realtime/outputs/mqtt/tls.py).
    """
    prefix = topic_prefix.rstrip("/")
    delay_s = RECONNECT_INITIAL_S
    identifier = f"m2fnet-overlay-{uuid.uuid4().hex[:12]}"
    while True:
        try:
            async with mqtt_client(address, tls_context, "overlay", identifier) as client:
                for kind in KINDS:
                    await client.subscribe(
                        topics.stream_topic(prefix, "+", kind), qos=0 if kind == "interim" else 1
                    )
                if not connected.done():
                    connected.set_result(None)
                else:
                    logger.warning("overlay: reconnected to MQTT broker %s", address.url)
                delay_s = RECONNECT_INITIAL_S
                async for message in client.messages:
                    levels = str(message.topic).split("/")
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    state.take(levels[-2], levels[-1], payload)
        except aiomqtt.MqttError as exc:
            if not connected.done():
                reason = describe_connect_error(exc, address.tls)
                connected.set_exception(
                    BrokerUnreachableError(f"cannot reach MQTT broker at {address.url}: {reason}")
                )
                return
            # One failed attempt is routine (a broker stopping at the end of a run); more are worth a warning.
            level = logging.INFO if delay_s == RECONNECT_INITIAL_S else logging.WARNING
            logger.log(level, "overlay: MQTT broker %s: %s; retrying in %.2f s", address.url, exc, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_MAX_S)
