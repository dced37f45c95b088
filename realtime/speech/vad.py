"""Segment: Silero VAD on its native 32 ms frame cuts the audio stream into utterances.

Silero runs through ONNX Runtime directly: the `silero-vad` wheel ships the model, but importing the
package imports torch, which the live loop does not need for this.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, SpeechSegment, VideoFrame
from realtime.speech.pause import find_pause

logger = logging.getLogger(__name__)

FRAME_SAMPLES = 512
"""Silero's native frame at 16 kHz (32 ms)."""
CONTEXT_SAMPLES = 64
"""Samples of the previous frame that Silero expects in front of each frame at 16 kHz."""
_GAP_TOLERANCE_S = 0.002
"""A chunk starting later than this after the previous one is a gap (lost audio), not jitter."""
_FRAME_SLACK_S = 1.0
"""Frames are kept this much longer than the longest segment, covering the pause the VAD waits for
before it cuts."""
_MAX_FPS = 60
"""Caps the frame ring buffer by count too, in case frames arrive faster than any camera delivers."""


def default_model_path() -> Path:
    """`silero_vad/data/silero_vad.onnx` inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("Silero VAD model not found: the silero-vad package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"


@dataclass(slots=True)
class VadOptions:
    """When speech starts and stops, and how segments are padded and bounded."""

    threshold: float = 0.5
    """Speech probability at or above which a frame is speech (and a segment starts)."""
    neg_threshold: float | None = None
    """Probability below which a frame counts as silence for ending a segment; None: threshold - 0.15.
    Frames in between keep the current state (hysteresis), so a wavering probability does not cut."""
    min_speech_ms: int = 250
    """Segments with less speech than this (before padding) are discarded as clicks and coughs."""
    min_silence_ms: int = 500
    """Silence that ends a segment. Shorter pauses stay inside one utterance; this is also the
    least delay between the end of speech and the cut."""
    speech_pad_ms: int = 200
    """Audio kept before the first and after the last speech frame, so onsets and tails are not clipped."""
    max_utterance_s: float = 15.0
    """Longest segment; longer speech is cut (`forced_split=True`) and continues in the next one."""
    split_search_s: float = 1.25
    """A segment reaching `max_utterance_s` is cut in the longest pause within this much audio before the
    limit (at most half the segment), so no word is cut in two; only without a pause there is it cut at
    the limit (`forced_without_pause=True`). 0 always cuts at the limit."""
    model_path: str | None = None
    """Silero VAD ONNX file; None uses the one shipped in the silero-vad wheel."""


@dataclass(slots=True)
class _Frame:
    start: int
    """Sample index of the frame's first sample since the stream origin."""
    samples: np.ndarray
    vad_ms: float
    probability: float


