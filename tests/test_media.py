"""Raw-media loaders and the feature cache: MELD layouts with bad clips, IEMOCAP layout, JSONL media of
every format, decoding, resumable extraction, and the CLI functions."""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from media_fixtures import (
    NEUTRAL_TEXT,
    espeak,
    face_frame,
    have_espeak,
    make_meld_tree,
    read_wav_16k,
    write_clip,
)

from engines import prosody
from engines.audio_extractor import AudioExtractor, AudioExtractorConfig
from engines.extractor_store import save_extractor
from training.data import DataError, load_dialogues
from training.extract import ExtractOptions, add_extract_parser, extract_features, run_extract
from training.features_io import load_features
from training.media import (
    DecodeOptions,
    MediaError,
    SkipReport,
    decode_audio,
    decode_frames,
    iemocap_clips,
    is_iemocap_root,
    load_media,
)
from training.pretrain import add_pretrain_extractor_parser, run_pretrain_extractor

pytestmark = pytest.mark.skipif(
    not have_espeak(), reason="espeak-ng not installed (apt-get install espeak-ng)"
)


@pytest.fixture(scope="module")
def small_audio_extractor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("extractor") / "audio"
    save_extractor(AudioExtractor(AudioExtractorConfig(width=8)), folder)
    return folder


@pytest.mark.parametrize("nested", [False, True])
def test_meld_layout_lists_clips_and_skips(tmp_path, nested):
    expected = make_meld_tree(tmp_path, nested=nested)
    sources = {s.data_file.name.split("_")[0]: s for s in load_media(tmp_path)}
    assert set(sources) == {"train", "dev"}
    # dia0_utt2 is corrupt but only decoding can tell: it is listed here and skipped at extraction.
    assert {c.key for c in sources["train"].clips} == expected["train"] | {"0/2"}
    assert {c.key for c in sources["dev"].clips} == expected["dev"]
    reasons = {what.rsplit("/", 1)[-1]: why for what, why in sources["train"].report.items}
    assert reasons["._dia0_utt0.mp4"] == "dot-file"
    assert reasons["dia7_utt0.mp4"] == "no annotation row"
    assert reasons["train dia125_utt3"].startswith("known bad clip")
    assert reasons["train dia2_utt0"] == "missing clip"
    assert sources["dev"].report.counts() == {"known bad clip (missing)": 1}
    # A split's CSV given on its own finds its clip folder too.
    alone = load_media(sources["train"].data_file)
    assert {c.key for c in alone[0].clips} == {c.key for c in sources["train"].clips}


def test_extract_meld_dir_skips_bad_clips_and_keeps_splits_apart(tmp_path, small_audio_extractor):
    make_meld_tree(tmp_path / "meld")
    out = tmp_path / "features"
    options = ExtractOptions(progress=False)
    reports = extract_features(tmp_path / "meld", "audio", out, small_audio_extractor, options)
    train_report = next(r for name, r in reports.items() if "train" in name)
    assert any("0/2" in what and "corrupt" in why or "cannot open" in why for what, why in train_report.items)
    train = load_features(out, tmp_path / "meld" / "train_sent_emo.csv")
    dev = load_features(out, tmp_path / "meld" / "dev_sent_emo.csv")
    assert set(train.vectors) == {"0/0", "0/1", "1/0"} and set(dev.vectors) == {"0/0"}
    assert (
        train.dim == 300 + prosody.DIM
        and train.vectors["0/0"].shape == (300 + prosody.DIM,)
        and train.extractor_dir.is_dir()
    )
    # Same clip content in both splits (the fixture reuses it), but the tables stay separate.
    assert np.allclose(train.vectors["0/0"], dev.vectors["0/0"])
    with pytest.raises(DataError, match="several data files"):
        load_features(out)


