"""The recipe's media half: pretrain + extract for train and dev, kept apart, reused on a rerun."""

import pytest
from media_fixtures import have_espeak, make_audio_cue_set

from engines import prosody
from engines.audio_extractor import AudioExtractorConfig
from training.data import DataError, load_dialogues
from training.pretrain import PretrainOptions
from training.recipe import RecipeOptions, prepare_modalities

pytestmark = pytest.mark.skipif(
    not have_espeak(), reason="espeak-ng not installed (apt-get install espeak-ng)"
)


def keys(path):
    return {u.key for d in load_dialogues(path) for u in d.utterances}


def test_prepare_audio_then_reuse(tmp_path):
    train, dev = make_audio_cue_set(tmp_path / "data", repeats=1)
    options = RecipeOptions(
        pretrain=PretrainOptions(epochs=1, progress=False, audio=AudioExtractorConfig(width=8))
    )
    options.extract.progress = False
    prepared = prepare_modalities(["text", "audio"], train, dev, tmp_path / "work", options)
    assert set(prepared) == {"audio"}
    audio = prepared["audio"]
    assert set(audio.train.vectors) == keys(train) and set(audio.dev.vectors) == keys(dev)
    assert audio.train.dim == 300 + prosody.DIM and audio.train.extractor_dir.is_dir()
    assert audio.dev_probe_accuracy is not None and 0.0 <= audio.dev_probe_accuracy <= 1.0
    weights = tmp_path / "work" / "audio-extractor" / "weights.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = prepare_modalities(["text", "audio"], train, dev, tmp_path / "work", options)
    assert weights.stat().st_mtime_ns == stamp  # same data and options: the extractor is not retrained
    assert again["audio"].train.extractor_id == audio.train.extractor_id


def test_unknown_modality_is_a_user_error(tmp_path):
    with pytest.raises(DataError, match="unknown modality smell"):
        prepare_modalities(["text", "smell"], tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "w")
