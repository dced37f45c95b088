"""Where the broker is: `mqtt[s]://[user:pass@]host[:port]` parsed into a `BrokerAddress`, and the two
errors every MQTT client of the project raises for a bad setting or an unreachable broker."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class MqttSettingError(ValueError):
    """An MQTT URL, topic prefix or stream id that cannot be used; the message names it."""


class BrokerUnreachableError(ConnectionError):
    """The broker did not accept the first connection; the message names the URL."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    """`mqtts://`: the connection is TLS (see realtime/outputs/mqtt/tls.py)."""

    @property
    def url(self) -> str:
        """The URL without the password, for messages and logs."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse `mqtt://[user:pass@]host[:port]` (port defaults to 1883) or `mqtts://...` (TLS, 8883)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise MqttSettingError(f"bad MQTT URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MqttSettingError(f"bad MQTT URL {url!r}: expected mqtt[s]://[user:pass@]host:port")
    if not parts.hostname:
        raise MqttSettingError(f"bad MQTT URL {url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MqttSettingError(f"bad MQTT URL {url!r}: unexpected path or query")
    return BrokerAddress(
        host=parts.hostname,
        port=port if port is not None else (8883 if parts.scheme == "mqtts" else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "mqtts",
    )
