"""Assembles the live streams of one process from `LiveConfig`s with the real stages, and runs them.

Start-up order puts cheap checks first (checkpoint files, sources, broker) so a user error is
reported before the models load. Shutdown always closes the MQTT side cleanly: queued results,
then `offline`. The shared parts (models, MQTT, signals) live in `realtime.runtime.runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from engines.stream import checkpoint_path
from realtime.outputs.mqtt import topics
from realtime.outputs.preview import Preview
from realtime.runtime.config import LiveConfig
from realtime.runtime.runtime import Runtime, StreamReport
from realtime.runtime.stream_specs import StreamSpec, default_stream_id
from realtime.sources.feed import Source
from realtime.sources.open import open_source
from realtime.speakers.attributor import check_enrolment

logger = logging.getLogger(__name__)

__all__ = ["StreamReport", "run_stream", "serve"]


async def serve(
    config: LiveConfig,
    specs: list[StreamSpec],
    *,
    console: TextIO | None,
    jsonl: TextIO | None = None,
    on_broker: Callable[[str, list[str]], None] | None = None,
    preview: Preview | None = None,
) -> list[StreamReport]:
    """Serve every stream in one process until each source ends or SIGINT/SIGTERM.

    `config` holds the process-level options (ASR, MQTT, checkpoint, batching); each spec's config
    its own capture, VAD and pipeline options. `on_broker(url, stream_ids)` is called once the broker
    is reachable and the models are loaded, before the first chunk is read. With one stream, a
    failing source raises its error as before; with several, it ends that stream only (its report
    carries the error). `preview` draws the first stream's frames and results (the caller closes it).
    """
    checkpoint_path(config.checkpoint_dir)
    check_enrolment(config.speakers.enrol)
    sources: list[Source] = []
    try:
        for spec in specs:
            quiet = _is_device(spec.source) and not logger.isEnabledFor(logging.DEBUG)
            with _native_stderr_silenced(enabled=quiet):
                sources.append(await asyncio.to_thread(open_source, spec.source, spec.config.capture))
        node = topics.node_id(config.mqtt.node_id, [spec.stream_id for spec in specs])
        runtime = Runtime(config, console=console, jsonl=jsonl, label_console=len(specs) > 1, node_id=node)
        try:
            await runtime.start()
            if on_broker is not None:
                on_broker(runtime.broker_url, [s.stream_id for s in specs])
            for i, (spec, source) in enumerate(zip(specs, sources)):
                await runtime.add_stream(source, spec.stream_id, spec.config, preview if i == 0 else None)
            reports = await runtime.wait()
        finally:
            await runtime.close()
    finally:
        for source in sources:
            source.close()
    if len(reports) == 1 and reports[0].error is not None:
        raise reports[0].error
    return reports


async def run_stream(
    config: LiveConfig,
    source: str,
    *,
    console: TextIO | None,
    jsonl: TextIO | None = None,
    on_broker: Callable[[str, str], None] | None = None,
    preview: Preview | None = None,
) -> StreamReport:
    """Serve one stream (see `serve`); `on_broker(url, stream_id)`."""
    spec = StreamSpec(source, config.stream_id or default_stream_id(source), config)
    announce = None if on_broker is None else (lambda url, ids: on_broker(url, ids[0]))
    reports = await serve(config, [spec], console=console, jsonl=jsonl, on_broker=announce, preview=preview)
    return reports[0]


def _is_device(source: str) -> bool:
    return source in ("mic", "live", "webcam") or source.startswith(("webcam:", "mic:"))


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool) -> Iterator[None]:
    """Mute file descriptor 2 while devices are probed.

    ALSA, JACK and OpenCV's backends print their probing noise from C straight to fd 2, which would
    bury the one-line error a missing device gets. Python-level errors are unaffected (raised, not
    printed). Run with -vv to see the noise.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
