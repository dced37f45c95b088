"""The push source: audio and video frames that the caller already has (a call, an agent framework, a
robot's driver), pushed in, converted to what the pipeline reads (16 kHz mono float32 chunks, RGB frames).

Call it from the event loop's thread; another thread hands items over with
`loop.call_soon_threadsafe(source.push_audio, ...)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, VideoFrame
from realtime.sources.feed import CaptureOptions, _FrameRateLimiter, frame_size

logger = logging.getLogger(__name__)

_GAP_TOLERANCE_S = 0.1
"""A pushed time this far past the end of the audio so far is a gap (the VAD closes the utterance)."""


@dataclass(slots=True)
class PushOptions:
    """How much pushed media may wait for the pipeline."""

    max_queue_items: int = 128
    """Audio chunks (`capture.audio_chunk_ms` each, ~4 s at 32 ms) and video frames waiting to be read.
    Full: `push_*` drops the OLDEST waiting item (counted in `PushMetrics`, logged); `put_*` waits."""


@dataclass(slots=True)
class PushMetrics:
    audio_chunks: int = 0
    """Chunks made from the pushed audio."""
    video_frames: int = 0
    """Frames kept (after the `capture.video_fps` limit)."""
    dropped_audio_chunks: int = 0
    """Chunks dropped because the queue was full."""
    dropped_video_frames: int = 0
    """Frames dropped because the queue was full."""


@dataclass(frozen=True, slots=True)
class Cut(AudioChunk):
    """Control item: close the utterance being spoken now (the end of a turn); the stream goes on.
    `realtime.api` hands it to the VAD's `flush`."""


_END = object()