def test_extraction_resumes_from_the_cache(tmp_path, small_audio_extractor):
    make_meld_tree(tmp_path / "meld")
    out = tmp_path / "features"
    options = ExtractOptions(progress=False, flush_every=1)
    extract_features(tmp_path / "meld", "audio", out, small_audio_extractor, options)
    parts = sorted((out / "cache").rglob("part-*.npz"))
    first = load_features(out, tmp_path / "meld" / "train_sent_emo.csv").vectors
    extract_features(tmp_path / "meld", "audio", out, small_audio_extractor, options)
    assert sorted((out / "cache").rglob("part-*.npz")) == parts  # nothing recomputed
    again = load_features(out, tmp_path / "meld" / "train_sent_emo.csv").vectors
    assert all(np.array_equal(first[k], again[k]) for k in first)


def test_jsonl_media_in_every_format(tmp_path):
    wav = espeak(tmp_path / "a.wav")
    samples = read_wav_16k(wav)
    write_clip(tmp_path / "c.mp4", [face_frame()] * 4, audio_16k=samples)
    for fmt, codec in (("flac", "flac"), ("mp3", "libmp3lame")):
        import subprocess

        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", codec, str(tmp_path / f"a.{fmt}")],
            check=True,
        )
    rows = [
        {
            "dialogue_id": f"d{i}",
            "utterance_id": 0,
            "speaker": "A",
            "text": NEUTRAL_TEXT,
            "emotion": "neutral",
            "audio": name,
        }
        for i, name in enumerate(["a.wav", "a.flac", "a.mp3", "c.mp4"])
    ]
    rows.append(
        {"dialogue_id": "d9", "utterance_id": 0, "speaker": "A", "text": "no media", "emotion": "neutral"}
    )
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    [source] = load_media(tmp_path / "data.jsonl")
    for clip in source.clips[:4]:
        decoded = decode_audio(clip.audio_path)
        # Codecs pad a little at the edges; the length stays within 0.15 s.
        assert abs(len(decoded) - len(samples)) < 2_400, clip.audio_path
    assert source.clips[4].audio_path is None and source.clips[4].video_path is None


