"""Annotated preview (`--preview window|FILE.mp4`): the input video with each speaker's current emotion
drawn on it, in an OpenCV window or written to a file with the input's audio.

It never slows the live loop: frames are handed over without blocking to a worker thread through a
bounded buffer, and a frame that finds it full pushes out the oldest one (counted in
`PreviewMetrics.frames_dropped`). The file keeps a constant frame rate: a slot whose frame was
dropped repeats the previous picture, so duration and audio stay in step. Labels are those known
when the frame is drawn, as a live viewer saw them; with `--no-realtime` capture runs ahead of the
results, so few frames get labels.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import wave
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, VideoFrame
from realtime.messages import EmotionResult
from realtime.sources.feed import Source

logger = logging.getLogger(__name__)

COLOURS_RGB = {
    "neutral": (176, 190, 197),
    "joy": (255, 213, 79),
    "surprise": (255, 183, 77),
    "anger": (239, 83, 80),
    "sadness": (100, 181, 246),
    "disgust": (129, 199, 132),
    "fear": (186, 104, 200),
}
"""The overlay page's colours, so both views agree."""
WINDOW = "window"


class PreviewError(ValueError):
    """A preview target that cannot be used; the message names it."""


@dataclass(slots=True)
class PreviewOptions:
    """Where the preview goes and how much it may buffer."""

    target: str = WINDOW
    """`window` (an OpenCV window; needs a display) or a video file path (.mp4, .mkv, .avi)."""
    fps: float = 15.0
    """Frame rate of the written file (the capture's `video_fps`)."""
    queue_frames: int = 30
    """Frames waiting for the worker; beyond, the oldest is dropped (counted)."""
    queue_audio_chunks: int = 10_000
    """Audio chunks (32 ms each) waiting to be written; beyond, the oldest is dropped (counted)."""
    max_speakers: int = 8
    """Speakers drawn at once (the most recently heard)."""


@dataclass(slots=True)
class PreviewMetrics:
    frames_written: int = 0
    """Frames shown or written, repeats included."""
    frames_dropped: int = 0
    """Frames pushed out of the full buffer (the worker fell behind)."""
    frames_repeated: int = 0
    """File slots filled with the previous picture (dropped or missing frames)."""
    audio_dropped: int = 0
    """Audio chunks pushed out of the full buffer."""


