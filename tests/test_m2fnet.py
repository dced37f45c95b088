"""M2FNet network: shapes, masking of absent modalities and padding, causal context."""

import pytest
import torch

from engines.m2fnet import M2FNet, M2FNetConfig


def inputs(batch=2, k=6, modalities=("text", "audio", "visual"), seed=0):
    generator = torch.Generator().manual_seed(seed)
    dims = {"text": 384, "audio": 300, "visual": 600}
    features = {m: torch.randn(batch, k, dims[m], generator=generator) for m in modalities}
    present = {m: torch.ones(batch, k, dtype=torch.bool) for m in modalities}
    valid = torch.ones(batch, k, dtype=torch.bool)
    return features, present, valid


def model(**overrides):
    torch.manual_seed(0)
    return M2FNet(M2FNetConfig(modalities=("text", "audio", "visual"), **overrides)).eval()


def test_output_shape_and_no_nan_with_padding_and_missing_modalities():
    net = model()
    features, present, valid = inputs()
    valid[1, 4:] = False
    present["visual"][:] = False
    present["audio"][0, :3] = False
    logits = net(features, present, valid)
    assert logits.shape == (2, 6, 7)
    assert torch.isfinite(logits).all()


def test_text_only_model_has_no_audio_or_visual_parameters():
    net = M2FNet(M2FNetConfig())
    names = [n for n, _ in net.named_parameters()]
    assert not any("audio" in n or "visual" in n for n in names)
    features, present, valid = inputs(modalities=("text",))
    assert net(features, present, valid).shape == (2, 6, 7)


def test_masked_modality_values_do_not_change_the_output():
    net = model()
    features, present, valid = inputs()
    present["audio"][:, 2] = False
    before = net(features, present, valid)
    features["audio"][:, 2] += 100.0
    after = net(features, present, valid)
    assert torch.allclose(before, after, atol=1e-5)


def test_padding_does_not_change_real_utterances():
    net = model()
    features, present, valid = inputs(batch=1, k=4)
    short = net(features, present, valid)
    padded_features = {m: torch.cat([x, torch.randn(1, 3, x.shape[-1])], dim=1) for m, x in features.items()}
    padded_present = {
        m: torch.cat([p, torch.ones(1, 3, dtype=torch.bool)], dim=1) for m, p in present.items()
    }
    padded_valid = torch.cat([valid, torch.zeros(1, 3, dtype=torch.bool)], dim=1)
    long = net(padded_features, padded_present, padded_valid)
    assert torch.allclose(short, long[:, :4], atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_causal_mode_ignores_future_utterances(causal):
    net = model(causal=causal)
    features, present, valid = inputs(batch=1, k=6)
    before = net(features, present, valid)
    changed = {m: x.clone() for m, x in features.items()}
    for x in changed.values():
        x[:, 4:] = torch.randn_like(x[:, 4:]) * 3
    after = net(changed, present, valid)
    past_same = torch.allclose(before[:, :4], after[:, :4], atol=1e-5)
    assert past_same is causal


def test_audio_carries_information_when_present():
    net = model()
    features, present, valid = inputs(batch=1, k=3)
    before = net(features, present, valid)
    features["audio"][:, 2] += 5.0
    assert not torch.allclose(before[:, 2], net(features, present, valid)[:, 2])
