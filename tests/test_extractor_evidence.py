"""Issue 5, point 7: evidence on generated media whose label lives in one modality only.

(a) a triplet-trained extractor + linear probe separates the classes on held-out speakers/looks, and a
    control with the cue removed (labels shuffled over the same clips) stays near chance;
(b) M2FNet with that modality beats M2FNet without it (the text is one fixed neutral sentence);
(c) with the modality dropped at inference, the model falls back to its text-only answer.

Everything goes through the public pipeline: pretrain_extractor -> extract_features (cache) ->
load_features -> training.train.train_model. Run with `-s` to see the measured numbers.
"""

import json
import random

import numpy as np
import pytest
import torch
from media_fixtures import have_espeak, make_audio_cue_set, make_visual_cue_set

from engines import prosody
from engines.audio_extractor import AudioExtractorConfig
from engines.visual_extractor import VisualExtractorConfig
from training.data import load_dialogues
from training.extract import ExtractOptions, extract_features
from training.features_io import load_features
from training.pretrain import PretrainOptions, linear_probe, pretrain_extractor

pytestmark = pytest.mark.skipif(
    not have_espeak(), reason="espeak-ng not installed (apt-get install espeak-ng)"
)

CHANCE = 1 / 3  # three balanced classes in every generated set
# Small networks and lr 1e-3 so each extractor trains in seconds on one CPU thread; the CLI defaults
# (paper lr 1e-4, width 32) are for real data.
OPTIONS = {
    "audio": PretrainOptions(
        epochs=12, lr=1e-3, batch_size=24, progress=False, audio=AudioExtractorConfig(width=8)
    ),
    "visual": PretrainOptions(
        epochs=20,
        lr=1e-3,
        batch_size=12,
        progress=False,
        visual=VisualExtractorConfig(width=8, scene_px=48, face_px=48, use_geometry=False),
    ),
}


def shuffled_copy(path, seed=0):
    """Same clips, labels permuted: the media no longer says anything about the label."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    labels = [r["emotion"] for r in rows]
    random.Random(seed).shuffle(labels)
    out = path.with_name(path.stem + "-control.jsonl")
    out.write_text("".join(json.dumps({**r, "emotion": label}) + "\n" for r, label in zip(rows, labels)))
    return out


def labelled(features, path):
    pairs = [(features.vectors[u.key], u.emotion) for d in load_dialogues(path) for u in d.utterances]
    return np.stack([v for v, _ in pairs]), np.array([e for _, e in pairs])


def run_pipeline(modality, train, test, work):
    torch.manual_seed(0)
    pretrain_extractor(modality, train, work / "extractor", OPTIONS[modality])
    for path in (train, test):
        extract_features(
            path, modality, work / "features", work / "extractor", ExtractOptions(progress=False)
        )
    train_features = load_features(work / "features", train)
    test_features = load_features(work / "features", test)
    accuracy = linear_probe(*labelled(train_features, train), *labelled(test_features, test))
    return accuracy, train_features, test_features


@pytest.fixture(scope="module", params=["audio", "visual"])
def evidence(request, tmp_path_factory):
    modality = request.param
    root = tmp_path_factory.mktemp(f"{modality}-cue")
    if modality == "audio":
        train, test = make_audio_cue_set(root, repeats=4, strength=0.5)
    else:
        train, test = make_visual_cue_set(root, repeats=3, frames=6)
    cue = run_pipeline(modality, train, test, root / "cue")
    control = run_pipeline(modality, shuffled_copy(train), shuffled_copy(test), root / "control")
    print(
        f"\n[evidence {modality}] linear probe on held-out speakers: cue {cue[0]:.3f}, control {control[0]:.3f}"
    )
    return modality, train, test, cue, control


def test_a_extractor_separates_classes_only_when_the_cue_is_there(evidence):
    modality, _, _, (cue_accuracy, train_features, _), (control_accuracy, _, _) = evidence
    assert train_features.dim == (300 + prosody.DIM if modality == "audio" else 600)
    assert cue_accuracy >= 0.75, f"{modality} probe {cue_accuracy:.3f} with the cue"
    assert control_accuracy <= CHANCE + 0.25, f"{modality} probe {control_accuracy:.3f} without the cue"


def small_m2fnet_config():
    from engines.m2fnet import M2FNetConfig
    from engines.text_encoder import TextEncoderConfig
    from training.config import OptimConfig, TrainConfig

    return TrainConfig(
        text=TextEncoderConfig(finetune_top_layers=0, past_utterances=0, future_utterances=0),
        model=M2FNetConfig(
            hidden_dim=64, feedforward_dim=128, dialogue_heads=4, fusion_heads=4, fusion_layers=2
        ),
        optim=OptimConfig(epochs=12, dialogues_per_batch=8, head_lr=1e-3),
    )


@pytest.fixture(scope="module")
def fusion(evidence, tmp_path_factory):
    from training.train import train_model

    modality, train, test, (_, train_features, test_features), _ = evidence
    out = tmp_path_factory.mktemp(f"{modality}-m2fnet")
    with_modality = train_model(
        small_m2fnet_config(),
        train,
        test,
        out / "with",
        seed=0,
        train_features={modality: train_features},
        dev_features={modality: test_features},
    )
    text_only = train_model(small_m2fnet_config(), train, test, out / "text", seed=0)
    print(
        f"\n[evidence {modality}] M2FNet dev weighted F1: text+{modality} {with_modality['weighted_f1']:.1f}, "
        f"text only {text_only['weighted_f1']:.1f}"
    )
    return modality, test, out, with_modality, text_only, train_features.dim


def test_b_m2fnet_with_the_modality_beats_text_only(fusion):
    modality, _, _, with_modality, text_only, _ = fusion
    assert with_modality["weighted_f1"] >= text_only["weighted_f1"] + 25, (modality, with_modality, text_only)


def test_c_dropped_modality_falls_back_to_the_text_answer(fusion):
    from engines.checkpoint import load_checkpoint
    from training.train import encode_for_checkpoint, predict_probabilities

    modality, test, out, _, _, dim = fusion
    dialogues = load_dialogues(test)
    truth = [u.emotion for d in dialogues for u in d.utterances]

    def predict(folder, vectors):
        checkpoint = load_checkpoint(folder)
        probs = torch.cat(
            predict_probabilities(
                checkpoint.encoder, checkpoint.network, encode_for_checkpoint(checkpoint, dialogues, vectors)
            )
        )
        return probs, [checkpoint.labels[i] for i in probs.argmax(-1).tolist()]

    # An empty vector table masks the modality for every utterance, as when the live loop has no face/audio.
    dropped, dropped_labels = predict(out / "with", {modality: (dim, {})})
    _, text_labels = predict(out / "text", None)
    assert torch.isfinite(dropped).all() and torch.allclose(dropped.sum(-1), torch.ones(len(dropped)))
    # The text is one sentence (with the speaker's name in front): utterances that share speaker and text
    # must get the same answer once the other modality is gone.
    utterances = [u for d in dialogues for u in d.utterances]
    for speaker in {u.speaker for u in utterances}:
        rows = dropped[[i for i, u in enumerate(utterances) if u.speaker == speaker]]
        assert (rows - rows[0]).abs().max() < 1e-5, speaker
    accuracy = np.mean([p == t for p, t in zip(dropped_labels, truth)])
    text_accuracy = np.mean([p == t for p, t in zip(text_labels, truth)])
    print(
        f"\n[evidence {modality}] {modality} dropped at inference: accuracy {accuracy:.3f} (text-only model {text_accuracy:.3f})"
    )
    assert accuracy == pytest.approx(text_accuracy, abs=0.1)
