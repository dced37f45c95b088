"""Microphone and camera streaming with PyAudio and OpenCV's capture replaced by fakes that deliver
audio blocks and frames: timestamps, overflow counting, the drop policy, audio and video in step.
(The error paths with the real libraries are in test_capture.py.)"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types

import numpy as np
import pytest

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, VideoFrame
from realtime.sources.devices import LiveSource, MicrophoneSource, WebcamSource
from realtime.sources.feed import _QUEUE_ITEMS, CaptureOptions, DeviceError

BLOCK = 512


class FakeInputStream:
    """Calls PortAudio's callback from its own thread with numbered 32 ms blocks, as a sound card."""

    def __init__(self, callback, pace_s: float, overflow_every: int) -> None:
        self.callback, self.pace_s, self.overflow_every = callback, pace_s, overflow_every
        self.stopped = threading.Event()
        self.blocks = 0

    def start_stream(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            data = np.full(BLOCK, self.blocks, np.float32).tobytes()
            overflow = self.overflow_every and self.blocks % self.overflow_every == self.overflow_every - 1
            self.callback(data, BLOCK, {}, 2 if overflow else 0)
            self.blocks += 1
            time.sleep(self.pace_s)

    def stop_stream(self) -> None:
        self.stopped.set()

    def close(self) -> None:
        self.stopped.set()


def fake_pyaudio(pace_s: float = 0.002, overflow_every: int = 0) -> types.ModuleType:
    module = types.ModuleType("pyaudio")
    module.paFloat32, module.paInputOverflow, module.paContinue = 1, 2, 0
    streams: list[FakeInputStream] = []

    devices = [
        {"index": 0, "name": "HDMI output", "maxInputChannels": 0},
        {"index": 1, "name": "fake card", "maxInputChannels": 1},
        {"index": 2, "name": "USB headset mic", "maxInputChannels": 1},
    ]

    class PyAudio:
        def get_default_input_device_info(self) -> dict:
            return devices[1]

        def get_device_count(self) -> int:
            return len(devices)

        def get_device_info_by_index(self, index: int) -> dict:
            return devices[index]

        def open(self, *, stream_callback, input_device_index: int, **_kwargs) -> FakeInputStream:
            streams.append(FakeInputStream(stream_callback, pace_s, overflow_every))
            streams[-1].device = input_device_index
            return streams[-1]

        def terminate(self) -> None:
            pass

    module.PyAudio = PyAudio
    module.streams = streams
    return module


class FakeCapture:
    """cv2.VideoCapture delivering `frames` BGR frames (1280x720, blue = frame number), then failing."""

    def __init__(self, _index: int, frames: int = 40, pace_s: float = 0.01) -> None:
        self.left, self.pace_s, self.number = frames, pace_s, 0

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(self.pace_s)
        if self.left == 0:
            return False, None
        self.left -= 1
        frame = np.zeros((720, 1280, 3), np.uint8)
        frame[..., 0] = self.number % 256
        self.number += 1
        return True, frame

    def release(self) -> None:
        pass


async def take(source, count: int, delay_s: float = 0.0) -> list[AudioChunk | VideoFrame]:
    items = []
    stream = source.stream()
    async for item in stream:
        items.append(item)
        if delay_s:
            await asyncio.sleep(delay_s)
        if len(items) == count:
            break
    await stream.aclose()
    return items


def test_microphone_chunks_are_stamped_by_the_sample_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyaudio", fake_pyaudio(overflow_every=10))
    mic = MicrophoneSource(CaptureOptions())
    chunks = asyncio.run(take(mic, 30))
    assert [c.start_s for c in chunks] == pytest.approx([i * BLOCK / SAMPLE_RATE_HZ for i in range(30)])
    assert [int(c.samples[0]) for c in chunks] == list(range(30))
    assert mic.overflows >= 2 and mic.dropped == 0


def test_slow_consumer_drops_the_oldest_audio_and_counts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyaudio", fake_pyaudio(pace_s=0.0005))

    async def scenario() -> tuple[MicrophoneSource, list]:
        mic = MicrophoneSource(CaptureOptions())
        stream = mic.stream()
        first = await anext(stream)
        await asyncio.sleep(0.5)  # the card keeps delivering: far more than the feed holds
        rest = [await anext(stream) for _ in range(5)]
        await stream.aclose()
        return mic, [first, *rest]

    mic, chunks = asyncio.run(scenario())
    assert mic.dropped > 0
    # After the stall the oldest blocks are gone: what arrives next is recent, still in order.
    numbers = [int(c.samples[0]) for c in chunks]
    assert numbers[1] > _QUEUE_ITEMS and numbers[1:] == sorted(numbers[1:])


def test_camera_frames_are_downscaled_rgb_and_capped_in_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index, frames=1000, pace_s=0.01))
    camera = WebcamSource(0, CaptureOptions(video_fps=20.0, max_frame_width_px=640))
    frames = asyncio.run(take(camera, 10))
    assert all(f.rgb.shape == (360, 640, 3) for f in frames)
    # OpenCV delivers BGR: the frame number written in blue comes out in the last channel.
    assert all(f.rgb[..., 2].max() == f.rgb[..., 2].min() and f.rgb[..., 0].max() == 0 for f in frames)
    times = [f.time_s for f in frames]
    assert times == sorted(times)
    # At most one frame per 1/20 s bucket (the camera delivers ~100 per second here).
    assert len({int(t * 20.0 + 1e-6) for t in times}) == len(times)


def test_camera_that_stops_delivering_is_a_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index, frames=3, pace_s=0.001))
    camera = WebcamSource(4, CaptureOptions(video_fps=0))
    with pytest.raises(DeviceError, match="webcam:4"):
        asyncio.run(take(camera, 100))


def test_live_keeps_audio_and_video_in_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    # Both devices at real-time pace: 32 ms audio blocks, ~30 frames per second.
    monkeypatch.setitem(sys.modules, "pyaudio", fake_pyaudio(pace_s=BLOCK / SAMPLE_RATE_HZ))
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index, frames=1000, pace_s=0.033))
    live = LiveSource(CaptureOptions(video_fps=15.0))
    items = asyncio.run(take(live, 60))
    audio = [i for i in items if isinstance(i, AudioChunk)]
    video = [i for i in items if isinstance(i, VideoFrame)]
    assert audio and video
    # On one clock: every frame arrives within a few blocks of the audio heard at that moment.
    latest_audio_s = 0.0
    for item in items:
        if isinstance(item, AudioChunk):
            latest_audio_s = item.end_s
        else:
            assert abs(item.time_s - latest_audio_s) < 0.25, (item.time_s, latest_audio_s)


def test_microphone_by_index_or_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from realtime.sources.open import open_source

    pyaudio = fake_pyaudio()
    monkeypatch.setitem(sys.modules, "pyaudio", pyaudio)
    for spec, device in (("mic", 1), ("mic:2", 2), ("mic:headset", 2)):
        source = open_source(spec, CaptureOptions())
        assert isinstance(source, MicrophoneSource) and pyaudio.streams[-1].device == device
        source.close()
    with pytest.raises(DeviceError, match=r"'mic:0' \(inputs: 1: fake card, 2: USB headset mic\)"):
        open_source("mic:0", CaptureOptions())
