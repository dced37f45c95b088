"""Optional consumers of a run's own results, started inside `run_live.py`: the overlay page
(`--overlay`) and Home Assistant discovery (`--ha-discovery`).

They read the results back from the broker like any other subscriber, so they work the same with
the embedded broker and an external one, and the same code serves `python -m realtime.consumers.overlay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Self

from realtime.consumers.ha_discovery import HaAnnouncer, HaDiscoveryOptions
from realtime.consumers.overlay import Overlay, OverlayOptions, parse_listen_address
from realtime.outputs.mqtt.address import BrokerUnreachableError, parse_mqtt_url
from realtime.outputs.mqtt.publisher import MqttOptions
from realtime.outputs.mqtt.tls import tls_context
from realtime.outputs.mqtt.topics import check_topic_levels

logger = logging.getLogger(__name__)


class Consumers:
    """`async with` around the run: the page listens at once (a busy port fails before models load);
    `on_broker` starts following the results once the broker is known."""

    def __init__(
        self,
        overlay: OverlayOptions | None,
        ha_discovery: HaDiscoveryOptions | None,
        mqtt_url: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`mqtt_url`: the broker URL as given (with its password), used instead of the reported one;
        `tls`: its TLS context when it is `mqtts://` (the publisher's CA and client certificate)."""
        self.overlay = Overlay(overlay) if overlay is not None else None
        self._ha_options = ha_discovery
        self._mqtt_url = mqtt_url
        self._tls = tls
        self._tasks: list[asyncio.Task[None]] = []
        self._following = False

    @classmethod
    def from_flags(cls, overlay: str | None, ha_discovery: str | None, mqtt: MqttOptions) -> Self:
        """From `--overlay [HOST:]PORT` and `--ha-discovery PREFIX` (None: off). Checks the broker URL
        and its TLS files here, so a bad one fails before the models load."""
        tls = tls_context(parse_mqtt_url(mqtt.url).tls if mqtt.url else False, mqtt)
        overlay_options = None
        if overlay:
            host, port = parse_listen_address(overlay)
            overlay_options = OverlayOptions(host=host, port=port, topic_prefix=mqtt.topic_prefix)
        ha = None
        if ha_discovery:
            check_topic_levels(ha_discovery, "Home Assistant discovery prefix")
            ha = HaDiscoveryOptions(ha_discovery, mqtt.topic_prefix)
        return cls(overlay_options, ha, mqtt.url, tls)

    def wrap(self, on_broker: Callable[[str, list[str]], None]) -> Callable[[str, list[str]], None]:
        """`on_broker`, then this `on_broker`: the callback to give `serve`."""

        def both(url: str, stream_ids: list[str]) -> None:
            on_broker(url, stream_ids)
            self.on_broker(url, stream_ids)

        return both

    async def __aenter__(self) -> Self:
        if self.overlay is not None:
            await self.overlay.start()
        return self

    def on_broker(self, mqtt_url: str, stream_ids: list[str]) -> None:
        """Start the consumers of the streams' results on `mqtt_url` (called from the event loop)."""
        mqtt_url = self._mqtt_url or mqtt_url
        if self.overlay is not None and not self._following:
            self._following = True
            self._tasks.append(asyncio.create_task(self._follow(mqtt_url), name="overlay-connect"))
        for stream_id in stream_ids if self._ha_options is not None else []:
            announcer = HaAnnouncer(parse_mqtt_url(mqtt_url), self._ha_options, stream_id, self._tls)
            connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            connected.add_done_callback(_log_failure)
            self._tasks.append(
                asyncio.create_task(announcer.run(connected), name=f"ha-discovery-{stream_id}")
            )

    async def _follow(self, mqtt_url: str) -> None:
        assert self.overlay is not None
        try:
            await self.overlay.connect(mqtt_url, self._tls)
        except BrokerUnreachableError as exc:
            logger.error("overlay: %s", exc)

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.overlay is not None:
            await self.overlay.close()


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("Home Assistant discovery not published: %s", future.exception())
