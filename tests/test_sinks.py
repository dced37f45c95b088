"""Console and JSON-lines output through the writer thread: order, flushing, the full-queue policy."""

from __future__ import annotations

import io
import threading

from realtime.outputs.sinks import LineWriter


class BlockingStream(io.StringIO):
    """A reader that stops reading: `write` blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()
        self.name = "<blocked pipe>"

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(10)
        return super().write(text)


def test_lines_come_out_in_order_and_all_of_them_by_close() -> None:
    stream = io.StringIO()
    writer = LineWriter(stream)
    for i in range(500):
        writer.write_line(f"line {i}")
    writer.close()
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(500)]
    assert writer.dropped == 0


def test_a_reader_that_stops_costs_the_oldest_lines_never_a_wait() -> None:
    stream = BlockingStream()
    writer = LineWriter(stream, max_lines=5)
    writer.write_line("first")
    assert stream.entered.wait(10)  # the writer thread is stuck in write("first")
    for i in range(7):
        writer.write_line(f"line {i}")  # returns at once although nothing is being read
    stream.release.set()
    writer.close()
    assert writer.dropped == 2
    assert stream.getvalue().splitlines() == ["first"] + [f"line {i}" for i in range(2, 7)]
