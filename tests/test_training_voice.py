"""`python -m training voice`: the voice head learns from how things are said, on voices it never heard."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_training_cli
from media_fixtures import have_espeak, make_audio_cue_set

from engines.voice_emotion import load_voice_head

pytestmark = pytest.mark.skipif(
    not have_espeak(), reason="espeak-ng not installed (apt-get install espeak-ng)"
)


def test_the_head_learns_the_voice_cue_on_unseen_voices(tmp_path) -> None:
    # Same words for every clip; only pitch, rate and loudness follow the label; dev voices are new.
    train, dev = make_audio_cue_set(tmp_path / "data", repeats=2)
    out = tmp_path / "head"
    result = run_training_cli(
        "voice", "--train", str(train), "--dev", str(dev), "--out", str(out),
        "--cache", str(tmp_path / "cache"), cache=tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    head = load_voice_head(out)
    report = json.loads((out / "voice_head.json").read_text())["dev"]
    assert report["clips"] == 12
    assert report["weighted_f1_mean"] >= 60, report  # 3 classes: chance is ~33
    assert set(report["per_class_f1"]) == set(head.labels)


def test_dev_voices_heard_in_training_are_refused(tmp_path) -> None:
    train, _ = make_audio_cue_set(tmp_path / "data", repeats=1)
    dev = shutil.copy(train, train.with_name("same_voices.jsonl"))
    result = run_training_cli(
        "voice", "--train", str(train), "--dev", str(dev), "--out", str(tmp_path / "o"),
        "--cache", str(tmp_path / "cache"), cache=tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "also in" in last and "same_voices.jsonl" in last
    assert "Traceback" not in result.stderr
