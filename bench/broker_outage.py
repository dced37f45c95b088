"""A broker that dies mid-stream and comes back: is every result delivered, and how soon?

    python bench/broker_outage.py [--kill-at-s 10] [--down-s 8] [--clip FILE] [--for-good]

Starts a real Mosquitto on a free loopback port, runs `run_live.py` on the demo clip (or `--clip`) at
real-time pace against it, kills the broker `--kill-at-s` seconds after the first result, starts a
fresh one (no persistence: retained state is gone) `--down-s` later, and subscribes again as soon as
it listens. Prints: results produced (JSON lines) and received, missing ids, duplicates, the time from
the broker's return to the stream's `available` = `online` and to the first result, and the exit
status. `--for-good` never restarts it (expect exit status 3). Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

REPO = Path(__file__).resolve().parent.parent
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_broker(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("mosquitto did not start")


async def subscribe(
    port: int, stream_id: str, into: list[tuple[float, str, str]], stop: asyncio.Event
) -> None:
    """Subscribe to the stream's topics, resubscribing (every 50 ms) whenever the broker is away."""
    while not stop.is_set():
        try:
            async with aiomqtt.Client("127.0.0.1", port) as client:
                await client.subscribe(f"m2fnet/{stream_id}/#", qos=1)
                async for message in client.messages:
                    into.append((time.monotonic(), str(message.topic), message.payload.decode()))
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)


async def outage(args: argparse.Namespace) -> int:
    port = free_port()
    stream_id = "outage"
    workdir = Path(tempfile.mkdtemp(prefix="outage-"))
    broker = start_broker(port, workdir)
    received: list[tuple[float, str, str]] = []
    stop = asyncio.Event()
    subscriber = asyncio.create_task(subscribe(port, stream_id, received, stop))
    await asyncio.sleep(0.5)
    run = [sys.executable, str(REPO / "run_live.py"), "--source", str(args.clip), "--stream-id", stream_id]
    run += ["--mqtt", f"mqtt://127.0.0.1:{port}", "--jsonl", "-", "-v"]
    process = await asyncio.create_subprocess_exec(
        *run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    produced: list[dict] = []

    async def read_results() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            produced.append(json.loads(line))

    reader = asyncio.create_task(read_results())
    stderr = asyncio.create_task(process.stderr.read())  # type: ignore[union-attr]
    while not produced:
        await asyncio.sleep(0.02)
    await asyncio.sleep(args.kill_at_s)
    broker.kill()
    broker.wait()
    killed_after = len(produced)
    returned_s = None
    if not args.for_good:
        await asyncio.sleep(args.down_s)
        broker = start_broker(port, workdir)
        returned_s = time.monotonic()
    await reader
    code = await process.wait()
    log = (await stderr).decode()
    await asyncio.sleep(1.0)
    stop.set()
    subscriber.cancel()
    await asyncio.gather(subscriber, return_exceptions=True)
    broker.kill()

    ids = [json.loads(p)["utterance_id"] for _, t, p in received if t.endswith("/utterance")]
    print(f"results produced {len(produced)} ({killed_after} before the kill), received {len(set(ids))}")
    print(
        f"missing ids {sorted({r['utterance_id'] for r in produced} - set(ids))}, duplicates {len(ids) - len(set(ids))}"
    )
    if returned_s is not None:
        after = [(t, topic, p) for t, topic, p in received if t >= returned_s]
        online = next((t for t, topic, p in after if topic.endswith("/available") and p == "online"), None)
        first = next((t for t, topic, _ in after if topic.endswith("/utterance")), None)
        for name, t in (("available=online", online), ("first result", first)):
            print(f"{name} {'never' if t is None else f'{t - returned_s:.2f} s'} after the broker returned")
    print(f"exit status {code}")
    print("\n".join(line for line in log.splitlines() if "error" in line.lower() or "reconnect" in line))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-at-s", type=float, default=10.0, help="after the first result")
    parser.add_argument("--down-s", type=float, default=8.0)
    parser.add_argument("--clip", type=Path, default=REPO / "assets" / "demo" / "demo_conversation.mp4")
    parser.add_argument("--for-good", action="store_true", help="never restart the broker")
    return asyncio.run(outage(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
