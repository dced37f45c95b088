"""The overlay against a real Mosquitto: state, HTTP routes, the event stream, the standalone CLI, and
the page in a real headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from mosquitto import Mosquitto, free_port

from realtime.consumers.overlay import Overlay, OverlayError, OverlayOptions, parse_listen_address
from realtime.consumers.overlay.state import OverlayState
from realtime.outputs.mqtt.address import BrokerUnreachableError

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


def utterance(n: int, text: str, emotion: str, speaker: str | None = None) -> dict:
    return {
        "schema": 3,
        "stream_id": "s",
        "utterance_id": n,
        "start_s": 2.0 * n,
        "end_s": 2.0 * n + 1.5,
        "wall_time": "2026-11-30T12:00:00.000+00:00",
        "speaker": speaker,
        "text": text,
        "emotion": emotion,
        "scores": {emotion: 0.7, "neutral": 0.3},
        "modalities": {"text": True, "audio": True, "visual": False},
        "timings_ms": {},
        "model": "m",
    }


async def publish(broker: Mosquitto, stream_id: str, messages: list[tuple[str, object]]) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        for kind, payload in messages:
            body = payload if isinstance(payload, str) else json.dumps(payload)
            await client.publish(f"m2fnet/{stream_id}/{kind}", body, qos=1, retain=kind == "available")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def wait_for(condition, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


def test_state_keeps_recent_results_and_counts_malformed() -> None:
    state = OverlayState(history_utterances=2, page_queue_events=4, max_pages=1)
    state.take("s", "interim", json.dumps({"utterance_id": 1, "text": "I can"}).encode())
    assert state.snapshot()["streams"]["s"]["interim"]["text"] == "I can"
    for n in (1, 2, 3):
        state.take("s", "utterance", json.dumps(utterance(n, f"line {n}", "joy")).encode())
    stream = state.snapshot()["streams"]["s"]
    assert [u["text"] for u in stream["utterances"]] == ["line 2", "line 3"]
    assert stream["interim"] is None, "the final result replaces the provisional one"
    assert "modalities" not in stream["utterances"][0], "only what the page uses is kept"
    state.take("s", "utterance", b"not json")
    state.take("s", "utterance", json.dumps({"text": "no emotion"}).encode())
    state.take("s", "available", b"maybe")
    assert state.metrics.malformed == 3
    assert state.metrics.messages == 4


def test_speaker_revisions_correct_the_kept_lines() -> None:
    state = OverlayState(history_utterances=10, page_queue_events=4, max_pages=1)
    for n, speaker in ((1, "S1"), (2, "S2")):
        state.take("s", "utterance", json.dumps(utterance(n, f"line {n}", "joy", speaker)).encode())
    third = {
        **utterance(3, "line 3", "joy", "S2"),
        "speaker_revisions": [{"utterance_id": 1, "speaker": "S2"}, "bad"],
    }
    state.take("s", "utterance", json.dumps(third).encode())
    kept = state.snapshot()["streams"]["s"]["utterances"]
    assert [u["speaker"] for u in kept] == ["S2", "S2", "S2"]
    assert kept[2]["speaker_revisions"] == [{"utterance_id": 1, "speaker": "S2"}], "malformed entries dropped"


def test_slow_page_is_dropped_and_extra_pages_refused() -> None:
    asyncio.run(_slow_page_is_dropped_and_extra_pages_refused())


async def _slow_page_is_dropped_and_extra_pages_refused() -> None:
    state = OverlayState(history_utterances=10, page_queue_events=2, max_pages=1)
    feed = state.open_page()
    assert feed is not None
    assert state.open_page() is None
    assert state.metrics.pages_refused == 1
    for n in (1, 2, 3):
        state.take("s", "utterance", json.dumps(utterance(n, "x", "joy")).encode())
    assert feed.closed.is_set()
    assert state.metrics.pages_dropped == 1
    assert state.open_page() is not None, "the dropped page's slot is free again"


def test_listen_address() -> None:
    assert parse_listen_address("8080") == ("127.0.0.1", 8080)
    assert parse_listen_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_listen_address("[::1]:9000") == ("::1", 9000)
    for bad in ("", "host:", "x:99999", "port"):
        with pytest.raises(OverlayError, match="bad overlay address"):
            parse_listen_address(bad)


def test_routes_snapshot_and_events(mosquitto: Mosquitto) -> None:
    asyncio.run(_routes_snapshot_and_events(mosquitto))


async def _routes_snapshot_and_events(mosquitto: Mosquitto) -> None:
    stream_id = f"ov-{uuid.uuid4().hex[:8]}"
    async with Overlay(OverlayOptions(port=0)) as overlay:
        await overlay.connect(mosquitto.url)
        await publish(
            mosquitto, stream_id, [("available", "online"), ("utterance", utterance(1, "Hi <b>", "joy"))]
        )
        await wait_for(
            lambda: stream_id in overlay.state.streams and overlay.state.streams[stream_id].utterances
        )

        status, body = await asyncio.to_thread(get, f"{overlay.url}state.json")
        assert status == 200
        assert json.loads(body)["streams"][stream_id]["available"] == "online"
        status, page = await asyncio.to_thread(get, overlay.url)
        assert status == 200 and "Hi \\u003cb>" in page and "<b>" not in page, "snapshot escaped in the page"
        assert (await asyncio.to_thread(get, f"{overlay.url}overlay.js"))[0] == 200
        assert (await asyncio.to_thread(get, f"{overlay.url}nope"))[0] == 404

        reader, writer = await asyncio.open_connection("127.0.0.1", overlay.port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        events: list[tuple[str, dict]] = []

        async def read_events(count: int) -> None:
            kind = ""
            while len(events) < count:
                line = (await reader.readline()).decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))

        async with asyncio.timeout(10):
            await read_events(1)
            assert events[0][0] == "snapshot"
            await publish(
                mosquitto,
                stream_id,
                [
                    ("interim", {"utterance_id": 2, "text": "and"}),
                    ("utterance", utterance(2, "Bye.", "sadness", "A")),
                ],
            )
            await read_events(3)
        assert [k for k, _ in events] == ["snapshot", "interim", "utterance"]
        assert events[2][1]["stream_id"] == stream_id
        assert events[2][1]["speaker"] == "A" and events[2][1]["emotion"] == "sadness"
        writer.close()


def test_unreachable_broker_and_busy_port() -> None:
    asyncio.run(_unreachable_broker_and_busy_port())


async def _unreachable_broker_and_busy_port() -> None:
    async with Overlay(OverlayOptions(port=0)) as overlay:
        with pytest.raises(BrokerUnreachableError, match=f"mqtt://127.0.0.1:{free_port()}|cannot reach"):
            await overlay.connect(f"mqtt://127.0.0.1:{free_port()}")
        with pytest.raises(OverlayError, match=f"127.0.0.1:{overlay.port}"):
            await Overlay(OverlayOptions(port=overlay.port)).start()


def test_cli_user_errors() -> None:
    for args, named in (
        (["--mqtt", "http://x"], "http://x"),
        (["--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--port", "0"], "cannot reach MQTT broker"),
        (["--mqtt", "mqtt://127.0.0.1:1", "--port", "70000"], "70000"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "realtime.consumers.overlay", *args],
            check=False,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and named in result.stderr
        assert "Traceback" not in result.stderr


def chromium(*args: str, timeout_s: float = 90) -> str:
    """Run headless Chromium once; its own sandbox needs privileges a CI container lacks."""
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=True).stdout


def screenshot_variance(path: Path) -> float:
    from PIL import Image

    return float(np.asarray(Image.open(path).convert("L"), dtype=np.float32).std())


def _has_interim(snapshot: dict, stream_id: str) -> bool:
    return (snapshot["streams"].get(stream_id) or {}).get("interim") is not None


@needs_chromium
def test_standalone_page_in_chromium(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """`python -m realtime.consumers.overlay` follows the broker; Chromium renders labels, lines and the interim."""
    stream_id = f"ov-{uuid.uuid4().hex[:8]}"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "realtime.consumers.overlay", "--mqtt", mosquitto.url, "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith(f"overlay http://127.0.0.1:{port}/")
        asyncio.run(
            publish(
                mosquitto,
                stream_id,
                [
                    ("available", "online"),
                    ("utterance", utterance(1, "What a lovely garden.", "joy", "A")),
                    ("utterance", utterance(2, "You forgot again.", "anger", "B")),
                    # Later voices showed that line 1 was B's: the page shows the corrected speaker.
                    (
                        "utterance",
                        {
                            **utterance(3, "Not me.", "neutral", "A"),
                            "speaker_revisions": [{"utterance_id": 1, "speaker": "B"}],
                        },
                    ),
                    ("interim", {"utterance_id": 4, "text": "I told", "emotion": "sadness", "speaker": "A"}),
                ],
            )
        )
        deadline = time.monotonic() + 10
        while not _has_interim(json.loads(get(f"http://127.0.0.1:{port}/state.json")[1]), stream_id):
            assert time.monotonic() < deadline, "the overlay did not receive the messages"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/?stream={stream_id}"
        dom = chromium("--dump-dom", url)
        assert f'data-stream="{stream_id}"' in dom
        assert dom.count('class="stream') == 1, "?stream= shows that stream only"
        for text in (
            "What a lovely garden.",
            "You forgot again.",
            "I told…",
            ">joy<",
            ">anger<",
            ">sadness<",
        ):
            assert text in dom
        assert 'class="line interim"' in dom
        assert dom.count('class="who">B:</span>') == 2 and dom.count('class="who">A:</span>') == 1

        shot = tmp_path / "overlay.png"
        chromium("--window-size=800,400", f"--screenshot={shot}", url)
        assert screenshot_variance(shot) > 5, "the screenshot is blank"
        transparent = chromium("--dump-dom", f"{url}&transparent=1")
        assert '<html lang="en" class="transparent">' in transparent
    finally:
        server.terminate()
        server.wait(timeout=10)