class Preview:
    """`tap()` the stream's source, add the preview to its result sinks, `close()` at the end."""

    def __init__(self, options: PreviewOptions) -> None:
        self.options = options
        self.metrics = PreviewMetrics()
        self._window = options.target == WINDOW
        self._path = None if self._window else Path(options.target)
        self._check_target()
        self._frames: deque[VideoFrame] = deque()
        self._audio: deque[AudioChunk] = deque()
        self._labels: dict[str | None, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._ending = False
        self._thread = threading.Thread(target=self._work, name="preview", daemon=True)
        self._thread.start()

    def _check_target(self) -> None:
        if self._window:
            if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                raise PreviewError(
                    "--preview window: no display (DISPLAY is not set); give a FILE.mp4 instead"
                )
            return
        assert self._path is not None
        if self._path.suffix.lower() not in (".mp4", ".mkv", ".avi"):
            raise PreviewError(f"--preview {self._path}: expected 'window' or a .mp4, .mkv or .avi file")
        if not self._path.parent.is_dir() or not os.access(self._path.parent, os.W_OK):
            raise PreviewError(
                f"--preview {self._path}: folder {self._path.parent} is missing or not writable"
            )
        if shutil.which("ffmpeg") is None:
            raise PreviewError(f"--preview {self._path}: ffmpeg is not installed (apt-get install ffmpeg)")

    def tap(self, source: Source) -> Source:
        """`source`, with every frame and (for a file) audio chunk also handed to the preview."""
        return _Tap(source, self)

    def emit(self, result: EmotionResult) -> None:
        """A result sink: the speaker's label from now on."""
        with self._lock:
            self._labels.pop(result.speaker, None)
            self._labels[result.speaker] = (result.emotion, float(result.scores.get(result.emotion, 0.0)))
            while len(self._labels) > self.options.max_speakers:
                self._labels.pop(next(iter(self._labels)))

    def offer(self, item: AudioChunk | VideoFrame) -> None:
        """Hand over without blocking; a full buffer loses its oldest item (counted)."""
        with self._ready:
            if isinstance(item, VideoFrame):
                if len(self._frames) >= self.options.queue_frames:
                    self._frames.popleft()
                    self.metrics.frames_dropped += 1
                self._frames.append(item)
            elif self._path is not None:
                if len(self._audio) >= self.options.queue_audio_chunks:
                    self._audio.popleft()
                    self.metrics.audio_dropped += 1
                self._audio.append(item)
            self._ready.notify()

    def close(self, timeout_s: float = 120.0) -> None:
        """Draw what is buffered, then finish the file (mux the audio) or close the window."""
        with self._ready:
            self._ending = True
            self._ready.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.error("preview: the worker did not finish within %.0f s", timeout_s)
        logger.info(
            "preview: %d frames written (%d repeated), %d dropped, %d audio chunks dropped",
            self.metrics.frames_written,
            self.metrics.frames_repeated,
            self.metrics.frames_dropped,
            self.metrics.audio_dropped,
        )

    def _work(self) -> None:
        writer = _WindowWriter() if self._window else _FileWriter(self._path, self.options.fps, self.metrics)
        try:
            while True:
                with self._ready:
                    while not (self._frames or self._audio or self._ending):
                        self._ready.wait()
                    audio = list(self._audio)
                    self._audio.clear()
                    frame = self._frames.popleft() if self._frames else None
                    labels = list(self._labels.items())
                    done = self._ending and not self._frames
                for chunk in audio:
                    writer.audio(chunk)
                if frame is not None:
                    writer.frame(draw_labels(frame.rgb, labels), frame.time_s)
                    self.metrics.frames_written = writer.written
                if done:
                    break
            writer.finish()
            self.metrics.frames_written = writer.written
        except Exception as exc:  # noqa: BLE001 (whatever breaks the preview must not end the live loop)
            logger.error("preview stopped: %s", exc)
            with self._ready:
                self._frames.clear()
                self._audio.clear()
            writer.abandon()


class _Tap:
    def __init__(self, source: Source, preview: Preview) -> None:
        self._source = source
        self._preview = preview

    @property
    def name(self) -> str:
        return self._source.name

    @property
    def has_audio(self) -> bool:
        return self._source.has_audio

    @property
    def has_video(self) -> bool:
        return self._source.has_video

    def close(self) -> None:
        """The tapped source is closed by whoever opened it."""

    async def stream(self) -> AsyncIterator[AudioChunk | VideoFrame]:
        async for item in self._source.stream():
            self._preview.offer(item)
            yield item


def draw_labels(rgb: np.ndarray, labels: list[tuple[str | None, tuple[str, float]]]) -> np.ndarray:
    """A copy of the frame with one box per speaker: `speaker: emotion 0.81`, in the emotion's colour."""
    import cv2

    out = np.ascontiguousarray(rgb).copy()
    scale = max(0.4, out.shape[0] / 600)
    thickness = max(1, round(scale * 2))
    y = 8
    for speaker, (emotion, confidence) in labels:
        text = f"{speaker + ': ' if speaker else ''}{emotion} {confidence:.2f}"
        (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        colour = COLOURS_RGB.get(emotion, (255, 255, 255))
        cv2.rectangle(out, (8, y), (8 + width + 12, y + height + base + 10), colour, -1)
        cv2.putText(out, text, (14, y + height + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (17, 17, 17), thickness)
        y += height + base + 16
    return out


class _WindowWriter:
    written = 0

    def frame(self, rgb: np.ndarray, time_s: float) -> None:
        import cv2

        cv2.imshow("m2fnet-live preview", rgb[:, :, ::-1])
        cv2.waitKey(1)
        self.written += 1

    def audio(self, chunk: AudioChunk) -> None:
        pass

    def finish(self) -> None:
        import cv2

        cv2.destroyAllWindows()

    def abandon(self) -> None:
        self.finish()


class _FileWriter:
    """Frames piped to ffmpeg at a constant rate, audio to a wav; muxed into the target at the end."""

    def __init__(self, path: Path, fps: float, metrics: PreviewMetrics) -> None:
        self._path = path
        self._fps = fps
        self._metrics = metrics
        self._tmp = tempfile.TemporaryDirectory(prefix=".preview-", dir=path.parent)
        self._video = Path(self._tmp.name) / f"video{path.suffix}"
        self._wav_path = Path(self._tmp.name) / "audio.wav"
        self._wav: wave.Wave_write | None = None
        self._encoder: subprocess.Popen[bytes] | None = None
        self._last: bytes | None = None
        self._size: tuple[int, int] | None = None
        self.written = 0

    def frame(self, rgb: np.ndarray, time_s: float) -> None:
        height, width = rgb.shape[:2]
        if self._encoder is None:
            self._size = (width, height)
            self._encoder = subprocess.Popen(
                [
                    "ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{width}x{height}", "-r", f"{self._fps:g}", "-i", "-",
                    "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-threads", "1", str(self._video),
                ],
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip
        if (width, height) != self._size:
            raise RuntimeError(f"frame size changed from {self._size} to {(width, height)}")
        slot = round(time_s * self._fps)
        if slot < self.written:
            return  # a second frame for a slot already written
        picture = rgb.tobytes()
        while self.written < slot:
            self._write(self._last or picture)
            self._metrics.frames_repeated += 1
        self._write(picture)
        self._last = picture

    def _write(self, picture: bytes) -> None:
        assert self._encoder is not None and self._encoder.stdin is not None
        self._encoder.stdin.write(picture)
        self.written += 1

    def audio(self, chunk: AudioChunk) -> None:
        if self._wav is None:
            self._wav = wave.open(str(self._wav_path), "wb")  # noqa: SIM115 (open across calls; closed in finish)
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(SAMPLE_RATE_HZ)
        self._wav.writeframes((np.clip(chunk.samples, -1, 1) * 32767).astype("<i2").tobytes())

    def finish(self) -> None:
        try:
            if self._wav is not None:
                self._wav.close()
            if self._encoder is None:
                # Audio without video deserves a warning; nothing at all means the run never started.
                level = logging.WARNING if self._wav is not None else logging.INFO
                logger.log(level, "preview: no video frames; %s not written", self._path)
                return
            assert self._encoder.stdin is not None
            self._encoder.stdin.close()
            if self._encoder.wait() != 0:
                raise RuntimeError(f"ffmpeg could not encode the preview: {self._stderr(self._encoder)}")
            if self._wav is None:
                self._video.replace(self._path)
                return
            mux = subprocess.run(
                [
                    "ffmpeg", "-v", "error", "-y", "-i", str(self._video), "-i", str(self._wav_path),
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-b:a", "96k", str(self._path),
                ],
                capture_output=True,
                check=False,
            )  # fmt: skip
            if mux.returncode != 0:
                raise RuntimeError(
                    f"ffmpeg could not add the audio: {mux.stderr.decode(errors='replace')[-300:]}"
                )
            logger.info("preview written to %s", self._path)
        finally:
            self._tmp.cleanup()

    def abandon(self) -> None:
        if self._encoder is not None:
            self._encoder.kill()
            self._encoder.wait()
        if self._wav is not None:
            self._wav.close()
        self._tmp.cleanup()

    @staticmethod
    def _stderr(process: subprocess.Popen[bytes]) -> str:
        return process.stderr.read().decode(errors="replace")[-300:] if process.stderr else ""
