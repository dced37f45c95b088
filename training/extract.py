"""`python -m training extract`: audio or visual features for every clip of a data set, into a features folder.

Resumable: per-clip vectors are cached under the extractor's id and flushed as the run goes, so a rerun
(or a run with another data file on the same clips) skips what is done. Bad clips are skipped and listed.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engines.audio_extractor import AudioExtractor, embed_audio
from engines.extractor_store import ExtractorError, load_extractor, new_extractor, read_meta, save_extractor
from engines.visual_extractor import FramePreparer, VisualExtractor, encode_frames
from training.data import DataError
from training.features_io import (
    FORMAT_VERSION,
    ClipCache,
    ModalityFeatures,
    clip_identity,
    file_sha1,
    load_features,
    table_name,
    write_meta,
    write_table,
)
from training.features_io import (
    read_meta as read_features_meta,
)
from training.media import (
    DecodeOptions,
    MediaClip,
    MediaError,
    MediaSource,
    SkipReport,
    decode_audio,
    decode_frames,
    load_media,
)

logger = logging.getLogger(__name__)


@dataclass
class ExtractOptions:
    flush_every: int = 50
    """Clips between cache flushes: what an interruption can cost."""
    progress: bool = True
    """tqdm progress bar on stderr."""
    seed: int = 0
    """Seed of the untrained extractor used when none is given (features are then deterministic)."""
    decode: DecodeOptions = field(default_factory=DecodeOptions)


class _ClipEncoder:
    """Decodes one clip's media and runs the extractor; raises MediaError for a clip that cannot be used."""

    def __init__(self, model: AudioExtractor | VisualExtractor, decode: DecodeOptions) -> None:
        self.model = model
        self.decode = decode
        self.modality = "audio" if isinstance(model, AudioExtractor) else "visual"
        self.preparer = FramePreparer(model.config) if self.modality == "visual" else None

    def media_path(self, clip: MediaClip) -> Path | None:
        return clip.audio_path if self.modality == "audio" else clip.video_path

    def __call__(self, clip: MediaClip) -> tuple[np.ndarray, bool]:
        path = self.media_path(clip)
        if self.modality == "audio":
            vector = embed_audio(self.model, decode_audio(path, self.decode))
            if vector is None:
                raise MediaError("no audio samples")
            return vector, True
        frames = decode_frames(path, self.decode, clip.video_start_s, clip.video_end_s)
        features = encode_frames(self.model, frames, self.preparer)
        if features is None:
            raise MediaError("no video frames")
        return features.vector, features.face_present

    def close(self) -> None:
        if self.preparer is not None:
            self.preparer.close()


