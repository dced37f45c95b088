"""Capture: async sources that yield `AudioChunk`s (16 kHz mono float32) and `VideoFrame`s (RGB uint8).

This module holds what every source shares (options, errors, the thread -> loop feed), the media file
source and `open_source`; the microphone and camera live in `realtime.devices`.

Every source opens eagerly in its constructor, so a bad path or a missing device fails with one line
before the live loop starts. Blocking work (decoding, device reads) runs on a worker thread that feeds
the event loop through a bounded queue; `stream()` never blocks the loop.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, VideoFrame

if TYPE_CHECKING:
    from av.container import InputContainer

logger = logging.getLogger(__name__)

DEMO_CLIP_PATH = Path(__file__).resolve().parents[1] / "assets" / "demo" / "demo_conversation.mp4"
"""The bundled clip that the `demo` source plays (built by scripts/make_demo_clip.py)."""

_QUEUE_ITEMS = 64
"""Items a worker thread may run ahead of the consumer (~2 s of 32 ms audio chunks)."""
_MAX_REORDER_S = 1.0
"""How far one stream of a file may run ahead of the other before items are released anyway."""

Item = AudioChunk | VideoFrame

NETWORK_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://")


class MediaError(Exception):
    """A media file that cannot be opened or decoded; the message names the file."""


class DeviceError(Exception):
    """A microphone or camera that cannot be opened or stopped delivering; the message names it."""


@dataclass(slots=True)
class CaptureOptions:
    """How sources decode, pace and shrink what they capture."""

    realtime: bool = True
    """Pace file replay at wall-clock speed, as a live stream would arrive; False decodes as fast as
    the consumer reads."""
    audio_chunk_ms: int = 32
    """Audio chunk length; 32 ms is Silero VAD's native 512-sample frame."""
    video_fps: float = 15.0
    """Most video frames per second kept from a file or camera; extra frames are skipped."""
    max_frame_width_px: int = 640
    """Wider frames are downscaled to this width (aspect kept); 0 keeps the native size."""
    webcam_index: int = 0
    """Camera index for the `webcam` and `live` sources."""
    network_timeout_s: float = 5.0
    """A network stream that sends nothing for this long counts as dropped."""
    reconnect_initial_s: float = 0.5
    """First wait before reconnecting a dropped network stream; doubled after every failed try."""
    reconnect_max_s: float = 8.0
    """Upper bound of that wait."""
    source_lost_give_up_s: float = 60.0
    """A network stream unreachable for this long ends its stream (the others go on)."""


class Source(Protocol):
    """What the pipeline consumes: a named, already opened source of audio chunks and video frames."""

    name: str

    @property
    def has_audio(self) -> bool: ...

    @property
    def has_video(self) -> bool: ...

    def stream(self) -> AsyncIterator[AudioChunk | VideoFrame]: ...

    def close(self) -> None: ...


class _Failure:
    """Carries a worker thread's exception to the consumer."""

    def __init__(self, error: Exception) -> None:
        self.error = error


_END = object()


