"""The training CLI contract: train -> evaluate -> predict, on MELD CSV, on a 6-label JSONL set, and on a
text+audio checkpoint made by `train --modalities` (the `text_audio_checkpoint` fixture in conftest.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Written for the project in MELD's layout (tests/data/README.md); MELD itself is not needed.
MELD_LIKE = ROOT / "tests" / "data" / "meld_like.csv"
DEV_ROWS = 22  # the last rows of MELD_LIKE (whole dialogues) are the dev file, the rest the train file
TINY_CONFIG = """
text: {encoder: minilm, finetune_top_layers: 1, past_utterances: 1, future_utterances: 1}
model: {hidden_dim: 64, feedforward_dim: 128, dialogue_heads: 4, fusion_heads: 4, fusion_layers: 2}
optim: {epochs: 2, dialogues_per_batch: 4}
"""


def run(*args, env_cache: Path) -> subprocess.CompletedProcess:
    env = {
        "HF_HUB_OFFLINE": "1",
        "M2FNET_CACHE_DIR": str(env_cache),
        "PATH": "/usr/bin:/bin",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def meld_slices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("meld")
    lines = MELD_LIKE.read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "train.csv").write_text("".join(lines[:-DEV_ROWS]), encoding="utf-8")
    (folder / "dev.csv").write_text(lines[0] + "".join(lines[-DEV_ROWS:]), encoding="utf-8")
    (folder / "tiny.yaml").write_text(TINY_CONFIG)
    return folder


def train_tiny(meld_slices: Path, out: Path) -> list[str]:
    """`train` arguments for the tiny config on the MELD slices."""
    return [
        "train",
        "--config",
        str(meld_slices / "tiny.yaml"),
        "--train",
        str(meld_slices / "train.csv"),
        "--dev",
        str(meld_slices / "dev.csv"),
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def trained(meld_slices, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = meld_slices / "ckpt"
    result = run(*train_tiny(meld_slices, out), "--seed", "1", env_cache=cache)
    assert result.returncode == 0, result.stderr[-2000:]
    return out, cache, result


def test_train_writes_a_complete_checkpoint(trained):
    out, _, result = trained
    assert {"model.safetensors", "config.yaml", "labels.json", "checkpoint.json"} <= {
        p.name for p in out.iterdir()
    }
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["encoder"] == "minilm" and meta["seed"] == 1
    assert len(meta["history"]) == 2
    assert "dev w-F1" in result.stderr and "epoch 2" in result.stderr


def test_second_run_reads_the_text_cache(trained, meld_slices):
    _, cache, _ = trained
    result = run(*train_tiny(meld_slices, meld_slices / "again"), env_cache=cache)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "encoded" not in result.stderr


def test_evaluate_prints_and_writes_the_report(trained, meld_slices):
    out, cache, _ = trained
    report_path = meld_slices / "report" / "dev.json"
    result = run(
        "evaluate",
        "--checkpoint",
        str(out),
        "--data",
        str(meld_slices / "dev.csv"),
        "--report",
        str(report_path),
        env_cache=cache,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["n_utterances"] == DEV_ROWS
    assert set(report) >= {"weighted_f1", "accuracy", "macro_f1", "per_class", "labels"}
    assert 0 <= report["weighted_f1"] <= 100 and 0 <= report["accuracy"] <= 100
    assert set(report["per_class"]) == set(report["labels"])
    assert sum(c["support"] for c in report["per_class"].values()) == DEV_ROWS
    assert report_path.with_suffix(".confusion.png").stat().st_size > 1000
    assert f"weighted_f1 {report['weighted_f1']:.2f}" in result.stdout
    meta = json.loads((out / "checkpoint.json").read_text())
    assert abs(meta["dev"]["weighted_f1"] - report["weighted_f1"]) < 1.0


def test_predict_writes_one_line_per_utterance(trained, meld_slices):
    out, cache, _ = trained
    target = meld_slices / "pred.jsonl"
    result = run(
        "predict",
        "--checkpoint",
        str(out),
        "--data",
        str(meld_slices / "dev.csv"),
        "--out",
        str(target),
        env_cache=cache,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    labels = json.loads((out / "labels.json").read_text())
    assert len(rows) == DEV_ROWS
    assert all(r["predicted"] in labels and abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in rows)
    assert {"dialogue_id", "utterance_id"} <= set(rows[0])


def test_weight_averaged_run_says_which_epochs_it_kept(meld_slices, tmp_path):
    """`optim.average_last_epochs` has no best epoch: the run ends normally and names the averaged epochs."""
    config = tmp_path / "averaged.yaml"
    config.write_text(TINY_CONFIG.replace("epochs: 2", "epochs: 2, average_last_epochs: 2"))
    arguments = train_tiny(meld_slices, tmp_path / "ckpt")
    arguments[arguments.index("--config") + 1] = str(config)
    result = run(*arguments, env_cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mean of epochs [1, 2]: dev weighted F1" in result.stdout


def test_six_label_jsonl_trains_and_evaluates(tmp_path):
    labels = ["happy", "sad", "angry", "calm", "scared", "bored"]
    words = {
        "happy": "wonderful great",
        "sad": "miserable crying",
        "angry": "furious hate",
        "calm": "fine okay",
        "scared": "terrified help",
        "bored": "dull whatever",
    }
    lines = []
    for dialogue in range(24):
        for turn in range(3):
            label = labels[(dialogue + turn) % 6]
            lines.append(
                json.dumps(
                    {
                        "dialogue_id": f"s{dialogue}",
                        "utterance_id": turn,
                        "speaker": "AB"[turn % 2],
                        "text": f"I feel {words[label]} today",
                        "emotion": label,
                    }
                )
            )
    (tmp_path / "train.jsonl").write_text("\n".join(lines[:54]) + "\n")
    (tmp_path / "dev.jsonl").write_text("\n".join(lines[54:]) + "\n")
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG.replace("epochs: 2", "epochs: 6"))
    cache = tmp_path / "cache"
    result = run(
        "train",
        "--config",
        str(tmp_path / "tiny.yaml"),
        "--train",
        str(tmp_path / "train.jsonl"),
        "--dev",
        str(tmp_path / "dev.jsonl"),
        "--out",
        str(tmp_path / "ck"),
        env_cache=cache,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(json.loads((tmp_path / "ck" / "labels.json").read_text())) == sorted(labels)
    result = run(
        "evaluate",
        "--checkpoint",
        str(tmp_path / "ck"),
        "--data",
        str(tmp_path / "dev.jsonl"),
        "--report",
        str(tmp_path / "r.json"),
        env_cache=cache,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_utterances"] == 18 and len(report["per_class"]) == 6


def train_on_dev(*options: str) -> list[str]:
    """`train` with these options on the MELD-layout file as both files (the error comes before any training)."""
    return ["train", *options, "--train", str(MELD_LIKE), "--dev", str(MELD_LIKE), "--out", "/tmp/x"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["evaluate", "--checkpoint", "/nonexistent/ck", "--data", str(MELD_LIKE)],
            "checkpoint /nonexistent/ck: no such directory",
        ),
        (
            ["train", "--train", "/nope.csv", "--dev", str(MELD_LIKE), "--out", "/tmp/x"],
            "/nope.csv: no such file",
        ),
        (
            train_on_dev("--config", "nosuch"),
            "nosuch.yaml: no such config",
        ),
        (
            train_on_dev("--modalities", "audio"),
            "--modalities: must include text",
        ),
        (
            train_on_dev("--features", "/nonexistent/f"),
            "/nonexistent/f: not a features folder",
        ),
        (
            train_on_dev("--features", "/f", "--modalities", "text,audio"),
            "give one",
        ),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message, tmp_path):
    result = run(*args, env_cache=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_recipe_checkpoint_carries_its_extractor(text_audio_checkpoint):
    ckpt = text_audio_checkpoint.path
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    extractor = json.loads((ckpt / "audio_extractor" / "extractor.json").read_text())
    assert meta["modalities"] == ["text", "audio"]
    assert meta["extractors"] == {"audio": extractor["extractor_id"]}
    assert (ckpt / "audio_extractor" / "weights.safetensors").is_file()
    assert "best epoch" in text_audio_checkpoint.result.stdout
    # The recipe's features folder is reusable as --features; a second run reuses its extractor.
    folder = meta["features_dirs"]["audio"]
    again = run(
        "train",
        "--config",
        str(ckpt.parent / "tiny.yaml"),
        "--features",
        folder,
        "--train",
        str(text_audio_checkpoint.train),
        "--dev",
        str(text_audio_checkpoint.dev),
        "--out",
        str(ckpt.parent / "again"),
        env_cache=text_audio_checkpoint.cache,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert (
        json.loads((ckpt.parent / "again" / "checkpoint.json").read_text())["extractors"]
        == meta["extractors"]
    )


def test_evaluate_and_predict_compute_features_with_the_checkpoint_extractor(text_audio_checkpoint):
    ckpt, cache = text_audio_checkpoint.path, text_audio_checkpoint.cache
    report_path = ckpt.parent / "eval" / "dev.json"
    result = run(
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(text_audio_checkpoint.dev),
        "--report",
        str(report_path),
        env_cache=cache,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "audio: 6 of 6 utterances have vectors" in result.stderr
    report = json.loads(report_path.read_text())
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert report["n_utterances"] == 6
    # Same extractor, same extraction code: evaluation reproduces the dev score kept at training time.
    assert abs(report["weighted_f1"] - meta["dev"]["weighted_f1"]) < 1.0
    assert (cache / "features" / meta["extractors"]["audio"] / "features.json").is_file()

    target = ckpt.parent / "pred.jsonl"
    result = run(
        "predict",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(text_audio_checkpoint.train),
        "--out",
        str(target),
        env_cache=cache,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 12 and all(abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in rows)


def test_multimodal_checkpoint_without_its_extractor_is_a_user_error(text_audio_checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "ckpt"
    shutil.copytree(text_audio_checkpoint.path, broken)
    shutil.rmtree(broken / "audio_extractor")
    result = run(
        "evaluate",
        "--checkpoint",
        str(broken),
        "--data",
        str(text_audio_checkpoint.dev),
        env_cache=text_audio_checkpoint.cache,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: checkpoint {broken}: missing audio_extractor/"
