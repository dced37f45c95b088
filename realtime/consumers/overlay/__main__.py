"""`python -m realtime.consumers.overlay --mqtt URL [--port P]`: the overlay page as a consumer of any broker.

User errors print one line `error: ...` on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from realtime.consumers.overlay.server import Overlay, OverlayError, OverlayOptions
from realtime.outputs.mqtt.address import BrokerUnreachableError, MqttSettingError, parse_mqtt_url
from realtime.outputs.mqtt.publisher import MqttOptions
from realtime.outputs.mqtt.tls import TlsSettingError, tls_context

_DEFAULTS = OverlayOptions()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m realtime.consumers.overlay", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--mqtt", required=True, help="mqtt[s]://[user:pass@]host:port of the broker to follow"
    )
    parser.add_argument("--mqtt-ca", metavar="FILE", help="CA of an mqtts:// broker (default: system store)")
    parser.add_argument("--host", default=_DEFAULTS.host, help="interface to serve on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=_DEFAULTS.port, help="HTTP port (default: %(default)s)")
    parser.add_argument("--topic-prefix", default=_DEFAULTS.topic_prefix, help="(default: %(default)s)")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log progress (-v) or everything (-vv)"
    )
    return parser.parse_args(argv)


async def serve(options: OverlayOptions, mqtt_url: str, mqtt_ca: str | None = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    tls = tls_context(parse_mqtt_url(mqtt_url).tls, MqttOptions(ca_file=mqtt_ca))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Overlay(options) as overlay:
        await overlay.connect(mqtt_url, tls)
        print(f"overlay {overlay.url}  following {parse_mqtt_url(mqtt_url).url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = OverlayOptions(host=args.host, port=args.port, topic_prefix=args.topic_prefix)
    try:
        asyncio.run(serve(options, args.mqtt, args.mqtt_ca))
    except (OverlayError, MqttSettingError, TlsSettingError, BrokerUnreachableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
