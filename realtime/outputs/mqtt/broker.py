"""Embedded MQTT broker (amqtt, in-process) for when no `--mqtt` URL is given."""

from __future__ import annotations

import logging

from amqtt.broker import Broker
from amqtt.contexts import BrokerConfig, ListenerConfig

logger = logging.getLogger(__name__)


HOST = "127.0.0.1"
"""Loopback only: the embedded broker is a zero-setup default, not a network service."""


class EmbeddedBroker:
    """An amqtt broker running on the current event loop; anonymous clients, no `$SYS` topics."""

    def __init__(self) -> None:
        self._broker: Broker | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("embedded broker not started")
        return f"mqtt://{HOST}:{self.port}"

    async def start(self) -> str:
        """Start listening; return the broker's URL."""
        config = BrokerConfig(
            listeners={"default": ListenerConfig(bind=f"{HOST}:0")},
            plugins={"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        )
        self._broker = Broker(config)
        await self._broker.start()
        # amqtt does not expose the bound port; with port 0 it is only known from the listening socket.
        server = self._broker._servers["default"].instance
        self.port = server.sockets[0].getsockname()[1]
        logger.info("embedded MQTT broker listening on %s", self.url)
        return self.url

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
