"""One host per machine: a Ray actor that owns a `Runtime` (models loaded once, many streams, its own MQTT
connection with its own last will on `<prefix>/<host>/available`). Sources are opened where the host runs,
so audio never crosses Ray's object store; only small progress reports do."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import time
from dataclasses import dataclass

from realtime.cluster.resume import ResumeTap, read_resume
from realtime.runtime.config import LiveConfig
from realtime.runtime.runtime import Runtime
from realtime.runtime.stream_specs import StreamSpec
from realtime.sources.open import open_source

logger = logging.getLogger(__name__)

HAND_OVER_WITHIN_S = 15.0
"""A drained stream leaves at its next pause; a speaker who never pauses is cut after this long."""

ACK_GRACE_S = 5.0
"""A stream whose last results still await the broker's PUBACK is reported ended this long after its
end at the latest: the report's counts are final, and a broker that is away cannot hold it forever."""

USER_ERRORS = ("MediaError", "DeviceError", "MqttSettingError")
"""Errors of a stream's own spec (an unreadable file, a taken id): the stream ends, the host goes on."""


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """What a host says about one of its streams at each check."""

    spec: StreamSpec | None
    """Only when asked for (a restarted supervisor adopting the stream): not sent at every check."""
    next_utterance_id: int
    published_until_s: float
    heard_s: float
    ended: bool
    produced: int
    acknowledged: int
    error: str | None


class StreamHost:
    """Wrapped by `ray.remote` in `realtime.cluster.supervisor`; every method runs on the host's event loop."""

    def __init__(self, config: LiveConfig, name: str, cpus: int) -> None:
        """`cpus`: what Ray gives the node; Whisper encodes no more utterances at once than that, so
        hosts sharing a machine (or a container's share of one) do not oversubscribe its cores."""
        self.name = name
        self.config = copy.deepcopy(config)
        self.config.asr.encoder_workers = max(1, min(config.asr.encoder_workers, cpus))
        self.runtime: Runtime | None = None
        self.specs: dict[str, StreamSpec] = {}
        self._ended_at: dict[str, float] = {}

    async def start(self) -> str:
        """Connect to the broker and load the models (seconds); the supervisor places streams after."""
        if self.runtime is None:
            logging.basicConfig(level=logging.WARNING)
            _normal_priority()
            runtime = Runtime(self.config, node_id=self.name, host=self.name, handle_signals=False)
            await runtime.start()
            self.runtime = runtime
        return self.name

    async def add(
        self, spec: StreamSpec, first_utterance_id: int, resume_s: float, moved: bool
    ) -> str | None:
        """Serve `spec`, its ids from `first_utterance_id`, a file from `resume_s`; a `moved` stream
        continues from the broker's retained position when that is further. -> None, or the one-line
        error that ends the stream (a file that cannot be read on this machine)."""
        assert self.runtime is not None
        served = self.runtime.progress().get(spec.stream_id)
        if served is not None and served.report is None:
            return None  # a retried placement: already served here
        if moved:
            retained = await read_resume(self.config, spec.stream_id)
            if retained is not None:
                first_utterance_id = max(first_utterance_id, retained[0])
                resume_s = max(resume_s, retained[1])
        try:
            source = await asyncio.to_thread(open_source, spec.source, spec.config.capture, resume_s)
            await self.runtime.add_stream(
                source,
                spec.stream_id,
                spec.config,
                tap=ResumeTap(fresh=not moved),
                first_utterance_id=first_utterance_id,
            )
        except Exception as exc:
            if type(exc).__name__ not in USER_ERRORS:
                raise
            return f"{self.name}: {exc}"
        self.specs[spec.stream_id] = spec
        return None

    def status(self, with_specs: bool = False) -> dict[str, StreamStatus]:
        """Every stream this host has served since it started, and where each has got to."""
        if self.runtime is None:
            return {}
        out = {}
        for stream_id, progress in self.runtime.progress().items():
            report = progress.report
            delivery = report.delivery if report is not None else None
            ended = self._ended(stream_id, report)
            out[stream_id] = StreamStatus(
                self.specs[stream_id] if with_specs else None,
                progress.next_utterance_id,
                progress.published_until_s,
                progress.heard_s,
                ended,
                delivery.produced if delivery else 0,
                delivery.acknowledged if delivery else 0,
                str(report.error) if ended and report.error is not None else None,
            )
        return out

    def _ended(self, stream_id: str, report) -> bool:
        """The stream ended and the broker acknowledged what it produced (or `ACK_GRACE_S` passed)."""
        if report is None:
            return False
        delivery = report.delivery
        if delivery.acknowledged + delivery.dropped >= delivery.produced:
            return True
        ended_at = self._ended_at.setdefault(stream_id, time.monotonic())
        return time.monotonic() - ended_at > ACK_GRACE_S

    async def release(self, stream_id: str) -> None:
        """Stop one stream at its next pause (what it heard is published) without marking it `offline`:
        it is being handed to another host (a drain)."""
        assert self.runtime is not None
        await self.runtime.hand_over(stream_id, within_s=HAND_OVER_WITHIN_S)

    def stop(self, stream_id: str) -> None:
        """Stop one stream gracefully; it goes `offline`."""
        assert self.runtime is not None
        self.runtime.stop_stream(stream_id)

    async def shutdown(self) -> None:
        """Stop every stream (what was heard is published), deliver the outbox, disconnect."""
        if self.runtime is not None:
            self.runtime.stop()
            await self.runtime.wait()
            await self.runtime.close()


def _normal_priority() -> None:
    """Ray starts workers at nice 15 (its raylet first); a host is the live loop itself, whose latency
    is the product. Raising the priority back needs CAP_SYS_NICE (root, or a container granted it);
    without, the host runs as Ray started it and says so once (`RAY_worker_niceness=0` at `ray start`
    does the same for every worker)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except PermissionError:
        logger.warning("host runs at nice %d (Ray's worker priority): set RAY_worker_niceness=0", os.nice(0))