class PushSource:
    """A `realtime.sources.feed.Source` fed by `push_audio` / `push_frame`; `end()` ends its stream."""

    def __init__(
        self, name: str = "push", capture: CaptureOptions | None = None, options: PushOptions | None = None
    ) -> None:
        self.name = name
        self.has_audio = True
        self.has_video = False
        self.capture = capture or CaptureOptions()
        self.options = options or PushOptions()
        self.metrics = PushMetrics()
        self._chunk_samples = max(1, SAMPLE_RATE_HZ * self.capture.audio_chunk_ms // 1000)
        self._items: deque[AudioChunk | VideoFrame | object] = deque()
        self._data = 0
        """Audio chunks and frames in `_items` (the control items are not counted, never dropped)."""
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._pending = np.zeros(0, np.float32)
        self._next_s: float | None = None
        """Stream time of the next 16 kHz sample to be chunked."""
        self._resampler: object | None = None
        self._rate_hz = SAMPLE_RATE_HZ
        self._keep_frame = _FrameRateLimiter(self.capture.video_fps)
        self._ended = False
        self._drop = True
        """Whether `_put` may drop the oldest item (`push_*`) or must exceed the bound (`put_*`, control)."""

    def push_audio(
        self, pcm: np.ndarray | bytes, sample_rate_hz: int, t: float | None = None, channels: int = 1
    ) -> None:
        """Add audio: int16 or float samples (or int16 bytes), mono or (samples, channels) interleaved,
        at any rate. `t`: stream time of its first sample in seconds; None follows on from the last push.
        Never blocks; see `PushOptions` for a full queue."""
        self._push_audio(pcm, sample_rate_hz, t, channels, drop=True)

    def _push_audio(
        self, pcm: np.ndarray | bytes, sample_rate_hz: int, t: float | None, channels: int, drop: bool
    ) -> None:
        self._drop = drop
        if self._ended:
            raise RuntimeError(f"push source {self.name}: audio pushed after end()")
        samples = _mono_float(pcm, channels)
        if t is not None and self._next_s is not None and t > self._expected_s() + _GAP_TOLERANCE_S:
            self._drain_resampler()
            self._flush_pending()
            self._next_s = t
        if self._next_s is None:
            self._next_s = 0.0 if t is None else t
        self._add_16k(self._resample(samples, sample_rate_hz))

    async def put_audio(
        self, pcm: np.ndarray | bytes, sample_rate_hz: int, t: float | None = None, channels: int = 1
    ) -> None:
        """As `push_audio`, waiting for room first: nothing is dropped (file-like input); the chunks of
        one call may exceed the bound."""
        await self._wait_for_room()
        self._push_audio(pcm, sample_rate_hz, t, channels, drop=False)

    def push_frame(self, image: np.ndarray, t: float) -> None:
        """Add an RGB uint8 (H, W, 3) frame shown at stream time `t`; frames beyond `capture.video_fps`
        are skipped, wide ones downscaled to `capture.max_frame_width_px`."""
        if self._ended:
            raise RuntimeError(f"push source {self.name}: frame pushed after end()")
        self._push_frame(image, t, drop=True)

    def _push_frame(self, image: np.ndarray, t: float, drop: bool) -> None:
        self._drop = drop
        if not self._keep_frame(t):
            return
        height, width = image.shape[:2]
        size = frame_size(width, height, self.capture)
        if size != (width, height):
            import cv2

            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        self.has_video = True
        self.metrics.video_frames += 1
        self._put(VideoFrame(np.ascontiguousarray(image[..., :3], dtype=np.uint8), t))

    async def put_frame(self, image: np.ndarray, t: float) -> None:
        """As `push_frame`, waiting for room first."""
        await self._wait_for_room()
        self._push_frame(image, t, drop=False)

    def cut(self) -> None:
        """Close the utterance being spoken now (a turn ended) instead of waiting for the VAD's pause.
        Control items and the audio they flush are never dropped (they may exceed the bound)."""
        self._drop = False
        self._drain_resampler()
        self._flush_pending()
        self._items.append(Cut(np.zeros(0, np.float32), self.now_s))
        self._arrived.set()

    def end(self) -> None:
        """No more media: the stream ends once what was pushed is read (the VAD then flushes)."""
        if self._ended:
            return
        self._drop = False
        self._drain_resampler()
        self._flush_pending()
        self._ended = True
        self._items.append(_END)
        self._arrived.set()

    def close(self) -> None:
        """Nothing to release."""

    async def stream(self) -> AsyncIterator[AudioChunk | VideoFrame]:
        while True:
            while not self._items:
                self._arrived.clear()
                await self._arrived.wait()
            item = self._items.popleft()
            if item is _END:
                return
            if not isinstance(item, Cut):
                self._data -= 1
                self._room.set()
            yield item  # type: ignore[misc]

    @property
    def now_s(self) -> float:
        """Stream time at the end of the audio pushed so far (0 before any)."""
        return self._expected_s() if self._next_s is not None else 0.0

    def _expected_s(self) -> float:
        assert self._next_s is not None
        return self._next_s + len(self._pending) / SAMPLE_RATE_HZ

    def _resample(self, samples: np.ndarray, rate_hz: int) -> np.ndarray:
        if rate_hz != self._rate_hz:
            self._drain_resampler()
            self._rate_hz = rate_hz
        if rate_hz == SAMPLE_RATE_HZ or not len(samples):
            return samples
        import av

        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate_hz
        out = self._resampler.resample(frame)  # type: ignore[attr-defined]
        return np.concatenate([f.to_ndarray()[0] for f in out]) if out else np.zeros(0, np.float32)

    def _drain_resampler(self) -> None:
        """The resampler holds a few ms back; take them before a gap, a rate change, a cut or the end."""
        if self._resampler is not None:
            out = self._resampler.resample(None)  # type: ignore[attr-defined]
            self._resampler = None
            if out:
                self._add_16k(np.concatenate([f.to_ndarray()[0] for f in out]))

    def _add_16k(self, samples: np.ndarray) -> None:
        joined = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(joined) - len(joined) % self._chunk_samples
        for offset in range(0, whole, self._chunk_samples):
            self._emit(joined[offset : offset + self._chunk_samples])
        self._pending = joined[whole:].astype(np.float32, copy=True)

    def _flush_pending(self) -> None:
        if len(self._pending):
            pending, self._pending = self._pending, np.zeros(0, np.float32)
            self._emit(pending)

    def _emit(self, samples: np.ndarray) -> None:
        assert self._next_s is not None
        chunk = AudioChunk(samples.astype(np.float32, copy=True), self._next_s)
        self._next_s += len(samples) / SAMPLE_RATE_HZ
        self.metrics.audio_chunks += 1
        self._put(chunk)

    def _put(self, item: AudioChunk | VideoFrame) -> None:
        if self._drop and self._data >= self.options.max_queue_items:
            self._drop_oldest()
        self._items.append(item)
        self._data += 1
        if self._data >= self.options.max_queue_items:
            self._room.clear()
        self._arrived.set()

    def _drop_oldest(self) -> None:
        for index, item in enumerate(self._items):
            if isinstance(item, AudioChunk | VideoFrame) and not isinstance(item, Cut):
                del self._items[index]
                self._data -= 1
                m = self.metrics
                if isinstance(item, VideoFrame):
                    m.dropped_video_frames += 1
                else:
                    m.dropped_audio_chunks += 1
                dropped = m.dropped_audio_chunks + m.dropped_video_frames
                if dropped == 1 or dropped % 100 == 0:
                    logger.warning(
                        "push source %s: queue full (%d items), %d audio chunk(s) and %d frame(s) "
                        "dropped so far (the oldest first)",
                        self.name,
                        self.options.max_queue_items,
                        m.dropped_audio_chunks,
                        m.dropped_video_frames,
                    )
                return

    async def _wait_for_room(self) -> None:
        while self._data >= self.options.max_queue_items:
            self._room.clear()
            await self._room.wait()


def _mono_float(pcm: np.ndarray | bytes, channels: int) -> np.ndarray:
    """float32 mono in [-1, 1] from int16 (or bytes of it) or float samples, channels averaged."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray | memoryview) else pcm
    samples = np.asarray(samples)
    if samples.ndim == 1 and channels > 1:
        samples = samples.reshape(-1, channels)
    if np.issubdtype(samples.dtype, np.integer):
        if samples.dtype != np.int16:
            raise TypeError(f"pushed audio must be int16 or float, got {samples.dtype}")
        samples = samples.astype(np.float32) / 32768.0
    samples = samples.astype(np.float32, copy=False)
    return samples.mean(axis=1) if samples.ndim == 2 else samples
