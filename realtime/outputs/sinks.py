"""Local outputs of results: a readable console line and JSON lines. (MQTT: `publish.StreamChannel`.)

Lines are written by a `LineWriter` thread, never on the event loop: a terminal or a pipe whose reader
is slow would otherwise stall every stream of the process.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TextIO

from realtime.messages import EmotionResult, format_console_line

logger = logging.getLogger(__name__)


class LineWriter:
    """Writes lines to `stream` from its own thread, flushed per line, in order.

    Bounded at `max_lines` waiting lines. Full (the reader has stopped reading): the OLDEST waiting
    line is dropped, counted in `dropped` and logged, so the live loop never waits on a reader.
    """

    def __init__(self, stream: TextIO, max_lines: int = 10_000) -> None:
        self.stream = stream
        self.dropped = 0
        self._max = max_lines
        self._lines: deque[str] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="line-writer", daemon=True)
        self._thread.start()

    def write_line(self, line: str) -> None:
        with self._ready:
            if len(self._lines) >= self._max:
                self._lines.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    logger.warning(
                        "output %s not read: %d line(s) dropped so far", self.stream.name, self.dropped
                    )
            self._lines.append(line)
            self._ready.notify()

    def close(self) -> None:
        """Write what is waiting, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._lines and not self._closed:
                    self._ready.wait()
                if not self._lines:
                    return
                batch = list(self._lines)
                self._lines.clear()
            self.stream.write("".join(line + "\n" for line in batch))
            self.stream.flush()


class ConsoleSink:
    """One readable line per result (stdout, or stderr when stdout carries JSON lines)."""

    def __init__(self, writer: LineWriter, prefix: str = "") -> None:
        """`prefix` starts every line (the stream id when one process serves several)."""
        self._writer = writer
        self._prefix = prefix

    def emit(self, result: EmotionResult) -> None:
        self._writer.write_line(self._prefix + format_console_line(result))


class JsonlSink:
    """One schema-1 JSON object per line, flushed per result so a reader sees it at once."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def emit(self, result: EmotionResult) -> None:
        self._writer.write_line(result.to_json())
