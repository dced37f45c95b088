"""Training on a small synthetic conversation set; the causal checkpoint end to end."""

import json
from dataclasses import replace

import pytest
import torch

from engines.checkpoint import load_checkpoint
from engines.m2fnet import M2FNetConfig
from engines.stream import UtteranceInput, load_recognizer
from engines.text_encoder import TextEncoderConfig
from training.config import OptimConfig, TrainConfig
from training.data import Dialogue, load_dialogues
from training.train import encode_for_checkpoint, predict_probabilities, train_model

CUES = {
    "joy": "this is wonderful, I love it",
    "anger": "I hate this, it makes me furious",
    "sadness": "I miss her so much, I am crying",
}


def synthetic(path, dialogues, offset=0):
    rows = []
    labels = list(CUES)
    for d in range(dialogues):
        for turn in range(4):
            label = labels[(d + turn * 2) % 3]
            rows.append(
                {
                    "dialogue_id": d + offset,
                    "utterance_id": turn,
                    "speaker": "AB"[turn % 2],
                    "text": CUES[label],
                    "emotion": label,
                }
            )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def small_config(causal: bool) -> TrainConfig:
    return TrainConfig(
        text=TextEncoderConfig(
            finetune_top_layers=1, past_utterances=2, future_utterances=0 if causal else 1
        ),
        model=M2FNetConfig(
            hidden_dim=64,
            feedforward_dim=128,
            dialogue_heads=4,
            fusion_heads=4,
            fusion_layers=2,
            causal=causal,
        ),
        optim=OptimConfig(epochs=5, dialogues_per_batch=2, head_lr=1e-3, encoder_lr=1e-4),
    )


@pytest.fixture(scope="module")
def causal_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    train, dev = synthetic(folder / "train.jsonl", 12), synthetic(folder / "dev.jsonl", 4, offset=100)
    best = train_model(small_config(causal=True), train, dev, folder / "ckpt", seed=0)
    return folder, best


