"""`<prefix>/<stream>/stats`: what a stream is doing, every `mqtt.stats_interval_s` (as Frigate's `stats`).

One message per stream and interval, QoS 0, not retained; while the broker is away only the newest
waits. Latency percentiles cover the results of the last interval only; counters run from the start.
The utterance queue never drops (a full one holds Whisper back, and the segment queue drops instead).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import psutil

from realtime.metrics import LatencyStats, PipelineMetrics
from realtime.outputs.mqtt.publisher import DeliveryStats, PublisherMetrics


@dataclass(slots=True)
class StreamStats:
    """Builds one stream's stats payloads."""

    stream_id: str
    pipeline: PipelineMetrics
    delivery: DeliveryStats
    publisher: PublisherMetrics
    started_s: float = field(default_factory=time.monotonic)
    _marks: dict[str, int] = field(default_factory=dict)
    """Sample count of each latency series at the previous message: the start of the next interval."""
    _last_s: float = 0.0

    def payload(self, queue_depths: dict[str, int], outbox_depth: int) -> dict[str, object]:
        now = time.monotonic()
        series = {
            "segment_to_publish": self.pipeline.segment_to_publish,
            "segment_to_ack": self.delivery.segment_to_ack,
            "ack": self.delivery.ack,
        }
        latency = {name: self._interval(name, stats) for name, stats in series.items()}
        interval_s = now - (self._last_s or self.started_s)
        self._last_s = now
        process = psutil.Process()
        return {
            "stream_id": self.stream_id,
            "uptime_s": round(now - self.started_s, 1),
            "interval_s": round(interval_s, 1),
            "queues": {
                "segments": {"depth": queue_depths["segments"], "dropped": self.pipeline.segments_dropped},
                "utterances": {"depth": queue_depths["utterances"]},
                "outbox": {"depth": outbox_depth, "dropped": self.delivery.dropped},
            },
            "results": {
                "produced": self.delivery.produced,
                "acknowledged": self.delivery.acknowledged,
                "empty_transcripts": self.pipeline.empty_transcripts,
                "forced_splits": self.pipeline.forced_splits,
                "forced_splits_without_pause": self.pipeline.forced_splits_without_pause,
            },
            "turns": {
                "voice_splits": self.pipeline.voice_splits,
                "voice_cuts_while_open": self.pipeline.voice_cuts_while_open,
                "early_turn_ends": self.pipeline.early_turn_ends,
                "speculations": self.pipeline.speculations,
                "speculations_used": self.pipeline.speculations_used,
                "speculations_discarded": self.pipeline.speculations_discarded,
            },
            "interim": {
                "published": self.pipeline.interim_published,
                "skipped": self.pipeline.interim_skipped + self.publisher.interim_dropped,
            },
            "latency_ms": latency,
            "mqtt": {
                "connection_losses": self.publisher.connection_losses,
                "reconnects": self.publisher.reconnects,
            },
            "process": {
                "rss_mib": round(process.memory_info().rss / 2**20, 1),
                "threads": process.num_threads(),
                "open_fds": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None,
            },
        }

    def message(self, queue_depths: dict[str, int], outbox_depth: int) -> str:
        return json.dumps(self.payload(queue_depths, outbox_depth), separators=(",", ":"))

    def _interval(self, name: str, series: LatencyStats) -> dict[str, float | int | None]:
        window = series.window_since(self._marks.get(name, 0))
        self._marks[name] = series.count
        if not window.count:
            return {"count": 0, "p50": None, "p95": None}
        return {
            "count": window.count,
            "p50": round(window.percentile(50), 1),
            "p95": round(window.percentile(95), 1),
        }
