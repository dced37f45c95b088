"""The MQTT topics of the results, written once: `<prefix>/<stream>/<kind>` for a stream's
`utterance`, `interim`, `available`, `status`, `stats`, `state` and `speakers/<id>/state`, and
`<prefix>/<node>/available` for the process."""

from __future__ import annotations

from realtime.outputs.mqtt.address import MqttSettingError

DEFAULT_PREFIX = "m2fnet"
"""First topic level when none is configured (`mqtt.topic_prefix`, `--topic-prefix`)."""


def check_topic_levels(value: str, what: str) -> None:
    """Topic prefixes and stream ids may not be empty or hold MQTT wildcards."""
    if not value or any(c in value for c in "#+\0") or value.startswith("/") or "//" in value:
        raise MqttSettingError(f"bad MQTT {what} {value!r}: no wildcards (+ #), empty levels or NUL")


def stream_topic(prefix: str, stream_id: str, kind: str) -> str:
    """`<prefix>/<stream_id>/<kind>`; `stream_id` `+` is every stream (a subscription)."""
    return f"{prefix.rstrip('/')}/{stream_id}/{kind}"


def node_id(configured: str | None, stream_ids: list[str]) -> str:
    """The process in `<prefix>/<node>/available`: as configured, else the stream's id when it serves
    one stream, else `node`."""
    return configured or (stream_ids[0] if len(stream_ids) == 1 else "node")
