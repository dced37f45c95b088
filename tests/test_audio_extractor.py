"""Audio extractor: mel front end, output shape, missing input, save/load, augmentation."""

import numpy as np
import pytest
import torch
from faster_whisper.feature_extractor import FeatureExtractor
from media_fixtures import espeak, have_espeak, read_wav_16k

from engines.audio_extractor import AudioExtractor, AudioExtractorConfig, LogMel, embed_audio
from engines.extractor_store import ExtractorError, load_extractor, read_meta, save_extractor
from training.augment import AudioAugmentOptions, add_noise, time_warp

SMALL = AudioExtractorConfig(width=8)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    if not have_espeak():
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    return read_wav_16k(espeak(tmp_path_factory.mktemp("speech") / "s.wav"))


def test_mel_matches_faster_whisper():
    # Same window (400), hop (160), 128 Slaney bins and log scaling as faster-whisper's numpy version.
    wave = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    ours = LogMel(AudioExtractorConfig())(torch.from_numpy(wave)[None])[0, 0].numpy()
    reference = FeatureExtractor(feature_size=128)(wave, padding=0)
    assert ours.shape == reference.shape == (128, 100)
    assert np.abs(ours - reference).max() < 1e-3


def test_embedding_shape_and_determinism(speech):
    model = AudioExtractor(SMALL)
    vector = embed_audio(model, speech)
    assert vector.shape == (300,) and vector.dtype == np.float32 and np.isfinite(vector).all()
    assert np.array_equal(vector, embed_audio(model, speech))


def test_no_samples_is_none_and_odd_lengths_work():
    model = AudioExtractor(SMALL)
    assert embed_audio(model, np.zeros(0, np.float32)) is None
    assert embed_audio(model, np.zeros(50, np.float32)).shape == (300,)
    # Longer than max_input_s: only the middle is used (mis-cut clips, long live segments).
    long = np.random.default_rng(1).normal(0, 0.1, 16_000 * 15).astype(np.float32)
    middle = long[16_000 * 1 + 8_000 : 16_000 * 13 + 8_000]
    assert np.allclose(embed_audio(model, long), embed_audio(model, middle), atol=1e-5)


def test_batch_rows_match_single_utterances(speech):
    model = AudioExtractor(SMALL).eval()
    clip = speech[:16_000]
    with torch.no_grad():
        batch = model(torch.from_numpy(np.stack([clip, clip * 0.5])))
    assert np.allclose(batch[0].numpy(), embed_audio(model, clip), atol=1e-5)


def test_save_and_load_round_trip(tmp_path, speech):
    model = AudioExtractor(SMALL)
    extractor_id = save_extractor(model, tmp_path / "x")
    assert extractor_id.startswith("audio-") and read_meta(tmp_path / "x")["extractor_id"] == extractor_id
    loaded = load_extractor(tmp_path / "x")
    assert isinstance(loaded, AudioExtractor) and loaded.config.width == 8
    assert np.allclose(embed_audio(loaded, speech), embed_audio(model, speech), atol=1e-6)
    with pytest.raises(ExtractorError, match="not an extractor folder"):
        load_extractor(tmp_path)


def test_noise_and_time_warp_keep_shapes():
    g = torch.Generator().manual_seed(0)
    wave = torch.sin(torch.linspace(0, 2000, 32_000)).repeat(4, 1)
    noisy = add_noise(wave, AudioAugmentOptions(noise_prob=1.0, noise_snr_db=(20.0, 20.0)), g)
    snr = 10 * torch.log10(wave.pow(2).mean(1) / (noisy - wave).pow(2).mean(1))
    assert torch.allclose(snr, torch.full((4,), 20.0), atol=0.5)
    mel = LogMel(AudioExtractorConfig())(wave)
    warped = time_warp(mel, AudioAugmentOptions(warp_prob=1.0), g)
    assert warped.shape == mel.shape and not torch.equal(warped, mel)
