"""One way to open an MQTT client on a broker address, for every part that talks to the broker."""

from __future__ import annotations

import ssl
import uuid
from typing import Any

import aiomqtt

from realtime.outputs.mqtt.address import BrokerAddress

CONNECT_TIMEOUT_S = 5.0


def mqtt_client(
    address: BrokerAddress,
    tls: ssl.SSLContext | None,
    role: str,
    identifier: str | None = None,
    **options: Any,
) -> aiomqtt.Client:
    """An aiomqtt client for `address` with its credentials and TLS; the client id is
    `m2fnet-<role>-<random>` unless `identifier` is given. `options` go to aiomqtt (will, keepalive, ...)."""
    options.setdefault("timeout", CONNECT_TIMEOUT_S)
    return aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=identifier or f"m2fnet-{role}-{uuid.uuid4().hex[:12]}",
        tls_context=tls,
        **options,
    )
