"""Interim results on a long sentence at real-time pace: time to the first one, their CPU cost, and
whether they delay the final results.

    python bench/interim.py [--runs 2]

espeak-ng speaks one long sentence (~10 s) and a short one, after 1 s of silence each; the real live
loop (`run_stream`, embedded broker, 1 thread per component) runs it at real-time pace with interim
results on and off, alternately. A subscriber stamps every message on arrival. Prints the time from
speech onset to the first interim result, the interim count and skips, the process CPU time of each
run, and the final results' `segment_to_publish`. Asserts nothing. Needs espeak-ng and ffmpeg.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the generated-media helpers the tests use

from realtime.runtime import env as runtime_env

runtime_env.apply()

import aiomqtt
import numpy as np
from conftest import SPEECH_RATE_HZ, write_wav
from conversations import VOICES, speak

from realtime.outputs.mqtt.address import parse_mqtt_url
from realtime.runtime.app import run_stream
from realtime.runtime.config import LiveConfig

LONG = (
    "We need to finish the report before Friday, or the client will be very unhappy with us, "
    "and then all of us will have to work over the weekend to fix everything that went wrong."
)
SHORT = "Okay, fine, let us do that."
LEAD_S = 1.0


async def run_once(config: LiveConfig, source: str) -> tuple[dict, list[tuple[float, str, str]], float]:
    arrivals: list[tuple[float, str, str]] = []
    origin: list[float] = []
    listener: list[asyncio.Task] = []

    async def listen(url: str, stream_id: str) -> None:
        address = parse_mqtt_url(url)
        async with aiomqtt.Client(address.host, address.port) as client:
            await client.subscribe(f"m2fnet/{stream_id}/#", qos=1)
            async for message in client.messages:
                arrivals.append((time.monotonic(), str(message.topic), message.payload.decode()))

    def on_broker(url: str, stream_id: str) -> None:
        listener.append(asyncio.get_running_loop().create_task(listen(url, stream_id)))
        origin.append(time.monotonic())

    cpu = time.process_time()
    report = await run_stream(config, source, console=None, on_broker=on_broker)
    cpu = time.process_time() - cpu
    await asyncio.sleep(0.3)
    for task in listener:
        task.cancel()
    return {"report": report, "origin": origin[0]}, arrivals, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each setting")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        silence = np.zeros(int(LEAD_S * SPEECH_RATE_HZ), np.float32)
        long_speech = speak(LONG, VOICES[0])
        audio = np.concatenate([silence, long_speech, silence, speak(SHORT, VOICES[1]), silence])
        path = write_wav(Path(tmp) / "long.wav", audio)
        print(
            f"long sentence {len(long_speech) / SPEECH_RATE_HZ:.1f} s, whole file {len(audio) / SPEECH_RATE_HZ:.1f} s"
        )
        for run in range(args.runs):
            for interim in (True, False):
                config = copy.deepcopy(LiveConfig())
                config.pipeline.interim = interim
                info, arrivals, cpu = asyncio.run(run_once(config, str(path)))
                metrics = info["report"].pipeline
                onset = info["origin"] + LEAD_S
                interims = [t for t, topic, _ in arrivals if topic.endswith("/interim")]
                first = f"{interims[0] - onset:.2f} s" if interims else "-"
                finals = metrics.segment_to_publish.summary()
                print(
                    f"run {run} interim {'on ' if interim else 'off'}: first interim after speech onset {first}, "
                    f"interim published {metrics.interim_published} skipped {metrics.interim_skipped} "
                    f"stale {metrics.interim_stale}, interim work p50 {metrics.interim.percentile(50):.0f} ms; "
                    f"process CPU {cpu:.2f} s; finals {metrics.results}, segment_to_publish p50 "
                    f"{finals['p50_ms']:.0f} ms max {max(metrics.segment_to_publish.recent_ms):.0f} ms"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
