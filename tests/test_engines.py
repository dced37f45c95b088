"""Backends behind one interface: ONNX Runtime graphs compiled from tiny checkpoints match eager torch
(same argmax on every utterance, probabilities within 1e-4), the manifest ties graphs to their weights,
and first use compiles into the cache."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import engines.text_encoder
from engines.audio_extractor import AudioExtractorConfig, embed_audio
from engines.backends import load_engines, resolve_backend
from engines.checkpoint import extractor_path, load_checkpoint, save_checkpoint
from engines.compile import compile_checkpoint, source_sha256
from engines.engine import EngineOptions
from engines.errors import CheckpointError
from engines.extractor_store import new_extractor, save_extractor
from engines.m2fnet import M2FNet, M2FNetConfig
from engines.media_features import audio_vector
from engines.stream import UtteranceInput, load_recognizer, softmax
from engines.text_encoder import SplitTextEncoder, TextEncoderConfig, load_tokenizer_and_model
from engines.visual_extractor import VisualExtractorConfig
from training.config import TrainConfig, config_to_dict
from training.data import load_dialogues
from training.engine_predict import predict_dialogues

LINES = [
    ("A", "I can't believe you did that to me!"),
    ("B", "Sorry, I really didn't mean to."),
    ("A", "Whatever. Just go away."),
    ("B", "Oh my god, this is the best day ever, thank you so much!"),
    ("A", "Okay."),
    ("C", "Why is everybody shouting in here? I was trying to sleep."),
]
EMOTIONS = ["neutral", "joy", "anger", "sadness"]


def tiny_checkpoint(out: Path, modalities: tuple[str, ...] = ("text",), seed: int = 0) -> Path:
    """Random small M2FNet and the real MiniLM with one 'fine-tuned' top layer: no training needed."""
    torch.manual_seed(seed)
    audio, visual = (
        AudioExtractorConfig(width=8, embedding_dim=16),
        VisualExtractorConfig(width=8, branch_dim=16),
    )
    config = TrainConfig(
        text=TextEncoderConfig(finetune_top_layers=1, past_utterances=2, future_utterances=0),
        model=M2FNetConfig(
            num_labels=len(EMOTIONS),
            modalities=modalities,
            audio_dim=audio.out_dim,
            visual_dim=visual.out_dim,
            hidden_dim=32,
            feedforward_dim=64,
            dialogue_heads=4,
            fusion_heads=4,
            fusion_layers=2,
            causal=True,
        ),
    )
    _, base = load_tokenizer_and_model("minilm")
    encoder = SplitTextEncoder(base, 1)
    with torch.no_grad():
        for parameter in encoder.top_layers.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    save_checkpoint(
        out, config_to_dict(config), EMOTIONS, encoder, M2FNet(config.model), {"model_id": "tiny"}
    )
    for modality, options in (("audio", audio), ("visual", visual)):
        if modality in modalities:
            save_extractor(new_extractor(modality, options).eval(), extractor_path(out, modality))
    return out


def conversation(path: Path, dialogues: int = 3) -> Path:
    rows = [
        {"dialogue_id": d, "utterance_id": i, "speaker": s, "text": t, "emotion": EMOTIONS[(d + i) % 4]}
        for d in range(dialogues)
        for i, (s, t) in enumerate(LINES[: 3 + d])
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engines.text_encoder, "CACHE_ROOT", folder)
        yield folder


@pytest.fixture(scope="module")
def text_only(tmp_path_factory, cache):
    folder = tmp_path_factory.mktemp("tiny-text")
    checkpoint = load_checkpoint(tiny_checkpoint(folder / "ckpt"))
    compile_checkpoint(checkpoint, folder / "onnx")
    return checkpoint, folder


def assert_same_predictions(reference: np.ndarray, other: np.ndarray) -> None:
    assert (reference.argmax(-1) == other.argmax(-1)).all()
    assert np.abs(reference - other).max() <= 1e-4


def test_text_and_fusion_match_torch_on_every_utterance(text_only):
    checkpoint, folder = text_only
    dialogues = load_dialogues(conversation(folder / "dev.jsonl"))
    torch_engines = load_engines(checkpoint, EngineOptions("torch"))
    onnx_engines = load_engines(checkpoint, EngineOptions("onnx", artifacts_dir=str(folder / "onnx")))
    assert onnx_engines.backend == "onnx"
    # Batches of several sizes and lengths exercise the dynamic token, utterance and batch axes.
    for text_batch, dialogue_batch in ((1, 1), (3, 2), (8, 8)):
        reference = predict_dialogues(torch_engines, checkpoint, dialogues, text_batch=1, dialogue_batch=1)
        other = predict_dialogues(onnx_engines, checkpoint, dialogues, None, text_batch, dialogue_batch)
        for a, b in zip(reference, other):
            assert_same_predictions(a.probabilities, b.probabilities)


def test_live_sessions_agree_across_backends(text_only):
    checkpoint, _ = text_only
    results = {}
    for backend in ("torch", "onnx"):
        recognizer = load_recognizer(checkpoint.path, backend)
        assert recognizer.engines.backend == backend
        session = recognizer.new_session(max_context_utterances=4)
        predictions = [session.add(UtteranceInput(text, speaker)) for speaker, text in LINES * 2]
        results[backend] = np.array([[p.scores[label] for label in EMOTIONS] for p in predictions])
    assert_same_predictions(results["torch"], results["onnx"])


def test_manifest_names_its_sources_and_other_weights_are_refused(text_only, tmp_path):
    checkpoint, folder = text_only
    manifest = json.loads((folder / "onnx" / "manifest.json").read_text())
    assert manifest["backend"] == "onnx" and manifest["precision"] == "fp32"
    assert manifest["source_sha256"] == source_sha256(checkpoint.path)
    assert set(manifest["versions"]) == {"torch", "onnx", "onnxruntime"} and manifest["opset"] >= 17
    text, fusion = manifest["graphs"]["text"], manifest["graphs"]["fusion"]
    assert text["inputs"]["input_ids"] == {"dtype": "int64", "shape": ["batch", "tokens"]}
    assert text["outputs"]["vector"]["shape"] == ["batch", 384]
    assert fusion["inputs"]["text"] == {"dtype": "float32", "shape": ["batch", "utterances", 384]}
    assert fusion["outputs"]["logits"]["shape"] == ["batch", "utterances", len(EMOTIONS)]
    retrained = load_checkpoint(tiny_checkpoint(tmp_path / "retrained", seed=1))
    options = EngineOptions("onnx", artifacts_dir=str(folder / "onnx"))
    with pytest.raises(CheckpointError, match="other weights") as error:
        load_engines(retrained, options)
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="precision fp32"):
        load_engines(checkpoint, EngineOptions("onnx", "int8", artifacts_dir=str(folder / "onnx")))


def test_first_use_compiles_into_the_cache_once(text_only, tmp_path, monkeypatch, caplog):
    checkpoint, _ = text_only
    monkeypatch.setattr(engines.text_encoder, "CACHE_ROOT", tmp_path)
    with caplog.at_level(logging.INFO, logger="engines.onnx_backend"):
        load_engines(checkpoint, EngineOptions("onnx"))
    assert "compiling" in caplog.text and str(tmp_path) in caplog.text
    # Expected once: said at INFO, never as a warning.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="engines.onnx_backend"):
        load_engines(checkpoint, EngineOptions("onnx"))
    assert "compiling" not in caplog.text
    assert resolve_backend("auto") == "onnx"


def test_int8_quantises_the_linear_layers_and_still_predicts(text_only, tmp_path):
    checkpoint, folder = text_only
    manifest = compile_checkpoint(checkpoint, tmp_path / "int8", "int8")
    assert manifest["graphs"]["text"]["precision"].startswith("int8")
    assert (tmp_path / "int8" / "text.onnx").stat().st_size < (folder / "onnx" / "text.onnx").stat().st_size
    engines_int8 = load_engines(
        checkpoint, EngineOptions("onnx", "int8", artifacts_dir=str(tmp_path / "int8"))
    )
    dialogues = load_dialogues(conversation(tmp_path / "dev.jsonl"))
    for prediction in predict_dialogues(engines_int8, checkpoint, dialogues):
        assert np.allclose(prediction.probabilities.sum(-1), 1, atol=1e-5)
    with pytest.raises(CheckpointError, match="only the onnx backend"):
        load_engines(checkpoint, EngineOptions("torch", "int8"))


def test_media_sessions_agree_across_backends(tmp_path, cache, espeak_wav):
    from media_fixtures import face_frame

    path = tiny_checkpoint(tmp_path / "ckpt", ("text", "audio", "visual"))
    frames = [face_frame(mouth_open=m) for m in (0.0, 0.5, 1.0)]
    inputs = [
        UtteranceInput(LINES[0][1], "A", espeak_wav.samples[:32_000], frames),
        UtteranceInput(LINES[1][1], "B", None, frames[:1]),
        UtteranceInput(LINES[2][1], "A", espeak_wav.samples[16_000:40_000], None),
        UtteranceInput(LINES[3][1], "B", None, [np.zeros((120, 160, 3), np.uint8)]),
    ]
    results = {}
    for backend in ("torch", "onnx"):
        session = load_recognizer(path, backend).new_session(max_context_utterances=3)
        predictions = [session.add(utterance) for utterance in inputs]
        results[backend] = np.array([[p.scores[label] for label in EMOTIONS] for p in predictions])
        assert [p.modalities["audio"] for p in predictions] == [True, False, True, False]
        assert [p.modalities["visual"] for p in predictions] == [True, True, False, True]
    assert_same_predictions(results["torch"], results["onnx"])


def test_media_extractors_match_torch(tmp_path, cache, espeak_wav):
    checkpoint = load_checkpoint(tiny_checkpoint(tmp_path / "ckpt", ("text", "audio", "visual")))
    compile_checkpoint(checkpoint, tmp_path / "onnx")
    eager = load_engines(checkpoint, EngineOptions("torch"))
    compiled = load_engines(checkpoint, EngineOptions("onnx", artifacts_dir=str(tmp_path / "onnx")))
    for seconds in (0.05, 1.0, 3.0):
        speech = espeak_wav.samples[: int(seconds * 16_000)]
        reference = embed_audio(eager.audio.model, speech)
        assert np.abs(audio_vector(eager.audio, speech) - reference).max() < 1e-4
        assert np.abs(audio_vector(compiled.audio, speech) - reference).max() < 1e-3 * np.abs(reference).max()
    rng = np.random.default_rng(0)
    c = eager.visual.config
    for frames, slots in ((1, 1), (5, 3)):
        scenes = rng.normal(size=(2, frames, 3, c.scene_px, c.scene_px)).astype(np.float32)
        faces = rng.normal(size=(2, frames, slots, 3, c.face_px, c.face_px)).astype(np.float32)
        weights = rng.uniform(size=(2, frames, slots)).astype(np.float32) * (
            rng.uniform(size=(2, frames, slots)) > 0.4
        )
        geometry = rng.normal(size=(2, frames, slots, _geometry_size())).astype(np.float32)
        mask = np.ones((2, frames), bool)
        mask[1, frames // 2 + 1 :] = False
        arrays = (scenes, mask, faces, weights, geometry)
        assert np.abs(eager.visual.embed(*arrays) - compiled.visual.embed(*arrays)).max() < 1e-4
    features = {
        m: rng.normal(size=(2, 5, checkpoint.model_config.input_dim(m))).astype(np.float32)
        for m in ("text", "audio", "visual")
    }
    present = {m: rng.uniform(size=(2, 5)) > 0.3 for m in ("audio", "visual")}
    valid = np.ones((2, 5), bool)
    valid[1, 3:] = False
    reference = softmax(eager.fusion.logits(features, present, valid))
    assert_same_predictions(reference, softmax(compiled.fusion.logits(features, present, valid)))


def _geometry_size() -> int:
    from engines.faces import GEOMETRY_NAMES

    return len(GEOMETRY_NAMES)


def test_evaluate_cli_reports_the_same_score_on_both_backends(text_only, capsys):
    from training.__main__ import main

    checkpoint, folder = text_only
    data = conversation(folder / "eval.jsonl")
    scores = {}
    for backend in ("torch", "onnx"):
        assert (
            main(
                ["evaluate", "--checkpoint", str(checkpoint.path), "--data", str(data), "--backend", backend]
            )
            == 0
        )
        scores[backend] = capsys.readouterr().out.splitlines()[0]
    assert scores["torch"] == scores["onnx"] and scores["torch"].startswith("weighted_f1")


def test_compile_cli_writes_artifacts_and_names_bad_input(text_only, tmp_path, capsys):
    from engines.__main__ import main

    checkpoint, _ = text_only
    assert main(["compile", "--checkpoint", str(checkpoint.path), "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "manifest.json").is_file()
    capsys.readouterr()
    assert main(["compile", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"error: checkpoint {tmp_path / 'missing'}: no such directory"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["compile", "--checkpoint", str(checkpoint.path), "--out", str(tmp_path / "busy")]) == 2
    assert "holds no compiled engines" in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").is_file()


def test_live_config_and_flags_choose_the_backend(tmp_path):
    import run_live
    from realtime.runtime.config import ConfigError, load_live_config

    shipped = load_live_config(Path(__file__).resolve().parents[1] / "configs" / "live.yaml")
    assert shipped.engine == EngineOptions("auto", "fp32")
    (tmp_path / "bad.yaml").write_text("engine:\n  backend: tensorrt\n")
    with pytest.raises(ConfigError, match="engine: backend must be one of torch, onnx, auto"):
        load_live_config(tmp_path / "bad.yaml")
    config = load_live_config(None)
    run_live._apply_flags(config, run_live.parse_args(["--source", "demo", "--backend", "torch"]))
    assert config.engine.backend == "torch"


def test_whisper_follows_the_device():
    import ctranslate2

    from engines.engine import whisper_runtime

    cuda = ctranslate2.get_cuda_device_count() > 0
    assert whisper_runtime() == (("cuda", "float16") if cuda else ("cpu", "int8"))
