"""The GE2E voice encoder rebuilt on resemblyzer's packaged weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conversations import VOICES, speak

from engines.errors import CheckpointError
from engines.speaker_encoder import EMBEDDING_DIM, load_voice_encoder, mel_spectrogram, weights_path


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(1)
    return load_voice_encoder()


def test_weights_ship_in_the_wheel() -> None:
    assert weights_path().name == "pretrained.pt" and weights_path().stat().st_size > 10_000_000


def test_mel_frames_are_centred_10_ms_steps() -> None:
    mel = mel_spectrogram(np.zeros(16_000, np.float32))
    assert mel.shape == (101, 40) and not mel.any()
    tone = np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000).astype(np.float32)
    band = mel_spectrogram(tone)[50].argmax()
    assert 5 <= band <= 9  # 440 Hz sits in the low, linear part of the Slaney mel scale


def test_embedding_is_unit_norm_and_knows_voices(encoder) -> None:
    texts = ("I think we should leave a little earlier tomorrow.", "Could you pass me the salt, please?")
    a1, a2 = (encoder.embed(speak(t, VOICES[0])) for t in texts)
    b1 = encoder.embed(speak(texts[0], VOICES[1]))
    assert a1.shape == (EMBEDDING_DIM,) and a1.dtype == np.float32
    assert np.linalg.norm(a1) == pytest.approx(1.0, abs=1e-5)
    assert float(a1 @ a2) > float(a1 @ b1) + 0.15


def test_several_utterances_in_one_call_embed_as_one_by_one(encoder) -> None:
    """`embed_many` (several streams' utterances at once) gives each utterance its own embedding."""
    utterances = [speak("Could you pass me the salt, please?", VOICES[0]), speak("Yes.", VOICES[1])]
    utterances.append(speak("I think we should leave a little earlier tomorrow.", VOICES[2]))
    together = encoder.embed_many(utterances)
    for samples, vector in zip(utterances, together):
        np.testing.assert_allclose(vector, encoder.embed(samples), atol=1e-5)


def test_short_and_quiet_audio_still_embeds(encoder) -> None:
    quiet = 0.01 * speak("Yes.", VOICES[0])
    vector = encoder.embed(quiet)
    assert np.isfinite(vector).all() and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_unreadable_weights_are_one_line(tmp_path) -> None:
    bad = tmp_path / "pretrained.pt"
    bad.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="cannot load"):
        load_voice_encoder(bad)
