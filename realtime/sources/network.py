"""Network sources (`rtsp://`, `rtmp://`, `http(s)://`): PyAV demuxes audio and video of one stream.

A network stream drops: when it ends or fails, its status goes `source_lost` (retained on MQTT by the
runtime) and it is reopened with capped exponential backoff; stream time goes on across the gap
(the wall time lost is skipped), so the VAD and the utterance times stay monotonic. Reachable again:
status `online`. Unreachable for `source_lost_give_up_s`: the stream ends, cleanly if the last
connection ended normally (a finite clip served over HTTP), with a `MediaError` if it failed.

Nothing is probed before `stream()`: a server that serves one client (ffmpeg `-listen 1`) must not
spend its connection on a probe. The first connection follows the same retry rule.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from engines.errors import MediaError
from realtime.frames import AudioChunk, VideoFrame
from realtime.messages import ONLINE, SOURCE_LOST
from realtime.sources.feed import CaptureOptions
from realtime.sources.file import FileSource

if TYPE_CHECKING:
    from av.container import InputContainer

logger = logging.getLogger(__name__)


class _UrlFeed(FileSource):
    """One connection: `FileSource`'s decoder on a URL, with network timeouts and no pacing."""

    def __init__(self, url: str, options: CaptureOptions) -> None:
        # The network delivers at its own pace; waiting again would double the delay.
        super().__init__(url, dataclasses.replace(options, realtime=False), probe=False)
        self.url = url  # `path` would fold the `//` of `rtsp://host`

    def _open_container(self) -> InputContainer:
        import av

        timeout = self.options.network_timeout_s
        return av.open(self.url, timeout=(timeout, timeout))


class NetworkSource:
    """A reconnecting network stream; `on_status(status)` hears `source_lost` and `online`."""

    def __init__(self, url: str, options: CaptureOptions | None = None) -> None:
        self.url = url
        self.name = url
        self.options = options or CaptureOptions()
        self.has_audio = True
        self.has_video = True
        self.on_status: Callable[[str], None] | None = None
        self.reconnects = 0
        """Successful reconnections after a drop."""

    def close(self) -> None:
        """Each connection is closed by its own `stream()`; nothing is held here."""

    async def stream(self) -> AsyncIterator[AudioChunk | VideoFrame]:
        offset_s, last_s = 0.0, 0.0
        lost_at: float | None = None
        connected_once = False
        error: Exception | None = None
        """How the last connection that delivered anything ended (None: normally), or why none did."""
        delay_s = self.options.reconnect_initial_s
        while True:
            received = False
            try:
                async for item in _UrlFeed(self.url, self.options).stream():
                    if not received:
                        received = True
                        if lost_at is not None:
                            # Stream time goes on across the gap: the wall time spent reconnecting.
                            offset_s = last_s + (time.monotonic() - lost_at)
                            self.reconnects += connected_once
                            logger.warning(
                                "network source %s: back after %.1f s", self.url, time.monotonic() - lost_at
                            )
                        connected_once, lost_at = True, None
                        delay_s = self.options.reconnect_initial_s
                        self._status(ONLINE)
                    item = _shifted(item, offset_s)
                    last_s = max(last_s, item.end_s if isinstance(item, AudioChunk) else item.time_s)
                    yield item
                reason = "ended"
                if received:
                    error = None
            except MediaError as exc:
                reason = str(exc)
                if received or not connected_once:
                    error = exc
            if lost_at is None:
                lost_at = time.monotonic()
                self._status(SOURCE_LOST)
                logger.warning("network source %s: %s; reconnecting", self.url, reason)
            if time.monotonic() - lost_at >= self.options.source_lost_give_up_s:
                if error is not None or not connected_once:
                    raise MediaError(
                        f"network source '{self.url}' lost for {self.options.source_lost_give_up_s:.0f} s: "
                        f"{error or 'no connection'}"
                    )
                logger.info("network source %s: ended", self.url)
                return
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, self.options.reconnect_max_s)

    def _status(self, status: str) -> None:
        if self.on_status is not None:
            self.on_status(status)


def _shifted(item: AudioChunk | VideoFrame, offset_s: float) -> AudioChunk | VideoFrame:
    if offset_s == 0:
        return item
    if isinstance(item, AudioChunk):
        return AudioChunk(item.samples, item.start_s + offset_s)
    return VideoFrame(item.rgb, item.time_s + offset_s)
