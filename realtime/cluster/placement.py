"""Which host serves which stream: the supervisor's bookkeeping, kept free of Ray so it can be tested
alone. A stream goes to the least-loaded ready host with room that may run it (a device stream only on
its node); one that fits nowhere waits `pending` until a host has room."""

from __future__ import annotations

from dataclasses import dataclass, field

from realtime.runtime.stream_specs import StreamSpec

DEVICE_SOURCES = ("mic", "live", "webcam")


def is_device(source: str) -> bool:
    """Sources bound to the machine that has the device."""
    return source in DEVICE_SOURCES or source.startswith(("mic:", "webcam:"))


@dataclass(slots=True)
class ClusterStream:
    """A stream the cluster serves, and where it has got to (to resume it elsewhere)."""

    spec: StreamSpec
    node: str | None = None
    """Node id a device stream must run on; None: anywhere."""
    host: str | None = None
    """The host serving it now; None while pending or relocating."""
    next_utterance_id: int = 1
    resume_s: float = 0.0
    """Stream time a file source restarts from after a move."""
    status: str = "pending"
    """pending | relocating | online | ended"""
    moves: int = 0
    delivered_before: tuple[int, int] = (0, 0)
    """Results produced and acknowledged on the hosts it has left (as last reported)."""
    delivered_here: tuple[int, int] = (0, 0)
    """The same on its current host."""
    report: dict = field(default_factory=dict)
    """The host's summary once ended: results produced and acknowledged, the error if any."""

    @property
    def stream_id(self) -> str:
        return self.spec.stream_id


@dataclass(slots=True)
class HostSlot:
    name: str
    node_id: str
    capacity: int
    ready: bool = False
    draining: bool = False
    streams: set[str] = field(default_factory=set)

    @property
    def free(self) -> int:
        return self.capacity - len(self.streams)


class Placement:
    """Streams, hosts, and the stream -> host assignment."""

    def __init__(self) -> None:
        self.streams: dict[str, ClusterStream] = {}
        self.hosts: dict[str, HostSlot] = {}

    def choose_host(self, stream: ClusterStream) -> HostSlot | None:
        """The least-loaded ready host with room that may run `stream`. A new stream waits (None) when
        the least-loaded one is still loading its models, so that a cluster starting up is not filled
        from the first host ready; a relocating stream takes the best host ready now."""
        fits = [
            h
            for h in self.hosts.values()
            if (h.ready or stream.status == "pending")
            and not h.draining
            and h.free > 0
            and stream.node in (None, h.node_id)
        ]
        best = min(fits, key=lambda h: (len(h.streams) / h.capacity, not h.ready, h.name), default=None)
        return best if best is not None and best.ready else None

    def assign(self, stream: ClusterStream, host: HostSlot) -> None:
        stream.host = host.name
        stream.status = "online"
        host.streams.add(stream.stream_id)

    def unassign(self, stream: ClusterStream, status: str) -> None:
        if stream.host in self.hosts:
            self.hosts[stream.host].streams.discard(stream.stream_id)
        stream.host = None
        stream.status = status
        _left_host(stream)

    def waiting(self) -> list[ClusterStream]:
        """Streams without a host, relocating ones first (they were being served), then in order."""
        waiting = [s for s in self.streams.values() if s.status in ("pending", "relocating")]
        return sorted(waiting, key=lambda s: s.status != "relocating")

    def lose_host(self, name: str) -> list[ClusterStream]:
        """A host died: its streams become `relocating`; returns them."""
        host = self.hosts.pop(name, None)
        moved = [self.streams[s] for s in sorted(host.streams)] if host else []
        for stream in moved:
            stream.host = None
            stream.status = "relocating"
            stream.moves += 1
            _left_host(stream)
        return moved

    def state(self) -> dict:
        """The retained `<prefix>/cluster/state` message."""
        return {
            "hosts": {
                h.name: {
                    "node_id": h.node_id,
                    "ready": h.ready,
                    "draining": h.draining,
                    "capacity": h.capacity,
                    "streams": sorted(h.streams),
                }
                for h in sorted(self.hosts.values(), key=lambda h: h.name)
            },
            "streams": {
                s.stream_id: {"status": s.status, "host": s.host, "moves": s.moves}
                for s in self.streams.values()
            },
            "pending": [s.stream_id for s in self.streams.values() if s.status == "pending"],
        }


def _left_host(stream: ClusterStream) -> None:
    here, before = stream.delivered_here, stream.delivered_before
    stream.delivered_before = (before[0] + here[0], before[1] + here[1])
    stream.delivered_here = (0, 0)
