"""The voice branch: pooling, per-speaker normalisation, fusion with the words, the shipped head."""

from __future__ import annotations

import numpy as np
import pytest

from engines.errors import CheckpointError
from engines.stream import UtteranceInput, load_recognizer
from engines.voice_emotion import (
    SpeakerVoiceNorm,
    VoiceEmotion,
    VoiceOptions,
    fuse,
    load_voice_head,
    pool_encoder_states,
)


def test_pooling_reads_only_the_frames_of_the_utterance() -> None:
    encoded = np.zeros((1, 500, 4), np.float32)
    encoded[0, :50] = 1.0  # 100 mel frames of speech -> 50 encoder states; the rest is padding
    pooled = pool_encoder_states(encoded, mel_frames=100)
    assert pooled.shape == (8,)
    np.testing.assert_allclose(pooled, [1, 1, 1, 1, 0, 0, 0, 0])


def test_speaker_norm_subtracts_the_speakers_earlier_mean_and_preview_learns_nothing() -> None:
    norm = SpeakerVoiceNorm(prior=1.0)
    first = norm.normalise("S1", np.array([2.0, 0.0]))
    np.testing.assert_allclose(first, [2.0, 0.0])  # nothing heard yet: the population mean (0)
    second = norm.normalise("S1", np.array([4.0, 0.0]))
    np.testing.assert_allclose(second, [3.0, 0.0])  # 4 - 2 / (1 + prior)
    other = norm.normalise("S2", np.array([4.0, 0.0]))
    np.testing.assert_allclose(other, [4.0, 0.0])  # another voice has its own mean
    saved = norm.snapshot()
    norm.normalise("S1", np.array([100.0, 0.0]))
    norm.restore(saved)
    np.testing.assert_allclose(norm.normalise("S1", np.array([6.0, 0.0]), learn=False), [4.0, 0.0])


def test_fusion_ignores_an_uninformative_voice_and_follows_a_sure_one() -> None:
    head = load_voice_head()
    text = np.array([0.7, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03])
    null = head.probabilities(np.zeros_like(head.mean))
    np.testing.assert_allclose(fuse(text, null, head, weight=1.0), text, atol=1e-6)
    angry = np.full(7, 0.01)
    angry[head.labels.index("anger")] = 0.94
    assert head.labels[int(fuse(text, angry, head, weight=1.0).argmax())] == "anger"
    np.testing.assert_allclose(fuse(text, angry, head, weight=0.0), text, atol=1e-6)


def test_a_missing_voice_model_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="voice_head"):
        load_voice_head(tmp_path)


def test_the_recognizer_publishes_each_modality_and_fuses_them() -> None:
    recognizer = load_recognizer(voice=VoiceOptions(weight=1.0, max_distance=100.0))
    head = recognizer.voice_head
    assert head is not None and head.labels == list(recognizer.labels)
    session = recognizer.new_session()
    words_only = session.add(UtteranceInput("The meeting starts at ten.", speaker="S1"))
    assert set(words_only.by_modality) == {"text"} and not words_only.modalities["audio"]
    assert words_only.scores == words_only.by_modality["text"]
    # A voice vector the head reads as anger (its anger weights, scaled back to pooled states).
    direction = head.weight[head.labels.index("anger")] - head.weight.mean(axis=0)
    pooled = head.mean + head.scale * direction / np.abs(direction).max() * 3
    both = session.add(UtteranceInput("The meeting starts at ten.", speaker="S2", voice=pooled))
    assert set(both.by_modality) == {"text", "voice"} and both.modalities["audio"]
    assert max(both.by_modality["voice"], key=both.by_modality["voice"].get) == "anger"
    assert both.emotion == "anger" and both.scores != both.by_modality["text"]
    assert VoiceEmotion(head).read(pooled, "S9").probabilities.shape == (7,)


def test_a_voice_unlike_the_training_voices_does_not_move_the_result() -> None:
    options = VoiceOptions()
    assert options.effective_weight(0.9) == pytest.approx(options.weight, rel=1e-3)
    assert options.effective_weight(options.max_distance) == pytest.approx(options.weight / 2)
    assert options.effective_weight(3.0) < 1e-6
    head = load_voice_head()
    near = VoiceEmotion(head).read(head.mean + 0.5 * head.scale, "S1")
    far = VoiceEmotion(head).read(head.mean + 3.0 * head.scale, "S1")
    assert near.distance == pytest.approx(0.5, abs=1e-3) and far.distance == pytest.approx(3.0, abs=1e-3)
