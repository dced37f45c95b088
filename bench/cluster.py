"""What the Ray cluster path costs and how fast it recovers, on this one machine.

    python bench/cluster.py [--n 8] [--repeat 1] [--skip-overhead] [--skip-failover]

1. Overhead: the same N demo streams at real-time pace, served by `run_live.py` in one process, and by
   `run_live.py --cluster` on a local one-node cluster (2 CPUs: one host, what Ray itself adds) and on
   a local two-node cluster (`ray.cluster_utils.Cluster`, one CPU each: two hosts sharing this
   machine's cores, each with its own models and Whisper batches). Prints segment_to_publish
   p50/p95 over every result and peak RSS: the process alone, or every process of the cluster (hosts,
   supervisor, raylets, GCS) summed.
A real Mosquitto on a loopback port carries every result.
2. Failover: N streams on the two nodes (room for all of them on either host), the worker node removed without grace after 12 s; prints for
   each moved stream the seconds from the kill to `relocating` and to `online` on the other host, and
   whether every stream's ids stayed unique. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


class PeakRss:
    """Peak of the summed RSS of the processes `select()` returns, sampled every 0.2 s."""

    def __init__(self, select) -> None:
        self.select = select
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            total = 0
            for process in self.select():
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def ray_processes() -> list[psutil.Process]:
    out = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(process.info["cmdline"] or [])
        if "ray" in cmd and (
            "raylet" in cmd or "gcs_server" in cmd or "ray::" in cmd or "default_worker" in cmd
        ):
            out.append(process)
    return out


def mosquitto(workdir: Path) -> tuple[subprocess.Popen, str]:
    """A Mosquitto on a free loopback port: every run and host publishes to one real broker."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)])
    time.sleep(0.5)
    return process, f"mqtt://127.0.0.1:{port}"


def run_cli(
    streams: Path, out: Path, cluster_address: str | None, broker_url: str
) -> tuple[list[float], int]:
    args = [sys.executable, str(ROOT / "run_live.py"), "--streams", str(streams), "--jsonl", str(out)]
    args += ["--mqtt", broker_url]
    if cluster_address:
        args += ["--cluster", cluster_address]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    me = psutil.Process(process.pid)
    rss = PeakRss(lambda: [me, *ray_processes()] if cluster_address else [me])
    _, err = process.communicate(timeout=900)
    peak = rss.stop()
    if process.returncode != 0:
        raise SystemExit(f"run_live.py failed ({process.returncode}): {err[-2000:]}")
    latencies = [
        json.loads(line)["timings_ms"]["segment_to_publish"] for line in out.read_text().splitlines()
    ]
    return latencies, peak


def overhead(n: int, repeat: int, workdir: Path, broker_url: str) -> None:
    from ray.cluster_utils import Cluster

    streams = workdir / "streams.yaml"
    streams.write_text("".join(f"- {{id: s{i}, source: demo}}\n" for i in range(n)))
    layouts = {"one process": None, "one-node cluster": [2], "two-node cluster": [1, 1]}
    for r in range(repeat):
        for label, cpus in layouts.items():
            cluster = None
            if cpus is not None:
                cluster = Cluster(
                    initialize_head=True,
                    head_node_args={**NODE, "num_cpus": cpus[0], "include_dashboard": False},
                )
                for more in cpus[1:]:
                    cluster.add_node(**{**NODE, "num_cpus": more})
                cluster.wait_for_nodes()
            try:
                address = cluster.address if cluster else None
                latencies, peak = run_cli(streams, workdir / f"{r}-{label}.jsonl", address, broker_url)
            finally:
                if cluster is not None:
                    cluster.shutdown()
            print(
                f"{label:17s} {n} streams: {len(latencies)} results, segment_to_publish "
                f"p50 {statistics.median(latencies):.0f} / p95 {percentile(latencies, 95):.0f} ms, "
                f"peak RSS {peak / 2**30:.2f} GiB",
                flush=True,
            )


def failover(n: int, broker_url: str) -> None:
    import asyncio

    import ray
    from paho.mqtt import client as paho
    from ray.cluster_utils import Cluster

    from realtime.cluster.supervisor import NAMESPACE
    from realtime.cluster.supervisor import supervisor as start_supervisor
    from realtime.runtime.config import LiveConfig
    from realtime.runtime.stream_specs import StreamSpec

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    url = broker_url
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    worker = cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    events: list[tuple[float, str, str]] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: events.append((time.monotonic(), m.topic, m.payload.decode()))
    host, port = url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.subscribe(f"{prefix}/#", qos=1)
    client.loop_start()
    config = LiveConfig()
    config.mqtt.url, config.mqtt.topic_prefix, config.mqtt.stats_interval_s = url, prefix, 0
    config.cluster.streams_per_host = n  # room on the surviving host for every moved stream
    supervisor = start_supervisor(config)
    ids = [f"f{i}" for i in range(n)]
    try:
        ray.get(supervisor.submit.remote([StreamSpec("demo", s, config) for s in ids], ""))
        while not all(any(t == f"{prefix}/{s}/utterance" for _, t, _ in events) for s in ids):
            time.sleep(0.2)
        time.sleep(12)
        state = ray.get(supervisor.state.remote())
        victim = next(h for h, v in state["hosts"].items() if v["node_id"] == worker.node_id)
        moved = state["hosts"][victim]["streams"]
        killed = time.monotonic()
        cluster.remove_node(worker, allow_graceful=False)
        while ray.get(supervisor.state.remote())["pending"] or not all(
            any(t == f"{prefix}/{s}/status" and p == "online" and at > killed for at, t, p in events)
            for s in moved
        ):
            time.sleep(0.2)
            if time.monotonic() - killed > 120:
                print("moved streams not online within 120 s")
                break
        for s in moved:
            statuses = [
                (at - killed, p) for at, t, p in events if t == f"{prefix}/{s}/status" and at > killed
            ]
            first = {p: round(at, 1) for at, p in reversed(statuses)}
            print(f"{s}: relocating after {first.get('relocating')} s, online after {first.get('online')} s")
        while any(ray.get(supervisor.state.remote())["streams"][s]["status"] != "ended" for s in ids):
            time.sleep(0.5)
        time.sleep(2)
        for s in ids:
            got = [json.loads(p)["utterance_id"] for _, t, p in events if t == f"{prefix}/{s}/utterance"]
            print(
                f"{s}: {len(got)} results, ids unique {len(got) == len(set(got))}{' (moved)' if s in moved else ''}"
            )
        try:
            ray.get(supervisor.shutdown.remote(), timeout=60)
        except ray.exceptions.RayActorError:
            pass
    finally:
        client.loop_stop()
        ray.shutdown()
        cluster.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-failover", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        broker, url = mosquitto(Path(workdir))
        try:
            if not args.skip_overhead:
                overhead(args.n, args.repeat, Path(workdir), url)
            if not args.skip_failover:
                failover(args.n, url)
        finally:
            broker.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
