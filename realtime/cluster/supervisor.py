"""The cluster's supervisor: a named, detached, restartable Ray actor that keeps one `StreamHost` per
alive node, places streams on the least-loaded host with room (placement.py), and moves the streams of
a host that stops answering to the others, where they continue their utterance ids (a file from where
its last result ended). It publishes the retained `<prefix>/cluster/state` and the `pending` /
`relocating` status of streams no host serves.

What it must not lose when it is itself restarted lives in Ray's key-value store (the streams asked
for); who serves what is asked back from the hosts, which go on serving meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import re
from collections.abc import Awaitable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from realtime.cluster.host import StreamHost, StreamStatus
from realtime.cluster.placement import ClusterStream, HostSlot, Placement, is_device
from realtime.outputs.mqtt import topics
from realtime.outputs.mqtt.address import parse_mqtt_url
from realtime.outputs.mqtt.publisher import MqttPublisher
from realtime.runtime import env as runtime_env
from realtime.runtime.config import LiveConfig
from realtime.runtime.stream_specs import StreamSpec

logger = logging.getLogger(__name__)

NAMESPACE = "m2fnet"
SUPERVISOR_NAME = "m2fnet-supervisor"
STREAMS_PER_CPU = 4
HAND_OVER_LEAD_IN_S = 0.3
WORKER_ENV = {"env_vars": dict(runtime_env.SETTINGS)}
"""The live loop's process environment (one thread per component, no hub) set before a host imports
anything: set later, tokenizers and transformers would already have read it."""
HEAD_RESOURCE = "node:__internal_head__"
"""Ray gives the head node this resource by itself: no flag for users to remember."""
_KV_KEY = b"m2fnet-live/streams"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

RemoteHost = ray.remote(StreamHost)


def host_name(node: dict) -> str:
    """`<machine>-<first 6 of the Ray node id>`: readable, and unique with several nodes on one machine."""
    machine = _UNSAFE.sub("-", node.get("NodeManagerHostname") or "node").strip("-") or "node"
    return f"{machine}-{node['NodeID'][:6]}"


def _call(ref: Any, timeout_s: float) -> Awaitable[Any]:
    return asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout_s)


class Supervisor:
    """Wrapped by `ray.remote` in `realtime.cluster.client`; its methods run on one event loop."""

    def __init__(self, config: LiveConfig) -> None:
        self.config = config
        self.options = config.cluster
        self.placement = Placement()
        self.handles: dict[str, Any] = {}
        self.starting: dict[str, asyncio.Future] = {}
        self.misses: dict[str, int] = {}
        self._publisher: MqttPublisher | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_state = ""
        self._stopping = False
        self._start_lock = asyncio.Lock()
        self._check_lock = asyncio.Lock()
        """One check at a time: two could place one stream on two hosts."""

    async def _ensure_running(self) -> None:
        """First call after a (re)start: connect MQTT, rebuild from the store and the hosts, start checking."""
        async with self._start_lock:
            if self._task is not None:
                return
            assert self.config.mqtt.url, "the client sets the broker every host shares"
            address = parse_mqtt_url(self.config.mqtt.url)
            self._publisher = MqttPublisher(address, self.config.mqtt, node_id="cluster")
            await self._publisher.start()
            await self._rebuild()
            self._task = asyncio.ensure_future(self._run())

    # --- what clients call -------------------------------------------------------------------------

    async def submit(self, specs: list[StreamSpec], device_node: str) -> list[str]:
        """Serve `specs` (device sources on `device_node`); -> one error line per stream refused."""
        await self._ensure_running()
        errors = []
        for spec in specs:
            current = self.placement.streams.get(spec.stream_id)
            if current is not None and current.status != "ended":
                errors.append(f"stream id '{spec.stream_id}' is already served by the cluster")
                continue
            node = device_node if is_device(spec.source) else None
            self.placement.streams[spec.stream_id] = ClusterStream(spec, node=node)
            self._status(spec.stream_id, "pending")
        self._save()
        await self._check()
        return errors

    async def state(self) -> dict:
        """The cluster state message, plus each stream's report once it ended."""
        await self._ensure_running()
        state = self.placement.state()
        for stream_id, stream in self.placement.streams.items():
            state["streams"][stream_id].update(stream.report, next_utterance_id=stream.next_utterance_id)
        return state

    async def stop_streams(self, stream_ids: list[str]) -> None:
        """Stop these streams gracefully (their hosts publish what was heard); pending ones just end."""
        await self._ensure_running()
        for stream_id in stream_ids:
            stream = self.placement.streams.get(stream_id)
            if stream is None or stream.status == "ended":
                continue
            if stream.host is None:
                self.placement.unassign(stream, "ended")
                self._status(stream_id, "offline")
            else:
                with contextlib.suppress(Exception):
                    await _call(self.handles[stream.host].stop.remote(stream_id), self.options.host_timeout_s)
        self._save()

    async def forget(self, stream_ids: list[str]) -> None:
        """Drop ended streams from the books (the client has read their reports)."""
        for stream_id in stream_ids:
            stream = self.placement.streams.get(stream_id)
            if stream is not None and stream.status == "ended":
                del self.placement.streams[stream_id]
        self._save()
        await self._publish_state()

    async def drain(self, host: str) -> list[str]:
        """Move every stream off `host` without loss (each stops there after publishing what it heard
        and resumes elsewhere where it stopped); the host takes no new stream. -> the streams moved."""
        await self._ensure_running()
        slot = self.placement.hosts.get(host)
        if slot is None:
            return []
        slot.draining = True
        moved = sorted(slot.streams)
        releases = [self.handles[host].release.remote(stream_id) for stream_id in moved]
        await asyncio.gather(*(_call(ref, 30.0) for ref in releases))
        return moved

    async def idle(self) -> bool:
        """No stream left to serve."""
        return all(s.status == "ended" for s in self.placement.streams.values())

    async def shutdown(self) -> None:
        """Stop every host (they deliver what they heard), clear `cluster/state`, then end this actor."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
        calls = [_call(h.shutdown.remote(), 30.0) for h in self.handles.values()]
        await asyncio.gather(*calls, return_exceptions=True)
        for handle in self.handles.values():
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        _kv_put(b"")
        if self._publisher is not None:
            self._publisher.publish_retained(self._topic("cluster", "state"), "")
            await self._publisher.close()
        ray.actor.exit_actor()

    # --- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._check()
            except Exception:
                logger.exception("cluster check failed")
            await asyncio.sleep(self.options.check_interval_s)

    async def _check(self) -> None:
        async with self._check_lock:
            alive = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
            self._start_hosts(alive)
            await self._poll_hosts(alive)
            await self._place_waiting()
            self._save()
            await self._publish_state()

    def _start_hosts(self, alive: dict[str, dict]) -> None:
        known = {slot.node_id for slot in self.placement.hosts.values()}
        for node_id, node in alive.items():
            if node_id in known:
                continue
            name = host_name(node)
            cpus = int(node.get("Resources", {}).get("CPU", 1))
            capacity = self.options.streams_per_host or max(1, STREAMS_PER_CPU * cpus)
            handle = RemoteHost.options(
                name=name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                runtime_env=WORKER_ENV,
            ).remote(self.config, name, cpus)
            self.handles[name] = handle
            self.placement.hosts[name] = HostSlot(name, node_id, capacity)
            self.starting[name] = asyncio.wrap_future(handle.start.remote().future())
            logger.info("host %s on node %s: starting (%d streams at most)", name, node_id[:8], capacity)

    async def _poll_hosts(self, alive: dict[str, dict]) -> None:
        for name, slot in list(self.placement.hosts.items()):
            starting = self.starting.get(name)
            if starting is not None:
                if not starting.done():
                    if slot.node_id not in alive:
                        await self._lose(name, "its node left before it started")
                    continue
                del self.starting[name]
                if starting.exception() is not None:
                    await self._lose(name, f"failed to start: {starting.exception()}")
                    continue
                slot.ready = True
            if slot.node_id not in alive:
                await self._lose(name, "its node is gone")
                continue
            try:
                statuses = await _call(self.handles[name].status.remote(), self.options.host_timeout_s)
            except Exception as exc:  # noqa: BLE001 (dead actor, lost node, timeout: all mean no answer)
                self.misses[name] = self.misses.get(name, 0) + 1
                if isinstance(exc, ray.exceptions.RayActorError) or self.misses[name] >= 2:
                    await self._lose(name, f"no answer ({type(exc).__name__})")
                continue
            self.misses[name] = 0
            self._merge(name, statuses)

    def _merge(self, host: str, statuses: dict[str, StreamStatus]) -> None:
        slot = self.placement.hosts[host]
        for stream_id, status in statuses.items():
            stream = self.placement.streams.get(stream_id)
            if stream is None:  # served but not asked for: known to a store lost with the Ray head
                if status.ended or status.spec is None:
                    continue
                stream = self.placement.streams[stream_id] = ClusterStream(status.spec)
            if stream.host not in (None, host):
                continue  # an older instance on a host it has left
            stream.next_utterance_id = max(stream.next_utterance_id, status.next_utterance_id)
            stream.resume_s = max(stream.resume_s, status.published_until_s)
            if stream.host == host or (stream.host is None and not status.ended):
                stream.delivered_here = (status.produced, status.acknowledged)
            if not status.ended:
                if stream.host is None and stream.status != "ended":
                    self.placement.assign(stream, slot)
                continue
            if stream.host != host:
                continue
            if slot.draining and status.error is None:
                # it left in a pause: resume there, with a little of the pause for the VAD to settle in
                stream.resume_s = max(stream.resume_s, status.heard_s - HAND_OVER_LEAD_IN_S)
                self.placement.unassign(stream, "relocating")
                stream.moves += 1
                self._status(stream_id, "relocating")
                continue
            self.placement.unassign(stream, "ended")
            produced, acknowledged = stream.delivered_before
            stream.report = {"produced": produced, "acknowledged": acknowledged, "error": status.error}

    async def _lose(self, name: str, why: str) -> None:
        """A host is gone (or must be taken for gone): make sure it is, then move its streams."""
        handle = self.handles.pop(name, None)
        self.starting.pop(name, None)
        self.misses.pop(name, None)
        if handle is not None:
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)  # never two hosts publishing one stream
        moved = self.placement.lose_host(name)
        logger.warning("host %s lost (%s): %d stream(s) relocating", name, why, len(moved))
        for stream in moved:
            self._status(stream.stream_id, "relocating")

    async def _place_waiting(self) -> None:
        waiting = self.placement.waiting()
        if waiting and self._publisher is not None:
            # `relocating` must reach the broker before the new host's `online`
            await self._publisher.delivered(timeout_s=1.0)
        for stream in waiting:
            slot = self.placement.choose_host(stream)
            if slot is None:
                continue
            try:
                error = await _call(
                    self.handles[slot.name].add.remote(
                        stream.spec, stream.next_utterance_id, stream.resume_s, stream.moves > 0
                    ),
                    max(30.0, self.options.host_timeout_s),
                )
            except Exception as exc:  # noqa: BLE001 (the host died meanwhile: the next check moves on)
                logger.warning("placing %s on %s failed: %s", stream.stream_id, slot.name, exc)
                continue
            if error is not None:
                stream.report = {"produced": 0, "acknowledged": 0, "error": error}
                self.placement.unassign(stream, "ended")
                self._status(stream.stream_id, "offline")
                continue
            self.placement.assign(stream, slot)

    # --- state -------------------------------------------------------------------------------------

    async def _rebuild(self) -> None:
        """After a restart: the streams asked for from the store, who serves them from the hosts."""
        saved = _kv_get()
        for stream in saved:
            stream.host = None
            if stream.status == "online":
                stream.status = "relocating"  # until a host says it serves it
            self.placement.streams[stream.stream_id] = stream
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            name = host_name(node)
            try:
                handle = ray.get_actor(name, namespace=NAMESPACE)
                statuses = await _call(handle.status.remote(with_specs=True), self.options.host_timeout_s)
            except Exception as exc:  # noqa: BLE001 (no host there yet, or a dead one: started afresh)
                logger.info("no live host %s to adopt (%s)", name, type(exc).__name__)
                continue
            cpus = int(node.get("Resources", {}).get("CPU", 1))
            capacity = self.options.streams_per_host or max(1, STREAMS_PER_CPU * cpus)
            self.handles[name] = handle
            self.placement.hosts[name] = HostSlot(name, node["NodeID"], capacity, ready=True)
            self._merge(name, statuses)
        if saved or self.placement.hosts:
            logger.info("rebuilt: %d streams, %d hosts", len(saved), len(self.placement.hosts))

    def _save(self) -> None:
        _kv_put(pickle.dumps(list(self.placement.streams.values())))

    def _topic(self, stream_id: str, kind: str) -> str:
        return topics.stream_topic(self.config.mqtt.topic_prefix, stream_id, kind)

    def _status(self, stream_id: str, status: str) -> None:
        if self._publisher is not None:
            self._publisher.publish_retained(self._topic(stream_id, "status"), status)

    async def _publish_state(self) -> None:
        payload = json.dumps(self.placement.state(), separators=(",", ":"))
        if payload != self._last_state and self._publisher is not None:
            self._last_state = payload
            self._publisher.publish_retained(self._topic("cluster", "state"), payload)


def supervisor(config: LiveConfig) -> Any:
    """The cluster's supervisor, started when there is none (else the running one, whose `config` wins).
    It runs on the head node, the one node a Ray cluster cannot lose, and Ray restarts it when it dies."""
    return (
        ray.remote(Supervisor)
        .options(
            name=SUPERVISOR_NAME,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            num_cpus=0,
            resources={HEAD_RESOURCE: 0.001},
            runtime_env=WORKER_ENV,
        )
        .remote(config)
    )


def _kv_get() -> list[ClusterStream]:
    from ray.experimental.internal_kv import _internal_kv_get

    data = _internal_kv_get(_KV_KEY, namespace=NAMESPACE)
    return pickle.loads(data) if data else []


def _kv_put(data: bytes) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(_KV_KEY, data, overwrite=True, namespace=NAMESPACE)