def test_decoding_errors_are_media_errors(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(MediaError):
        decode_frames(tmp_path / "bad.mp4")
    with pytest.raises(MediaError, match="missing"):
        decode_audio(tmp_path / "nope.wav")
    write_clip(tmp_path / "silent.mp4", [face_frame()] * 3)
    with pytest.raises(MediaError, match="no audio stream"):
        decode_audio(tmp_path / "silent.mp4")


def test_frames_are_sampled_over_the_whole_clip(tmp_path):
    frames = [np.full((64, 96, 3), 6 * i, np.uint8) for i in range(40)]
    write_clip(tmp_path / "ramp.mp4", frames, fps=20)
    picked = decode_frames(tmp_path / "ramp.mp4", DecodeOptions(frames_per_clip=15))
    levels = [float(f.mean()) for f in picked]
    assert len(picked) == 15 and levels == sorted(levels)
    assert levels[0] < 15 and levels[-1] > 220
    # A span cuts a longer video (IEMOCAP dialogues): 0.5-1.0 s at 20 fps is frames 10-20.
    span = decode_frames(tmp_path / "ramp.mp4", DecodeOptions(frames_per_clip=5), start_s=0.5, end_s=1.0)
    assert 50 < float(span[0].mean()) < 70 and 110 < float(span[-1].mean()) < 130
    assert decode_frames(tmp_path / "ramp.mp4", DecodeOptions(max_frame_side_px=48))[0].shape == (32, 48, 3)


def make_iemocap_session(root, session, dialog):
    base = root / f"Session{session}"
    (base / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (base / "dialog" / "transcriptions").mkdir(parents=True)
    (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text(
        "% header\n\n"
        f"[10.0 - 11.5]\t{dialog}_M000\tfru\t[2.0, 3.5, 3.5]\n\n"
        f"[6.2901 - 8.2357]\t{dialog}_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n\n"
        f"[12.0 - 13.0]\t{dialog}_M001\txxx\t[2.0, 3.5, 3.5]\n"
    )
    (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(
        f"{dialog}_F000 [006.2901-008.2357]: Excuse me.\n{dialog}_M000 [010.0000-011.5000]: Do you have your forms?\n"
    )
    for utt in ("F000", "M000"):
        espeak(base / "sentences" / "wav" / dialog / f"{dialog}_{utt}.wav", "Excuse me.")


def test_iemocap_layout(tmp_path):
    dialog = "Ses01F_impro01"
    make_iemocap_session(tmp_path, 1, dialog)
    report = SkipReport()
    clips = iemocap_clips(tmp_path, report, sessions=(1,))
    assert sorted((c.key, c.utterance.speaker, c.utterance.emotion) for c in clips) == [
        (f"{dialog}/{dialog}_F000", "F", "neutral"),
        (f"{dialog}/{dialog}_M000", "M", "frustrated"),
    ]
    first = next(c for c in clips if c.key.endswith("F000"))
    assert first.utterance.text == "Excuse me." and first.video_start_s == pytest.approx(6.2901)
    assert report.counts() == {"label outside the 6-class set": 1}


def test_iemocap_root_extracts_and_becomes_training_jsonl(tmp_path, small_audio_extractor):
    root = tmp_path / "IEMOCAP_full_release"
    make_iemocap_session(root, 1, "Ses01F_impro01")
    make_iemocap_session(root, 5, "Ses05F_impro01")
    assert is_iemocap_root(root) and not is_iemocap_root(tmp_path)
    reports = extract_features(
        root, "audio", tmp_path / "features", small_audio_extractor, ExtractOptions(progress=False)
    )
    train_file = tmp_path / "features" / "iemocap" / "train.jsonl"
    assert sorted(Path(p).name for p in reports) == ["test.jsonl", "train.jsonl"]
    # Time order, not name order: F000 (6.3 s) comes before M000 (10 s).
    dialogue = load_dialogues(train_file)[0]
    assert [u.speaker for u in dialogue.utterances] == ["F", "M"]
    assert [u.emotion for u in dialogue.utterances] == ["neutral", "frustrated"]
    features = load_features(tmp_path / "features", train_file)
    assert set(features.vectors) == {"Ses01F_impro01/0", "Ses01F_impro01/1"}
    counts = reports[str(train_file)].counts()
    assert counts["label outside the 6-class set"] == 2 and counts["no dialog/EmoEvaluation/*.txt"] == 3


def test_load_features_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match="not a features folder") as error:
        load_features(tmp_path)
    assert "\n" not in str(error.value)


def test_cli_functions(tmp_path, capsys, small_audio_extractor):
    rows = []
    for i, (label, pitch) in enumerate([("low", 20), ("high", 80)] * 3):
        espeak(tmp_path / f"{i}.wav", voice="en-us", pitch=pitch)
        rows.append(
            {
                "dialogue_id": i,
                "utterance_id": 0,
                "speaker": "A",
                "text": NEUTRAL_TEXT,
                "emotion": label,
                "audio": f"{i}.wav",
            }
        )
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command")
    add_extract_parser(commands)
    add_pretrain_extractor_parser(commands)
    args = parser.parse_args(
        [
            "pretrain-extractor",
            "--modality",
            "audio",
            "--data",
            str(tmp_path / "d.jsonl"),
            "--out",
            str(tmp_path / "x"),
            "--epochs",
            "1",
            "--width",
            "8",
            "--no-progress",
        ]
    )
    assert run_pretrain_extractor(args) == 0
    args = parser.parse_args(
        [
            "extract",
            "--data",
            str(tmp_path / "d.jsonl"),
            "--modality",
            "audio",
            "--out",
            str(tmp_path / "f"),
            "--extractor",
            str(tmp_path / "x"),
            "--no-progress",
        ]
    )
    assert run_extract(args) == 0
    assert "nothing skipped" in capsys.readouterr().out
    assert len(load_features(tmp_path / "f").vectors) == 6
    shutil.rmtree(tmp_path / "x")
    args = parser.parse_args(
        [
            "extract",
            "--data",
            str(tmp_path / "missing.jsonl"),
            "--modality",
            "audio",
            "--out",
            str(tmp_path / "g"),
        ]
    )
    assert run_extract(args) == 2
    assert capsys.readouterr().err.startswith("error: ")
