"""VAD: segments of real espeak-ng speech against the known sentence times."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from realtime.frames import SAMPLE_RATE_HZ, AudioChunk, SpeechSegment, VideoFrame
from realtime.speech.vad import VadOptions, VadSegmenter, default_model_path

PAD_S = VadOptions().speech_pad_ms / 1000
TINY_RGB = np.zeros((2, 2, 3), np.uint8)


def feed(
    segmenter: VadSegmenter,
    samples: np.ndarray,
    chunk_sizes: list[int] | None = None,
    start_s: float = 0.0,
    fps: float = 0.0,
) -> list[SpeechSegment]:
    """Push `samples` in chunks (sizes cycled), with video frames at `fps` interleaved by time."""
    sizes = itertools.cycle(chunk_sizes or [512])
    segments: list[SpeechSegment] = []
    offset, next_frame = 0, 0
    while offset < len(samples):
        size = next(sizes)
        chunk = AudioChunk(samples[offset : offset + size], start_s + offset / SAMPLE_RATE_HZ)
        while fps and next_frame / fps < chunk.end_s - start_s:
            segmenter.add_frame(VideoFrame(TINY_RGB, start_s + next_frame / fps))
            next_frame += 1
        segments += segmenter.push(chunk)
        offset += size
    return segments + segmenter.flush()


@pytest.fixture(scope="module")
def segmenter() -> VadSegmenter:
    return VadSegmenter(VadOptions())


def test_model_is_found_without_importing_torch():
    assert default_model_path().name == "silero_vad.onnx"
    assert default_model_path().is_file()


def test_one_segment_per_sentence_with_padded_boundaries(segmenter, espeak_wav):
    rng = np.random.default_rng(0)
    segments = feed(segmenter, espeak_wav.samples, chunk_sizes=list(rng.integers(100, 3000, 50)))
    assert len(segments) == len(espeak_wav.sentences)
    for segment, (start, end) in zip(segments, espeak_wav.spans_s, strict=True):
        # The pad is added on both sides; Silero's frame (32 ms) and its lag bound the rest.
        assert segment.start_s + PAD_S == pytest.approx(start, abs=0.1)
        assert -0.1 <= segment.end_s - PAD_S - end <= 0.25
        assert len(segment.samples) == round((segment.end_s - segment.start_s) * SAMPLE_RATE_HZ)
        assert not segment.forced_split
        assert segment.vad_ms > 0 and segment.cut_monotonic_s > 0
    ids = [s.segment_id for s in segments]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_segment_audio_is_the_stream_audio(segmenter, espeak_wav):
    segments = feed(segmenter, espeak_wav.samples, start_s=100.0)
    assert segments
    for segment in segments:
        first = round((segment.start_s - 100.0) * SAMPLE_RATE_HZ)
        np.testing.assert_array_equal(
            segment.samples, espeak_wav.samples[first : first + len(segment.samples)]
        )


def test_chunk_size_does_not_change_the_result(espeak_wav):
    whole = feed(VadSegmenter(), espeak_wav.samples, chunk_sizes=[512])
    odd = feed(VadSegmenter(), espeak_wav.samples, chunk_sizes=[333, 1200, 7, 4096])
    assert [(s.start_s, s.end_s) for s in whole] == [(s.start_s, s.end_s) for s in odd]


def test_ids_increase_from_zero_and_reset_restores_the_model_state(espeak_wav):
    segmenter = VadSegmenter()
    first = feed(segmenter, espeak_wav.samples)
    assert [s.segment_id for s in first] == list(range(len(first)))
    segmenter.push(AudioChunk(espeak_wav.samples[: SAMPLE_RATE_HZ * 2], 0.0))
    segmenter.reset()
    again = feed(segmenter, espeak_wav.samples)
    assert [(s.start_s, s.end_s) for s in again] == [(s.start_s, s.end_s) for s in first]
    assert again[0].segment_id > first[-1].segment_id


def test_frames_inside_a_segment_are_attached(espeak_wav):
    segmenter = VadSegmenter()
    segments = feed(segmenter, espeak_wav.samples, fps=10.0)
    for segment in segments:
        times = [f.time_s for f in segment.frames]
        assert times and all(segment.start_s <= t < segment.end_s for t in times)
        assert len(times) == pytest.approx((segment.end_s - segment.start_s) * 10, abs=1)
    # Frames between segments (the pauses) are dropped by design, and counted.
    assert segmenter.frames_evicted > 0


def test_frame_buffer_is_bounded_without_speech():
    options = VadOptions(max_utterance_s=2.0)
    segmenter = VadSegmenter(options)
    for i in range(3000):
        segmenter.add_frame(VideoFrame(TINY_RGB, i / 30))
    kept = list(segmenter._video)
    span = kept[-1].time_s - kept[0].time_s
    assert span <= options.max_utterance_s + 3.0
    assert segmenter.frames_evicted == 3000 - len(kept)


def test_long_speech_is_force_split(espeak_wav):
    options = VadOptions(max_utterance_s=1.0)
    segments = feed(VadSegmenter(options), espeak_wav.samples)
    forced = [s for s in segments if s.forced_split]
    assert forced
    assert all(s.end_s - s.start_s <= 1.0 + 1e-6 for s in segments)
    # A forced cut continues seamlessly in the next segment.
    for a, b in itertools.pairwise(segments):
        if a.forced_split:
            assert b.start_s == pytest.approx(a.end_s)


def test_silence_and_noise_give_no_segment():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.003, SAMPLE_RATE_HZ * 3).astype(np.float32)
    segmenter = VadSegmenter()
    assert feed(segmenter, np.zeros(SAMPLE_RATE_HZ * 3, np.float32)) == []
    assert feed(segmenter, noise) == []


def test_too_short_speech_is_discarded(espeak_wav):
    start, end = espeak_wav.spans_s[0]
    speech = espeak_wav.samples[: int((end + 1.0) * SAMPLE_RATE_HZ)]
    segmenter = VadSegmenter(VadOptions(min_speech_ms=int((end - start) * 1000) + 1000))
    assert feed(segmenter, speech) == []
    assert segmenter.segments_discarded >= 1


def test_flush_cuts_the_utterance_in_progress(espeak_wav):
    start, end = espeak_wav.spans_s[0]
    middle = (start + end) / 2
    segmenter = VadSegmenter()
    assert segmenter.push(AudioChunk(espeak_wav.samples[: int(middle * SAMPLE_RATE_HZ)], 0.0)) == []
    [segment] = segmenter.flush()
    assert segment.start_s + PAD_S == pytest.approx(start, abs=0.1)
    assert segment.end_s == pytest.approx(middle, abs=1 / SAMPLE_RATE_HZ)


def test_gap_in_the_audio_closes_the_segment(espeak_wav):
    start, end = espeak_wav.spans_s[0]
    middle = int((start + end) / 2 * SAMPLE_RATE_HZ)
    segmenter = VadSegmenter()
    segmenter.push(AudioChunk(espeak_wav.samples[:middle], 0.0))
    closed = segmenter.push(AudioChunk(np.zeros(512, np.float32), 60.0))
    assert len(closed) == 1 and closed[0].end_s <= middle / SAMPLE_RATE_HZ + 1e-6


def test_demo_clip_segments_match_its_ground_truth():
    import asyncio
    import json

    from realtime.sources.feed import CaptureOptions
    from realtime.sources.file import FileSource
    from realtime.sources.open import DEMO_CLIP_PATH

    truth = json.loads(DEMO_CLIP_PATH.with_suffix(".json").read_text())["utterances"]
    segmenter = VadSegmenter()

    async def run() -> list[SpeechSegment]:
        segments: list[SpeechSegment] = []
        async for item in FileSource(DEMO_CLIP_PATH, CaptureOptions(realtime=False)).stream():
            if isinstance(item, AudioChunk):
                segments += segmenter.push(item)
            else:
                segmenter.add_frame(item)
        return segments + segmenter.flush()

    segments = asyncio.run(run())
    assert len(segments) == len(truth)
    for segment, utterance in zip(segments, truth, strict=True):
        assert segment.start_s + PAD_S == pytest.approx(utterance["start_s"], abs=0.1)
        assert -0.1 <= segment.end_s - PAD_S - utterance["end_s"] <= 0.25
        assert segment.frames


def test_open_utterance_is_visible_while_spoken(espeak_wav):
    """What interim results read: where the utterance being spoken starts and its audio so far."""
    segmenter = VadSegmenter(VadOptions())
    (first_start, first_end), _ = espeak_wav.spans_s[:2]
    middle = int((first_start + first_end) / 2 * SAMPLE_RATE_HZ)
    assert segmenter.speaking_since_s is None and len(segmenter.open_samples()) == 0
    for offset in range(0, middle - middle % 512, 512):
        assert not segmenter.push(
            AudioChunk(espeak_wav.samples[offset : offset + 512], offset / SAMPLE_RATE_HZ)
        )
    heard_s = (middle - middle % 512) / SAMPLE_RATE_HZ
    since = segmenter.speaking_since_s
    assert since is not None and since + PAD_S == pytest.approx(first_start, abs=0.1)
    assert not segmenter.pausing
    samples = segmenter.open_samples()
    assert len(samples) == round((heard_s - since) * SAMPLE_RATE_HZ)
    start = round(since * SAMPLE_RATE_HZ)
    np.testing.assert_array_equal(samples, espeak_wav.samples[start : start + len(samples)])
    segments = segmenter.push(AudioChunk(espeak_wav.samples[middle - middle % 512 :], heard_s))
    assert segments and segments[0].start_s == pytest.approx(since)
    np.testing.assert_array_equal(segments[0].samples[: len(samples)], samples)


def test_a_pause_offers_the_audio_a_cut_there_would_keep(espeak_wav):
    """From its first silent frame a pause has a key, and the audio of the segment a cut there makes, as
    far as heard: short of the trailing pad at first, all of it once the pad is heard; the cut matches."""
    segmenter = VadSegmenter(VadOptions())
    samples, offset = espeak_wav.samples, 0

    def push() -> list[SpeechSegment]:
        nonlocal offset
        segments = segmenter.push(AudioChunk(samples[offset : offset + 512], offset / SAMPLE_RATE_HZ))
        offset += 512
        return segments

    key, first, sizes, segments = None, np.zeros(0), [], []
    while not segments:
        if segmenter.pause_key is not None and segmenter.pause_key != key:  # a new pause (short ones resume)
            key, cut, first = segmenter.pause_key, segmenter.pause_cut_samples, segmenter.pause_audio()
            sizes = [len(first)]
        elif key is not None and segmenter.pause_key == key:
            assert segmenter.pause_cut_samples == cut
            sizes.append(len(segmenter.pause_audio()))
        segments = push()
    assert key[1] / SAMPLE_RATE_HZ == pytest.approx(espeak_wav.spans_s[0][1], abs=0.25)
    assert sizes[0] < cut and sizes[-1] == cut and sizes == sorted(sizes)
    assert len(segments[0].samples) == cut and segments[0].start_s == key[0]
    np.testing.assert_array_equal(segments[0].samples[: len(first)], first)
