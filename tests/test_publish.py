"""The MQTT publisher against a real Mosquitto: topics, QoS 1, availability, last will, reconnect, outbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from typing import Self

import aiomqtt
import pytest
from mosquitto import Mosquitto, free_port

from realtime.messages import EmotionResult
from realtime.outputs.mqtt.address import BrokerUnreachableError, MqttSettingError, parse_mqtt_url
from realtime.outputs.mqtt.broker import EmbeddedBroker
from realtime.outputs.mqtt.publisher import MqttOptions, MqttPublisher


def result(stream_id: str, utterance_id: int) -> EmotionResult:
    return EmotionResult(
        stream_id=stream_id,
        utterance_id=utterance_id,
        start_s=float(utterance_id),
        end_s=utterance_id + 0.5,
        text=f"sentence {utterance_id}",
        emotion="neutral",
        scores={"neutral": 1.0},
        modalities={"text": True},
        model="test",
    )


class Subscriber:
    """A real aiomqtt client collecting (topic, payload, retain) from `topic_filter`."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.port, self.topic_filter = port, topic_filter
        self.messages: list[tuple[str, str, bool]] = []

    async def __aenter__(self) -> Self:
        self._client = aiomqtt.Client("127.0.0.1", self.port)
        await self._client.__aenter__()
        await self._client.subscribe(self.topic_filter, qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        async for message in self._client.messages:
            self.messages.append((str(message.topic), message.payload.decode(), message.retain))

    async def wait_for(self, predicate, timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate(self.messages):
                await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._client.__aexit__(None, None, None)


def utterance_ids(messages: list[tuple[str, str, bool]]) -> list[int]:
    return [json.loads(p)["utterance_id"] for t, p, _ in messages if t.endswith("/utterance")]


async def retained(port: int, topic: str) -> str | None:
    """The retained payload of `topic`, as a new subscriber sees it."""
    async with Subscriber(port, topic) as fresh:
        try:
            await fresh.wait_for(lambda m: m, timeout_s=2.0)
        except TimeoutError:
            return None
    return fresh.messages[0][1] if fresh.messages[0][2] else None


@pytest.mark.parametrize(
    ("url", "host", "port", "user", "password"),
    [
        ("mqtt://127.0.0.1:1884", "127.0.0.1", 1884, None, None),
        ("mqtt://broker.local", "broker.local", 1883, None, None),
        ("mqtt://ann:s%40cret@10.0.0.2:8883", "10.0.0.2", 8883, "ann", "s@cret"),
    ],
)
def test_parse_mqtt_url(url: str, host: str, port: int, user: str | None, password: str | None) -> None:
    address = parse_mqtt_url(url)
    assert (address.host, address.port, address.username, address.password) == (host, port, user, password)
    assert "cret" not in address.url


@pytest.mark.parametrize(
    "url", ["http://host:1883", "mqtt://", "mqtt://host:99999", "mqtt://host:1883/x", "host"]
)
def test_bad_mqtt_url_is_one_line_naming_it(url: str) -> None:
    with pytest.raises(MqttSettingError) as error:
        parse_mqtt_url(url)
    assert url in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("prefix", "stream_id"), [("m2fnet/#", "a"), ("m2fnet", "a/b"), ("m2fnet", "x+")])
def test_bad_topic_levels_are_rejected(prefix: str, stream_id: str) -> None:
    async def scenario() -> None:
        publisher = MqttPublisher(parse_mqtt_url("mqtt://127.0.0.1:1"), MqttOptions(topic_prefix=prefix))
        with pytest.raises(MqttSettingError):
            publisher.open_stream(stream_id)

    asyncio.run(scenario())


def test_unreachable_broker_fails_at_start_naming_the_url() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        publisher = MqttPublisher(parse_mqtt_url(url))
        publisher.open_stream("s")
        with pytest.raises(BrokerUnreachableError) as error:
            await publisher.start()
        assert url in str(error.value) and "\n" not in str(error.value)

    asyncio.run(scenario())


def test_publishes_results_and_availability(mosquitto: Mosquitto) -> None:
    stream = f"s-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        async with Subscriber(mosquitto.port, f"m2fnet/{stream}/#") as sub:
            publisher = MqttPublisher(parse_mqtt_url(mosquitto.url))
            channel = publisher.open_stream(stream)
            await publisher.start()
            await sub.wait_for(lambda m: (f"m2fnet/{stream}/available", "online", False) in m)
            assert await retained(mosquitto.port, f"m2fnet/{stream}/available") == "online"
            for i in (1, 2, 3):
                channel.emit(result(stream, i))
            await publisher.close()
            await sub.wait_for(lambda m: m[-1][1] == "offline")
        topics = [t for t, _, _ in sub.messages]
        available, status = f"m2fnet/{stream}/available", f"m2fnet/{stream}/status"
        utterances = [f"m2fnet/{stream}/utterance"] * 3
        assert topics == [available, status, *utterances, status, available]
        assert utterance_ids(sub.messages) == [1, 2, 3]
        assert publisher.metrics.published == 3
        assert await retained(mosquitto.port, f"m2fnet/{stream}/available") == "offline"

    asyncio.run(scenario())


def test_several_streams_share_one_connection(mosquitto: Mosquitto) -> None:
    tag = uuid.uuid4().hex[:8]

    async def scenario() -> None:
        async with Subscriber(mosquitto.port, "live/+/utterance") as sub:
            publisher = MqttPublisher(parse_mqtt_url(mosquitto.url), MqttOptions(topic_prefix="live"))
            a, b = publisher.open_stream(f"a{tag}"), publisher.open_stream(f"b{tag}")
            await publisher.start()
            a.emit(result(a.stream_id, 1))
            b.emit(result(b.stream_id, 1))
            a.close()
            b.emit(result(b.stream_id, 2))
            await publisher.close()
            await sub.wait_for(lambda m: len(m) >= 3)
        assert sorted(t for t, _, _ in sub.messages) == sorted(
            [f"live/a{tag}/utterance", f"live/b{tag}/utterance", f"live/b{tag}/utterance"]
        )
        assert await retained(mosquitto.port, f"live/a{tag}/available") == "offline"
        assert await retained(mosquitto.port, f"live/b{tag}/available") == "offline"

    asyncio.run(scenario())


@contextlib.contextmanager
def publisher_process(broker_url: str, options: str, streams: str, node_id: str | None = None):
    """A publisher in a child process (so it can be killed): `options` builds its `MqttOptions`,
    `streams` opens its streams on `publisher`. Yields the process once it has connected."""
    node = f", node_id={node_id!r}" if node_id else ""
    script = textwrap.dedent(
        f"""
        import asyncio
        from realtime.outputs.mqtt.address import parse_mqtt_url
        from realtime.outputs.mqtt.publisher import MqttOptions, MqttPublisher
        async def main():
            publisher = MqttPublisher(parse_mqtt_url({broker_url!r}), {options}{node})
            {streams}
            await publisher.start()
            print("started", flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "started"
        yield process
    finally:
        process.kill()
        process.wait()


def test_last_will_marks_stream_offline_when_the_process_dies(mosquitto: Mosquitto) -> None:
    stream = f"w-{uuid.uuid4().hex[:8]}"
    opened = f"publisher.open_stream({stream!r})"
    with publisher_process(mosquitto.url, "MqttOptions(keepalive_s=1)", opened) as process:

        async def scenario() -> None:
            async with Subscriber(mosquitto.port, f"m2fnet/{stream}/available") as sub:
                await sub.wait_for(lambda m: m and m[-1][1] == "online")
                os.kill(process.pid, signal.SIGKILL)
                await sub.wait_for(lambda m: m[-1][1] == "offline")

        asyncio.run(scenario())


def test_node_carries_the_last_will_and_streams_their_status(mosquitto: Mosquitto) -> None:
    tag = uuid.uuid4().hex[:8]
    options = f"MqttOptions(keepalive_s=1, topic_prefix='n{tag}')"
    opened = "publisher.open_stream('a'); publisher.open_stream('b').set_status('source_lost')"
    with publisher_process(mosquitto.url, options, opened, node_id="box") as process:

        async def scenario() -> None:
            async with Subscriber(mosquitto.port, f"n{tag}/#") as sub:
                # Retained, or live when the subscriber came first: the flag is not compared.
                await sub.wait_for(lambda m: (f"n{tag}/b/status", "source_lost") in [x[:2] for x in m])
                seen = [x[:2] for x in sub.messages]
                assert (f"n{tag}/box/available", "online") in seen and (f"n{tag}/a/status", "online") in seen
                os.kill(process.pid, signal.SIGKILL)
                await sub.wait_for(lambda m: m[-1][:2] == (f"n{tag}/box/available", "offline"))

        asyncio.run(scenario())


def test_reconnects_and_delivers_what_was_kept(private_mosquitto: Mosquitto) -> None:
    stream = f"r-{uuid.uuid4().hex[:8]}"
    broker = private_mosquitto

    async def scenario() -> None:
        # The backoff leaves the subscriber time to connect to the restarted broker before the
        # publisher flushes its outbox (messages 2-4 are not retained, so it must be there first).
        options = MqttOptions(reconnect_initial_s=2.0, reconnect_max_s=2.0, publish_timeout_s=2.0)
        publisher = MqttPublisher(parse_mqtt_url(broker.url), options)
        channel = publisher.open_stream(stream)
        await publisher.start()
        async with Subscriber(broker.port, f"m2fnet/{stream}/utterance") as sub:
            channel.emit(result(stream, 1))
            await sub.wait_for(lambda m: utterance_ids(m) == [1])
        broker.kill()
        for i in (2, 3, 4):
            channel.emit(result(stream, i))
            await asyncio.sleep(0.1)
        broker.start()
        async with Subscriber(broker.port, f"m2fnet/{stream}/utterance") as sub:
            await sub.wait_for(lambda m: {2, 3, 4} <= set(utterance_ids(m)))
            channel.emit(result(stream, 5))
            await sub.wait_for(lambda m: 5 in utterance_ids(m))
        assert await retained(broker.port, f"m2fnet/{stream}/available") == "online"
        await publisher.close()
        assert publisher.metrics.connection_losses >= 1 and publisher.metrics.reconnects >= 1
        assert publisher.metrics.outbox_dropped == 0

    asyncio.run(scenario())


def test_full_outbox_drops_the_oldest_and_counts_it(private_mosquitto: Mosquitto) -> None:
    stream = f"o-{uuid.uuid4().hex[:8]}"
    broker = private_mosquitto

    async def scenario() -> None:
        options = MqttOptions(outbox_max_messages=2, reconnect_initial_s=0.05, reconnect_max_s=0.2)
        publisher = MqttPublisher(parse_mqtt_url(broker.url), options)
        channel = publisher.open_stream(stream)
        await publisher.start()
        broker.kill()
        await asyncio.sleep(0.2)
        for i in (1, 2, 3, 4):
            channel.emit(result(stream, i))
        assert publisher.metrics.outbox_dropped == 2
        broker.start()
        async with Subscriber(broker.port, f"m2fnet/{stream}/utterance") as sub:
            await sub.wait_for(lambda m: {3, 4} <= set(utterance_ids(m)))
            await publisher.close()
        assert utterance_ids(sub.messages) == [3, 4]

    asyncio.run(scenario())


def test_embedded_broker_round_trip() -> None:
    stream = "embedded"

    async def scenario() -> None:
        broker = EmbeddedBroker()
        url = await broker.start()
        try:
            async with Subscriber(broker.port, f"m2fnet/{stream}/#") as sub:
                publisher = MqttPublisher(parse_mqtt_url(url))
                channel = publisher.open_stream(stream)
                await publisher.start()
                channel.emit(result(stream, 1))
                await publisher.close()
                await sub.wait_for(lambda m: m and m[-1][1] == "offline")
            assert utterance_ids(sub.messages) == [1]
        finally:
            await broker.stop()

    asyncio.run(scenario())


def test_retained_state_waiting_is_replaced_not_queued() -> None:
    from realtime.outputs.mqtt.publisher import Outbox, PublisherMetrics, _Message

    async def scenario() -> Outbox:
        outbox = Outbox(max_messages=10, metrics=PublisherMetrics())
        outbox.put(_Message("p/s/state", "v1", retain=True))  # head: may be in flight
        outbox.put(_Message("p/s/utterance", "u1", retain=False))
        for version in ("v2", "v3", "v4"):
            outbox.put(_Message("p/s/state", version, retain=True))
            outbox.put(_Message("p/s/speakers/S1/state", version, retain=True))
        return outbox

    outbox = asyncio.run(scenario())
    payloads = []
    while (message := outbox.peek()) is not None:
        payloads.append((message.topic, message.payload))
        outbox.pop()
    assert payloads == [
        ("p/s/state", "v1"),
        ("p/s/utterance", "u1"),
        ("p/s/state", "v4"),
        ("p/s/speakers/S1/state", "v4"),
    ]
