"""One Whisper for many streams: utterances that are ready at about the same moment share one call.

Each stream's pipeline calls `transcribe()` from its own ASR thread and blocks until its text is back;
one worker thread owns the model, so Whisper runs on one core whatever the number of streams. The
worker waits up to `window_ms` after the first request for others to join (not at all once every
served stream has asked, e.g. with one stream, nor while no other stream is speaking), then
transcribes up to `max_batch_utterances` of them in one `Transcriber.transcribe_batch` call. A final
utterance's encoding starts when it arrives (`encode_ahead`, on Whisper's encoder workers), so it
overlaps the decoding of the batch before it.

Fairness: a pipeline transcribes its utterances one after another, so a stream has at most one
request waiting here; requests are served in arrival order. A talkative stream therefore gets at most
one slot per batch and waits behind every stream that asked before its next utterance, never ahead.

Interim requests (provisional text of an utterance still being spoken, `transcribe_interim`) come
after final ones: a call holds only finals while any final waits. Capping interim calls at 2 (so
that a final arriving during one waits less) made 8 lockstep streams slower here (p95 2,222 and
2,083 ms against 1,539 and 1,476 uncapped, bench/multistream.py, load ~3.5): more calls for the same
interims.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from realtime.frames import Transcript
from realtime.metrics import LatencyStats

logger = logging.getLogger(__name__)


class BatchTranscriber(Protocol):
    def encode_ahead(self, samples: np.ndarray) -> Any:
        """Work that can start as soon as a final utterance arrives; handed to `transcribe_batch`."""
        ...

    def transcribe_batch(self, batch: list[Any]) -> list[Transcript]: ...


@dataclass(slots=True)
class BatchingOptions:
    """How long utterances wait for company, and how many share one Whisper call."""

    window_ms: float = 100.0
    """Wait after the first waiting utterance for others to join its batch, only while another stream
    is in the middle of an utterance; 0: a batch holds only what is already waiting. 100 ms rather
    than 30 lowered the p95 of 8 streams speaking together by about 55 ms on average, but streams whose
    utterances seldom end together only wait longer: lower it for them (docs/benchmarks.md, Whisper
    options)."""
    max_batch_utterances: int = 8
    """Most utterances in one call; later ones wait for the next batch (in arrival order). 1 serves one
    by one. Batched, 8 utterances took about a third less time than one by one; with 8 streams in
    lockstep that gave a similar or better p95 and a worse p50, so 1 suits where the median matters
    more than the tail (docs/benchmarks.md, Whisper options)."""
    max_waiting: int = 256
    """Requests held at once (one per stream at most, see the module docstring). Full: the caller's
    ASR thread waits for room, so its stream's segment queue applies its own drop policy; counted
    in `BatchingMetrics.full_waits`."""


@dataclass(slots=True)
class BatchingMetrics:
    batches: int = 0
    utterances: int = 0
    full_waits: int = 0
    """Callers that found `max_waiting` requests queued and had to wait for room."""
    batch_size_peak: int = 0
    interims: int = 0
    """Interim requests served (also counted in `utterances`)."""
    interims_passed_over: int = 0
    """Times a waiting interim request was left for a later call (finals first, or a full call)."""
    queue_wait: LatencyStats = field(default_factory=LatencyStats)
    """Time from a request to the start of the call that serves it."""


@dataclass(eq=False, slots=True)
class _Request:
    utterance: Any
    """What `transcribe_batch` takes: the samples, or for a final what `encode_ahead` made of them."""
    queued_s: float
    interim: bool = False
    result: Future[Transcript] = field(default_factory=Future)


class BatchingTranscriber:
    """A thread-safe `transcribe(samples)` that batches concurrent callers on one worker thread."""

    def __init__(
        self,
        transcriber: BatchTranscriber,
        options: BatchingOptions | None = None,
        speaking: Callable[[], int] | None = None,
    ) -> None:
        """`speaking()`: how many served streams are in the middle of an utterance now (called on the
        worker thread); a request waits for company only while one is. None: always up to the window."""
        self.options = options or BatchingOptions()
        self._speaking = speaking
        self.metrics = BatchingMetrics()
        self._transcriber = transcriber
        self._waiting: deque[_Request] = deque()
        self._lock = threading.Condition()
        self._closed = False
        self._streams = 1
        self._worker = threading.Thread(target=self._serve, name="asr-batch", daemon=True)
        self._worker.start()

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """Blocking, like `Transcriber.transcribe`; `asr_ms` is the shared call's time."""
        queued_s = time.perf_counter()
        return self._submit(_Request(self._transcriber.encode_ahead(samples), queued_s))

    def transcribe_interim(self, samples: np.ndarray) -> Transcript:
        """`transcribe` of an utterance still being spoken: served after every waiting final."""
        return self._submit(_Request(samples, time.perf_counter(), interim=True))

    def _submit(self, request: _Request) -> Transcript:
        with self._lock:
            if len(self._waiting) >= self.options.max_waiting:
                self.metrics.full_waits += 1
            while len(self._waiting) >= self.options.max_waiting and not self._closed:
                self._lock.wait()
            if self._closed:
                raise RuntimeError("the batching transcriber is closed")
            self._waiting.append(request)
            self._lock.notify_all()
        return request.result.result()

    def set_streams(self, count: int) -> None:
        """How many streams call in: a batch holding one request per stream starts without waiting."""
        with self._lock:
            self._streams = max(1, count)
            self._lock.notify_all()

    def close(self) -> None:
        """Serve what is waiting, then stop the worker."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._worker.join()

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            started = time.perf_counter()
            for request in batch:
                self.metrics.queue_wait.add((started - request.queued_s) * 1000)
            try:
                transcripts = self._transcriber.transcribe_batch([r.utterance for r in batch])
            except Exception as exc:  # noqa: BLE001 (the callers re-raise it in their own streams)
                for request in batch:
                    request.result.set_exception(exc)
                continue
            self.metrics.batches += 1
            self.metrics.utterances += len(batch)
            self.metrics.batch_size_peak = max(self.metrics.batch_size_peak, len(batch))
            self.metrics.interims += sum(r.interim for r in batch)
            for request, transcript in zip(batch, transcripts):
                request.result.set_result(transcript)

    def _next_batch(self) -> list[_Request] | None:
        limit = self.options.max_batch_utterances
        with self._lock:
            while not self._waiting:
                if self._closed:
                    return None
                self._lock.wait()
            deadline = self._waiting[0].queued_s + self.options.window_ms / 1000
            while len(self._waiting) < min(limit, self._streams) and not self._closed:
                left = deadline - time.perf_counter()
                if left <= 0 or (self._speaking is not None and self._speaking() == 0):
                    break
                # Polled: a stream stops speaking without a request when the VAD drops a short burst.
                self._lock.wait(min(left, 0.01) if self._speaking is not None else left)
            finals = [r for r in self._waiting if not r.interim]
            batch = (finals or list(self._waiting))[:limit]
            for request in batch:
                self._waiting.remove(request)
            self.metrics.interims_passed_over += sum(r.interim for r in self._waiting)
            self._lock.notify_all()
        return batch
