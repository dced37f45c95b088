"""Conversation data sets: MELD CSV and JSONL, loaded into typed dialogues.

Every malformed row is a `DataError` naming the file and line; nothing is silently dropped.
"""

from __future__ import annotations

import csv
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

MELD_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
JSONL_REQUIRED = ("dialogue_id", "utterance_id", "speaker", "text", "emotion")


class DataError(Exception):
    """A user's data problem; the message is one line naming the file (and line or field)."""


@dataclass(frozen=True, slots=True)
class Utterance:
    dialogue_id: str
    utterance_id: str
    speaker: str
    text: str
    emotion: str | None
    audio_path: Path | None = None
    video_path: Path | None = None
    source: str = ""
    """`file:line` the utterance came from, for error messages."""

    @property
    def key(self) -> str:
        """Stable id of the utterance inside its data set, used by feature caches."""
        return f"{self.dialogue_id}/{self.utterance_id}"


@dataclass(slots=True)
class Dialogue:
    dialogue_id: str
    utterances: list[Utterance] = field(default_factory=list)


def load_dialogues(path: str | Path) -> list[Dialogue]:
    """Reads a `.csv` (MELD layout) or `.jsonl` conversation file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        utterances = _read_meld_csv(path)
    elif suffix in (".jsonl", ".json"):
        utterances = _read_jsonl(path)
    else:
        raise DataError(f"{path}: unknown data format '{suffix}' (expected .csv in MELD layout or .jsonl)")
    if not utterances:
        raise DataError(f"{path}: no utterances")
    return _group(utterances, path)


def _clean_text(text: str) -> str:
    # MELD's CSV carries mojibake for curly quotes and dashes (cp1252 read as latin-1).
    for bad, good in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'), ("\u2014", "-")):
        text = text.replace(bad, good)
    for bad, good in (
        ("\x92", "'"),
        ("\x91", "'"),
        ("\x93", '"'),
        ("\x94", '"'),
        ("\x97", "-"),
        ("\x85", "..."),
    ):
        text = text.replace(bad, good)
    return " ".join(text.split())


def _read_meld_csv(path: Path) -> list[Utterance]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
        with handle:
            reader = csv.DictReader(handle)
            missing = [c for c in MELD_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {', '.join(missing)} (MELD layout needs {', '.join(MELD_COLUMNS)})"
                )
            out = []
            for row in reader:
                line = reader.line_num
                values = {c: (row.get(c) or "").strip() for c in MELD_COLUMNS}
                for column in ("Emotion", "Dialogue_ID", "Utterance_ID"):
                    if not values[column]:
                        raise DataError(f"{path}:{line}: empty field '{column}'")
                for column in ("Dialogue_ID", "Utterance_ID"):
                    if not values[column].isdigit():
                        raise DataError(
                            f"{path}:{line}: field '{column}' must be a non-negative integer, got {values[column]!r}"
                        )
                out.append(
                    Utterance(
                        dialogue_id=values["Dialogue_ID"],
                        utterance_id=values["Utterance_ID"],
                        speaker=values["Speaker"],
                        text=_clean_text(values["Utterance"]),
                        emotion=values["Emotion"].lower(),
                        source=f"{path}:{line}",
                    )
                )
            return out
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise DataError(f"{path}: broken CSV ({error})") from None


def _read_jsonl(path: Path) -> list[Utterance]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object per line")
        for name in JSONL_REQUIRED:
            if name not in record or record[name] is None or str(record[name]).strip() == "":
                raise DataError(f"{path}:{number}: missing field '{name}'")
        for name in ("text", "speaker", "emotion"):
            if not isinstance(record[name], str):
                raise DataError(f"{path}:{number}: field '{name}' must be a string")
        out.append(
            Utterance(
                dialogue_id=str(record["dialogue_id"]),
                utterance_id=str(record["utterance_id"]),
                speaker=record["speaker"].strip(),
                text=_clean_text(record["text"]),
                emotion=record["emotion"].strip().lower(),
                audio_path=_media_path(path, number, record, "audio"),
                video_path=_media_path(path, number, record, "video"),
                source=f"{path}:{number}",
            )
        )
    return out


def _media_path(path: Path, number: int, record: dict, name: str) -> Path | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DataError(f"{path}:{number}: field '{name}' must be a path string")
    media = Path(value)
    return media if media.is_absolute() else (path.parent / media)


def _order_key(utterance_id: str) -> tuple[int, int | str]:
    return (0, int(utterance_id)) if utterance_id.isdigit() else (1, utterance_id)


def _group(utterances: list[Utterance], path: Path) -> list[Dialogue]:
    dialogues: OrderedDict[str, Dialogue] = OrderedDict()
    seen: dict[str, str] = {}
    for utterance in utterances:
        if utterance.key in seen:
            raise DataError(
                f"{utterance.source}: duplicate utterance {utterance.key} (first at {seen[utterance.key]})"
            )
        seen[utterance.key] = utterance.source
        dialogues.setdefault(utterance.dialogue_id, Dialogue(utterance.dialogue_id)).utterances.append(
            utterance
        )
    for dialogue in dialogues.values():
        dialogue.utterances.sort(key=lambda u: _order_key(u.utterance_id))
    return list(dialogues.values())


def label_set(dialogues: list[Dialogue]) -> list[str]:
    """Labels of a training file, in a stable order (MELD's seven first when present)."""
    found = {u.emotion for d in dialogues for u in d.utterances if u.emotion}
    meld = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
    return [e for e in meld if e in found] + sorted(found - set(meld))


def check_labels(dialogues: list[Dialogue], labels: list[str], path: str | Path) -> None:
    """A label the model never saw in training is a user error, not a silent miss."""
    known = set(labels)
    for dialogue in dialogues:
        for utterance in dialogue.utterances:
            if utterance.emotion not in known:
                raise DataError(
                    f"{utterance.source}: unknown label '{utterance.emotion}' in field 'emotion' "
                    f"(training labels: {', '.join(labels)})"
                )
