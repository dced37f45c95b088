"""configs/live.yaml -> LiveConfig: the shipped file loads, unknown keys and bad values are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime.runtime.config import ConfigError, LiveConfig, load_live_config

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "live.yaml"
    path.write_text(text)
    return path


def test_shipped_config_loads_onto_the_defaults() -> None:
    config = load_live_config(REPO / "configs" / "live.yaml")
    defaults = LiveConfig()
    assert config.asr.model == "tiny.en"
    assert config.pipeline.max_context_utterances == defaults.pipeline.max_context_utterances
    assert config.mqtt.topic_prefix == "m2fnet"
    assert config.vad.min_silence_ms == defaults.vad.min_silence_ms
    assert config.speakers == defaults.speakers


def test_speaker_options_and_enrolment(tmp_path: Path) -> None:
    text = "speakers:\n  threshold: 0.65\n  max_speakers: 3\n  enrol: [Ana=a.wav]\n  ema_factor: 0.5\n"
    config = load_live_config(write(tmp_path, text))
    assert (config.speakers.threshold, config.speakers.max_speakers) == (0.65, 3)
    assert config.speakers.enrol == ("Ana=a.wav",) and config.speakers.ema_factor == 0.5
    with pytest.raises(ConfigError, match="speakers.ema_factor"):
        load_live_config(write(tmp_path, "speakers:\n  ema_factor: 0\n"))


def test_no_file_gives_defaults() -> None:
    assert load_live_config(None) == LiveConfig()


def test_values_map_onto_typed_options(tmp_path: Path) -> None:
    config = load_live_config(
        write(
            tmp_path,
            "vad:\n  threshold: 0.6\n  max_utterance_s: 8\nasr:\n  language: null\n"
            "pipeline:\n  max_context_utterances: 4\nmqtt:\n  url: mqtt://h:1\nstream_id: cam1\n",
        )
    )
    assert config.vad.threshold == 0.6
    assert config.vad.max_utterance_s == 8.0 and isinstance(config.vad.max_utterance_s, float)
    assert config.asr.language is None
    assert config.pipeline.max_context_utterances == 4
    assert config.mqtt.url == "mqtt://h:1"
    assert config.stream_id == "cam1"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("vad:\n  treshold: 0.5\n", "vad.treshold"),
        ("vads:\n  threshold: 0.5\n", "vads"),
        ("pipeline:\n  max_context: 3\n", "pipeline.max_context"),
    ],
)
def test_unknown_key_is_one_line_naming_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_live_config(path)
    message = str(error.value)
    assert str(path) in message and f"'{key}'" in message and "unknown key" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("vad:\n  threshold: high\n", "vad.threshold"),
        ("pipeline:\n  max_context_utterances: 2.5\n", "pipeline.max_context_utterances"),
        ("pipeline:\n  max_context_utterances: 0\n", "pipeline.max_context_utterances"),
        ("asr:\n  short_window: 1\n", "asr.short_window"),
        ("vad: 3\n", "vad"),
        ("mqtt:\n  qos: 3\n", "mqtt.qos"),
        ("vad:\n  split_search_s: -1\n", "vad.split_search_s"),
    ],
)
def test_bad_value_is_one_line_naming_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_live_config(path)
    assert str(path) in str(error.value) and f"'{key}'" in str(error.value)
    assert "\n" not in str(error.value)


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_live_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_live_config(write(tmp_path, "vad: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_live_config(write(tmp_path, "- a\n- b\n"))
