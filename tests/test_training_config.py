"""configs/*.yaml -> TrainConfig: the shipped files load; the media section maps onto nested options."""

import pytest

from training.config import config_from_dict, config_to_dict, load_config
from training.data import DataError


@pytest.mark.parametrize("name", ["default", "causal"])
def test_shipped_configs_load_with_media_defaults(name):
    config = load_config(name)
    assert config.media.pretrain.epochs == 10 and config.media.pretrain.audio.width == 32
    assert config_from_dict(config_to_dict(config)) == config


def test_media_section_maps_onto_nested_options(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("media:\n  pretrain: {epochs: 2, audio: {width: 8}, augment: {noise_snr_db: [5, 20]}}\n")
    config = load_config(str(path))
    assert config.media.pretrain.epochs == 2 and config.media.pretrain.audio.width == 8
    assert config.media.pretrain.augment.noise_snr_db == (5, 20)
    assert config.media.pretrain.visual.width == 32  # untouched defaults stay


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("media: {pretrain: {audio: {widht: 8}}}", "unknown key 'media.pretrain.audio.widht'"),
        ("media: {pretrain: 3}", "'media.pretrain' must be a mapping"),
        ("media: 5", "'media' must be a mapping"),
    ],
)
def test_media_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text + "\n")
    with pytest.raises(DataError, match=message) as error:
        load_config(str(path))
    assert str(path) in str(error.value)
