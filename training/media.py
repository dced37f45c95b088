"""Raw-media data sets (MELD raw, IEMOCAP raw, JSONL with audio/video paths) and decoding with PyAV.

A clip that is bad, missing, unannotated or known to be broken is skipped and listed in a `SkipReport`
with its reason; no single clip ends a run.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from engines.errors import MediaError
from engines.media_format import SAMPLE_RATE_HZ
from training.data import DataError, Utterance, load_dialogues

logger = logging.getLogger(__name__)


MELD_SPLITS = {
    "train": ("train_sent_emo.csv", "train_splits"),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}
"""split -> (annotation file, clip folder) as MELD.Raw extracts them."""

MELD_KNOWN_BAD = {
    ("train", "125", "3"): "known bad clip (corrupt)",
    ("train", "309", "0"): "known bad clip (mis-cut)",
    ("dev", "110", "7"): "known bad clip (missing)",
    ("test", "220", "0"): "known bad clip (mis-cut, minutes long)",
    ("test", "38", "4"): "known bad clip (mis-cut, minutes long)",
}
"""(split, dialogue, utterance) -> reason; from ../shared/M2FNET.md."""

_MELD_CLIP = re.compile(r"^dia(\d+)_utt(\d+)\.mp4$")

IEMOCAP_LABELS = {
    "neu": "neutral",
    "hap": "happy",
    "sad": "sad",
    "ang": "angry",
    "exc": "excited",
    "fru": "frustrated",
}
"""The six classes M2FNet reports on IEMOCAP; other codes (xxx, oth, sur, fea, dis) are skipped and reported."""


@dataclass(frozen=True, slots=True)
class MediaClip:
    """An annotated utterance and where its media is. A span cuts a longer file (IEMOCAP dialogue videos)."""

    utterance: Utterance
    audio_path: Path | None = None
    video_path: Path | None = None
    video_start_s: float | None = None
    video_end_s: float | None = None

    @property
    def key(self) -> str:
        return self.utterance.key


@dataclass
class SkipReport:
    """What a loader or extractor left out and why."""

    items: list[tuple[str, str]] = field(default_factory=list)
    """(clip or utterance, reason)."""

    def add(self, what: str | Path, reason: str) -> None:
        self.items.append((str(what), reason))
        logger.debug("skipped %s: %s", what, reason)

    def extend(self, other: SkipReport) -> None:
        self.items.extend(other.items)

    def counts(self) -> dict[str, int]:
        # Detail after ":" varies per clip (decoder messages); count by the reason's head.
        return dict(Counter(reason.split(":")[0] for _, reason in self.items))

    def __len__(self) -> int:
        return len(self.items)

    def summary(self) -> str:
        if not self.items:
            return "nothing skipped"
        return f"skipped {len(self.items)}: " + ", ".join(
            f"{n} {r}" for r, n in sorted(self.counts().items())
        )

    def write(self, path: str | Path) -> None:
        Path(path).write_text("".join(f"{what}\t{reason}\n" for what, reason in self.items))


# ---- data sets -------------------------------------------------------------------------------------


def jsonl_clips(path: str | Path) -> list[MediaClip]:
    """Utterances of a JSONL file (or MELD CSV, which has no media paths) with their media. Optional
    `video_start_s` / `video_end_s` fields cut a span of a longer video."""
    path = Path(path)
    dialogues = load_dialogues(path)
    spans: dict[int, tuple[float | None, float | None]] = {}
    if path.suffix.lower() in (".jsonl", ".json"):
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if '"video_start_s"' in raw:
                record = json.loads(raw)
                spans[number] = (record.get("video_start_s"), record.get("video_end_s"))
    clips = []
    for dialogue in dialogues:
        for utterance in dialogue.utterances:
            start, end = spans.get(int(utterance.source.rsplit(":", 1)[1]), (None, None))
            clips.append(MediaClip(utterance, utterance.audio_path, utterance.video_path, start, end))
    return clips


def find_meld(root: str | Path) -> dict[str, tuple[Path, Path | None]]:
    """split -> (annotation CSV, clip folder or None) for each split whose CSV is under `root`."""
    root = Path(root)
    found: dict[str, tuple[Path, Path | None]] = {}
    for split, (csv_name, folder_name) in MELD_SPLITS.items():
        csvs = sorted(root.glob(csv_name)) + sorted(root.glob(f"*/{csv_name}"))
        if not csvs:
            continue
        folders = [
            p
            for pattern in (folder_name, f"*/{folder_name}", f"*/*/{folder_name}")
            for p in sorted(root.glob(pattern))
        ]
        found[split] = (csvs[0], next((p for p in folders if p.is_dir()), None))
    if not found:
        raise DataError(f"{root}: no MELD annotation file ({', '.join(c for c, _ in MELD_SPLITS.values())})")
    return found


def meld_split_of(csv_path: str | Path) -> str:
    name = Path(csv_path).name.lower()
    for split in MELD_SPLITS:
        if name.startswith(split):
            return split
    raise DataError(
        f"{csv_path}: cannot tell the MELD split from the file name (expected train/dev/test_sent_emo.csv)"
    )


def meld_clips(csv_path: str | Path, clip_dir: str | Path | None, report: SkipReport) -> list[MediaClip]:
    """Annotated utterances of one MELD split with their clip (audio and video from the same mp4)."""
    split = meld_split_of(csv_path)
    utterances = [u for d in load_dialogues(csv_path) for u in d.utterances]
    clips_on_disk: dict[tuple[str, str], Path] = {}
    if clip_dir is None:
        report.add(csv_path, f"no clip folder: {MELD_SPLITS[split][1]}/ not found")
    else:
        for path in sorted(Path(clip_dir).iterdir()):
            if path.name.startswith("."):
                report.add(path, "dot-file")
                continue
            match = _MELD_CLIP.match(path.name)
            if match is None:
                report.add(path, "not a MELD clip name")
                continue
            clips_on_disk[(str(int(match.group(1))), str(int(match.group(2))))] = path
    annotated = {(u.dialogue_id, u.utterance_id) for u in utterances}
    for ids, path in clips_on_disk.items():
        if ids not in annotated:
            report.add(path, "no annotation row")
    out = []
    for utterance in utterances:
        ids = (str(int(utterance.dialogue_id)), str(int(utterance.utterance_id)))
        bad = MELD_KNOWN_BAD.get((split, *ids))
        path = clips_on_disk.get(ids)
        if bad is not None:
            report.add(f"{split} dia{ids[0]}_utt{ids[1]}", bad)
        elif path is None:
            if clip_dir is not None:
                report.add(f"{split} dia{ids[0]}_utt{ids[1]}", "missing clip")
        else:
            out.append(MediaClip(utterance, path, path))
    return out


def iemocap_clips(
    root: str | Path, report: SkipReport, sessions: tuple[int, ...] = (1, 2, 3, 4, 5)
) -> list[MediaClip]:
    """IEMOCAP raw: one dialogue per `Session*/dialog/EmoEvaluation/<dialog>.txt`, audio from
    `sentences/wav/<dialog>/<utt>.wav`, video cut from `dialog/avi/DivX/<dialog>.avi` by the timestamps.
    Session 5 is the conventional test set: pass `sessions` to choose."""
    root = Path(root)
    out = []
    span_line = re.compile(r"^\[(\d+\.?\d*) - (\d+\.?\d*)\]\s+(\S+)\s+(\S+)")
    text_line = re.compile(r"^(\S+) \[[\d.]+-[\d.]+\]:\s*(.*)$")
    for session in sessions:
        base = root / f"Session{session}"
        evaluations = sorted((base / "dialog" / "EmoEvaluation").glob("*.txt"))
        if not evaluations:
            report.add(base, "no dialog/EmoEvaluation/*.txt")
        for evaluation in evaluations:
            if evaluation.name.startswith("."):
                continue
            dialog = evaluation.stem
            texts = {}
            transcript = base / "dialog" / "transcriptions" / f"{dialog}.txt"
            if transcript.is_file():
                for line in transcript.read_text(errors="replace").splitlines():
                    match = text_line.match(line.strip())
                    if match:
                        texts[match.group(1)] = match.group(2)
            video = base / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
            for line in evaluation.read_text(errors="replace").splitlines():
                match = span_line.match(line.strip())
                if match is None:
                    continue
                start, end, utt_id, code = (
                    float(match.group(1)),
                    float(match.group(2)),
                    match.group(3),
                    match.group(4),
                )
                if code not in IEMOCAP_LABELS:
                    report.add(utt_id, f"label outside the 6-class set: {code}")
                    continue
                audio = base / "sentences" / "wav" / dialog / f"{utt_id}.wav"
                utterance = Utterance(
                    dialogue_id=dialog,
                    utterance_id=utt_id,
                    speaker=utt_id.rsplit("_", 1)[-1][:1],
                    text=texts.get(utt_id, ""),
                    emotion=IEMOCAP_LABELS[code],
                    audio_path=audio if audio.is_file() else None,
                    video_path=video if video.is_file() else None,
                    source=f"{evaluation}",
                )
                if utterance.audio_path is None and utterance.video_path is None:
                    report.add(utt_id, "missing clip")
                    continue
                out.append(MediaClip(utterance, utterance.audio_path, utterance.video_path, start, end))
    return out


def is_iemocap_root(path: str | Path) -> bool:
    return Path(path).is_dir() and any(Path(path).glob("Session[1-5]/dialog/EmoEvaluation"))


IEMOCAP_SPLITS = {"train": (1, 2, 3, 4), "test": (5,)}
"""Sessions 1-4 train (every tenth dialogue held out as dev), session 5 test: the usual ERC protocol."""


def write_iemocap_jsonl(root: str | Path, out_dir: str | Path) -> tuple[dict[str, Path], SkipReport]:
    """IEMOCAP raw -> `train.jsonl`, `dev.jsonl`, `test.jsonl` in `out_dir` (the project's conversation
    format, so `train`, `evaluate`, `extract` and `pretrain-extractor` read IEMOCAP like any JSONL).
    Utterances are numbered in time order; `iemocap_id` keeps the corpus's own name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    records: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for split, sessions in IEMOCAP_SPLITS.items():
        by_dialogue: dict[str, list[MediaClip]] = {}
        for clip in iemocap_clips(root, report, sessions):
            by_dialogue.setdefault(clip.utterance.dialogue_id, []).append(clip)
        for number, (dialog, clips) in enumerate(sorted(by_dialogue.items())):
            target = "dev" if split == "train" and number % 10 == 9 else split
            for index, clip in enumerate(sorted(clips, key=lambda c: c.video_start_s or 0.0)):
                u = clip.utterance
                records[target].append(
                    {
                        "dialogue_id": dialog,
                        "utterance_id": index,
                        "speaker": u.speaker,
                        "text": u.text,
                        "emotion": u.emotion,
                        "iemocap_id": u.utterance_id,
                        **({"audio": str(clip.audio_path.resolve())} if clip.audio_path else {}),
                        **({"video": str(clip.video_path.resolve())} if clip.video_path else {}),
                        "video_start_s": clip.video_start_s,
                        "video_end_s": clip.video_end_s,
                    }
                )
    if not any(records.values()):
        raise DataError(f"{root}: no IEMOCAP utterance with a 6-class label and a clip ({report.summary()})")
    files = {}
    for split, rows in records.items():
        if rows:
            files[split] = out / f"{split}.jsonl"
            files[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    report.write(out / "skipped.tsv")
    logger.info(
        "%s: IEMOCAP written to %s (%s)", root, out, ", ".join(f"{k} {len(v)}" for k, v in records.items())
    )
    return files, report


# ---- decoding --------------------------------------------------------------------------------------


@dataclass
class DecodeOptions:
    frames_per_clip: int = 15
    """Video frames kept per clip, evenly spaced (M2FNet)."""
    max_clip_s: float = 60.0
    """Longer clips are refused: in MELD they are mis-cuts (minutes of unrelated footage)."""
    max_frame_side_px: int = 640
    """Frames are downscaled so their longer side is at most this: face detection does not need more,
    and it bounds memory."""


def _open(path: Path):
    if not path.is_file():
        raise MediaError("missing file")
    try:
        return av.open(str(path))
    except av.FFmpegError as error:
        raise MediaError(f"cannot open: {error}") from None


def decode_audio(path: str | Path, options: DecodeOptions | None = None) -> np.ndarray:
    """Mono float32 samples at 16 kHz."""
    options = options or DecodeOptions()
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
        chunks = []
        total = 0
        longest = int(options.max_clip_s * SAMPLE_RATE_HZ)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if total > longest:
                    raise MediaError(f"longer than {options.max_clip_s:g} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as error:
            raise MediaError(f"corrupt audio: {error}") from None
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise MediaError("no audio samples")
    return np.concatenate(chunks).astype(np.float32)


def decode_frames(
    path: str | Path,
    options: DecodeOptions | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> list[np.ndarray]:
    """`frames_per_clip` RGB uint8 frames evenly spread over the clip (or over [start_s, end_s])."""
    options = options or DecodeOptions()
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = start_s or 0.0
        if start_s:
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
        kept: list[tuple[float, np.ndarray]] = []
        stride, seen = 1, 0
        try:
            for frame in container.decode(stream):
                time_s = float(frame.pts * stream.time_base) if frame.pts is not None else len(kept) / 25.0
                if time_s < start:
                    continue
                if end_s is not None and time_s > end_s:
                    break
                if time_s - start > options.max_clip_s:
                    raise MediaError(f"longer than {options.max_clip_s:g} s")
                seen += 1
                if (seen - 1) % stride:
                    continue
                scale = min(1.0, options.max_frame_side_px / max(frame.width, frame.height))
                width, height = max(2, int(frame.width * scale)), max(2, int(frame.height * scale))
                kept.append((time_s, frame.reformat(width=width, height=height, format="rgb24").to_ndarray()))
                # The frame count is rarely known up front: keep every `stride`-th frame and double the stride
                # when the buffer fills, so memory stays bounded and the kept frames stay evenly spaced.
                if len(kept) >= 8 * options.frames_per_clip:
                    kept, stride = kept[::2], stride * 2
        except av.FFmpegError as error:
            if not kept:
                raise MediaError(f"corrupt video: {error}") from None
            logger.debug("%s: video decoding stopped early (%s)", path, error)
    if not kept:
        raise MediaError("no video frames")
    picks = np.linspace(0, len(kept) - 1, min(options.frames_per_clip, len(kept))).round().astype(int)
    return [kept[i][1] for i in picks]


@dataclass
class MediaSource:
    """One annotation file and its clips, as loaded from a `--data` argument."""

    data_file: Path
    clips: list[MediaClip]
    report: SkipReport


def load_media(data: str | Path, work_dir: str | Path | None = None) -> list[MediaSource]:
    """A JSONL file, a MELD CSV (clips found beside it), a MELD.Raw folder (one source per split), or an
    IEMOCAP root (converted by `write_iemocap_jsonl` into `work_dir/iemocap/`, one source per split)."""
    data = Path(data)
    if is_iemocap_root(data):
        if work_dir is None:
            raise DataError(f"{data}: an IEMOCAP folder needs a work folder for its JSONL files")
        files, report = write_iemocap_jsonl(data, Path(work_dir) / "iemocap")
        sources = [MediaSource(path, jsonl_clips(path), SkipReport()) for path in files.values()]
        sources[0].report.extend(report)
        return sources
    if data.is_dir():
        sources = []
        for csv_path, clip_dir in find_meld(data).values():
            report = SkipReport()
            sources.append(MediaSource(csv_path, meld_clips(csv_path, clip_dir, report), report))
        return sources
    if not data.is_file():
        raise DataError(f"{data}: no such file or folder")
    report = SkipReport()
    if data.suffix.lower() == ".csv":
        split = meld_split_of(data)
        clip_dir = None
        for root in (data.parent, data.parent.parent):
            try:
                clip_dir = find_meld(root).get(split, (None, None))[1]
            except DataError:
                continue
            if clip_dir is not None:
                break
        return [MediaSource(data, meld_clips(data, clip_dir, report), report)]
    return [MediaSource(data, jsonl_clips(data), report)]
