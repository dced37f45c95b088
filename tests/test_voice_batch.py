"""Voice embeddings of several streams asked at once share one encoder call; none waits for company."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from realtime.speakers.voice_batch import VoiceBatch, timed_voices


class CountingEncoder:
    """Embeds an utterance as its first sample; records the size of every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed_many(self, utterances: list[np.ndarray]) -> list[np.ndarray]:
        self.calls.append(len(utterances))
        if any(u[0] < 0 for u in utterances):
            raise RuntimeError("encoder broke")
        return [np.array([u[0], 1.0]) for u in utterances]


def test_requests_waiting_together_share_one_call_and_keep_their_own_voice() -> None:
    encoder, executor = CountingEncoder(), ThreadPoolExecutor(1)
    busy = threading.Event()
    executor.submit(busy.wait, 5)  # the recognizer's thread is busy with another stream
    batch = VoiceBatch(timed_voices(encoder.embed_many), executor)
    futures = [batch.submit(np.full(16_000 * (i + 1), float(i), np.float32)) for i in range(4)]
    busy.set()
    voices = [f.result(5) for f in futures]
    assert encoder.calls == [4]
    assert [v.vector[0] for v in voices] == [0.0, 1.0, 2.0, 3.0]
    assert [v.duration_s for v in voices] == [1.0, 2.0, 3.0, 4.0]
    assert len({v.embed_ms for v in voices}) == 1 and voices[0].embed_ms > 0


def test_a_lone_request_is_served_at_once_and_later_ones_get_their_own_call() -> None:
    encoder, executor = CountingEncoder(), ThreadPoolExecutor(1)
    batch = VoiceBatch(timed_voices(encoder.embed_many), executor)
    assert batch.submit(np.full(160, 7.0, np.float32)).result(5).vector[0] == 7.0
    assert batch.submit(np.full(160, 8.0, np.float32)).result(5).vector[0] == 8.0
    assert encoder.calls == [1, 1]


def test_a_cancelled_request_is_skipped_and_an_encoder_error_reaches_every_caller() -> None:
    encoder, executor = CountingEncoder(), ThreadPoolExecutor(1)
    busy = threading.Event()
    executor.submit(busy.wait, 5)
    batch = VoiceBatch(timed_voices(encoder.embed_many), executor)
    cancelled = batch.submit(np.full(160, 1.0, np.float32))
    kept = [batch.submit(np.full(160, -1.0, np.float32)), batch.submit(np.full(160, 2.0, np.float32))]
    assert cancelled.cancel()
    busy.set()
    for future in kept:
        with pytest.raises(RuntimeError, match="encoder broke"):
            future.result(5)
    assert encoder.calls == [2]
