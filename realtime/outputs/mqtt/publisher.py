"""MQTT publishing: one reconnecting connection, a bounded outbox, per-stream topics and availability.

Topics, for a stream `S` and prefix `P`: `P/S/utterance` (QoS 1, one JSON `EmotionResult` per message),
`P/S/interim` (QoS 0, provisional results), retained `P/S/state` and `P/S/speakers/<speaker>/state`
(realtime/outputs/speaker_state.py), `P/S/available` (retained `online` on every (re)connect, `offline` on clean
close), `P/S/status` (retained `online`, `source_lost` while a network source is retried, `offline`) and
`P/S/stats` (QoS 0, every `stats_interval_s`: realtime/outputs/mqtt/stats.py).
Delivery is at least once (QoS 1): a result whose PUBACK was lost is sent again after a reconnect, so a
subscriber drops duplicates by (`stream_id`, `utterance_id`). Each stream counts its results produced and
acknowledged by the broker (`DeliveryStats`); the run's summary and exit status come from those counts.
One `MqttPublisher` owns one broker connection and may carry several streams (`open_stream`), so a
process running many streams keeps a single socket. MQTT allows one last will per connection: it sets
the process-level `P/<node>/available` to `offline`; with one stream the node is the stream itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import aiomqtt

from realtime.messages import OFFLINE, ONLINE, EmotionResult
from realtime.metrics import LatencyStats
from realtime.outputs.mqtt import topics
from realtime.outputs.mqtt.address import BrokerAddress, BrokerUnreachableError, MqttSettingError
from realtime.outputs.mqtt.tls import describe_connect_error, tls_context
from realtime.outputs.mqtt.topics import check_topic_levels

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class MqttOptions:
    """How to reach the broker and how hard to try."""

    url: str | None = None
    """`mqtt://[user:pass@]host:port` or `mqtts://...` (TLS); None starts the embedded broker."""
    ca_file: str | None = None
    """PEM CA certificate(s) that signed an `mqtts://` broker's certificate; None: the system's trust store."""
    cert_file: str | None = None
    """PEM client certificate for an `mqtts://` broker that asks for one (may also hold the key)."""
    key_file: str | None = None
    """PEM private key of `cert_file`, when it is not inside that file."""
    topic_prefix: str = topics.DEFAULT_PREFIX
    """First topic level of every message."""
    qos: int = 1
    """QoS of utterance and availability messages."""
    keepalive_s: int = 30
    """MQTT keep-alive; a dead connection is noticed within about 1.5x this when idle."""
    connect_timeout_s: float = 5.0
    """Wait for the broker's CONNACK."""
    publish_timeout_s: float = 5.0
    """Wait for a PUBACK before treating the connection as lost (the message stays in the outbox)."""
    reconnect_initial_s: float = 0.25
    """First reconnect delay; doubled after every failed attempt (each wait is drawn at random between
    half the delay and the delay, so many clients do not return in lockstep)."""
    reconnect_max_s: float = 2.0
    """Upper bound of the reconnect delay: a broker that returns is used within about this long."""
    outbox_max_messages: int = 1000
    """Utterance messages kept while the broker is unreachable (see `Outbox` for what happens when full)."""
    shutdown_drain_timeout_s: float = 15.0
    """On close, how long to keep trying to deliver the outbox and `offline` before giving up."""
    stats_interval_s: float = 15.0
    """Seconds between two `<prefix>/<stream>/stats` messages; 0 turns them off."""
    node_id: str | None = None
    """This process in `<prefix>/<node_id>/available` (retained, last will `offline`); None: the stream
    id when the process serves one stream, else `node`."""


@dataclass(slots=True)
class DeliveryStats:
    """One stream's results on their way to the broker; `acknowledged` counts QoS 1 PUBACKs."""

    produced: int = 0
    """Results handed to the publisher."""
    acknowledged: int = 0
    dropped: int = 0
    """Results discarded because the outbox was full (never sent)."""
    ack: LatencyStats = field(default_factory=LatencyStats)
    """From entering the outbox to the broker's PUBACK."""
    segment_to_ack: LatencyStats = field(default_factory=LatencyStats)
    """From the VAD closing the segment to the broker's PUBACK: what a subscriber waits."""

    @property
    def undelivered(self) -> int:
        """Results the broker never acknowledged (dropped, or still in the outbox)."""
        return self.produced - self.acknowledged


