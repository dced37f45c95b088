"""`python -m realtime.consumers.ros2 --broker mqtt://host:port`: the results as ROS4HRI voice topics (docs/ros2.md).

Subscribes to the recognizer's MQTT results and publishes, per voice, `hri_msgs/LiveSpeech` on
`/humans/voices/<voice>/speech` and `hri_msgs/Expression` on `/humans/voices/<voice>/expression`.
Needs a ROS 2 installation (rclpy and hri_msgs come from it, not from PyPI); without one it exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from realtime.consumers.ros2.messages import translate
from realtime.outputs.mqtt import topics

logger = logging.getLogger(__name__)

NO_ROS = (
    "error: {module} is not installed: it comes with ROS 2, not PyPI; run this node in a shell where a "
    "ROS 2 installation is sourced (e.g. `source /opt/ros/jazzy/setup.bash`) with ros-<distro>-hri-msgs"
)

Publish = Callable[[str, str, dict[str, Any]], None]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m realtime.consumers.ros2", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--broker", required=True, help="mqtt[s]://[user:pass@]host:port of the recognizer's broker"
    )
    parser.add_argument(
        "--topic-prefix", default=topics.DEFAULT_PREFIX, help="MQTT topic prefix (default: %(default)s)"
    )
    parser.add_argument("--mqtt-ca", metavar="FILE", help="CA of an mqtts:// broker (default: system store)")
    parser.add_argument(
        "--smoothed",
        action="store_true",
        help="expression = each speaker's smoothed emotion (speaker state) instead of each utterance's",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log progress (-v) or everything (-vv)"
    )
    return parser.parse_args(argv)


def subscriptions(topic_prefix: str, smoothed: bool) -> list[str]:
    """The MQTT topic filters the node needs."""
    kinds = ["utterance", "interim"] + (["speakers/+/state"] if smoothed else [])
    return [topics.stream_topic(topic_prefix, "+", kind) for kind in kinds]


async def bridge(
    broker_url: str, topic_prefix: str, smoothed: bool, publish: Publish, ca_file: str | None
) -> None:
    """Translate every message of the broker into `publish(ros_topic, kind, message)` until cancelled."""

    from realtime.outputs.mqtt.address import parse_mqtt_url
    from realtime.outputs.mqtt.connect import mqtt_client
    from realtime.outputs.mqtt.publisher import MqttOptions
    from realtime.outputs.mqtt.tls import tls_context

    address = parse_mqtt_url(broker_url)
    async with mqtt_client(address, tls_context(address.tls, MqttOptions(ca_file=ca_file)), "ros2") as client:
        for topic in subscriptions(topic_prefix, smoothed):
            await client.subscribe(topic, qos=1)
        logger.info("following %s", address.url)
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if not payload:
                continue  # a cleared retained state: a speaker retired by a merge
            try:
                data = json.loads(payload)
            except ValueError:
                logger.warning("not JSON on %s; skipped", message.topic)
                continue
            for ros_topic, kind, ros_message in translate(str(message.topic), data, smoothed):
                publish(ros_topic, kind, ros_message)


def ros_publisher(node: Any) -> Publish:
    """`publish(ros_topic, kind, message)` on `node`, one rclpy publisher per topic, made on first use."""
    from builtin_interfaces.msg import Time
    from hri_msgs.msg import Expression, LiveSpeech

    types = {"Expression": Expression, "LiveSpeech": LiveSpeech}
    publishers: dict[str, Any] = {}

    def publish(ros_topic: str, kind: str, message: dict[str, Any]) -> None:
        if ros_topic not in publishers:
            publishers[ros_topic] = node.create_publisher(types[kind], ros_topic, 10)
        ros_message = types[kind]()
        stamp = message["header"]["stamp"]
        ros_message.header.stamp = Time(sec=stamp["sec"], nanosec=stamp["nanosec"])
        ros_message.header.frame_id = message["header"]["frame_id"]
        for name, value in message.items():
            if name != "header":
                setattr(ros_message, name, value)
        publishers[ros_topic].publish(ros_message)

    return publish


async def serve(args: argparse.Namespace, publish: Publish) -> None:
    """Bridge until SIGINT or SIGTERM."""
    task = asyncio.create_task(bridge(args.broker, args.topic_prefix, args.smoothed, publish, args.mqtt_ca))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for module in ("rclpy", "hri_msgs"):
        try:
            __import__(module)
        except ImportError:
            print(NO_ROS.format(module=module), file=sys.stderr)
            return 1
    import aiomqtt
    import rclpy

    from realtime.outputs.mqtt.address import MqttSettingError
    from realtime.outputs.mqtt.tls import TlsSettingError

    rclpy.init()
    node = rclpy.create_node("m2fnet_voices")
    try:
        asyncio.run(serve(args, ros_publisher(node)))
    except (MqttSettingError, TlsSettingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except aiomqtt.MqttError as exc:
        print(f"error: MQTT broker {args.broker}: {exc}", file=sys.stderr)
        return 2
    finally:
        node.destroy_node()
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
