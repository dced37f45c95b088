"""Local outputs of results: a readable console line and JSON lines. (MQTT: `publish.StreamChannel`.)"""

from __future__ import annotations

from typing import TextIO

from realtime.messages import EmotionResult, format_console_line


class ConsoleSink:
    """One readable line per result (stdout, or stderr when stdout carries JSON lines)."""

    def __init__(self, stream: TextIO, prefix: str = "") -> None:
        """`prefix` starts every line (the stream id when one process serves several)."""
        self._stream = stream
        self._prefix = prefix

    def emit(self, result: EmotionResult) -> None:
        print(self._prefix + format_console_line(result), file=self._stream, flush=True)


class JsonlSink:
    """One schema-1 JSON object per line, flushed per result so a reader sees it at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def emit(self, result: EmotionResult) -> None:
        self._stream.write(result.to_json() + "\n")
        self._stream.flush()
