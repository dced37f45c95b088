"""Distillation from a full-context teacher: soft labels in the student's label order, and a student
trained on them alone learns the task."""

import json

import pytest
import torch

from tests.test_train import small_config, synthetic
from training.distill import DistillOptions, distillation_loss
from training.train import teacher_probabilities, train_model


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distill")
    train, dev = synthetic(folder / "train.jsonl", 12), synthetic(folder / "dev.jsonl", 4, offset=100)
    train_model(small_config(causal=False), train, dev, folder / "teacher", seed=0)
    return folder


def test_teacher_probabilities_follow_the_student_label_order(teacher):
    labels = ["sadness", "joy", "anger"]
    probs = teacher_probabilities(
        DistillOptions(str(teacher / "teacher"), temperature=1.0), teacher / "train.jsonl", labels
    )
    rows = [json.loads(line) for line in (teacher / "train.jsonl").read_text().splitlines()]
    first = probs[str(rows[0]["dialogue_id"])]
    assert first.shape == (4, 3)
    assert torch.allclose(first.sum(-1), torch.ones(4))
    assert labels[int(first[0].argmax())] == rows[0]["emotion"]


def test_loss_is_zero_when_the_student_matches_the_teacher():
    logits = torch.randn(2, 3, 4)
    target = torch.tensor([[0, 1, -100], [2, 3, 1]])
    same = distillation_loss(logits, torch.softmax(logits / 2, -1), target, 2.0)
    other = distillation_loss(logits, torch.softmax(-logits / 2, -1), target, 2.0)
    assert abs(float(same)) < 1e-5 < float(other)


def test_student_learns_from_soft_labels_alone(teacher):
    config = small_config(causal=True)
    config.distill = DistillOptions(str(teacher / "teacher"), weight=1.0, temperature=2.0)
    best = train_model(config, teacher / "train.jsonl", teacher / "dev.jsonl", teacher / "student", seed=0)
    assert best["weighted_f1"] > 80.0


def test_a_missing_teacher_is_a_config_error_naming_the_field(tmp_path):
    from training.config import load_config
    from training.data import DataError

    path = tmp_path / "student.yaml"
    path.write_text(f"distill:\n  teacher: {tmp_path / 'nowhere'}\n")
    with pytest.raises(DataError, match="distill.teacher .*nowhere"):
        load_config(str(path))
