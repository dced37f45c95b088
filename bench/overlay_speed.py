"""Cost of the overlay and the preview: MQTT publish -> server-sent event latency, and preview
frames per second (labels drawn + H.264 encoding).

    python bench/overlay_speed.py [--messages 200] [--frames 300]

The overlay follows an embedded broker (amqtt, as `run_live.py` without `--mqtt`); one raw HTTP
client reads `/events`. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's realtime/

from realtime.consumers.overlay import Overlay, OverlayOptions
from realtime.frames import VideoFrame
from realtime.messages import EmotionResult
from realtime.outputs.mqtt.broker import EmbeddedBroker
from realtime.outputs.preview import Preview, PreviewOptions


async def event_latency_ms(messages: int) -> list[float]:
    import aiomqtt

    broker = EmbeddedBroker()
    url = await broker.start()
    latencies: list[float] = []
    try:
        async with Overlay(OverlayOptions(port=0)) as overlay:
            await overlay.connect(url)
            reader, writer = await asyncio.open_connection("127.0.0.1", overlay.port)
            writer.write(b"GET /events HTTP/1.1\r\n\r\n")
            await writer.drain()
            while not (await reader.readline()).startswith(b"event: snapshot"):
                pass
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                for n in range(1, messages + 1):
                    result = EmotionResult(
                        "bench", n, n, n + 1.0, "I am so happy today.", "joy", {"joy": 0.9}, {}, "m"
                    )
                    sent = time.perf_counter()
                    await client.publish("m2fnet/bench/utterance", result.to_json(), qos=1)
                    while not (await reader.readline()).startswith(b"data: "):
                        pass
                    latencies.append((time.perf_counter() - sent) * 1000)
                    await asyncio.sleep(0.02)
            writer.close()
    finally:
        await broker.stop()
    return latencies


def preview_fps(frames: int, size: tuple[int, int]) -> float:
    width, height = size
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        preview = Preview(PreviewOptions(str(Path(folder) / "p.mp4"), fps=15, queue_frames=frames))
        preview.emit(EmotionResult("b", 1, 0, 1, "x", "joy", {"joy": 0.8}, {}, "m", speaker="A"))
        start = time.perf_counter()
        for i in range(frames):
            preview.offer(VideoFrame(picture, i / 15))
        preview.close()
        elapsed = time.perf_counter() - start
    assert preview.metrics.frames_dropped == 0
    return frames / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    latencies = sorted(asyncio.run(event_latency_ms(args.messages)))
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"publish -> SSE event: p50 {statistics.median(latencies):.2f} ms, p95 {p95:.2f} ms ({len(latencies)} messages)"
    )
    for size in ((320, 240), (640, 480), (1280, 720)):
        print(f"preview to file {size[0]}x{size[1]}: {preview_fps(args.frames, size):.0f} frames/s")


if __name__ == "__main__":
    main()
