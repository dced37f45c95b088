"""`run_live.py --cluster`: connect to a Ray cluster, hand the streams to its supervisor, and show their
results (read back from MQTT, the one view of every host) until they end or a signal stops them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import TextIO

from engines import interrupts
from realtime.outputs.mqtt.address import parse_mqtt_url
from realtime.outputs.mqtt.broker import EmbeddedBroker
from realtime.outputs.mqtt.connect import mqtt_client
from realtime.outputs.mqtt.tls import tls_context
from realtime.outputs.mqtt.topics import stream_topic
from realtime.runtime.config import LiveConfig
from realtime.runtime.stream_specs import StreamSpec

logger = logging.getLogger(__name__)

POLL_S = 0.5
REACH_TIMEOUT_S = 3.0
LATE_RESULTS_S = 10.0
"""After the last stream ended, how long to wait for results still on their way from the broker."""


class ClusterError(RuntimeError):
    """No Ray cluster at the address given, or the cluster refused a stream."""


@dataclass(slots=True)
class ClusterReport:
    """What `run_live.py` reports per stream (the fields `StreamReport` has that the CLI reads)."""

    stream_id: str
    broker_url: str
    produced: int
    acknowledged: int
    received: int
    hosts: list[str]
    error: str | None

    @property
    def undelivered(self) -> int:
        return max(0, self.produced - self.acknowledged)


def connect(address: str, start_local: bool = True) -> None:
    """`auto`: RAY_ADDRESS, else a cluster running on this machine, else (`start_local`) a new local one;
    or HOST:PORT."""
    import ray

    from realtime.cluster.supervisor import NAMESPACE

    kwargs = {"namespace": NAMESPACE, "log_to_driver": False, "logging_level": logging.WARNING}
    target = address if address != "auto" else os.environ.get("RAY_ADDRESS") or "auto"
    if target != "auto" and "://" not in target:
        _check_reachable(target, address)
    try:
        ray.init(address=target, **kwargs)
    except ConnectionError as exc:
        if address != "auto" or os.environ.get("RAY_ADDRESS") or not start_local:
            raise ClusterError(
                f"--cluster {address}: no Ray cluster there ({str(exc).splitlines()[0]})"
            ) from None
        ray.init(**kwargs)  # auto and nothing running: a one-machine cluster for this run


def _check_reachable(target: str, flag: str) -> None:
    """A head that does not answer: one line now, where Ray would retry for a long while and log each try."""
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"--cluster {flag}: expected auto or HOST:PORT (the head's GCS port, 6379 by default)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(f"--cluster {flag}: no Ray cluster at {target} ({exc.strerror or exc})") from None


async def serve_on_cluster(
    config: LiveConfig,
    specs: list[StreamSpec],
    address: str,
    *,
    console: TextIO | None,
    jsonl: TextIO | None = None,
    on_broker=None,
) -> list[ClusterReport]:
    """Serve `specs` on the cluster at `address` until each ends (files) or a signal (SIGINT/SIGTERM:
    every stream stops gracefully; a second signal leaves without waiting)."""
    import ray

    from realtime.cluster.supervisor import supervisor as start_supervisor

    await asyncio.to_thread(connect, address)
    broker = None
    if not config.mqtt.url:
        broker = EmbeddedBroker()
        config.mqtt.url = await broker.start()
        logger.warning(
            "embedded MQTT broker %s: reachable from this machine only (give --mqtt for more)",
            config.mqtt.url,
        )
    ids = [spec.stream_id for spec in specs]
    results = _ResultReader(config, ids, console, jsonl)
    await results.start()
    supervisor = start_supervisor(config)
    node = ray.get_runtime_context().get_node_id()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            logger.warning("signal: stopping every stream of this run gracefully")
            asyncio.ensure_future(_retry(lambda: supervisor.stop_streams.remote(ids)))

    saved = interrupts.lend_to_loop(asyncio.get_running_loop(), on_signal)
    try:
        errors = await _retry(lambda: supervisor.submit.remote(specs, node))
        if errors:
            raise ClusterError(f"--cluster: {errors[0]}")
        if on_broker is not None:
            on_broker(config.mqtt.url, ids)
        state = await _wait_until_ended(supervisor, ids, lambda: signals > 1)
        await results.wait_for({sid: state["streams"][sid].get("produced", 0) for sid in ids}, LATE_RESULTS_S)
        await _retry(lambda: supervisor.forget.remote(ids))
        if await _retry(lambda: supervisor.idle.remote()):
            try:
                await _retry(lambda: supervisor.shutdown.remote())
            except ray.exceptions.RayActorError:
                pass  # it ended itself, as asked
    finally:
        interrupts.take_back(saved)
        await results.close()
        if broker is not None:
            await broker.stop()
        ray.shutdown()
    return [
        ClusterReport(
            sid,
            config.mqtt.url,
            state["streams"][sid].get("produced", 0),
            state["streams"][sid].get("acknowledged", 0),
            results.counts[sid],
            sorted(results.hosts[sid]),
            state["streams"][sid].get("error"),
        )
        for sid in ids
    ]


async def _retry(call, attempts: int = 40):
    """A supervisor call, retried while Ray restarts a supervisor that died."""
    import ray

    for attempt in range(attempts):
        try:
            return await call()
        except ray.exceptions.RayActorError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)


async def _wait_until_ended(supervisor, ids: list[str], give_up) -> dict:
    while True:
        state = await _retry(lambda: supervisor.state.remote())
        if all(state["streams"].get(sid, {}).get("status") == "ended" for sid in ids) or give_up():
            return state
        await asyncio.sleep(POLL_S)


class _ResultReader:
    """The run's results from `<prefix>/+/utterance`, written to the console / JSON lines as they come."""

    def __init__(
        self, config: LiveConfig, ids: list[str], console: TextIO | None, jsonl: TextIO | None
    ) -> None:
        self.config = config
        self.ids = set(ids)
        self.console = console
        self.jsonl = jsonl
        self.counts = {sid: 0 for sid in ids}
        self.hosts: dict[str, set[str]] = {sid: set() for sid in ids}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._read())
        subscribed = asyncio.ensure_future(self._subscribed.wait())
        await asyncio.wait({self._task, subscribed}, return_when="FIRST_COMPLETED")
        subscribed.cancel()  # the reader failed before subscribing: no waiter left behind
        if self._task.done():
            self._task.result()

    async def _read(self) -> None:
        address = parse_mqtt_url(self.config.mqtt.url or "")
        topic = stream_topic(self.config.mqtt.topic_prefix, "+", "utterance")
        async with mqtt_client(
            address, tls_context(address.tls, self.config.mqtt), "cluster-client"
        ) as client:
            await client.subscribe(topic, qos=1)
            self._subscribed.set()
            async for message in client.messages:
                raw = message.payload
                line = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)
                result = json.loads(line)
                sid = result.get("stream_id")
                if sid not in self.ids:
                    continue
                self.counts[sid] += 1
                if result.get("host"):
                    self.hosts[sid].add(result["host"])
                if self.jsonl is not None:
                    self.jsonl.write(line + "\n")
                    self.jsonl.flush()
                if self.console is not None:
                    self.console.write(
                        f"{sid} [{result.get('host')}] #{result['utterance_id']} {result.get('speaker') or ''} "
                        f"{result['emotion']}: {result['text']}\n"
                    )
                    self.console.flush()

    async def wait_for(self, produced: dict[str, int], timeout_s: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(self.counts[sid] < n for sid, n in produced.items()):
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