def test_loss_falls_and_dev_beats_chance(causal_checkpoint):
    folder, best = causal_checkpoint
    history = json.loads((folder / "ckpt" / "checkpoint.json").read_text())["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] * 0.7
    assert best["weighted_f1"] > 80.0


def test_causal_predictions_ignore_later_utterances(causal_checkpoint):
    folder, _ = causal_checkpoint
    checkpoint = load_checkpoint(folder / "ckpt")
    dialogue = load_dialogues(folder / "dev.jsonl")[0]
    changed = Dialogue(
        dialogue.dialogue_id,
        [*dialogue.utterances[:2]]
        + [replace(u, text="Completely different words about the weather.") for u in dialogue.utterances[2:]],
    )
    probs = [
        predict_probabilities(checkpoint.encoder, checkpoint.network, encode_for_checkpoint(checkpoint, [d]))[
            0
        ]
        for d in (dialogue, changed)
    ]
    assert torch.allclose(probs[0][:2], probs[1][:2], atol=1e-5)
    assert not torch.allclose(probs[0][2:], probs[1][2:], atol=1e-3)


def test_streaming_session_matches_offline_and_carries_context(causal_checkpoint):
    folder, _ = causal_checkpoint
    recognizer = load_recognizer(folder / "ckpt")
    dialogue = load_dialogues(folder / "dev.jsonl")[0]
    checkpoint = recognizer.checkpoint
    offline = predict_probabilities(
        checkpoint.encoder, checkpoint.network, encode_for_checkpoint(checkpoint, [dialogue])
    )[0]
    session = recognizer.new_session(max_context_utterances=16)
    for row, utterance in enumerate(dialogue.utterances):
        prediction = session.add(UtteranceInput(text=utterance.text, speaker=utterance.speaker))
        live = torch.tensor([prediction.scores[label] for label in recognizer.labels])
        assert torch.allclose(live, offline[row], atol=1e-4)
        assert prediction.modalities == {"text": True, "audio": False, "visual": False}
    fresh = recognizer.new_session(max_context_utterances=16).add(
        UtteranceInput(text=dialogue.utterances[-1].text, speaker="B")
    )
    assert fresh.scores != prediction.scores


def test_offline_checkpoint_is_refused_for_live_use(tmp_path):
    train, dev = synthetic(tmp_path / "t.jsonl", 4), synthetic(tmp_path / "d.jsonl", 2, offset=50)
    config = small_config(causal=False)
    config.optim.epochs = 1
    train_model(config, train, dev, tmp_path / "offline")
    from engines.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not causal"):
        load_recognizer(tmp_path / "offline")


def test_fine_tuning_changes_only_the_top_text_layers(causal_checkpoint):
    from engines.text_encoder import load_tokenizer_and_model

    folder, _ = causal_checkpoint
    trained = load_checkpoint(folder / "ckpt").encoder
    _, pristine = load_tokenizer_and_model("minilm")
    layers = pristine.encoder.layer
    split = trained.split_at
    assert split == len(layers) - 1
    for i in range(split):
        assert torch.equal(trained.frozen.encoder.layer[i].output.dense.weight, layers[i].output.dense.weight)
    assert not torch.allclose(
        trained.top_layers[0].output.dense.weight, layers[split].output.dense.weight.half().float()
    )


def long_dialogues(path, dialogues, offset=0, turns=40):
    """Long conversations (as in data sets of 50-100 turns) whose labels the tiny model learns slowly."""
    labels = list(CUES)
    rows = [
        {
            "dialogue_id": d + offset,
            "utterance_id": turn,
            "speaker": "ABC"[turn % 3],
            "text": CUES[labels[(d + turn) % 3]],
            "emotion": labels[(d + turn) % 3],
        }
        for d in range(dialogues)
        for turn in range(turns)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_training_goes_on_while_dev_improves_and_stops_after_patience(tmp_path):
    train = long_dialogues(tmp_path / "train.jsonl", 8)
    dev = long_dialogues(tmp_path / "dev.jsonl", 2, offset=100)
    config = small_config(causal=True)
    config.text.speaker_labels = "generic"
    config.optim = OptimConfig(epochs=12, patience=2, dialogues_per_batch=2, head_lr=4e-4, encoder_lr=1e-5)
    best = train_model(config, train, dev, tmp_path / "ckpt", seed=0)
    history = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())["history"]
    scores = [h["dev_weighted_f1"] for h in history]
    assert best["epoch"] > 2, scores  # the fixed 5-epoch recipe would have cut a slower learner short
    assert len(history) == min(12, best["epoch"] + 2), scores
    assert max(scores[best["epoch"] :], default=0) <= best["weighted_f1"]
    # evaluate/predict (the engine path) see the data's speakers as training did: S1..Sk, so the names
    # in the file do not change a prediction
    import numpy as np

    from engines.backends import load_engines
    from engines.engine import EngineOptions
    from training.engine_predict import predict_dialogues

    checkpoint = load_checkpoint(tmp_path / "ckpt")
    engines = load_engines(checkpoint, EngineOptions("torch"))
    dialogue = load_dialogues(dev)[0]
    renamed = Dialogue(
        dialogue.dialogue_id,
        [
            replace(u, speaker={"A": "Ross", "B": "Rachel", "C": "Joey"}[u.speaker])
            for u in dialogue.utterances
        ],
    )
    first, second = (
        predict_dialogues(engines, checkpoint, [d])[0].probabilities for d in (dialogue, renamed)
    )
    assert np.allclose(first, second, atol=1e-6)


def test_averaged_checkpoint_is_the_mean_of_the_last_epochs(tmp_path, monkeypatch):
    """`average_last_epochs` keeps the mean of the weights after the last N epochs, not a dev pick."""
    import training.train as train_module

    snapshots = []
    original_add = train_module.WeightAverage.add

    def recording_add(self, epoch):
        original_add(self, epoch)
        snapshots.append((epoch, {k: v.clone() for k, v in self.modules[1].state_dict().items()}))

    monkeypatch.setattr(train_module.WeightAverage, "add", recording_add)
    train, dev = synthetic(tmp_path / "train.jsonl", 12), synthetic(tmp_path / "dev.jsonl", 4, offset=100)
    config = small_config(causal=True)
    config.optim.epochs, config.optim.average_last_epochs, config.optim.patience = 4, 2, 1
    best = train_model(config, train, dev, tmp_path / "ckpt", seed=0)
    meta = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert best["epochs_averaged"] == [3, 4] and len(meta["history"]) == 4  # patience ignored
    name = "head.weight" if "head.weight" in snapshots[0][1] else next(iter(snapshots[0][1]))
    expected = (snapshots[2][1][name] + snapshots[3][1][name]) / 2
    saved = load_checkpoint(tmp_path / "ckpt").network.state_dict()[name]
    assert not torch.allclose(snapshots[2][1][name], snapshots[3][1][name])
    assert torch.allclose(saved.float(), expected.float(), atol=1e-3)
