"""The annotated preview: a file with the input's duration, frame rate and audio, labels drawn where
results are known, frames dropped (never blocking) when the worker falls behind; end to end through
`run_live.py --preview FILE.mp4` on the espeak-ng clip with a real Mosquitto."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import TalkingClip
from mosquitto import Mosquitto

import realtime.outputs.preview as preview_module
from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, VideoFrame
from realtime.messages import EmotionResult
from realtime.outputs.preview import Preview, PreviewError, PreviewOptions

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "models" / "m2fnet-meld-causal"
LABEL_BOX = (slice(0, 40), slice(0, 160))
"""Top-left corner of a 320x240 frame, where the first label is drawn."""


def result(emotion: str, speaker: str | None = None) -> EmotionResult:
    return EmotionResult(
        "s", 1, 0.0, 1.0, "hi", emotion, {emotion: 0.8, "neutral": 0.2}, {}, "m", speaker=speaker
    )


def decode(path: Path) -> tuple[list[np.ndarray], float, float, bool]:
    """RGB frames, frame rate, duration in seconds, and whether there is an audio stream."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        return frames, float(video.average_rate), container.duration / 1e6, bool(container.streams.audio)


def picture(value: int) -> np.ndarray:
    frame = np.full((240, 320, 3), value, np.uint8)
    frame[100:140, 100:220] = 255 - value
    return frame


def test_file_has_duration_frames_audio_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "preview.mp4"
    preview = Preview(PreviewOptions(str(out), fps=10))
    for i in range(20):  # 2 s: audio and frames, labels from 1 s on
        if i == 10:  # labels are those known when a frame is drawn: let the first second be drawn
            deadline = time.monotonic() + 30
            while preview.metrics.frames_written < 10:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            preview.emit(result("anger", "A"))
        preview.offer(AudioChunk(np.zeros(SAMPLE_RATE_HZ // 10, np.float32), i / 10))
        if i != 5:  # one missing frame: its slot repeats the previous picture
            preview.offer(VideoFrame(picture(60), i / 10))
    preview.close()
    frames, fps, duration_s, has_audio = decode(out)
    assert fps == 10 and len(frames) == 20 and has_audio
    assert abs(duration_s - 2.0) < 0.15
    assert preview.metrics.frames_repeated == 1 and preview.metrics.frames_written == 20
    diff = [np.abs(f.astype(int) - picture(60)).mean(axis=2) for f in frames]
    assert max(d[LABEL_BOX].mean() for d in diff[:10]) < 5, "no label before the first result"
    assert min(d[LABEL_BOX].mean() for d in diff[10:]) > 15, "the label is drawn from the first result on"
    assert max(d[150:, 200:].mean() for d in diff) < 5, "the rest of the picture is the input"


def test_full_buffer_drops_oldest_frames_without_blocking(tmp_path: Path, monkeypatch) -> None:
    entered, release = threading.Event(), threading.Event()
    real_draw = preview_module.draw_labels

    def slow_draw(rgb, labels):
        entered.set()
        release.wait(30)
        return real_draw(rgb, labels)

    monkeypatch.setattr(preview_module, "draw_labels", slow_draw)
    preview = Preview(PreviewOptions(str(tmp_path / "p.mp4"), fps=10, queue_frames=3))
    preview.offer(VideoFrame(picture(10), 0.0))
    assert entered.wait(30)
    for i in range(1, 11):
        preview.offer(VideoFrame(picture(10), i / 10))
    assert preview.metrics.frames_dropped == 7
    release.set()
    preview.close()
    frames, _, _, _ = decode(tmp_path / "p.mp4")
    assert len(frames) == 11, "dropped frames' slots are filled, so the duration is kept"
    assert preview.metrics.frames_repeated == 7


def test_bad_targets_are_user_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for target, named in (
        ("window", "DISPLAY"),
        (str(tmp_path / "x.gif"), "x.gif"),
        (str(tmp_path / "missing" / "x.mp4"), "missing"),
    ):
        with pytest.raises(PreviewError, match=named):
            Preview(PreviewOptions(target))


@pytest.mark.skipif(not CHECKPOINT.is_dir(), reason=f"needs the shipped checkpoint {CHECKPOINT}")
def test_run_live_writes_the_annotated_clip(
    mosquitto: Mosquitto, talking_clip: TalkingClip, tmp_path: Path
) -> None:
    out = tmp_path / "annotated.mp4"
    command = [
        sys.executable, str(REPO / "run_live.py"), "--source", str(talking_clip.path), "--mqtt", mosquitto.url,
        "--stream-id", f"preview-{uuid.uuid4().hex[:8]}", "--preview", str(out),
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False, env={**os.environ}
    )
    assert run.returncode == 0, run.stderr
    frames, fps, duration_s, has_audio = decode(out)
    inputs, _, input_duration_s, _ = decode(talking_clip.path)
    assert fps == 15 and has_audio
    assert abs(duration_s - input_duration_s) < 0.3
    assert abs(len(frames) - input_duration_s * fps) <= 2
    # The input's frame at 12 s sits in output slot 180; the first results are known by then.
    late = np.abs(frames[180].astype(int) - inputs[120].astype(int)).mean(axis=2)
    early = np.abs(frames[3].astype(int) - inputs[2].astype(int)).mean(axis=2)
    assert late[LABEL_BOX].mean() > 30, "a label is drawn once results exist"
    assert early[LABEL_BOX].mean() < 10, "no label before the first result"
    assert late[60:, 40:].mean() < 10, "outside the labels the picture is the input"
