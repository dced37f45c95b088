"""`LiveConfig`: every option of the live loop in one typed object, and the one YAML -> config mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engines.engine import EngineOptions
from engines.voice_emotion import VoiceOptions
from engines.yaml_config import build_dataclass
from realtime.outputs.mqtt.publisher import MqttOptions
from realtime.session.pipeline import PipelineOptions
from realtime.sources.feed import CaptureOptions
from realtime.speakers.attributor import SpeakerOptions
from realtime.speech.vad import VadOptions
from realtime.speech.whisper import AsrOptions
from realtime.speech.whisper_batching import BatchingOptions

_RANGES: dict[str, tuple[float, float]] = {
    "pipeline.max_context_utterances": (1, 10_000),
    "pipeline.segment_queue_size": (1, 10_000),
    "pipeline.utterance_queue_size": (1, 10_000),
    "pipeline.interim_after_s": (0.1, 3600.0),
    "pipeline.interim_every_s": (0.1, 3600.0),
    "pipeline.speculate_after_ms": (0, 60_000),
    "pipeline.sentence_end_ms": (0, 60_000),
    "mqtt.qos": (0, 2),
    "mqtt.outbox_max_messages": (1, 10_000_000),
    "mqtt.reconnect_initial_s": (0.01, 60.0),
    "mqtt.reconnect_max_s": (0.01, 60.0),
    "mqtt.stats_interval_s": (0.0, 86_400.0),
    "batching.window_ms": (0.0, 10_000.0),
    "batching.max_batch_utterances": (1, 256),
    "batching.max_waiting": (1, 100_000),
    "vad.threshold": (0.0, 1.0),
    "vad.max_utterance_s": (0.5, 3600.0),
    "vad.split_search_s": (0.0, 60.0),
    "speakers.threshold": (-1.0, 1.0),
    "speakers.max_speakers": (1, 100),
    "speakers.ema_factor": (0.01, 1.0),
    "speakers.history_utterances": (2, 10_000),
    "speakers.change_below": (-1.0, 1.0),
    "asr.encoder_workers": (1, 64),
    "asr.greedy_batch_utterances": (0, 256),
    "cluster.check_interval_s": (0.05, 60.0),
    "cluster.host_timeout_s": (0.2, 600.0),
}
"""Bounds of the settings whose bad values would otherwise fail deep inside a component."""


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


@dataclass(slots=True)
class ClusterOptions:
    """How `--cluster` spreads streams over the machines of a Ray cluster (`realtime.cluster`)."""

    streams_per_host: int | None = None
    """Streams one machine serves at most; None: 4 per CPU Ray gives the node (8 demo streams on 2 cores
    keep p95 under 1 s, `bench/multistream.py`). More wait `pending` until a host has room."""
    check_interval_s: float = 0.5
    """How often the supervisor asks every host where its streams are."""
    host_timeout_s: float = 2.0
    """A host that answers no check for this long is taken for dead: its streams move."""


@dataclass(slots=True)
class LiveConfig:
    """The whole live loop. YAML sections map one-to-one onto these fields."""

    capture: CaptureOptions = field(default_factory=CaptureOptions)
    vad: VadOptions = field(default_factory=VadOptions)
    asr: AsrOptions = field(default_factory=AsrOptions)
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    """Context size (`max_context_utterances`) and queue bounds."""
    mqtt: MqttOptions = field(default_factory=MqttOptions)
    speakers: SpeakerOptions = field(default_factory=SpeakerOptions)
    """Speaker attribution, enrolled voices and the smoothing of the per-speaker state."""
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    """How utterances of several streams share Whisper calls (one process, many streams)."""
    checkpoint_dir: str | None = None
    """Recognizer checkpoint directory; None uses the one shipped in models/."""
    engine: EngineOptions = field(default_factory=EngineOptions)
    """Which backend runs the recognizer's networks (torch, onnx, auto) and at what precision."""
    voice: VoiceOptions = field(default_factory=VoiceOptions)
    """Emotion from the voice (Whisper encoder states) fused with the words; `model_dir: null` for words only."""
    stream_id: str | None = None
    """Stream id in topics and messages; None derives it from the source."""
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    """Only used with `--cluster`."""


def load_live_config(path: str | Path | None) -> LiveConfig:
    """Read a YAML file onto `LiveConfig` defaults; None gives the defaults.

    Unknown keys and values of the wrong type raise `ConfigError` naming the file and key.
    """
    if path is None:
        return LiveConfig()
    path = Path(path)
    data = read_yaml(path, f"config {path}")
    if data is None:
        return LiveConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping of sections at the top level")
    config = build_dataclass(LiveConfig, data, f"config {path}", ConfigError)
    check_ranges(config, f"config {path}")
    return config


def read_yaml(path: Path, where: str) -> Any:
    """The parsed YAML of a user's file; `ConfigError` starting with `where` if unreadable or invalid."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({_first_line(exc)})") from None


def check_ranges(config: LiveConfig, where: str) -> None:
    """`ConfigError` starting with `where` for the first setting outside its bounds."""
    for name, (low, high) in _RANGES.items():
        section, key = name.split(".")
        value = getattr(getattr(config, section), key)
        if not low <= value <= high:
            raise ConfigError(f"{where}: '{name}' must be between {low} and {high}, got {value!r}")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
