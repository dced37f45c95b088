"""End to end: `run_live.py --source demo --overlay ... --ha-discovery` in real time against a real
Mosquitto; after the first utterances the page, opened in headless Chromium, shows the demo's words
and emotion labels, and the discovery config is retained on the broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiomqtt
import pytest
from mosquitto import Mosquitto, free_port
from test_overlay import CHROMIUM, chromium, get, screenshot_variance

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "models" / "m2fnet-meld-causal"
DEMO = json.loads((REPO / "assets" / "demo" / "demo_conversation.json").read_text())
FIRST_UTTERANCES = 2
RUN_TIMEOUT_S = 300


def words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def wait_for_utterances(url: str, stream_id: str, process: subprocess.Popen, count: int) -> list[dict]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, (
            f"run_live.py exited early: {process.stderr.read() if process.stderr else ''}"
        )
        try:
            status, body = get(f"{url}state.json")
        except OSError:  # not listening yet
            status, body = 0, ""
        if status == 200:
            stream = json.loads(body)["streams"].get(stream_id)
            if stream and len(stream["utterances"]) >= count:
                return stream["utterances"]
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} utterances on the overlay after {RUN_TIMEOUT_S} s")


async def retained(broker: Mosquitto, topic: str) -> dict | None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(2):
                async for message in client.messages:
                    return json.loads(message.payload) if message.retain and message.payload else None
        except TimeoutError:
            return None
    return None


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.skipif(not CHECKPOINT.is_dir(), reason=f"needs the shipped checkpoint {CHECKPOINT}")
def test_demo_run_shows_on_the_page_and_in_discovery(mosquitto: Mosquitto, tmp_path: Path) -> None:
    stream_id = f"overlay-{uuid.uuid4().hex[:8]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [
        sys.executable, str(REPO / "run_live.py"), "--source", "demo", "--mqtt", mosquitto.url,
        "--stream-id", stream_id, "--overlay", f"127.0.0.1:{port}", "--ha-discovery",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        shown = wait_for_utterances(url, stream_id, process, FIRST_UTTERANCES)
        dom = chromium("--dump-dom", f"{url}?stream={stream_id}")
        shot = tmp_path / "overlay.png"
        chromium("--window-size=800,400", f"--screenshot={shot}", f"{url}?stream={stream_id}")
        config = asyncio.run(retained(mosquitto, f"homeassistant/sensor/m2fnet_{stream_id}/emotion/config"))
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr

    page_text = " ".join(re.findall(r'class="text">([^<]*)<', dom))
    spoken = words(" ".join(u["text"] for u in DEMO["utterances"][:FIRST_UTTERANCES]))
    assert len(spoken & words(page_text)) >= 0.6 * len(spoken), page_text
    labels = set(json.loads((CHECKPOINT / "labels.json").read_text()))
    current = set(re.findall(r'class="label"[^>]*>([^<]*)<', dom))
    assert current and current <= labels
    assert {u["emotion"] for u in shown} <= set(re.findall(r'class="emotion"[^>]*>([^<]*)<', dom))
    assert screenshot_variance(shot) > 5, "the screenshot is blank"
    assert config is not None and config["state_topic"] == f"m2fnet/{stream_id}/utterance"
    assert f"overlay {url}" in stdout


def test_bad_flags_are_one_line_errors_before_models_load(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for flags, named in (
            (["--overlay", f"127.0.0.1:{port}"], f"127.0.0.1:{port}"),
            (["--preview", str(tmp_path / "x.gif")], "x.gif"),
            (["--ha-discovery", "ha/+"], "ha/+"),
        ):
            run = subprocess.run(
                [sys.executable, str(REPO / "run_live.py"), "--source", "demo", *flags],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert run.returncode == 2, run.stderr
            assert run.stderr.startswith("error: ") and named in run.stderr, run.stderr
            assert "Traceback" not in run.stderr