class VadSegmenter:
    """Feed audio with `push`, video with `add_frame`; get `SpeechSegment`s as pauses close them."""

    def __init__(self, options: VadOptions | None = None) -> None:
        import onnxruntime as ort

        self.options = options or VadOptions()
        path = Path(self.options.model_path) if self.options.model_path else default_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"Silero VAD model not found: '{path}'")
        session_options = ort.SessionOptions()
        # One thread: Whisper and the recognizer share the same few cores, and a 32 ms frame is tiny.
        session_options.intra_op_num_threads = 1
        session_options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(path), sess_options=session_options, providers=["CPUExecutionProvider"]
        )
        self._sample_rate = np.array(SAMPLE_RATE_HZ, dtype=np.int64)
        opts = self.options
        self._neg_threshold = opts.threshold - 0.15 if opts.neg_threshold is None else opts.neg_threshold
        self._pad = SAMPLE_RATE_HZ * opts.speech_pad_ms // 1000
        self._min_speech = SAMPLE_RATE_HZ * opts.min_speech_ms // 1000
        self._min_silence = SAMPLE_RATE_HZ * opts.min_silence_ms // 1000
        self._max_utterance = max(FRAME_SAMPLES, int(SAMPLE_RATE_HZ * opts.max_utterance_s))
        search = min(opts.split_search_s * SAMPLE_RATE_HZ, self._max_utterance / 2)
        self._split_search_frames = max(0, int(search) // FRAME_SAMPLES)
        self._preroll_frames = math.ceil(self._pad / FRAME_SAMPLES) + 1
        frame_keep_s = opts.max_utterance_s + 2 * opts.speech_pad_ms / 1000 + opts.min_silence_ms / 1000
        self._frame_keep_s = frame_keep_s + _FRAME_SLACK_S
        # Video frames wait here until a segment claims them. Frames that fall in no segment (silence)
        # age out after `_frame_keep_s`, or by count at `maxlen`: dropped by design, counted in
        # `frames_evicted`.
        self._video: deque[VideoFrame] = deque(maxlen=int(self._frame_keep_s * _MAX_FPS))
        self.next_segment_id = 0
        self.segments_discarded = 0
        """Segments shorter than `min_speech_ms`, discarded."""
        self.frames_evicted = 0
        """Video frames that aged out of the ring buffer without falling inside a segment."""
        self.last_probability = 0.0
        """Speech probability of the latest frame (for meters and tests)."""
        self.reset()

    def reset(self) -> None:
        """Forget the stream: Silero's recurrent state, buffered audio and video, the stream clock.
        Segment ids keep increasing."""
        self._video.clear()
        self._restart_audio()

    def _restart_audio(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._origin_s: float | None = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_done = 0
        self._history: deque[_Frame] = deque()
        self._triggered = False
        self._segment_start = 0
        self._speech_start = 0
        self._silence_start: int | None = None
        self._continued = False
        self._last_end = 0

    def push(self, chunk: AudioChunk) -> list[SpeechSegment]:
        """Add audio of any length; return the segments it closed (usually none)."""
        segments: list[SpeechSegment] = []
        if self._origin_s is None:
            self._origin_s = chunk.start_s
        expected_s = (
            self._origin_s + (self._frames_done * FRAME_SAMPLES + len(self._pending)) / SAMPLE_RATE_HZ
        )
        if chunk.start_s - expected_s > _GAP_TOLERANCE_S:
            # Lost audio (a dropped chunk): close what was heard and restart the clock at the new chunk,
            # rather than splice speech across the hole.
            logger.warning(
                "audio gap of %.3f s at %.3f s: VAD restarted", chunk.start_s - expected_s, expected_s
            )
            segments.extend(self.flush())
            self._origin_s = chunk.start_s
        samples = np.asarray(chunk.samples, dtype=np.float32).reshape(-1)
        buffered = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(buffered) - len(buffered) % FRAME_SAMPLES
        for offset in range(0, whole, FRAME_SAMPLES):
            segments.extend(self._step(buffered[offset : offset + FRAME_SAMPLES]))
        self._pending = buffered[whole:].copy()
        return segments

    @property
    def speaking_since_s(self) -> float | None:
        """Stream time where the utterance being spoken starts (padding included); None in silence."""
        if not self._triggered:
            return None
        return (self._origin_s or 0.0) + self._segment_start / SAMPLE_RATE_HZ

    @property
    def pausing(self) -> bool:
        """In a pause that may end the utterance being spoken (silence shorter than `min_silence_ms`)."""
        return self._triggered and self._silence_start is not None

    @property
    def pause_key(self) -> tuple[float, int] | None:
        """(segment start time, pause start sample) while the utterance being spoken is in a pause; None
        while speaking or in silence. A new pause of the same utterance has a new key."""
        if not self.pausing:
            return None
        return (self._origin_s or 0.0) + self._segment_start / SAMPLE_RATE_HZ, self._silence_start

    @property
    def pause_ms(self) -> float:
        """How long the utterance being spoken has been silent; 0 while speaking or in silence."""
        if not self.pausing:
            return 0.0
        return (self._frames_done * FRAME_SAMPLES - self._silence_start) * 1000 / SAMPLE_RATE_HZ

    @property
    def pause_cut_samples(self) -> int:
        """Length of the segment a cut at the current pause makes: speech up to the pause plus
        `speech_pad_ms`."""
        return self._silence_start + self._pad - self._segment_start if self.pausing else 0

    def pause_audio(self) -> np.ndarray:
        """The audio that the segment will hold if it ends at the current pause, as far as heard: all of
        it once the pause is `speech_pad_ms` long, before that all but the rest of the trailing pad."""
        return self.open_samples()[: self.pause_cut_samples]

    def end_at_pause(self) -> list[SpeechSegment]:
        """End the utterance being spoken at its current pause now, without waiting for `min_silence_ms`
        (the transcript already ends a sentence); the segment is the one that pause would have cut."""
        if not self.pausing:
            return []
        return self._close_at_pause(self._frames_done * FRAME_SAMPLES)

    def split_open(self, offset: int) -> list[SpeechSegment]:
        """Cut the utterance being spoken `offset` samples after its start (another voice took over
        there, without a pause); what follows stays open as the next utterance."""
        cut = self._segment_start + offset
        if not self._triggered or not self._segment_start < cut < self._frames_done * FRAME_SAMPLES:
            return []
        silence_start = self._silence_start
        segment = self._close(cut, cut, forced=False)
        self._triggered = self._continued = True
        self._speech_start = self._segment_start = cut
        self._silence_start = silence_start if silence_start is not None and silence_start > cut else None
        return [segment] if segment else []

    def open_samples(self) -> np.ndarray:
        """The audio of the utterance being spoken so far (for interim results); empty in silence."""
        parts = [f for f in self._history if f.start + FRAME_SAMPLES > self._segment_start]
        if not self._triggered or not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([f.samples for f in parts])[max(0, self._segment_start - parts[0].start) :]

    def add_frame(self, frame: VideoFrame) -> None:
        """Keep a video frame until the segment its time falls in is cut (or it ages out)."""
        if self._video.maxlen is not None and len(self._video) == self._video.maxlen:
            self.frames_evicted += 1
        self._video.append(frame)
        while self._video and self._video[0].time_s < frame.time_s - self._frame_keep_s:
            self._video.popleft()
            self.frames_evicted += 1

    def flush(self) -> list[SpeechSegment]:
        """End of stream: close the open segment (if it holds enough speech); the next chunk starts
        a new audio clock and a fresh Silero state. Buffered video is kept (see `reset`)."""
        segments: list[SpeechSegment] = []
        if self._origin_s is not None:
            real_end = self._frames_done * FRAME_SAMPLES + len(self._pending)
            if len(self._pending):
                padded = np.zeros(FRAME_SAMPLES, dtype=np.float32)
                padded[: len(self._pending)] = self._pending
                self._pending = np.zeros(0, dtype=np.float32)
                segments.extend(self._step(padded))
            if self._triggered:
                speech_end = min(
                    real_end, self._silence_start if self._silence_start is not None else real_end
                )
                segment = self._close(min(real_end, speech_end + self._pad), speech_end, forced=False)
                segments.extend([segment] if segment else [])
        self._restart_audio()
        return segments

    def _probability(self, frame: np.ndarray) -> float:
        window = np.concatenate([self._context, frame])[np.newaxis, :]
        output, self._state = self._session.run(
            None, {"input": window, "state": self._state, "sr": self._sample_rate}
        )
        self._context = frame[-CONTEXT_SAMPLES:].copy()
        return float(output[0, 0])

    def _step(self, frame: np.ndarray) -> list[SpeechSegment]:
        started = time.perf_counter()
        probability = self._probability(frame)
        start = self._frames_done * FRAME_SAMPLES
        end = start + FRAME_SAMPLES
        vad_ms = (time.perf_counter() - started) * 1000
        self._history.append(_Frame(start, frame.copy(), vad_ms, probability))
        self._frames_done += 1
        self.last_probability = probability
        segments: list[SpeechSegment] = []
        if probability >= self.options.threshold:
            self._silence_start = None
            if not self._triggered:
                self._triggered = True
                self._speech_start = start
                self._segment_start = max(start - self._pad, self._last_end, self._history[0].start)
        elif self._triggered and probability < self._neg_threshold:
            if self._silence_start is None:
                self._silence_start = start
            if end - self._silence_start >= self._min_silence:
                segments.extend(self._close_at_pause(end))
        # Cut before the next frame would take the segment past its maximum length.
        if self._triggered and end + FRAME_SAMPLES - self._segment_start > self._max_utterance:
            if self._silence_start is not None:
                # Already in a pause: end here as at any pause, just without waiting for all of it.
                segments.extend(self._close_at_pause(end))
            else:
                cut = self._split_point(end)
                segment = self._close(cut, cut, forced=True, at_pause=cut < end)
                segments.extend([segment] if segment else [])
                # Speech goes on: the next segment starts exactly where this one was cut (audio already
                # heard after the cut is its beginning), and is kept however short it turns out.
                self._triggered = self._continued = True
                self._speech_start = self._segment_start = cut
        if not self._triggered:
            while len(self._history) > self._preroll_frames:
                self._history.popleft()
        return segments

    def _split_point(self, end: int) -> int:
        """Where to force-split the open segment, whose audio is heard up to `end`: the middle of the
        longest pause in the last `split_search_s`, else `end`. Reads the frames already kept for the
        segment; the VAD is not run again."""
        if self._split_search_frames == 0:
            return end
        window = list(itertools.islice(reversed(self._history), self._split_search_frames))[::-1]
        window = [f for f in window if f.start >= self._segment_start]
        if not window:
            return end
        offset = find_pause(
            np.concatenate([f.samples for f in window]),
            np.array([f.probability for f in window]),
            FRAME_SAMPLES,
            self.options.threshold,
        )
        return end if offset is None else window[0].start + offset

    def _close_at_pause(self, heard: int) -> list[SpeechSegment]:
        """End the open segment at its current pause, keeping `speech_pad_ms` of it (as far as heard)."""
        segment = self._close(min(heard, self._silence_start + self._pad), self._silence_start, forced=False)
        return [segment] if segment else []

    def _close(
        self, end: int, speech_end: int, *, forced: bool, at_pause: bool = False
    ) -> SpeechSegment | None:
        start = self._segment_start
        continued, self._continued = self._continued, False
        self._triggered = False
        self._silence_start = None
        if not (forced or continued) and speech_end - self._speech_start < self._min_speech:
            self.segments_discarded += 1
            logger.debug(
                "VAD: discarded %.0f ms of speech (< min_speech_ms)",
                (speech_end - self._speech_start) * 1000 / SAMPLE_RATE_HZ,
            )
            return None
        parts = [f for f in self._history if f.start < end and f.start + FRAME_SAMPLES > start]
        audio = np.concatenate([f.samples for f in parts])[start - parts[0].start : end - parts[0].start]
        origin = self._origin_s or 0.0
        start_s, end_s = origin + start / SAMPLE_RATE_HZ, origin + end / SAMPLE_RATE_HZ
        segment = SpeechSegment(
            segment_id=self.next_segment_id,
            start_s=start_s,
            end_s=end_s,
            samples=audio,
            frames=self._take_frames(start_s, end_s),
            forced_split=forced,
            forced_without_pause=forced and not at_pause,
            vad_ms=sum(f.vad_ms for f in parts),
            cut_monotonic_s=time.monotonic(),
        )
        self.next_segment_id += 1
        self._last_end = end
        # Audio before the cut can no longer be part of a segment: keep only the pre-roll.
        while self._history and self._history[0].start + FRAME_SAMPLES <= end - self._pad:
            self._history.popleft()
        return segment

    def _take_frames(self, start_s: float, end_s: float) -> list[VideoFrame]:
        taken = [frame for frame in self._video if start_s <= frame.time_s < end_s]
        # Segments never overlap, so frames up to this cut cannot belong to a later one.
        while self._video and self._video[0].time_s < end_s:
            frame = self._video.popleft()
            if frame.time_s < start_s:
                self.frames_evicted += 1
        return taken
