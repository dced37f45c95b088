"""Voice embeddings of several streams' utterances in one speaker-encoder call.

When the streams of one process finish utterances at about the same moment, each asks for its voice
embedding while Whisper transcribes. A request queues one job on the recognizer's executor unless one
is already queued; that job, when its turn comes, embeds every request waiting at that moment in one
call (`VoiceEncoder.embed_many`). No request waits for company: a lone stream's request is served as
soon as the executor is free, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future

import numpy as np

from realtime.frames import SAMPLE_RATE_HZ
from realtime.speakers.attributor import Voice


def timed_voices(
    embed_many: Callable[[list[np.ndarray]], list[np.ndarray]],
) -> Callable[[list[np.ndarray]], list[Voice]]:
    """A batch encoder (`VoiceEncoder.embed_many`) as `Voice`s; each carries the shared call's time."""

    def embed(batch: list[np.ndarray]) -> list[Voice]:
        started = time.perf_counter()
        vectors = embed_many(batch)
        embed_ms = (time.perf_counter() - started) * 1000
        return [
            Voice(np.asarray(vector, np.float64), len(samples) / SAMPLE_RATE_HZ, embed_ms)
            for samples, vector in zip(batch, vectors)
        ]

    return embed


class VoiceBatch:
    """`submit(samples)` -> Future of the utterance's `Voice`; thread-safe."""

    def __init__(self, embed_many: Callable[[list[np.ndarray]], list[Voice]], executor: Executor) -> None:
        self._embed_many = embed_many
        self._executor = executor
        self._lock = threading.Lock()
        self._waiting: list[tuple[np.ndarray, Future[Voice]]] = []

    def submit(self, samples: np.ndarray) -> Future[Voice]:
        result: Future[Voice] = Future()
        with self._lock:
            self._waiting.append((samples, result))
            first = len(self._waiting) == 1
        if first:
            self._executor.submit(self._embed_waiting)
        return result

    def _embed_waiting(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        batch = [(samples, result) for samples, result in batch if result.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            voices = self._embed_many([samples for samples, _ in batch])
        except Exception as exc:  # noqa: BLE001 (each stream re-raises it where it awaits its voice)
            for _, result in batch:
                result.set_exception(exc)
            return
        for (_, result), voice in zip(batch, voices):
            result.set_result(voice)
