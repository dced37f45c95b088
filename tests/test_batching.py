"""Cross-stream batching: the real tiny.en on a batch of espeak-ng sentences, and the batching thread's
window, fairness and error rules with a scripted model."""

from __future__ import annotations

import threading

import numpy as np
from test_transcribe import sentences_audio, wer

from realtime.frames import Transcript
from realtime.speech.whisper import AsrOptions, Transcriber
from realtime.speech.whisper_batching import BatchingOptions, BatchingTranscriber


def test_batched_whisper_gives_the_texts_of_one_by_one(espeak_wav) -> None:
    transcriber = Transcriber(AsrOptions(greedy_batch_utterances=0))
    audios = sentences_audio(espeak_wav)
    one_by_one = [transcriber.transcribe(audio) for audio in audios]
    batched = transcriber.transcribe_batch(audios)
    assert [t.text for t in batched] == [t.text for t in one_by_one]
    assert wer(list(espeak_wav.sentences), [t.text for t in batched]) <= 0.25
    assert all(t.language == "en" and t.asr_ms > 0 for t in batched)


def test_a_crowded_batch_decodes_greedily_a_small_one_with_the_beam(espeak_wav, monkeypatch) -> None:
    """From `greedy_batch_utterances` up, the texts are those of greedy one by one; below, of beam 5."""
    audios = sentences_audio(espeak_wav)
    assert len(audios) >= 3
    transcriber = Transcriber(AsrOptions(beam_size=5, greedy_batch_utterances=3))
    greedy = Transcriber(AsrOptions(beam_size=1))
    beams: list[int] = []
    decode = transcriber._decode_batch
    monkeypatch.setattr(
        transcriber, "_decode_batch", lambda encoded, beam: beams.append(beam) or decode(encoded, beam)
    )
    crowded = transcriber.transcribe_batch(audios)
    pair = transcriber.transcribe_batch(audios[:2])
    assert beams == [1, 5]
    assert [t.text for t in crowded] == [greedy.transcribe(audio).text for audio in audios]
    assert [t.text for t in pair] == [transcriber.transcribe(audio).text for audio in audios[:2]]


