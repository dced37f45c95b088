"""Network sources against a real server on loopback: ffmpeg serving conftest's clip over HTTP at
real-time pace (`-re -listen 1`), killed mid-stream and started again."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TalkingClip
from mosquitto import free_port

from engines.errors import MediaError
from realtime.frames import AudioChunk, VideoFrame
from realtime.sources.feed import CaptureOptions
from realtime.sources.network import NetworkSource
from realtime.sources.open import open_source

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg")

OPTIONS = CaptureOptions(reconnect_initial_s=0.2, reconnect_max_s=0.5, source_lost_give_up_s=3.0)


def serve(clip: Path, url: str) -> subprocess.Popen[bytes]:
    """One client, paced at real time, MPEG-TS (streamable) without re-encoding."""
    command = [
        "ffmpeg",
        "-v",
        "error",
        "-re",
        "-i",
        str(clip),
        "-c",
        "copy",
        "-f",
        "mpegts",
        "-listen",
        "1",
        url,
    ]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def test_network_urls_open_a_network_source() -> None:
    source = open_source("rtsp://127.0.0.1:9/none", OPTIONS)
    assert isinstance(source, NetworkSource) and source.name == "rtsp://127.0.0.1:9/none"


def test_served_dropped_and_resumed(talking_clip: TalkingClip) -> None:
    url = f"http://127.0.0.1:{free_port()}/live.ts"
    statuses: list[str] = []
    audio: list[AudioChunk] = []
    frames: list[VideoFrame] = []
    servers = [serve(talking_clip.path, url)]

    async def scenario() -> NetworkSource:
        source = NetworkSource(url, OPTIONS)
        source.on_status = statuses.append
        async with asyncio.timeout(120):
            async for item in source.stream():
                if isinstance(item, AudioChunk):
                    audio.append(item)
                    if len(servers) == 1 and item.end_s >= 2.0:
                        servers[0].kill()  # the drop: the server dies mid-stream
                        servers[0].wait()
                        servers.append(serve(talking_clip.path, url))
                else:
                    frames.append(item)
        return source

    try:
        source = asyncio.run(scenario())
    finally:
        for server in servers:
            server.kill()
            server.wait()
    # A first `source_lost` when the client was faster than ffmpeg's listen (connection refused).
    assert statuses[-4:] == ["online", "source_lost", "online", "source_lost"], statuses
    assert source.reconnects == 1
    starts = [chunk.start_s for chunk in audio]
    assert starts == sorted(starts), "stream time must go on across the reconnection"
    # All of the second serving arrived after the part of the first: more than the clip itself.
    heard_s = sum(len(chunk.samples) for chunk in audio) / 16_000
    assert heard_s > talking_clip.speech.duration_s + 1.5
    assert frames and all(f.rgb.ndim == 3 for f in frames)


def test_unreachable_url_ends_its_stream_with_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing.ts"
    statuses: list[str] = []

    async def scenario() -> None:
        source = NetworkSource(url, CaptureOptions(reconnect_initial_s=0.1, source_lost_give_up_s=0.5))
        source.on_status = statuses.append
        async for _ in source.stream():
            pass

    with pytest.raises(MediaError) as error:
        asyncio.run(scenario())
    assert url in str(error.value) and "\n" not in str(error.value)
    assert statuses == ["source_lost"]
