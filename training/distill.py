"""Knowledge distillation: a full-context teacher's soft labels for the training dialogues.

The causal (live) model reads only past utterances; a teacher that also reads the next one sees
context the student cannot, and its softened probabilities carry that into training (Hinton et al.
2015). The teacher reads the training text as it was trained on it (gold names, subtitle marks),
not the student's live-style copy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.batches import IGNORE, EncodedDialogue


@dataclass
class DistillOptions:
    teacher: str = ""
    """Checkpoint folder of the teacher (e.g. one trained with configs/default.yaml); empty: no
    distillation."""
    weight: float = 0.5
    """Loss = (1 - weight) * cross-entropy + weight * T^2 * KL(teacher || student) at temperature T."""
    temperature: float = 2.0


def soft_targets(
    batch: list[EncodedDialogue], teacher: dict[str, torch.Tensor], shape: tuple
) -> torch.Tensor:
    """(B, K, C) teacher probabilities for a padded batch; padding rows stay zero."""
    out = torch.zeros(shape)
    for row, encoded in enumerate(batch):
        probs = teacher[encoded.dialogue.dialogue_id]
        out[row, : len(probs)] = probs
    return out


def distillation_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, target: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2 * KL(teacher || student), averaged over labelled utterances."""
    keep = target != IGNORE
    log_student = F.log_softmax(student_logits[keep] / temperature, dim=-1)
    return F.kl_div(log_student, teacher_probs[keep], reduction="batchmean") * temperature**2
