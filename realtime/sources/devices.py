"""Live devices: the microphone (PyAudio), a camera (OpenCV), and both together on one stream clock.

Devices cannot wait for a slow consumer, so each hands its items over through a lossy `_ThreadFeed`
that drops (and counts) the oldest item when full. Both heavy imports are lazy: a file-only install
needs neither.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, VideoFrame
from realtime.sources.feed import (
    _END,
    CaptureOptions,
    DeviceError,
    Item,
    _Failure,
    _FrameRateLimiter,
    _ThreadFeed,
    frame_size,
)

logger = logging.getLogger(__name__)


class MicrophoneSource:
    """An audio input device via PyAudio (optional extra `mic`), 16 kHz mono float32."""

    def __init__(self, options: CaptureOptions | None = None, device: str | None = None) -> None:
        """`device`: an input device index or (part of) its name; None: the default input device."""
        self.name = f"mic:{device}" if device else "mic"
        self.options = options or CaptureOptions()
        self.has_audio, self.has_video = True, False
        self.origin_monotonic_s: float | None = None
        """Stream time zero; `LiveSource` shares it with the camera so both clocks agree."""
        try:
            import pyaudio
        except ImportError:
            raise DeviceError(
                "no audio input support: PyAudio is not installed (pip install '.[mic]')"
            ) from None
        self._pyaudio = pyaudio
        self._audio = pyaudio.PyAudio()
        try:
            info = self._device_info(device)
        except (OSError, DeviceError) as exc:
            self._audio.terminate()
            if isinstance(exc, DeviceError):
                raise
            raise DeviceError(f"no audio input device (pyaudio: {exc})") from None
        self._chunk_samples = max(1, SAMPLE_RATE_HZ * self.options.audio_chunk_ms // 1000)
        try:
            self._stream = self._audio.open(
                format=pyaudio.paFloat32,
                channels=1,
                rate=SAMPLE_RATE_HZ,
                input=True,
                input_device_index=int(info["index"]),
                frames_per_buffer=self._chunk_samples,
                stream_callback=self._on_audio,
                start=False,
            )
        except (OSError, ValueError) as exc:
            self._audio.terminate()
            name = info.get("name")
            raise DeviceError(
                f"cannot open audio input device '{name}' at {SAMPLE_RATE_HZ} Hz (pyaudio: {exc})"
            ) from None
        self._feed: _ThreadFeed | None = None
        self._samples_seen = 0
        self.overflows = 0
        """Callbacks in which PortAudio reported lost input (the machine could not keep up)."""
        self._closed = False

    @property
    def dropped(self) -> int:
        """Chunks discarded because the consumer fell more than `_QUEUE_ITEMS` behind."""
        return self._feed.dropped if self._feed is not None else 0

    def _device_info(self, device: str | None) -> dict:
        if device is None:
            return self._audio.get_default_input_device_info()
        inputs = [
            info
            for info in map(self._audio.get_device_info_by_index, range(self._audio.get_device_count()))
            if info.get("maxInputChannels", 0) > 0
        ]
        for info in inputs:
            if (device.isdigit() and int(info["index"]) == int(device)) or (
                not device.isdigit() and device.lower() in str(info.get("name", "")).lower()
            ):
                return info
        names = ", ".join(f"{i['index']}: {i.get('name')}" for i in inputs) or "none"
        raise DeviceError(f"no audio input device '{self.name}' (inputs: {names})")

    def _on_audio(self, data: bytes | None, frames: int, _time: dict, status: int) -> tuple[None, int]:
        # PortAudio's thread: stamp by sample count (the device clock), hand over, never block.
        if status & self._pyaudio.paInputOverflow:
            self.overflows += 1
        samples = np.frombuffer(data or b"", dtype=np.float32).copy()
        chunk = AudioChunk(samples, self._samples_seen / SAMPLE_RATE_HZ)
        self._samples_seen += len(samples)
        if self._feed is not None:
            self._feed.put(chunk)
        return None, self._pyaudio.paContinue

    async def stream(self) -> AsyncIterator[AudioChunk | VideoFrame]:
        self._feed = _ThreadFeed(asyncio.get_running_loop(), self.name, lossy=True)
        self.origin_monotonic_s = self.origin_monotonic_s or time.monotonic()
        self._stream.start_stream()
        try:
            while True:
                item = await self._feed.get()
                assert isinstance(item, AudioChunk)
                yield item
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._feed is not None:
            self._feed.stopped.set()
        self._stream.stop_stream()
        self._stream.close()
        self._audio.terminate()


class WebcamSource:
    """A camera via OpenCV, frames stamped with wall-clock stream time."""

    def __init__(self, index: int = 0, options: CaptureOptions | None = None) -> None:
        import cv2

        self.name = f"webcam:{index}"
        self.options = options or CaptureOptions()
        self.has_audio, self.has_video = False, True
        self.origin_monotonic_s: float | None = None
        """Stream time zero; `LiveSource` shares it with the microphone so both clocks agree."""
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            self._capture.release()
            raise DeviceError(f"cannot open camera '{self.name}'")
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._feed: _ThreadFeed | None = None

    @property
    def dropped(self) -> int:
        """Frames discarded because the consumer fell more than `_QUEUE_ITEMS` behind."""
        return self._feed.dropped if self._feed is not None else 0

    async def stream(self) -> AsyncIterator[AudioChunk | VideoFrame]:
        feed = self._feed = _ThreadFeed(asyncio.get_running_loop(), self.name, lossy=True)
        self.origin_monotonic_s = self.origin_monotonic_s or time.monotonic()
        self._worker = threading.Thread(target=self._produce, args=(feed,), name="camera", daemon=True)
        self._worker.start()
        try:
            while (item := await feed.get()) is not _END:
                if isinstance(item, _Failure):
                    raise item.error
                assert isinstance(item, VideoFrame)
                yield item
        finally:
            feed.stopped.set()
            self.close()

    def _produce(self, feed: _ThreadFeed) -> None:
        import cv2

        keep = _FrameRateLimiter(self.options.video_fps)
        origin = self.origin_monotonic_s or time.monotonic()
        try:
            while not (feed.stopped.is_set() or self._stop.is_set()):
                ok, bgr = self._capture.read()
                if not ok:
                    feed.put(_Failure(DeviceError(f"camera '{self.name}' stopped delivering frames")))
                    return
                time_s = time.monotonic() - origin
                if not keep(time_s):
                    continue
                height, width = bgr.shape[:2]
                size = frame_size(width, height, self.options)
                if size != (width, height):
                    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
                feed.put(VideoFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time_s))
        finally:
            self._capture.release()

    def close(self) -> None:
        # While the worker runs it owns the capture (releasing it under a blocked read() can crash
        # OpenCV's backends): ask it to stop; it releases after its current read.
        self._stop.set()
        if self._worker is None:
            self._capture.release()


class LiveSource:
    """Microphone and camera together, on one stream clock."""

    def __init__(self, options: CaptureOptions | None = None) -> None:
        self.name = "live"
        self.options = options or CaptureOptions()
        self.has_audio, self.has_video = True, True
        self._mic = MicrophoneSource(self.options)
        try:
            self._camera = WebcamSource(self.options.webcam_index, self.options)
        except DeviceError:
            self._mic.close()
            raise

    async def stream(self) -> AsyncIterator[AudioChunk | VideoFrame]:
        origin = time.monotonic()
        self._mic.origin_monotonic_s = self._camera.origin_monotonic_s = origin
        merged = _merge([self._mic.stream(), self._camera.stream()])
        try:
            async for item in merged:
                yield item
        finally:
            await merged.aclose()

    def close(self) -> None:
        self._mic.close()
        self._camera.close()


async def _merge(streams: list[AsyncIterator[Item]]) -> AsyncGenerator[Item, None]:
    """Items of several streams in arrival order; the first error or end of any stream ends all."""
    pending = {asyncio.ensure_future(anext(s)): s for s in streams}
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                stream = pending.pop(future)
                try:
                    item = future.result()
                except StopAsyncIteration:
                    return
                pending[asyncio.ensure_future(anext(stream))] = stream
                yield item
    finally:
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for stream in streams:
            if isinstance(stream, AsyncGenerator):
                try:
                    await stream.aclose()
                except RuntimeError:  # a generator whose pending step was just cancelled may refuse it
                    logger.debug("source already closing")