class _ThreadFeed:
    """A worker thread -> event loop hand-over holding at most `_QUEUE_ITEMS` items.

    Full, lossless (file decoding): `put` blocks the producer until the consumer takes an item, so
    nothing is lost. Full, lossy (devices, which cannot wait): `put` drops the oldest queued item,
    counted in `dropped` and logged.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, label: str, lossy: bool) -> None:
        self._loop = loop
        self._label = label
        self._lossy = lossy
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._room = threading.Semaphore(_QUEUE_ITEMS)
        self.stopped = threading.Event()
        self.dropped = 0

    def put(self, item: object) -> bool:
        """Hand `item` to the event loop; False once the consumer has gone."""
        if not self._lossy:
            while not self._room.acquire(timeout=0.1):
                if self.stopped.is_set():
                    return False
        if self.stopped.is_set():
            return False
        try:
            self._loop.call_soon_threadsafe(self._accept, item)
        except RuntimeError:  # the loop is closed: the consumer is gone
            return False
        return True

    def _accept(self, item: object) -> None:
        if self._lossy and self._queue.qsize() >= _QUEUE_ITEMS:
            self._queue.get_nowait()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning("%s: consumer too slow, %d item(s) dropped so far", self._label, self.dropped)
        self._queue.put_nowait(item)

    async def get(self) -> object:
        item = await self._queue.get()
        if not self._lossy:
            self._room.release()
        return item


class FileSource:
    """A media file (wav, flac, mp3, mp4, mkv, avi, webm...) decoded with PyAV, audio and video interleaved
    in stream-time order."""

    def __init__(self, path: str | Path, options: CaptureOptions | None = None) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.options = options or CaptureOptions()
        self.has_audio = False
        self.has_video = False
        self.duration_s: float | None = None
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
                if self.options.realtime:
                    # A chunk exists only once its last sample has been "heard", as from a microphone.
                    due = item.end_s if isinstance(item, AudioChunk) else item.time_s
                    delay = origin + due - time.monotonic()
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


def frame_size(width: int, height: int, options: CaptureOptions) -> tuple[int, int]:
    """(width, height) a captured frame is kept at: at most `max_frame_width_px` wide, aspect kept.

    Even sizes keep the scalers on their fast path; the aspect ratio is kept within a pixel.
    """
    max_width = options.max_frame_width_px
    if 0 < max_width < width:
        return max_width, max(2, round(height * max_width / width / 2) * 2)
    return width, height


class _Rechunker:
    """Cuts resampled audio into fixed-length chunks with contiguous stream times."""

    def __init__(self, chunk_samples: int) -> None:
        self._size = chunk_samples
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._emitted = 0
        self.start_s: float | None = None

    def add(self, samples: np.ndarray) -> Iterator[AudioChunk]:
        self._pending.append(samples.astype(np.float32, copy=False))
        self._pending_len += len(samples)
        if self._pending_len < self._size:
            return
        joined = np.concatenate(self._pending)
        whole = len(joined) - len(joined) % self._size
        for offset in range(0, whole, self._size):
            yield self._chunk(joined[offset : offset + self._size].copy())
        rest = joined[whole:]
        self._pending, self._pending_len = [rest], len(rest)

    def flush(self) -> Iterator[AudioChunk]:
        if self._pending_len:
            yield self._chunk(np.concatenate(self._pending))
        self._pending, self._pending_len = [], 0

    def _chunk(self, samples: np.ndarray) -> AudioChunk:
        chunk = AudioChunk(samples, (self.start_s or 0.0) + self._emitted / SAMPLE_RATE_HZ)
        self._emitted += len(samples)
        return chunk


class _Interleaver:
    """Releases audio and video items in stream-time order.

    Demuxers interleave packets only roughly, so items wait in a heap until the other stream has
    reached their time. The heap is bounded in time: an item is released anyway once the leading
    stream is `_MAX_REORDER_S` past it (a stream that ended early must not hold the other back).
    """

    def __init__(self, two_streams: bool) -> None:
        self._two = two_streams
        self._heap: list[tuple[float, int, Item]] = []
        self._seq = 0
        self._latest = {"audio": -1.0, "video": -1.0}

    def add(self, item: Item) -> Iterator[Item]:
        kind, time_s = ("audio", item.start_s) if isinstance(item, AudioChunk) else ("video", item.time_s)
        if not self._two:
            yield item
            return
        self._latest[kind] = max(self._latest[kind], time_s)
        heapq.heappush(self._heap, (time_s, self._seq, item))
        self._seq += 1
        ready_s = max(min(self._latest.values()), max(self._latest.values()) - _MAX_REORDER_S)
        while self._heap and self._heap[0][0] <= ready_s:
            yield heapq.heappop(self._heap)[2]

    def drain(self) -> Iterator[Item]:
        while self._heap:
            yield heapq.heappop(self._heap)[2]


class _FrameRateLimiter:
    """Keeps at most `fps` frames per second: one per 1/fps time bucket."""

    def __init__(self, fps: float) -> None:
        self._fps = fps
        self._last_bucket = -1

    def __call__(self, time_s: float) -> bool:
        if self._fps <= 0:
            return True
        bucket = int(time_s * self._fps + 1e-6)
        if bucket <= self._last_bucket:
            return False
        self._last_bucket = bucket
        return True


def open_source(spec: str, options: CaptureOptions | None = None) -> Source:
    """`mic`, `mic:INDEX|NAME`, `webcam`, `webcam:INDEX`, `live`, `demo` (the bundled clip), a media file, a
    network stream (`rtsp://`, `rtmp://`, `http(s)://`, see `realtime.network`).

    The keywords win over files of the same name: write `./mic` for a file called `mic`.
    """
    # Imported at call time: devices.py builds on this module's feeds and helpers.
    from realtime.devices import LiveSource, MicrophoneSource, WebcamSource

    options = options or CaptureOptions()
    if spec.startswith(NETWORK_SCHEMES):
        from realtime.network import NetworkSource

        return NetworkSource(spec, options)
    if spec == "mic" or spec.startswith("mic:"):
        return MicrophoneSource(options, spec.partition(":")[2] or None)
    if spec == "live":
        return LiveSource(options)
    if spec == "webcam" or spec.startswith("webcam:"):
        index_text = spec.partition(":")[2] or str(options.webcam_index)
        if not index_text.isdigit():
            raise DeviceError(f"cannot open camera '{spec}': expected webcam or webcam:INDEX")
        return WebcamSource(int(index_text), options)
    if spec == "demo":
        if not DEMO_CLIP_PATH.is_file():
            build = "python scripts/make_demo_clip.py"
            raise MediaError(f"cannot read media file '{DEMO_CLIP_PATH}': missing (build it: {build})")
        return FileSource(DEMO_CLIP_PATH, options)
    return FileSource(spec, options)


def _reason(exc: BaseException) -> str:
    """The human part of an OS/FFmpeg error (`strerror` leaves out the file name we already print)."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
