"""What every capture source shares: options, errors, the thread -> loop feed, rechunking and pacing.

Every source opens eagerly in its constructor, so a bad path or a missing device fails with one line
before the live loop starts. Blocking work (decoding, device reads) runs on a worker thread that feeds
the event loop through a bounded queue; `stream()` never blocks the loop.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, VideoFrame

logger = logging.getLogger(__name__)

_QUEUE_ITEMS = 64
"""Items a worker thread may run ahead of the consumer (~2 s of 32 ms audio chunks)."""
_MAX_REORDER_S = 1.0
"""How far one stream of a file may run ahead of the other before items are released anyway."""

Item = AudioChunk | VideoFrame


class DeviceError(Exception):
    """A microphone or camera that cannot be opened or stopped delivering; the message names it."""


@dataclass(slots=True)
class CaptureOptions:
    """How sources decode, pace and shrink what they capture."""

    realtime: bool = True
    """Live input, or a file paced at wall-clock speed as a live stream would arrive: a stream that
    falls behind drops its oldest waiting utterance rather than stall capture. False (`--no-realtime`):
    files decode as fast as the consumer reads and nothing is dropped (the pipeline waits for Whisper)."""
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
    """What the pipeline consumes: a named, already opened source of audio chunks and video frames.

    A source that can lose its connection (`realtime.sources.network`) also has an `on_status`
    attribute: a callback, set by the runtime, that hears `source_lost` and `online`.
    """

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


def _reason(exc: BaseException) -> str:
    """The human part of an OS/FFmpeg error (`strerror` leaves out the file name we already print)."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