class Scripted:
    """Names each utterance by its first sample; blocks the first call until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.entered = threading.Event()

    def encode_ahead(self, samples: np.ndarray) -> np.ndarray:
        return samples

    def transcribe_batch(self, batch: list[np.ndarray]) -> list[Transcript]:
        self.entered.set()
        self.release.wait(10)
        names = [int(samples[0]) for samples in batch]
        self.batches.append(names)
        if -1 in names:
            raise RuntimeError("model broke")
        return [Transcript(f"utterance {n}", "en", 0.1, 1.0) for n in names]


def call(batcher: BatchingTranscriber, name: int, out: dict) -> threading.Thread:
    def run() -> None:
        try:
            out[name] = batcher.transcribe(np.full(160, name, np.float32)).text
        except RuntimeError as exc:
            out[name] = str(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_waiting(batcher: BatchingTranscriber, count: int) -> None:
    for _ in range(1000):
        with batcher._lock:
            if len(batcher._waiting) >= count:
                return
        threading.Event().wait(0.005)
    raise AssertionError("requests did not arrive")


def test_waiting_utterances_are_served_in_arrival_order_and_capped_per_batch() -> None:
    model = Scripted()
    batcher = BatchingTranscriber(model, BatchingOptions(window_ms=0, max_batch_utterances=2))
    batcher.set_streams(5)
    out: dict[int, str] = {}
    threads = [call(batcher, 0, out)]
    assert model.entered.wait(10)  # the first call is taken alone and holds the model
    for name in (1, 2, 3, 4):
        threads.append(call(batcher, name, out))
        wait_waiting(batcher, name)
    model.release.set()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert model.batches == [[0], [1, 2], [3, 4]]
    assert out == {n: f"utterance {n}" for n in range(5)}
    assert batcher.metrics.batches == 3 and batcher.metrics.batch_size_peak == 2


def test_a_batch_waits_for_the_other_streams_within_the_window() -> None:
    model = Scripted()
    model.release.set()
    batcher = BatchingTranscriber(model, BatchingOptions(window_ms=5_000, max_batch_utterances=8))
    batcher.set_streams(2)
    out: dict[int, str] = {}
    first = call(batcher, 1, out)
    wait_waiting(batcher, 1)
    second = call(batcher, 2, out)  # arrives within the window: both share one call
    first.join(10)
    second.join(10)
    batcher.close()
    assert model.batches == [[1, 2]]


def test_company_is_awaited_only_while_another_stream_is_speaking() -> None:
    """Streams in silence send nothing soon: a lone request starts at once (a window far longer than
    the join timeout, so it can only finish if it does not wait); while one speaks, it waits for it."""
    model = Scripted()
    model.release.set()
    speaking = [0]
    batcher = BatchingTranscriber(model, BatchingOptions(window_ms=600_000), speaking=lambda: speaking[0])
    batcher.set_streams(3)
    out: dict[int, str] = {}
    call(batcher, 1, out).join(30)
    assert model.batches == [[1]]
    speaking[0] = 1
    second = call(batcher, 2, out)
    wait_waiting(batcher, 1)
    third = call(batcher, 3, out)  # the stream that was speaking ends its utterance ...
    wait_waiting(batcher, 2)
    assert model.batches == [[1]]  # ... while a third stream still speaks: both wait for it
    speaking[0] = 0  # it falls silent (e.g. the VAD dropped a short burst): they go without it
    second.join(30)
    third.join(30)
    batcher.close()
    assert model.batches == [[1], [2, 3]]
    assert out == {n: f"utterance {n}" for n in (1, 2, 3)}


def test_a_model_error_reaches_every_caller_of_the_batch() -> None:
    model = Scripted()
    batcher = BatchingTranscriber(model, BatchingOptions(window_ms=5_000))
    batcher.set_streams(2)
    out: dict[int, str] = {}
    threads = [call(batcher, -1, out)]
    wait_waiting(batcher, 1)
    threads.append(call(batcher, 7, out))
    model.release.set()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert out == {-1: "model broke", 7: "model broke"}


def test_one_stream_never_waits_for_company() -> None:
    model = Scripted()
    model.release.set()
    # A window far longer than the join timeout: the call can only finish if it does not wait.
    batcher = BatchingTranscriber(model, BatchingOptions(window_ms=600_000))
    batcher.set_streams(1)
    out: dict[int, str] = {}
    call(batcher, 3, out).join(30)
    batcher.close()
    assert out == {3: "utterance 3"}


def call_interim(batcher: BatchingTranscriber, name: int, out: dict) -> threading.Thread:
    def run() -> None:
        out[name] = batcher.transcribe_interim(np.full(160, name, np.float32)).text

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_finals_go_before_interims() -> None:
    """While a call runs, interims of streams 1-3 and finals of streams 4-5 queue up: the finals go
    first, on their own, then the interims (at most `max_batch_utterances` per call)."""
    model = Scripted()
    batcher = BatchingTranscriber(model, BatchingOptions(window_ms=0, max_batch_utterances=2))
    out: dict[int, str] = {}
    threads = [call(batcher, 0, out)]
    model.entered.wait(10)  # the first call holds the model
    for name in (1, 2, 3):
        threads.append(call_interim(batcher, name, out))
    wait_waiting(batcher, 3)
    for name in (4, 5):
        threads.append(call(batcher, name, out))
    wait_waiting(batcher, 5)
    model.release.set()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert model.batches == [[0], [4, 5], [1, 2], [3]]
    assert out == {n: f"utterance {n}" for n in range(6)}
    assert batcher.metrics.interims == 3 and batcher.metrics.interims_passed_over == 3 + 1
