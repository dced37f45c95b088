"""Latency of the real live loop on the demo clip (and any clips given), with and without real-time pacing.

    python bench/live_latency.py [CLIP ...] [--config configs/live.yaml] [--modes no-realtime realtime]

Every stage is the real one (decoding, Silero VAD, Whisper, the recognizer, an embedded MQTT broker
unless --mqtt is given). Prints per-stage p50/p95, `segment_to_publish` p50/p95, the real-time factor
and the peak RSS of this process. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.runtime import env as runtime_env

runtime_env.apply()

from realtime.runtime.app import StreamReport, run_stream
from realtime.runtime.config import load_live_config

STAGES = ("vad_chunk", "vad", "asr", "speaker", "features", "fusion", "segment_to_publish")


def peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_report(source: str, mode: str, report: StreamReport, elapsed_s: float) -> None:
    m = report.pipeline
    print(f"\n== {source}  ({mode})")
    print(
        f"utterances {m.results}  empty {m.empty_transcripts}  dropped {m.segments_dropped}  "
        f"media {m.stream_end_s:.1f} s  wall {m.wall_s:.1f} s  RTF {m.real_time_factor:.3f}  "
        f"(run incl. start-up {elapsed_s:.1f} s)"
    )
    print(f"{'stage':<20}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for stage in STAGES:
        s = getattr(m, stage).summary()
        label = "vad (per 32 ms chunk)" if stage == "vad_chunk" else stage
        print(f"{label:<20}{s['count']:>6}{s['p50_ms']:>10.1f}{s['p95_ms']:>10.1f}{s['mean_ms']:>10.1f}")
    p = report.publisher
    print(f"mqtt: published {p.published}  outbox dropped {p.outbox_dropped}  reconnects {p.reconnects}")
    print(f"peak RSS so far: {peak_rss_mib():.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", help="media files to run besides the demo")
    parser.add_argument("--config", help="YAML options (default: built-in defaults)")
    parser.add_argument("--checkpoint", help="recognizer checkpoint directory (default: the shipped one)")
    parser.add_argument("--mqtt", help="mqtt://host:port (default: an embedded broker)")
    parser.add_argument(
        "--modes", nargs="+", default=["no-realtime", "realtime"], choices=["no-realtime", "realtime"]
    )
    parser.add_argument("--no-demo", action="store_true", help="only the clips given")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    base = load_live_config(args.config)
    if args.mqtt:
        base.mqtt.url = args.mqtt
    if args.checkpoint:
        base.checkpoint_dir = args.checkpoint
    sources = ([] if args.no_demo else ["demo"]) + args.clips
    print(f"cpu cores: {os.cpu_count()}  asr model: {base.asr.model}  threads per component: 1")
    for source in sources:
        for mode in args.modes:
            config = copy.deepcopy(base)
            config.capture.realtime = mode == "realtime"
            started = time.perf_counter()
            report = asyncio.run(run_stream(config, source, console=None))
            print_report(source, mode, report, time.perf_counter() - started)
    print(f"\npeak RSS: {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
