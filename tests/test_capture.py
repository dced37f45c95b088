"""Capture: file decoding on generated media, and the error lines for bad files and missing devices."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engines.errors import MediaError
from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, VideoFrame
from realtime.sources.devices import MicrophoneSource
from realtime.sources.feed import CaptureOptions, DeviceError
from realtime.sources.file import FileSource
from realtime.sources.open import DEMO_CLIP_PATH, open_source

FAST = CaptureOptions(realtime=False)


def collect(source: FileSource, limit: int | None = None) -> list[AudioChunk | VideoFrame]:
    async def run() -> list[AudioChunk | VideoFrame]:
        items: list[AudioChunk | VideoFrame] = []
        async for item in source.stream():
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
        return items

    return asyncio.run(run())


def split(items: list[AudioChunk | VideoFrame]) -> tuple[list[AudioChunk], list[VideoFrame]]:
    return [i for i in items if isinstance(i, AudioChunk)], [i for i in items if isinstance(i, VideoFrame)]


def item_time(item: AudioChunk | VideoFrame) -> float:
    return item.start_s if isinstance(item, AudioChunk) else item.time_s


def test_clip_yields_interleaved_audio_and_video_in_time_order(talking_clip):
    source = FileSource(talking_clip.path, FAST)
    assert source.has_audio and source.has_video
    assert source.duration_s == pytest.approx(talking_clip.speech.duration_s, abs=0.1)

    items = collect(source)
    audio, video = split(items)
    times = [item_time(i) for i in items]
    assert times == sorted(times)
    # Audio: contiguous 32 ms float32 chunks covering the whole clip.
    assert all(c.samples.dtype == np.float32 and c.samples.ndim == 1 for c in audio)
    assert {len(c.samples) for c in audio[:-1]} == {512}
    assert all(b.start_s == pytest.approx(a.end_s, abs=1e-9) for a, b in itertools.pairwise(audio))
    assert audio[-1].end_s == pytest.approx(talking_clip.speech.duration_s, abs=0.1)
    # Video: every 10 fps frame, RGB uint8 at the clip's size.
    assert len(video) == pytest.approx(talking_clip.speech.duration_s * talking_clip.fps, abs=2)
    width, height = talking_clip.size
    assert {f.rgb.shape for f in video} == {(height, width, 3)}
    assert all(f.rgb.dtype == np.uint8 for f in video)


def test_decoded_audio_matches_the_wav(espeak_wav):
    source = FileSource(espeak_wav.path, FAST)
    assert source.has_audio and not source.has_video
    audio, video = split(collect(source))
    assert video == []
    decoded = np.concatenate([c.samples for c in audio])
    assert len(decoded) == len(espeak_wav.samples)
    np.testing.assert_allclose(decoded, espeak_wav.samples, atol=1e-3)


def test_frame_rate_cap_and_downscale(talking_clip):
    options = CaptureOptions(realtime=False, video_fps=5.0, max_frame_width_px=160, audio_chunk_ms=100)
    audio, video = split(collect(FileSource(talking_clip.path, options)))
    assert len(video) == pytest.approx(talking_clip.speech.duration_s * 5, abs=2)
    assert {f.rgb.shape for f in video} == {(120, 160, 3)}
    assert {len(c.samples) for c in audio[:-1]} == {1600}


def test_realtime_pacing_yields_the_same_items(tmp_path):
    path = tmp_path / "short.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:duration=0.4",
            "-ar",
            "44100",
            str(path),
        ],
        check=True,
    )
    fast = collect(FileSource(path, FAST))
    paced = collect(FileSource(path, CaptureOptions(realtime=True)))
    assert [c.start_s for c in paced] == [c.start_s for c in fast]
    np.testing.assert_array_equal(
        np.concatenate([c.samples for c in paced]), np.concatenate([c.samples for c in fast])
    )


@pytest.mark.parametrize(
    ("suffix", "codecs", "has_video"),
    [
        ("flac", ["-c:a", "flac"], False),
        ("mp3", ["-c:a", "libmp3lame"], False),
        ("mkv", ["-c:v", "libx264", "-c:a", "aac"], True),
        ("avi", ["-c:v", "mpeg4", "-c:a", "libmp3lame"], True),
        ("webm", ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"], True),
    ],
)
def test_container_formats(tmp_path, suffix, codecs, has_video):
    path = tmp_path / f"clip.{suffix}"
    inputs = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=48000"]
    if has_video:
        inputs += ["-f", "lavfi", "-i", "testsrc=size=800x450:rate=25:duration=1"]
    subprocess.run(["ffmpeg", "-v", "error", *inputs, *codecs, "-t", "1", str(path)], check=True)
    source = FileSource(path, FAST)
    assert (source.has_audio, source.has_video) == (True, has_video)
    audio, video = split(collect(source))
    assert sum(len(c.samples) for c in audio) / SAMPLE_RATE_HZ == pytest.approx(1.0, abs=0.1)
    if has_video:
        # 25 fps capped to 15, 800x450 downscaled to 640 wide.
        assert len(video) == pytest.approx(15, abs=1)
        assert video[0].rgb.shape == (360, 640, 3)
    else:
        assert video == []


def test_stopping_early_ends_the_decode_thread(talking_clip):
    before = {t.ident for t in threading.enumerate()}
    items = collect(FileSource(talking_clip.path, FAST), limit=5)
    assert len(items) == 5
    for thread in threading.enumerate():
        if thread.ident not in before and thread.name == "decode":
            thread.join(timeout=5)
            assert not thread.is_alive()


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file or directory"), (b"not a video", "Invalid data"), ("dir", "Is a directory")],
)
def test_unreadable_file_raises_media_error_naming_it(tmp_path, content, reason):
    path = tmp_path / "clip.mp4"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError) as error:
        open_source(str(path), FAST)
    assert str(error.value).startswith(f"cannot read media file '{path}': ")
    assert reason in str(error.value)
    assert "\n" not in str(error.value)


def test_truncated_clip_fails_with_media_error(tmp_path, talking_clip):
    path = tmp_path / "truncated.mp4"
    path.write_bytes(talking_clip.path.read_bytes()[: talking_clip.path.stat().st_size // 3])
    with pytest.raises(MediaError, match=r"truncated\.mp4"):
        collect(FileSource(path, FAST))


def test_demo_spec_opens_the_bundled_clip():
    if not DEMO_CLIP_PATH.is_file():
        pytest.fail(f"{DEMO_CLIP_PATH} is missing: python scripts/make_demo_clip.py")
    source = open_source("demo", FAST)
    assert isinstance(source, FileSource)
    assert source.has_audio and source.has_video
    assert 30 <= (source.duration_s or 0) <= 40


def test_microphone_without_pyaudio_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyaudio", None)
    with pytest.raises(DeviceError, match=r"pip install '\.\[mic\]'"):
        MicrophoneSource(FAST)


@pytest.mark.parametrize("spec", ["mic", "live"])
def test_missing_microphone_raises_device_error(spec):
    try:
        source = open_source(spec, FAST)
    except DeviceError as error:
        message = str(error)
        assert "\n" not in message
        assert message.startswith(
            ("no audio input device (pyaudio: ", "no audio input support:", "cannot open")
        )
        return
    source.close()
    pytest.skip("this machine has an audio input device and camera")


@pytest.mark.parametrize(("spec", "name"), [("webcam:7", "webcam:7"), ("webcam:x", "webcam:x")])
def test_missing_camera_raises_device_error(spec, name):
    try:
        source = open_source(spec, FAST)
    except DeviceError as error:
        assert str(error).startswith(f"cannot open camera '{name}'")
        return
    source.close()
    pytest.skip(f"this machine has camera {spec}")


def test_open_source_dispatch(espeak_wav):
    source = open_source(str(espeak_wav.path), FAST)
    assert isinstance(source, FileSource) and source.name == str(espeak_wav.path)
    assert Path(source.path) == espeak_wav.path