@dataclass(slots=True)
class PublisherMetrics:
    published: int = 0
    """Utterance messages acknowledged by the broker (QoS 1 PUBACK)."""
    outbox_dropped: int = 0
    """Utterance messages discarded because the outbox was full."""
    interim_dropped: int = 0
    """Interim results not queued because the outbox was not empty."""
    connection_losses: int = 0
    reconnects: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class _Message:
    topic: str
    payload: str
    retain: bool
    qos: int | None = None
    """None: the publisher's QoS."""
    latest_only: bool = False
    """A newer message on the same topic replaces this one while it waits (state, stats)."""
    delivery: DeliveryStats | None = None
    """The stream whose result this is; its counters move on PUBACK or drop."""
    queued_s: float = 0.0
    """time.monotonic() when the message entered the outbox."""
    produced_ms: float = 0.0
    """The result's segment_to_publish, the start of its segment_to_ack."""


class Outbox:
    """FIFO of messages awaiting a PUBACK, bounded at `max_messages` utterance messages.

    When full, the OLDEST utterance message is dropped, counted in `PublisherMetrics.outbox_dropped`
    and logged as a warning: a live subscriber cares most about what is happening now, and the
    newest results carry the most recent context. Retained messages (availability, state) are never
    dropped; a state or stats update replaces its topic's update still waiting (not the one being sent),
    so they stay bounded by the number of such topics.
    A message leaves the outbox only once the broker has acknowledged it, so a connection lost
    mid-publish re-sends it after reconnecting (QoS 1: at least once).
    """

    def __init__(self, max_messages: int, metrics: PublisherMetrics) -> None:
        self._items: deque[_Message] = deque()
        self._max = max_messages
        self._metrics = metrics
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: _Message) -> None:
        if message.retain or message.latest_only:
            # Index 0 may be in flight (peeked, awaiting its PUBACK): only later entries are replaced.
            for index in range(1, len(self._items)):
                if self._items[index].topic == message.topic:
                    self._items[index] = message
                    self.changed.set()
                    return
        if message.delivery is not None and self._results() >= self._max:
            oldest = next(m for m in self._items if m.delivery is not None)
            self._items.remove(oldest)
            self._metrics.outbox_dropped += 1
            assert oldest.delivery is not None
            oldest.delivery.dropped += 1
            logger.warning(
                "MQTT outbox full (%d messages): dropped the oldest utterance on %s (%d dropped so far)",
                self._max,
                oldest.topic,
                self._metrics.outbox_dropped,
            )
        self._items.append(message)
        self.changed.set()

    def _results(self) -> int:
        return sum(m.delivery is not None for m in self._items)

    def peek(self) -> _Message | None:
        return self._items[0] if self._items else None

    def pop(self) -> None:
        self._items.popleft()


class StreamChannel:
    """The topics of one stream on a shared `MqttPublisher`."""

    def __init__(self, publisher: MqttPublisher, stream_id: str) -> None:
        prefix = publisher.options.topic_prefix.rstrip("/")
        check_topic_levels(prefix, "topic prefix")
        check_topic_levels(stream_id, "stream id")
        if "/" in stream_id:
            raise MqttSettingError(f"bad MQTT stream id {stream_id!r}: it is one topic level, no '/'")
        self.stream_id = stream_id
        self.utterance_topic = topics.stream_topic(prefix, stream_id, "utterance")
        self.available_topic = topics.stream_topic(prefix, stream_id, "available")
        self.status_topic = topics.stream_topic(prefix, stream_id, "status")
        self.status = ONLINE
        self.handing_over = False
        """Closed because another process serves the stream next (a cluster drain): no `offline`."""
        self.delivery = DeliveryStats()
        self._publisher = publisher

    def emit(self, result: EmotionResult) -> None:
        """Queue one result for `<prefix>/<stream>/utterance`; never blocks (see `Outbox` for the full policy)."""
        self.delivery.produced += 1
        message = _Message(
            self.utterance_topic,
            result.to_json(),
            retain=False,
            delivery=self.delivery,
            queued_s=time.monotonic(),
            produced_ms=result.timings_ms.segment_to_publish,
        )
        self._publisher.outbox.put(message)

    def emit_interim(self, result: EmotionResult) -> bool:
        """Queue a provisional result on `<prefix>/<stream>/interim` (QoS 0, not retained) only when the
        outbox is empty: a stale interim is worth nothing, and it must never push a final result out.
        Returns whether it was queued (a refused one is counted in `PublisherMetrics.interim_dropped`)."""
        if len(self._publisher.outbox):
            self._publisher.metrics.interim_dropped += 1
            return False
        topic = f"{self.utterance_topic.rsplit('/', 1)[0]}/interim"
        self._publisher.outbox.put(_Message(topic, result.to_json(), retain=False, qos=0))
        return True

    def publish_retained(self, subtopic: str, payload: str) -> None:
        """Queue a retained state message on `<prefix>/<stream>/<subtopic>`; never blocks."""
        topic = f"{self.utterance_topic.rsplit('/', 1)[0]}/{subtopic}"
        self._publisher.outbox.put(_Message(topic, payload, retain=True))

    def publish_stats(self, payload: str) -> None:
        """Queue `<prefix>/<stream>/stats` (QoS 0, not retained); a newer one replaces it while it waits."""
        topic = f"{self.utterance_topic.rsplit('/', 1)[0]}/stats"
        self._publisher.outbox.put(_Message(topic, payload, retain=False, qos=0, latest_only=True))

    def set_status(self, status: str) -> None:
        """Queue a retained `online` / `source_lost` / `offline` on `<prefix>/<stream>/status`."""
        if status != self.status:
            self.status = status
            self._publisher.outbox.put(_Message(self.status_topic, status, retain=True))

    def close(self) -> None:
        """Queue `offline` after this stream's pending results and stop announcing it."""
        self._publisher.close_stream(self)


