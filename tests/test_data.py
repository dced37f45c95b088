"""Loaders for MELD CSV and JSONL conversations, and their one-line errors."""

import json
from pathlib import Path

import pytest

from training.data import DataError, check_labels, label_set, load_dialogues

# Written for the project in MELD's layout (tests/data/README.md); MELD itself is not needed.
MELD_LIKE = Path(__file__).resolve().parent / "data" / "meld_like.csv"
HEADER = (
    "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_meld_layout_loads_every_row_grouped_and_ordered():
    dialogues = load_dialogues(MELD_LIKE)
    assert sum(len(d.utterances) for d in dialogues) == 77
    assert len(dialogues) == 24
    for dialogue in dialogues:
        ids = [int(u.utterance_id) for u in dialogue.utterances]
        assert ids == sorted(ids)
    assert label_set(dialogues) == ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
    first = dialogues[0].utterances[0]
    assert (
        first.speaker == "Mara"
        and first.emotion == "sadness"
        and first.text == "Oh no, he's gone. He's really gone."
    )
    assert dialogues[2].utterances[2].text == "It had my name on it - in capitals!"


def test_meld_csv_rows_out_of_order_and_single_utterance_dialogue(tmp_path):
    path = write(
        tmp_path / "d.csv",
        HEADER
        + '1,"B",Ann,joy,positive,0,1,1,1,a,b\n2,"A",Bob,anger,negative,0,0,1,1,a,b\n3,Solo,Cy,fear,negative,7,0,1,1,a,b\n',
    )
    dialogues = load_dialogues(path)
    assert [u.text for u in dialogues[0].utterances] == ["A", "B"]
    assert len(dialogues[1].utterances) == 1


def test_meld_missing_column_names_the_file_and_column(tmp_path):
    path = write(tmp_path / "bad.csv", "Utterance,Speaker,Dialogue_ID,Utterance_ID\nhi,A,0,0\n")
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) Emotion"):
        load_dialogues(path)


def test_meld_bad_id_names_file_line_and_field(tmp_path):
    path = write(
        tmp_path / "bad.csv", HEADER + "1,hi,A,joy,positive,0,0,1,1,a,b\n2,yo,B,joy,positive,x,1,1,1,a,b\n"
    )
    with pytest.raises(DataError, match=r"bad\.csv:3: field 'Dialogue_ID'"):
        load_dialogues(path)


def test_meld_duplicate_utterance_is_an_error(tmp_path):
    path = write(tmp_path / "dup.csv", HEADER + "1,hi,A,joy,p,0,0,1,1,a,b\n2,hi,A,joy,p,0,0,1,1,a,b\n")
    with pytest.raises(DataError, match="duplicate utterance 0/0"):
        load_dialogues(path)


def test_jsonl_with_relative_media_paths(tmp_path):
    rows = [
        {
            "dialogue_id": "d1",
            "utterance_id": 0,
            "speaker": "A",
            "text": "Hi",
            "emotion": "calm",
            "audio": "a/0.wav",
        },
        {
            "dialogue_id": "d1",
            "utterance_id": 1,
            "speaker": "B",
            "text": "Go!",
            "emotion": "angry",
            "video": "/abs/v.mp4",
        },
        {"dialogue_id": "d2", "utterance_id": 0, "speaker": "A", "text": "Oh", "emotion": "sad"},
    ]
    path = write(tmp_path / "data.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    dialogues = load_dialogues(path)
    assert [len(d.utterances) for d in dialogues] == [2, 1]
    assert dialogues[0].utterances[0].audio_path == tmp_path / "a" / "0.wav"
    assert dialogues[0].utterances[1].video_path == Path("/abs/v.mp4")
    assert label_set(dialogues) == ["angry", "calm", "sad"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"dialogue_id": 1, "utterance_id": 0, "speaker": "A", "text": "x"}',
            "data.jsonl:2: missing field 'emotion'",
        ),
        ("{not json", r"data.jsonl:2: invalid JSON"),
        ("[1, 2]", "data.jsonl:2: expected a JSON object"),
        (
            '{"dialogue_id": 1, "utterance_id": 1, "speaker": "A", "text": 5, "emotion": "x"}',
            "field 'text' must be a string",
        ),
    ],
)
def test_jsonl_malformed_line_names_file_and_line(tmp_path, line, message):
    good = '{"dialogue_id": 1, "utterance_id": 0, "speaker": "A", "text": "x", "emotion": "joy"}'
    path = write(tmp_path / "data.jsonl", good + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        load_dialogues(path)


def test_unknown_label_in_dev_is_an_error_naming_the_label(tmp_path):
    path = write(
        tmp_path / "dev.jsonl",
        '{"dialogue_id": 1, "utterance_id": 0, "speaker": "A", "text": "x", "emotion": "bored"}\n',
    )
    with pytest.raises(DataError, match=r"dev\.jsonl:1: unknown label 'bored'"):
        check_labels(load_dialogues(path), ["joy", "sad"], path)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dialogues(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="unknown data format"):
        load_dialogues(write(tmp_path / "x.txt", "hi"))