def _prepare_out(out: Path, modality: str, extractor_dir: Path | None, seed: int) -> tuple[str, int]:
    """Puts the extractor in out/extractor and resets the folder's tables if they came from other weights."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "extractor"
    if extractor_dir is not None:
        meta = read_meta(extractor_dir)
        if meta["modality"] != modality:
            raise DataError(f"{extractor_dir}: is a {meta['modality']} extractor, not {modality}")
        if extractor_dir.resolve() != target.resolve():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(extractor_dir, target)
    elif not target.is_dir() or read_meta(target)["modality"] != modality:
        logger.warning(
            "no --extractor given: using an untrained %s extractor (seed %d); train one with pretrain-extractor",
            modality,
            seed,
        )
        torch.manual_seed(seed)
        save_extractor(new_extractor(modality), target, notes={"untrained": True, "seed": seed})
    meta = read_meta(target)
    features_meta_path = out / "features.json"
    if features_meta_path.is_file():
        old = read_features_meta(out)
        if old.get("extractor_id") != meta["extractor_id"] or old.get("modality") != modality:
            logger.warning(
                "%s: tables made with %s are replaced (new extractor %s)",
                out,
                old.get("extractor_id"),
                meta["extractor_id"],
            )
            shutil.rmtree(out / "tables", ignore_errors=True)
            write_meta(
                out,
                {
                    **old,
                    "extractor_id": meta["extractor_id"],
                    "modality": modality,
                    "dim": meta["out_dim"],
                    "tables": {},
                },
            )
    else:
        write_meta(
            out,
            {
                "format_version": FORMAT_VERSION,
                "modality": modality,
                "dim": meta["out_dim"],
                "extractor_id": meta["extractor_id"],
                "tables": {},
            },
        )
    return meta["extractor_id"], int(meta["out_dim"])


def extract_features(
    data: str | Path,
    modality: str,
    out_dir: str | Path,
    extractor_dir: str | Path | None = None,
    options: ExtractOptions | None = None,
) -> dict[str, SkipReport]:
    """Extracts every clip of `data` (JSONL, MELD CSV, MELD.Raw folder, or IEMOCAP root, whose JSONL files
    are written to `out_dir/iemocap/` for `train`) into `out_dir`; returns the skip report per data file."""
    options = options or ExtractOptions()
    out = Path(out_dir)
    if modality not in ("audio", "visual"):
        raise DataError(f"--modality: expected audio or visual, got {modality!r}")
    sources = load_media(data, out)
    try:
        extractor_id, dim = _prepare_out(
            out, modality, Path(extractor_dir) if extractor_dir else None, options.seed
        )
        model = load_extractor(out / "extractor")
    except ExtractorError as error:
        raise DataError(str(error)) from None
    encoder = _ClipEncoder(model, options.decode)
    cache = ClipCache(out, extractor_id, dim)
    reports = {}
    try:
        for source in sources:
            reports[str(source.data_file)] = _extract_source(source, encoder, cache, out, options)
    finally:
        cache.flush()
        encoder.close()
    return reports


def _extract_source(
    source: MediaSource, encoder: _ClipEncoder, cache: ClipCache, out: Path, options: ExtractOptions
) -> SkipReport:
    report = SkipReport()
    report.extend(source.report)
    vectors: dict[str, np.ndarray] = {}
    faces: dict[str, bool] = {}
    bar = tqdm(
        source.clips,
        desc=f"{encoder.modality} {source.data_file.name}",
        unit="clip",
        disable=not options.progress,
        file=sys.stderr,
    )
    for clip in bar:
        path = encoder.media_path(clip)
        if path is None:
            report.add(clip.key, f"no {encoder.modality} path")
            continue
        try:
            clip_id = clip_identity(path, clip.video_start_s, clip.video_end_s) if path.is_file() else None
            if clip_id is None:
                raise MediaError(f"missing file: {path}")
            if clip_id not in cache.vectors:
                vector, face = encoder(clip)
                cache.put(clip_id, vector, face)
                if cache.pending >= options.flush_every:
                    cache.flush()
        except MediaError as error:
            report.add(f"{clip.key} ({path})", str(error))
            continue
        except Exception as error:
            logger.debug("unexpected error on %s", path, exc_info=True)
            report.add(
                f"{clip.key} ({path})",
                f"unreadable: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
            )
            continue
        vectors[clip.key] = cache.vectors[clip_id]
        faces[clip.key] = cache.face_present[clip_id]
    name = table_name(source.data_file)
    write_table(out, name, vectors, faces, cache.dim)
    report.write(out / f"skipped-{name}.tsv")
    meta = read_features_meta(out)
    meta["tables"][name] = {
        "data_file": str(source.data_file.resolve()),
        "data_sha1": file_sha1(source.data_file),
        "count": len(vectors),
        "skipped": len(report),
    }
    write_meta(out, meta)
    logger.info("%s: %d %s vectors, %s", source.data_file, len(vectors), encoder.modality, report.summary())
    return report


def checkpoint_features(
    checkpoint_dir: str | Path, modality: str, data: str | Path, options: ExtractOptions | None = None
) -> ModalityFeatures:
    """`data`'s vectors made by the extractor a checkpoint carries (`<modality>_extractor/`), with the code
    that made its training features. Cached under the M2FNet cache folder by extractor id, so a second
    `evaluate` or `predict` on the same file decodes nothing."""
    from engines.checkpoint import extractor_path
    from engines.text_encoder import CACHE_ROOT

    source = extractor_path(checkpoint_dir, modality)
    try:
        extractor_id = read_meta(source)["extractor_id"]
    except ExtractorError as error:
        raise DataError(str(error)) from None
    folder = CACHE_ROOT / "features" / extractor_id
    extract_features(data, modality, folder, source, options)
    return load_features(folder, data)


def add_extract_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "extract", help="extract audio or visual features from raw media into a cache folder"
    )
    parser.add_argument(
        "--data",
        required=True,
        help="JSONL with audio/video paths, a MELD CSV, a MELD.Raw folder, or an IEMOCAP root (its train/dev/test "
        "JSONL files are written to OUT/iemocap/)",
    )
    parser.add_argument("--modality", required=True, choices=("audio", "visual"))
    parser.add_argument("--out", required=True, help="features folder (created; reruns resume)")
    parser.add_argument(
        "--extractor", default=None, help="extractor folder from pretrain-extractor (default: untrained)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared small CPU)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_extract(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    try:
        reports = extract_features(
            args.data, args.modality, args.out, args.extractor, ExtractOptions(progress=not args.no_progress)
        )
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for data_file, report in reports.items():
        print(f"{data_file}: {report.summary()} (list in {args.out}/skipped-{table_name(data_file)}.tsv)")
    return 0
