"""Cost of TLS on the MQTT link: connect time (TCP + TLS handshake + CONNACK) and QoS 1 round trip
(publish -> the same client receives it), plain `mqtt://` vs `mqtts://`, both with a password.

    python bench/mqtt_tls.py [--connects 20] [--messages 200]

Two local Mosquitto listeners (tests/mosquitto.py) and a throwaway CA (tests/tls_certs.py) on loopback,
so it shows TLS's own cost, not a network's. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's realtime/
sys.path.insert(0, str(REPO / "tests"))  # the test broker and CA helpers

import aiomqtt
from mosquitto import Mosquitto, ServerTls
from tls_certs import make_certs

from realtime.outputs.mqtt.address import parse_mqtt_url
from realtime.outputs.mqtt.publisher import MqttOptions
from realtime.outputs.mqtt.tls import tls_context

USER, PASSWORD = "bench", "bench"


async def measure(
    url: str, ca_file: str | None, connects: int, messages: int
) -> tuple[list[float], list[float]]:
    """Connect times and round trips in milliseconds."""
    address = parse_mqtt_url(url)
    tls = tls_context(address.tls, MqttOptions(ca_file=ca_file))

    def client() -> aiomqtt.Client:
        return aiomqtt.Client(
            address.host, address.port, username=USER, password=PASSWORD, tls_context=tls, timeout=5.0
        )

    connect_ms = []
    for _ in range(connects):
        started = time.perf_counter()
        async with client():
            connect_ms.append((time.perf_counter() - started) * 1000)
    round_trip_ms = []
    async with client() as link:
        await link.subscribe("bench/tls", qos=1)
        for index in range(messages):
            started = time.perf_counter()
            await link.publish("bench/tls", str(index), qos=1)
            async for _ in link.messages:
                break
            round_trip_ms.append((time.perf_counter() - started) * 1000)
    return connect_ms, round_trip_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        certs = make_certs(Path(workdir) / "certs", "bench")
        plain = Mosquitto(Path(workdir), users={USER: PASSWORD})
        secure = Mosquitto(
            Path(workdir),
            tls=ServerTls(certs.ca, certs.server_cert, certs.server_key),
            users={USER: PASSWORD},
        )
        plain.start()
        secure.start()
        try:
            print("link    connect p50 / p95 ms   QoS 1 round trip p50 / p95 ms")
            for name, broker, ca in (("mqtt", plain, None), ("mqtts", secure, str(certs.ca))):
                connect_ms, round_trip_ms = asyncio.run(measure(broker.url, ca, args.connects, args.messages))
                print(
                    f"{name:6}  {statistics.median(connect_ms):7.2f} / {_p95(connect_ms):6.2f}"
                    f"         {statistics.median(round_trip_ms):7.2f} / {_p95(round_trip_ms):6.2f}"
                )
        finally:
            plain.stop()
            secure.stop()


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


if __name__ == "__main__":
    main()
