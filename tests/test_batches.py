"""Batching for M2FNet: audio/visual presence masks and modality dropout in `collate`."""

import torch

from training.batches import EncodedDialogue, collate


class MeanTop:
    """Stands in for the text encoder's top layers: the mean of the token states."""

    def top(self, hidden: torch.Tensor, attention: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return hidden.mean(dim=1)


def dialogue(k: int, audio_present: list[bool]) -> EncodedDialogue:
    return EncodedDialogue(
        dialogue=None,
        states=[torch.randn(3, 8) for _ in range(k)],
        targets=[(0, 3)] * k,
        labels=torch.zeros(k, dtype=torch.long),
        features={"audio": torch.randn(k, 5)},
        present={"audio": torch.tensor(audio_present)},
    )


def test_presence_is_kept_without_dropout_and_padding_is_absent():
    batch = [dialogue(3, [True, False, True]), dialogue(2, [True, True])]
    features, present, valid, _ = collate(MeanTop(), batch, ("text", "audio"))
    assert present["audio"].tolist() == [[True, False, True], [True, True, False]]
    assert valid.tolist() == [[True, True, True], [True, True, False]]
    assert features["audio"].shape == (2, 3, 5)


def test_modality_dropout_hides_audio_only_and_never_invents_it():
    torch.manual_seed(0)
    batch = [dialogue(50, [i % 4 != 0 for i in range(50)]) for _ in range(8)]
    available = torch.stack([d.present["audio"] for d in batch])
    _, present, valid, _ = collate(MeanTop(), batch, ("text", "audio"), modality_dropout=0.5)
    kept = present["audio"]
    assert not (kept & ~available).any()
    assert 0.4 < kept.sum() / available.sum() < 0.6
    assert present["text"].all() and valid.all()
    _, present, _, _ = collate(MeanTop(), batch, ("text", "audio"), modality_dropout=1.0)
    assert not present["audio"].any()