class MqttPublisher:
    """One broker connection with reconnect and a bounded outbox, shared by any number of streams.

    MQTT 3.1.1 allows one last will per connection. With `node_id` it sets `<prefix>/<node_id>/available`
    to `offline` (retained `online` while connected); without, the first open stream's availability
    topic. Stream topics get `offline` on clean close only, so a subscriber reads a stream as served
    when both its own topic and its node's say `online`.
    """

    def __init__(
        self, address: BrokerAddress, options: MqttOptions | None = None, node_id: str | None = None
    ) -> None:
        self.address = address
        self.options = options or MqttOptions()
        self._tls: ssl.SSLContext | None = tls_context(address.tls, self.options)
        self.node_topic: str | None = None
        if node_id is not None:
            check_topic_levels(node_id, "node id")
            self.node_topic = topics.stream_topic(self.options.topic_prefix, node_id, "available")
        self.metrics = PublisherMetrics()
        self.outbox = Outbox(self.options.outbox_max_messages, self.metrics)
        self._streams: list[StreamChannel] = []
        self._closing = False
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self._client_id = f"m2fnet-live-{uuid.uuid4().hex[:12]}"

    def open_stream(self, stream_id: str) -> StreamChannel:
        """Announce a stream: `online` now if connected, else on the next connect."""
        channel = StreamChannel(self, stream_id)
        self._streams.append(channel)
        if self._connected:
            self.outbox.put(_Message(channel.available_topic, ONLINE, retain=True))
            self.outbox.put(_Message(channel.status_topic, ONLINE, retain=True))
        return channel

    def publish_retained(self, topic: str, payload: str) -> None:
        """Queue a retained message on any topic (the cluster's state and its streams' status)."""
        self.outbox.put(_Message(topic, payload, retain=True, latest_only=True))

    async def delivered(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (every queued message acknowledged); False after `timeout_s`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.outbox):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def close_stream(self, channel: StreamChannel) -> None:
        if channel in self._streams:
            self._streams.remove(channel)
            if channel.handing_over:
                return
            channel.set_status(OFFLINE)
            if channel.available_topic != self.node_topic:
                self.outbox.put(_Message(channel.available_topic, OFFLINE, retain=True))

    async def start(self) -> None:
        """Connect once; raise `BrokerUnreachableError` if that fails, else keep the link up in the background."""
        first_connect: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(first_connect), name="mqtt-publisher")
        await first_connect

    async def close(self) -> None:
        """Deliver the outbox, set every open stream `offline`, disconnect.

        Gives up after `shutdown_drain_timeout_s` if the broker stays away, logging what was not sent.
        """
        for channel in list(self._streams):
            channel.close()
        if self.node_topic is not None:
            self.outbox.put(_Message(self.node_topic, OFFLINE, retain=True))
        self._closing = True
        self.outbox.changed.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.options.shutdown_drain_timeout_s)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            logger.error(
                "MQTT broker %s unreachable at shutdown: %d message(s) not delivered",
                self.address.url,
                len(self.outbox),
            )

    def _client(self) -> aiomqtt.Client:
        will = None
        topic = self.node_topic or (self._streams[0].available_topic if self._streams else None)
        if topic is not None:
            will = aiomqtt.Will(topic, OFFLINE, qos=self.options.qos, retain=True)
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.address.username,
            password=self.address.password,
            identifier=self._client_id,
            will=will,
            keepalive=self.options.keepalive_s,
            timeout=self.options.connect_timeout_s,
            clean_session=True,
            tls_context=self._tls,
        )

    async def _run(self, first_connect: asyncio.Future[None]) -> None:
        delay_s = self.options.reconnect_initial_s
        while True:
            try:
                async with self._client() as client:
                    if not first_connect.done():
                        first_connect.set_result(None)
                    else:
                        self.metrics.reconnects += 1
                        logger.warning("reconnected to MQTT broker %s", self.address.url)
                    delay_s = self.options.reconnect_initial_s
                    self._connected = True
                    await self._announce(client)
                    await self._deliver(client)
                self._connected = False
                return
            except aiomqtt.MqttError as exc:
                self._connected = False
                if not first_connect.done():
                    first_connect.set_exception(
                        BrokerUnreachableError(
                            f"cannot reach MQTT broker at {self.address.url}: "
                            f"{describe_connect_error(exc, self.address.tls)}"
                        )
                    )
                    return
                self.metrics.connection_losses += 1
                wait_s = random.uniform(delay_s / 2, delay_s)
                logger.warning(
                    "MQTT broker %s: %s; %d message(s) kept, retrying in %.2f s",
                    self.address.url,
                    exc,
                    len(self.outbox),
                    wait_s,
                )
                await asyncio.sleep(wait_s)
                delay_s = min(delay_s * 2, self.options.reconnect_max_s)

    async def _announce(self, client: aiomqtt.Client) -> None:
        # Retained state may be gone (a restarted broker without persistence): re-announce every stream.
        retained = [(self.node_topic, ONLINE)] if self.node_topic is not None else []
        for channel in list(self._streams):
            if channel.available_topic != self.node_topic:
                retained.append((channel.available_topic, ONLINE))
            retained.append((channel.status_topic, channel.status))
        for topic, payload in retained:
            await client.publish(
                topic, payload, qos=self.options.qos, retain=True, timeout=self.options.publish_timeout_s
            )

    async def _deliver(self, client: aiomqtt.Client) -> None:
        """Send the outbox in order until closing and empty; raise `MqttError` when the link drops."""
        watch = asyncio.create_task(self._watch_disconnect(client))
        try:
            while True:
                message = self.outbox.peek()
                if message is not None:
                    send = asyncio.ensure_future(
                        client.publish(
                            message.topic,
                            message.payload,
                            qos=self.options.qos if message.qos is None else message.qos,
                            retain=message.retain,
                            timeout=self.options.publish_timeout_s,
                        )
                    )
                    # A PUBACK never comes over a dead link: notice the drop instead of waiting the timeout.
                    await asyncio.wait({send, watch}, return_when=asyncio.FIRST_COMPLETED)
                    if not send.done():
                        send.cancel()
                        await asyncio.gather(send, return_exceptions=True)
                        watch.result()
                    send.result()
                    self.outbox.pop()
                    if message.delivery is not None:
                        self._acknowledged(message, message.delivery)
                    continue
                if self._closing:
                    return
                self.outbox.changed.clear()
                changed = asyncio.create_task(self.outbox.changed.wait())
                done, _ = await asyncio.wait({changed, watch}, return_when=asyncio.FIRST_COMPLETED)
                if watch in done:
                    changed.cancel()
                    watch.result()
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watch

    def _acknowledged(self, message: _Message, delivery: DeliveryStats) -> None:
        self.metrics.published += 1
        delivery.acknowledged += 1
        ack_ms = 1000 * (time.monotonic() - message.queued_s)
        delivery.ack.add(ack_ms)
        delivery.segment_to_ack.add(message.produced_ms + ack_ms)

    @staticmethod
    async def _watch_disconnect(client: aiomqtt.Client) -> None:
        # Nothing is subscribed, so iterating the message stream only ends by raising on disconnect.
        async for _ in client.messages:
            pass
