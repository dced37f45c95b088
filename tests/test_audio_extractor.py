"""Audio extractor: mel front end, output shape, missing input, save/load, augmentation, prosody."""

import numpy as np
import pytest
import torch
from faster_whisper.feature_extractor import FeatureExtractor
from media_fixtures import espeak, have_espeak, read_wav_16k

from engines import prosody
from engines.audio_extractor import AudioExtractor, AudioExtractorConfig, LogMel, embed_audio, raw_prosody
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
    assert vector.shape == (300 + prosody.DIM,) and vector.dtype == np.float32 and np.isfinite(vector).all()
    assert np.array_equal(vector, embed_audio(model, speech))


def test_no_samples_is_none_and_odd_lengths_work():
    model = AudioExtractor(SMALL)
    assert embed_audio(model, np.zeros(0, np.float32)) is None
    assert embed_audio(model, np.zeros(50, np.float32)).shape == (300 + prosody.DIM,)
    assert np.isfinite(embed_audio(model, np.zeros(16_000, np.float32))).all()  # digital silence
    # Longer than max_input_s: only the middle is used (mis-cut clips, long live segments).
    long = np.random.default_rng(1).normal(0, 0.1, 16_000 * 15).astype(np.float32)
    middle = long[16_000 * 1 + 8_000 : 16_000 * 13 + 8_000]
    assert np.allclose(embed_audio(model, long), embed_audio(model, middle), atol=1e-5)


def test_batch_rows_match_single_utterances(speech):
    model = AudioExtractor(SMALL).eval()
    clip = speech[:16_000]
    with torch.no_grad():
        batch = model(torch.from_numpy(np.stack([clip, clip * 0.5])))
    assert np.allclose(batch[0].numpy(), embed_audio(model, clip)[:300], atol=1e-5)


def test_paper_sized_output_without_prosody(speech):
    model = AudioExtractor(AudioExtractorConfig(width=8, prosody=False))
    assert model.config.out_dim == 300 and embed_audio(model, speech).shape == (300,)


def tone(f0_hz, seconds=1.0, loudness=0.3):
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (loudness * np.sign(np.sin(2 * np.pi * f0_hz * t))).astype(np.float32)


@pytest.mark.parametrize("f0_hz", [80.0, 150.0, 220.0, 330.0])
def test_pitch_track_finds_the_fundamental_not_its_octaves(f0_hz):
    f0, strength = prosody.pitch_track(tone(f0_hz))
    voiced = strength > prosody.VOICING_THRESHOLD
    assert voiced.mean() > 0.9
    assert abs(100 * 2 ** np.median(f0[voiced]) - f0_hz) < 0.02 * f0_hz


def test_functionals_follow_pitch_loudness_and_pauses():
    model = AudioExtractor(SMALL)
    named = lambda x: dict(zip(prosody.NAMES, raw_prosody(model, x)))
    low, high, quiet = named(tone(120)), named(tone(240)), named(tone(120, loudness=0.03))
    assert high["f0_mean"] - low["f0_mean"] == pytest.approx(1.0, abs=0.05)  # one octave
    assert low["loudness_mean"] - quiet["loudness_mean"] == pytest.approx(20.0, abs=1.0)
    with_pause = named(np.concatenate([tone(120, 0.5), np.zeros(8_000, np.float32), tone(120, 0.5)]))
    assert with_pause["active_ratio"] < 0.8 < low["active_ratio"]
    # Four 250 ms bursts a second -> about four syllable nuclei per active second.
    bursts = np.concatenate(
        [np.concatenate([tone(150, 0.15), np.zeros(1_600, np.float32)]) for _ in range(8)]
    )
    assert 2.5 < named(bursts)["syllable_rate"] < 6.0


def test_prosody_scaling_standardises_and_survives_save_load(tmp_path, speech):
    model = AudioExtractor(SMALL)
    rows = np.stack([raw_prosody(model, speech * gain) for gain in (0.2, 0.5, 1.0)])
    model.fit_prosody_scaling(rows)
    scaled = np.stack([embed_audio(model, speech * gain)[300:] for gain in (0.2, 0.5, 1.0)])
    assert np.allclose(scaled.mean(axis=0), 0, atol=1e-3)
    save_extractor(model, tmp_path / "x")
    assert np.allclose(
        embed_audio(load_extractor(tmp_path / "x"), speech), embed_audio(model, speech), atol=1e-6
    )


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
