"""N real-time streams in one process against the same N as separate processes.

    python bench/multistream.py [CLIP ...] [--n 1 2 4 8] [--separate] [--config configs/live.yaml]
        [--batch-window-ms MS] [--max-batch N] [--stagger-s S]

Each stream replays a copy of the demo clip (and of every clip given, round robin) at real-time pace,
all starting together (the copies then speak in lockstep, the worst case) unless `--stagger-s`,
through every real stage (PyAV, Silero VAD, Whisper tiny.en, the shipped recognizer, an embedded MQTT
broker). Every N runs in a fresh child process, so its peak RSS is its own. Prints, per N:
`segment_to_publish` p50/p95 over all streams, dropped segments, utterances, CPU use (CPU seconds over
wall seconds; 2.0 = both cores of this machine busy) and peak RSS (summed over processes with
--separate); then a line of p50/p95 per stage: the wait for a Whisper call (interim requests
included), the call, the speaker (embedding, run while Whisper transcribes, plus clustering), the
recognizer's features (text encoder) and fusion. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.runtime import env as runtime_env

runtime_env.apply()


def worker(n: int, clips: list[str], args: argparse.Namespace) -> dict:
    """Serve `n` streams in this process; what the parent prints, as a dict."""
    from realtime.runtime.config import load_live_config
    from realtime.runtime.runtime import Runtime

    config = load_live_config(args.config)
    if args.batch_window_ms is not None:
        config.batching.window_ms = args.batch_window_ms
    if args.max_batch is not None:
        config.batching.max_batch_utterances = args.max_batch
    if args.encoder_workers is not None:
        config.asr.encoder_workers = args.encoder_workers
    if args.greedy_batch is not None:
        config.asr.greedy_batch_utterances = args.greedy_batch
    config.capture.realtime = True

    async def serve() -> tuple[list, list[float], int, int]:
        async with Runtime(config, node_id="bench") as runtime:
            first = time.perf_counter()
            for i in range(n):
                if i and args.stagger_s:
                    await asyncio.sleep(args.stagger_s)
                await runtime.add_stream(clips[i % len(clips)], f"s{i}")
            spread_ms.append((time.perf_counter() - first) * 1000)
            reports = await runtime.wait()
            m = runtime.batching_metrics
            return reports, list(m.queue_wait.recent_ms), m.batches, m.utterances

    spread_ms: list[float] = []
    started = time.perf_counter()
    reports, asr_wait_ms, asr_calls, asr_requests = asyncio.run(serve())
    wall_s = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "samples_ms": [v for r in reports for v in r.pipeline.segment_to_publish.recent_ms],
        "asr_ms": [v for r in reports for v in r.pipeline.asr.recent_ms],
        "emotion_ms": [
            f + u for r in reports for f, u in zip(r.pipeline.features.recent_ms, r.pipeline.fusion.recent_ms)
        ],
        "asr_wait_ms": asr_wait_ms,
        "asr_calls": asr_calls,
        "start_spread_ms": spread_ms[0],
        "asr_requests": asr_requests,
        "speaker_ms": [v for r in reports for v in r.pipeline.speaker.recent_ms],
        "features_ms": [v for r in reports for v in r.pipeline.features.recent_ms],
        "fusion_ms": [v for r in reports for v in r.pipeline.fusion.recent_ms],
        "results": sum(r.pipeline.results for r in reports),
        "segments": sum(r.pipeline.segments for r in reports),
        "dropped": sum(r.pipeline.segments_dropped for r in reports),
        "errors": [str(r.error) for r in reports if r.error is not None],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": wall_s,
        "rss_mib": usage.ru_maxrss / 1024,
    }


def spawn(n: int, clips: list[str], args: argparse.Namespace) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, *clips, "--worker", str(n), "--no-demo"]
    for flag, value in (
        ("--config", args.config),
        ("--batch-window-ms", args.batch_window_ms),
        ("--max-batch", args.max_batch),
        ("--encoder-workers", args.encoder_workers),
        ("--greedy-batch", args.greedy_batch),
        ("--stagger-s", args.stagger_s),
    ):
        if value is not None:
            command += [flag, str(value)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def collect(processes: list[subprocess.Popen[str]]) -> dict:
    runs = []
    for process in processes:
        stdout, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"worker failed with status {process.returncode}")
        runs.append(json.loads(stdout.strip().splitlines()[-1]))
    return {
        "samples_ms": [v for r in runs for v in r["samples_ms"]],
        "asr_ms": [v for r in runs for v in r["asr_ms"]],
        "emotion_ms": [v for r in runs for v in r["emotion_ms"]],
        **{key: [v for r in runs for v in r[key]] for key in STAGES},
        "asr_calls": sum(r["asr_calls"] for r in runs),
        "start_spread_ms": max(r["start_spread_ms"] for r in runs),
        "asr_requests": sum(r["asr_requests"] for r in runs),
        "results": sum(r["results"] for r in runs),
        "segments": sum(r["segments"] for r in runs),
        "dropped": sum(r["dropped"] for r in runs),
        "errors": [e for r in runs for e in r["errors"]],
        "cpu_s": sum(r["cpu_s"] for r in runs),
        "wall_s": max(r["wall_s"] for r in runs),
        "rss_mib": sum(r["rss_mib"] for r in runs),
    }


STAGES = ("asr_wait_ms", "asr_ms", "speaker_ms", "features_ms", "fusion_ms")


def stages(run: dict) -> str:
    """p50/p95 of each stage, for what dominates."""
    import numpy as np

    parts = []
    for key in STAGES:
        values = np.array(run[key] or [float("nan")])
        parts.append(
            f"{key.removesuffix('_ms')} {np.percentile(values, 50):.0f}/{np.percentile(values, 95):.0f}"
        )
    calls = f"; Whisper: {run['asr_requests']} requests (finals and interims) in {run['asr_calls']} calls"
    spread = f"; streams started over {run['start_spread_ms']:.0f} ms"
    return "      stages p50/p95 ms: " + ", ".join(parts) + calls + spread


def row(label: str, n: int, run: dict) -> str:
    import numpy as np

    samples = np.array(run["samples_ms"] or [float("nan")])
    asr = np.array(run["asr_ms"] or [float("nan")])
    emotion = np.array(run["emotion_ms"] or [float("nan")])
    return (
        f"{label:<10}{n:>4}{np.percentile(samples, 50):>9.0f}{np.percentile(samples, 95):>9.0f}"
        f"{np.percentile(asr, 50):>9.0f}{np.percentile(emotion, 50):>9.0f}{run['results']:>7}{run['dropped']:>8}"
        f"{run['cpu_s'] / run['wall_s']:>8.2f}{run['rss_mib']:>10.0f}"
        + (f"  errors: {run['errors']}" if run["errors"] else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", help="media files to replay besides the demo")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8], help="stream counts")
    parser.add_argument("--separate", action="store_true", help="also run N separate processes")
    parser.add_argument("--config", help="YAML options (default: built-in defaults)")
    parser.add_argument("--batch-window-ms", type=float, help="override batching.window_ms")
    parser.add_argument(
        "--max-batch", type=int, help="override batching.max_batch_utterances (1: no batching)"
    )
    parser.add_argument("--encoder-workers", type=int, help="override asr.encoder_workers")
    parser.add_argument("--greedy-batch", type=int, help="override asr.greedy_batch_utterances (0: never)")
    parser.add_argument(
        "--stagger-s", type=float, help="start stream i this much after stream i-1 (default: all at once)"
    )
    parser.add_argument("--no-demo", action="store_true", help="only the clips given")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    clips = ([] if args.no_demo else ["demo"]) + args.clips
    if args.worker is not None:
        print(json.dumps(worker(args.worker, clips, args)))
        return 0
    print(f"cpu cores: {os.cpu_count()}  load before: {os.getloadavg()[0]:.2f}  clips: {', '.join(clips)}")
    print(
        f"{'mode':<10}{'N':>4}{'p50 ms':>9}{'p95 ms':>9}{'asr p50':>9}{'emo p50':>9}{'utts':>7}{'dropped':>8}{'CPU':>8}{'RSS MiB':>10}"
    )
    for n in args.n:
        run = collect([spawn(n, clips, args)])
        print(row("one-proc", n, run), stages(run), sep="\n", flush=True)
        if args.separate:
            run = collect([spawn(1, clips[i % len(clips) :], args) for i in range(n)])
            print(row("separate", n, run), stages(run), sep="\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
