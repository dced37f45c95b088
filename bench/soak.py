"""Hours-long run in one process: does memory, or anything else, grow?

    python bench/soak.py --minutes 60 [--clip FILE] [--config configs/live.yaml] [--out soak.json]

Replays the demo clip (or `--clip`) in a loop at real-time pace as ONE stream of one runtime (every
real stage: PyAV, Silero VAD, Whisper, speaker attribution, the shipped recognizer, the embedded MQTT
broker), so the causal context, the speaker history and every queue see an endless conversation.
Once a minute it prints the stream's own `<prefix>/<stream>/stats` message, read back from the broker
like any subscriber would: RSS, open file descriptors, threads, `segment_to_publish` and
`segment_to_ack` p50/p95 over that minute, drops, results produced and acknowledged. At the end: the
RSS drift after the first 5 minutes (the issue's bound: within 5 %). Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.runtime import env as runtime_env

runtime_env.apply()

from realtime.frames import AudioChunk, VideoFrame
from realtime.sources.feed import Source
from realtime.sources.open import DEMO_CLIP_PATH

WARM_UP_MIN = 5
STREAM_ID = "soak"


class LoopingSource:
    """Plays a source again and again until `stop_after_s`, stream time running on across the loops."""

    def __init__(self, source: Source, stop_after_s: float) -> None:
        self._source = source
        self._stop_after_s = stop_after_s
        self.has_audio = source.has_audio
        self.has_video = source.has_video
        self.loops = 0

    async def stream(self) -> AsyncIterator[AudioChunk | VideoFrame]:
        deadline = time.monotonic() + self._stop_after_s
        offset_s = 0.0
        while time.monotonic() < deadline:
            end_s = offset_s
            async with contextlib.aclosing(self._source.stream()) as items:
                async for item in items:
                    if isinstance(item, AudioChunk):
                        item = dataclasses.replace(item, start_s=item.start_s + offset_s)
                        end_s = max(end_s, item.end_s)
                    else:
                        item = dataclasses.replace(item, time_s=item.time_s + offset_s)
                        end_s = max(end_s, item.time_s)
                    yield item
                    if time.monotonic() >= deadline:
                        return
            offset_s = end_s
            self.loops += 1

    def close(self) -> None:
        self._source.close()


def row(minute: int, stats: dict) -> str:
    latency = stats["latency_ms"]
    publish, ack = latency["segment_to_publish"], latency["segment_to_ack"]
    queues = stats["queues"]
    return (
        f"{minute:>4} {stats['process']['rss_mib']:>9.1f} {stats['process']['open_fds']:>5} "
        f"{stats['process']['threads']:>7} {stats['results']['produced']:>7} "
        f"{stats['results']['acknowledged']:>7} {_ms(publish['p50']):>8} {_ms(publish['p95']):>8} "
        f"{_ms(ack['p95']):>8} {queues['segments']['dropped']:>8} {queues['outbox']['dropped']:>7}"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


HEADER = " min   rss_MiB   fds threads results   acked  pub_p50  pub_p95  ack_p95 seg_drop box_drop"


async def soak(args: argparse.Namespace) -> dict:
    import aiomqtt

    from realtime.outputs.mqtt.address import parse_mqtt_url
    from realtime.runtime.config import load_live_config
    from realtime.runtime.runtime import Runtime
    from realtime.sources.file import FileSource

    config = load_live_config(args.config)
    config.capture.realtime = True
    config.mqtt.stats_interval_s = 60.0
    rows: list[dict] = []
    async with Runtime(config, node_id="soak-node") as runtime:
        address = parse_mqtt_url(runtime.broker_url)
        async with aiomqtt.Client(address.host, address.port) as client:
            await client.subscribe(f"{config.mqtt.topic_prefix}/{STREAM_ID}/stats")
            source = LoopingSource(FileSource(args.clip, config.capture), args.minutes * 60 + 1)
            await runtime.add_stream(source, STREAM_ID)
            print(HEADER, flush=True)

            async def collect() -> None:
                async for message in client.messages:
                    stats = json.loads(message.payload)
                    rows.append(stats)
                    print(row(len(rows), stats), flush=True)

            collector = asyncio.create_task(collect())
            reports = await runtime.wait()
            collector.cancel()
    report = reports[0]
    return {
        "clip": str(args.clip),
        "minutes": args.minutes,
        "loops": source.loops,
        "produced": report.delivery.produced,
        "acknowledged": report.delivery.acknowledged,
        "segments_dropped": report.pipeline.segments_dropped,
        "rows": rows,
    }


def drift(rows: list[dict]) -> str:
    """RSS after the warm-up against the RSS at its end."""
    later = [r["process"]["rss_mib"] for r in rows[WARM_UP_MIN - 1 :]]
    if len(later) < 2:
        return f"RSS drift: needs more than {WARM_UP_MIN} minutes"
    base = later[0]
    low, high = min(later), max(later)
    return (
        f"RSS from minute {WARM_UP_MIN} on: {base:.1f} MiB at minute {WARM_UP_MIN}, min {low:.1f}, "
        f"max {high:.1f}, last {later[-1]:.1f} ({100 * (high - base) / base:+.1f} % max, "
        f"{100 * (later[-1] - base) / base:+.1f} % at the end; bound 5 %)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--clip", type=Path, default=DEMO_CLIP_PATH, help="media file (default: the demo)")
    parser.add_argument("--config", help="live YAML options (default: configs/live.yaml defaults)")
    parser.add_argument("--out", help="also write every minute's stats as JSON")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    print(
        f"\n{result['minutes']:g} min, {result['loops']} loops of {Path(result['clip']).name}: "
        f"{result['produced']} results, {result['acknowledged']} acknowledged, "
        f"{result['segments_dropped']} segments dropped"
    )
    print(drift(result["rows"]))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
