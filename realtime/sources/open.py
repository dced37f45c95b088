"""Capture: `open_source` turns a source spec into an async source of `AudioChunk`s (16 kHz mono
float32) and `VideoFrame`s (RGB uint8).

What every source shares is in `realtime.sources.feed`; the sources are `realtime.sources.file` (media files),
`realtime.sources.devices` (microphone, camera) and `realtime.sources.network` (rtsp/rtmp/http streams).
"""

from __future__ import annotations

from pathlib import Path

from engines.errors import MediaError
from realtime.sources.devices import LiveSource, MicrophoneSource, WebcamSource
from realtime.sources.feed import CaptureOptions, DeviceError, Source
from realtime.sources.file import FileSource
from realtime.sources.network import NetworkSource

DEMO_CLIP_PATH = Path(__file__).resolve().parents[2] / "assets" / "demo" / "demo_conversation.mp4"
"""The bundled clip that the `demo` source plays (built by scripts/make_demo_clip.py)."""

NETWORK_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://")


def open_source(spec: str, options: CaptureOptions | None = None, start_s: float = 0.0) -> Source:
    """`mic`, `mic:INDEX|NAME`, `webcam`, `webcam:INDEX`, `live`, `demo` (the bundled clip), a media file, a
    network stream (`rtsp://`, `rtmp://`, `http(s)://`, see `realtime.sources.network`).

    The keywords win over files of the same name: write `./mic` for a file called `mic`.
    `start_s` skips the beginning of a file (a stream resumed elsewhere); live sources ignore it.
    """
    options = options or CaptureOptions()
    if spec.startswith(NETWORK_SCHEMES):
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
        return FileSource(DEMO_CLIP_PATH, options, start_s)
    return FileSource(spec, options, start_s)
