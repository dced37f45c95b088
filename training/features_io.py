"""Feature cache folders: what `extract` writes and `train --features` / the recipe read.

Layout of a features folder:
  features.json            modality, dim, extractor id, and one table per data file extracted
  extractor/               copy of the extractor that made the vectors (for live use)
  tables/<name>.npz        one data file's vectors keyed by Utterance.key
  cache/<extractor id>/    per-clip vectors, keyed by clip identity (path, size, mtime, span): resumes runs
  skipped-<name>.tsv       clips left out of a table and why

Tables are per data file because Utterance.key is only unique inside one file (MELD's train and dev
both have dialogue 0), so `load_features` takes the data file whose vectors are wanted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.data import DataError

FORMAT_VERSION = 1
META_FILE = "features.json"


@dataclass
class ModalityFeatures:
    modality: str
    """"audio" or "visual"."""
    dim: int
    extractor_id: str
    vectors: dict[str, np.ndarray]
    """Utterance.key -> (dim,) float32. A key that is absent has no usable media: mask the modality."""
    extractor_dir: Path | None
    """Weights to copy into an M2FNet checkpoint for live use."""
    face_present: dict[str, bool] = field(default_factory=dict)
    """Visual only: False where no frame had a face, so the face half of the vector is zeros, not a face."""
    data_file: str = ""
    """The data file these vectors belong to."""


def table_name(data_file: str | Path) -> str:
    path = Path(data_file).resolve()
    return f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def file_sha1(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def read_meta(folder: Path) -> dict:
    path = folder / META_FILE
    if not path.is_file():
        raise DataError(
            f"{folder}: not a features folder (no {META_FILE}; make one with `python -m training extract`)"
        )
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: unreadable ({error})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: unsupported format_version {meta.get('format_version')!r} (expected {FORMAT_VERSION})"
        )
    return meta


def write_meta(folder: Path, meta: dict) -> None:
    tmp = folder / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(folder / META_FILE)


def write_table(
    folder: Path, name: str, vectors: dict[str, np.ndarray], face_present: dict[str, bool], dim: int
) -> None:
    keys = sorted(vectors)
    matrix = (
        np.stack([vectors[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, dim), np.float32)
    )
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "tables" / f"{name}.npz",
        keys=np.array(keys, dtype=str),
        vectors=matrix,
        face_present=np.array([face_present.get(k, True) for k in keys], dtype=bool),
    )


def _pick_table(folder: Path, meta: dict, data: str | Path | None) -> str:
    tables: dict[str, dict] = meta.get("tables", {})
    if not tables:
        raise DataError(f"{folder}: holds no extracted data file yet")
    if data is None:
        if len(tables) == 1:
            return next(iter(tables))
        names = ", ".join(Path(t["data_file"]).name for t in tables.values())
        raise DataError(f"{folder}: holds features for several data files ({names}); say which one")
    data = Path(data)
    if table_name(data) in tables:
        return table_name(data)
    # The data file may have moved since extraction: same content, then same unique file name.
    digest = file_sha1(data) if data.is_file() else None
    by_content = [n for n, t in tables.items() if digest and t.get("data_sha1") == digest]
    if len(by_content) == 1:
        return by_content[0]
    by_name = [n for n, t in tables.items() if Path(t["data_file"]).name == data.name]
    if len(by_name) == 1:
        return by_name[0]
    raise DataError(
        f"{folder}: no features for {data} (run `python -m training extract --data {data} --out {folder}`)"
    )


def load_features(dir: str | Path, data: str | Path | None = None) -> ModalityFeatures:
    """The vectors of one data file from a features folder; `data` may be left out when the folder holds
    exactly one. Any problem is a one-line DataError naming the folder."""
    folder = Path(dir)
    meta = read_meta(folder)
    name = _pick_table(folder, meta, data)
    path = folder / "tables" / f"{name}.npz"
    try:
        with np.load(path) as table:
            keys, matrix, faces = table["keys"], table["vectors"], table["face_present"]
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{path}: unreadable feature table ({error})") from None
    if matrix.ndim != 2 or matrix.shape[1] != meta["dim"] or len(keys) != len(matrix):
        raise DataError(f"{path}: vectors of shape {matrix.shape} do not match dim {meta['dim']}")
    extractor_dir = folder / "extractor"
    return ModalityFeatures(
        modality=meta["modality"],
        dim=int(meta["dim"]),
        extractor_id=meta["extractor_id"],
        vectors={str(k): matrix[i] for i, k in enumerate(keys)},
        extractor_dir=extractor_dir if extractor_dir.is_dir() else None,
        face_present={str(k): bool(faces[i]) for i, k in enumerate(keys)}
        if meta["modality"] == "visual"
        else {},
        data_file=meta["tables"][name]["data_file"],
    )


class ClipCache:
    """Per-clip vectors of one extractor, stored as append-only parts so an interrupted run resumes."""

    def __init__(self, folder: Path, extractor_id: str, dim: int) -> None:
        self.folder = folder / "cache" / extractor_id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self.vectors: dict[str, np.ndarray] = {}
        self.face_present: dict[str, bool] = {}
        self._pending: list[str] = []
        for part in sorted(self.folder.glob("part-*.npz")):
            try:
                with np.load(part) as data:
                    for i, clip_id in enumerate(data["ids"]):
                        self.vectors[str(clip_id)] = data["vectors"][i]
                        self.face_present[str(clip_id)] = bool(data["face_present"][i])
            except (OSError, KeyError, ValueError):
                # A part cut short by a crash: its clips are simply extracted again.
                part.unlink()

    def put(self, clip_id: str, vector: np.ndarray, face_present: bool = True) -> None:
        self.vectors[clip_id] = vector.astype(np.float32)
        self.face_present[clip_id] = face_present
        self._pending.append(clip_id)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        if not self._pending:
            return
        index = 1 + max((int(p.stem.split("-")[1]) for p in self.folder.glob("part-*.npz")), default=-1)
        tmp = self.folder / "writing.npz"
        np.savez(
            tmp,
            ids=np.array(self._pending, dtype=str),
            vectors=np.stack([self.vectors[i] for i in self._pending]),
            face_present=np.array([self.face_present[i] for i in self._pending], dtype=bool),
        )
        tmp.replace(self.folder / f"part-{index:05d}.npz")
        self._pending = []


def clip_identity(path: Path, start_s: float | None = None, end_s: float | None = None) -> str:
    """Changes when the clip file changes (size or modification time) or another span is cut from it."""
    stat = path.stat()
    raw = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{start_s}|{end_s}"
    return hashlib.sha1(raw.encode()).hexdigest()
