"""The media file source: decodes audio and video of one file (PyAV) on a worker thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engines.errors import MediaError
from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, VideoFrame
from realtime.sources.feed import (
    _END,
    CaptureOptions,
    Item,
    _Failure,
    _FrameRateLimiter,
    _Interleaver,
    _reason,
    _Rechunker,
    _ThreadFeed,
    frame_size,
)

if TYPE_CHECKING:
    from av.container import InputContainer

logger = logging.getLogger(__name__)


class FileSource:
    """A media file (wav, flac, mp3, mp4, mkv, avi, webm...) decoded with PyAV, audio and video interleaved
    in stream-time order."""

    start_s: float
    """Stream time before which nothing is delivered (a stream resumed on another cluster host)."""

    def __init__(
        self,
        path: str | Path,
        options: CaptureOptions | None = None,
        start_s: float = 0.0,
        probe: bool = True,
    ) -> None:
        """`start_s`: skip what comes before (a stream resumed on another cluster host); stream times
        stay the file's. `probe`: open the file now (`open`); a network feed opens when it streams."""
        self.path = Path(path)
        self.start_s = start_s
        self.name = str(path)
        self.options = options or CaptureOptions()
        self.has_audio = False
        self.has_video = False
        self.duration_s: float | None = None
        if probe:
            self.open()

    def open(self) -> None:
        """Probe the file now, so a bad path fails before the loop starts (MediaError)."""
        import av

        try:
            with self._open_container() as container:
                self.has_audio = bool(container.streams.audio)
                self.has_video = bool(container.streams.video)
                if container.duration is not None:
                    self.duration_s = container.duration / av.time_base
        except (av.FFmpegError, OSError) as exc:
            raise MediaError(f"cannot read media file '{self.name}': {_reason(exc)}") from None
        if not (self.has_audio or self.has_video):
            raise MediaError(f"cannot read media file '{self.name}': no audio or video stream")

    def close(self) -> None:
        """Nothing is held between streams: each `stream()` opens its own decoder."""

    def _open_container(self) -> InputContainer:
        import av

        return av.open(str(self.path))

    async def stream(self) -> AsyncIterator[AudioChunk | VideoFrame]:
        feed = _ThreadFeed(asyncio.get_running_loop(), self.name, lossy=False)
        worker = threading.Thread(target=self._produce, args=(feed,), name="decode", daemon=True)
        worker.start()
        origin = time.monotonic()
        try:
            while (item := await feed.get()) is not _END:
                if isinstance(item, _Failure):
                    raise item.error
                due = item.end_s if isinstance(item, AudioChunk) else item.time_s
                if due <= self.start_s:
                    continue
                if self.options.realtime:
                    # A chunk exists only once its last sample has been "heard", as from a microphone.
                    delay = origin + due - self.start_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                yield item
        finally:
            feed.stopped.set()

    def _produce(self, feed: _ThreadFeed) -> None:
        try:
            for item in self._decode():
                if not feed.put(item):
                    return
        except Exception as exc:  # noqa: BLE001 (any decode failure ends the stream with one line)
            import av

            error = exc
            if isinstance(exc, av.FFmpegError | OSError):
                error = MediaError(f"cannot decode media file '{self.name}': {_reason(exc)}")
            feed.put(_Failure(error))
            return
        feed.put(_END)

    def _decode(self) -> Iterator[Item]:
        import av

        chunk_samples = max(1, SAMPLE_RATE_HZ * self.options.audio_chunk_ms // 1000)
        with self._open_container() as container:
            origin_s = (container.start_time or 0) / av.time_base
            audio = container.streams.audio[0] if container.streams.audio else None
            video = container.streams.video[0] if container.streams.video else None
            if video is not None:
                # One decoder thread: the cores belong to Whisper and the recognizer (small frames
                # decode in ~1 ms anyway).
                video.codec_context.thread_count = 1
            order = _Interleaver(audio is not None and video is not None)
            chunker = _Rechunker(chunk_samples)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
            keep_video = _FrameRateLimiter(self.options.video_fps)
            for packet in container.demux([s for s in (audio, video) if s is not None]):
                for frame in packet.decode():
                    if isinstance(frame, av.AudioFrame):
                        if chunker.start_s is None:
                            chunker.start_s = max(0.0, (frame.time or 0.0) - origin_s)
                        for out in resampler.resample(frame):
                            for chunk in chunker.add(out.to_ndarray()[0]):
                                yield from order.add(chunk)
                    elif isinstance(frame, av.VideoFrame):
                        time_s = max(0.0, (frame.time or 0.0) - origin_s)
                        if keep_video(time_s):
                            yield from order.add(VideoFrame(self._rgb(frame), time_s))
            if audio is not None:
                for out in resampler.resample(None):
                    for chunk in chunker.add(out.to_ndarray()[0]):
                        yield from order.add(chunk)
                for chunk in chunker.flush():
                    yield from order.add(chunk)
            yield from order.drain()

    def _rgb(self, frame: object) -> np.ndarray:
        width, height = frame_size(frame.width, frame.height, self.options)  # type: ignore[attr-defined]
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height)  # type: ignore[attr-defined]
        return np.ascontiguousarray(rgb)
