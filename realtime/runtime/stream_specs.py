"""Which streams one process serves: repeated `--source`/`--stream-id` flags or a `--streams` YAML file.

The file is a list of `{id, source}` mappings; each may also override the `capture`, `vad` and
`pipeline` sections of the live config for its stream (the rest is shared by the whole process):

    - {id: door, source: rtsp://10.0.0.5/stream1}
    - id: desk
      source: mic
      vad: {min_silence_ms: 300}
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.yaml_config import build_dataclass
from realtime.runtime.config import ConfigError, LiveConfig, check_ranges, read_yaml

PER_STREAM_SECTIONS = ("capture", "vad", "pipeline")
"""Config sections a stream may override; models, MQTT and batching belong to the process."""

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(slots=True)
class StreamSpec:
    """One stream to serve: where it comes from, its id, and its options (capture, VAD, pipeline)."""

    source: str
    stream_id: str
    config: LiveConfig


def default_stream_id(source: str) -> str:
    """`demo`, `mic`, `webcam0`, `live`, or a media file's stem, made safe for an MQTT topic level."""
    if "://" in source:
        source = source.split("://", 1)[1].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    name = Path(source).stem if Path(source).suffix else source
    return _TOPIC_UNSAFE.sub("-", name.replace(":", "")).strip("-") or "stream"


def specs_from_flags(
    config: LiveConfig, sources: list[str], stream_ids: list[str] | None
) -> list[StreamSpec]:
    """One spec per `--source`; ids from `--stream-id` (same order) or derived from the sources."""
    if stream_ids and len(stream_ids) != len(sources):
        raise ConfigError(
            f"--stream-id given {len(stream_ids)} time(s) for {len(sources)} --source: give one per source, "
            "in the same order, or none"
        )
    ids = stream_ids or _unique([default_stream_id(s) for s in sources])
    if len(sources) == 1 and config.stream_id and not stream_ids:
        ids = [config.stream_id]
    return [StreamSpec(source, stream_id, config) for source, stream_id in zip(sources, ids)]


def load_stream_specs(path: str | Path, config: LiveConfig) -> list[StreamSpec]:
    """The streams of a `--streams` file; `ConfigError` naming the file, entry and key when unusable."""
    path = Path(path)
    data = read_yaml(path, f"--streams {path}")
    if not isinstance(data, list) or not data:
        raise ConfigError(f"--streams {path}: expected a non-empty list of {{id, source}} mappings")
    specs = [_spec(entry, config, f"--streams {path}: entry {n}") for n, entry in enumerate(data, 1)]
    seen: set[str] = set()
    for spec in specs:
        if spec.stream_id in seen:
            raise ConfigError(f"--streams {path}: stream id '{spec.stream_id}' is used twice")
        seen.add(spec.stream_id)
    return specs


def _spec(entry: Any, base: LiveConfig, where: str) -> StreamSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with 'source' (and 'id'), got {entry!r}")
    entry = dict(entry)
    source = entry.pop("source", None)
    if not isinstance(source, str) or not source:
        raise ConfigError(f"{where}: 'source' must be a non-empty string")
    stream_id = entry.pop("id", None) or default_stream_id(source)
    if not isinstance(stream_id, str):
        raise ConfigError(f"{where}: 'id' must be a string, got {stream_id!r}")
    config = copy.deepcopy(base)
    for section, overrides in entry.items():
        if section not in PER_STREAM_SECTIONS:
            known = ", ".join(("id", "source", *PER_STREAM_SECTIONS))
            raise ConfigError(f"{where}: unknown key '{section}' (per stream: {known})")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: '{section}' must be a mapping, got {overrides!r}")
        current = getattr(config, section)
        values = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
        values.update(overrides)
        setattr(config, section, build_dataclass(type(current), values, f"{where}: {section}", ConfigError))
    check_ranges(config, where)
    return StreamSpec(source, stream_id, config)


def _unique(ids: list[str]) -> list[str]:
    """`demo, demo` -> `demo, demo-2`: two copies of one source still get topics of their own."""
    out: list[str] = []
    for stream_id in ids:
        candidate, n = stream_id, 2
        while candidate in out:
            candidate, n = f"{stream_id}-{n}", n + 1
        out.append(candidate)
    return out
