"""Saving and loading trained extractors as a folder: `extractor.json` (modality, config, id) + safetensors weights.

The folder is what an M2FNet checkpoint copies for live use, and its id names the feature caches made
with it, so features from different weights never mix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from engines.audio_extractor import AudioExtractor, AudioExtractorConfig
from engines.media_format import MEDIA_MODALITIES
from engines.visual_extractor import VisualExtractor, VisualExtractorConfig

FORMAT_VERSION = 1
META_FILE = "extractor.json"
WEIGHTS_FILE = "weights.safetensors"


class ExtractorError(Exception):
    """A bad extractor folder; the message is one line naming the folder."""


def modality_of(model: nn.Module) -> str:
    if isinstance(model, AudioExtractor):
        return "audio"
    if isinstance(model, VisualExtractor):
        return "visual"
    raise TypeError(f"not an extractor: {type(model).__name__}")


def new_extractor(
    modality: str, config: AudioExtractorConfig | VisualExtractorConfig | None = None
) -> nn.Module:
    if modality == "audio":
        return AudioExtractor(config)
    if modality == "visual":
        return VisualExtractor(config)
    raise ExtractorError(f"unknown modality {modality!r} (expected one of {', '.join(MEDIA_MODALITIES)})")


def save_extractor(model: nn.Module, out_dir: str | Path, notes: dict | None = None) -> str:
    """Writes the folder and returns the extractor id (`<modality>-<12 hex of the weights' hash>`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    modality = modality_of(model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    digest = hashlib.sha1((out / WEIGHTS_FILE).read_bytes()).hexdigest()[:12]
    extractor_id = f"{modality}-{digest}"
    meta = {
        "format_version": FORMAT_VERSION,
        "modality": modality,
        "extractor_id": extractor_id,
        "config": dataclasses.asdict(model.config),
        "out_dim": model.config.out_dim,
        "notes": notes or {},
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return extractor_id


def read_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / META_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ExtractorError(f"{folder}: not an extractor folder (needs {META_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExtractorError(f"{path}: unreadable ({error})") from None
    if meta.get("format_version") != FORMAT_VERSION or meta.get("modality") not in MEDIA_MODALITIES:
        raise ExtractorError(f"{path}: unsupported extractor format or modality")
    return meta


def load_extractor(folder: str | Path) -> AudioExtractor | VisualExtractor:
    """The extractor in eval mode, on CPU."""
    meta = read_meta(folder)
    config_type = AudioExtractorConfig if meta["modality"] == "audio" else VisualExtractorConfig
    known = {f.name for f in dataclasses.fields(config_type)}
    try:
        config = config_type(**{k: v for k, v in meta["config"].items() if k in known})
        model = new_extractor(meta["modality"], config)
        model.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))
    except (TypeError, RuntimeError) as error:
        raise ExtractorError(
            f"{folder}: weights do not match the config ({str(error).splitlines()[0]})"
        ) from None
    return model.eval()
