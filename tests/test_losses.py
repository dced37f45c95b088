"""The extractor losses against values worked out by hand (the arithmetic is in the comments)."""

import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import (
    TripletLossOptions,
    adaptive_margin,
    adaptive_margin_triplet_loss,
    extractor_loss,
    mine_triplets,
    vicreg_covariance,
    vicreg_variance,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


# a = (0, 0), p = (0.3, 0.4), n = (0, 0.5): D(a,p) = 0.5, D(a,n) = 0.5, D(p,n) = sqrt(0.1) = 0.316228
A, P, N = t([0.0, 0.0]), t([0.3, 0.4]), t([0.0, 0.5])
M_SIM = 1 + 2 / math.e**2  # 1 + 2 / exp(4 * 0.5) = 1.270671


def test_printed_margin_by_hand():
    # m_dissim = 1 + 2 / exp(-4 * 0.5 + 4) = 1 + 2 / e^2 = 1.270671
    margin = adaptive_margin(torch.tensor(0.5), torch.tensor(0.5), "printed")
    assert float(margin) == pytest.approx(2 * M_SIM, abs=1e-6)
    assert float(margin) == pytest.approx(2.541341, abs=1e-6)


def test_flipped_margin_by_hand():
    # m_dissim = 1 + 2 / exp(4 * 0.5 - 4) = 1 + 2 e^2 = 15.778112
    margin = adaptive_margin(torch.tensor(0.5), torch.tensor(0.5), "flipped")
    assert float(margin) == pytest.approx(M_SIM + 1 + 2 * math.e**2, abs=1e-6)
    assert float(margin) == pytest.approx(17.048783, abs=1e-6)


def test_printed_triplet_loss_by_hand():
    # 0.5 - (0.5 + 0.316228) / 2 + 2.541341 = 2.633227
    loss = adaptive_margin_triplet_loss(A, P, N, hinge=False, margin="printed")
    assert float(loss) == pytest.approx(2.633227, abs=1e-5)


def test_flipped_triplet_loss_by_hand():
    # 0.5 - 0.408114 + 17.048783 = 17.140669
    loss = adaptive_margin_triplet_loss(A, P, N, hinge=False, margin="flipped")
    assert float(loss) == pytest.approx(17.140669, abs=1e-5)


def test_both_margins_agree_at_unit_negative_distance():
    # At D(a,n) = 1 both dissimilar terms are 1 + 2 / e^0 = 3.
    d = torch.tensor(1.0)
    assert float(adaptive_margin(d / 2, d, "printed")) == pytest.approx(
        float(adaptive_margin(d / 2, d, "flipped"))
    )


def test_hinge_clips_a_negative_loss():
    # a = (0, 0), p = (0, 0.1), n = (10, 0): D = 0.1, 10, sqrt(100.01) = 10.0005.
    # m = 1 + 2 e^-0.4 + 1 + 2 e^-36 = 3.340640; L = 0.1 - (10 + 10.0005) / 2 + 3.340640 = -6.559610
    a, p, n = t([0.0, 0.0]), t([0.0, 0.1]), t([10.0, 0.0])
    assert float(adaptive_margin_triplet_loss(a, p, n, hinge=False)) == pytest.approx(-6.559610, abs=1e-5)
    assert float(adaptive_margin_triplet_loss(a, p, n, hinge=True)) == 0.0


@pytest.mark.parametrize("margin", ["printed", "flipped"])
def test_hinge_is_a_no_op_on_normalised_embeddings(margin):
    # m_AM >= 2 and (D(a,n) + D(p,n)) / 2 <= 2 on the unit sphere, so L_AMT never reaches 0 there.
    g = torch.Generator().manual_seed(0)
    a, p, n = (F.normalize(torch.randn(256, 8, generator=g), dim=1) for _ in range(3))
    with_hinge = adaptive_margin_triplet_loss(a, p, n, hinge=True, margin=margin)
    without = adaptive_margin_triplet_loss(a, p, n, hinge=False, margin=margin)
    assert float(with_hinge) == pytest.approx(float(without))


def test_printed_margin_stays_finite_for_far_negatives():
    loss = adaptive_margin_triplet_loss(t([0.0]), t([0.0]), t([100.0]), hinge=False, margin="printed")
    assert torch.isfinite(loss)


def test_vicreg_variance_by_hand():
    # dim 0: values 0, 2 -> unbiased var 2 -> std 1.414 -> relu(1 - 1.414) = 0
    # dim 1: values 0, 0 -> var 0 -> std sqrt(1e-4) = 0.01 -> 0.99; mean over dims = 0.495
    z = t([0.0, 0.0], [2.0, 0.0])
    assert float(vicreg_variance(z, eps=1e-4)) == pytest.approx(0.495, abs=1e-9)


def test_vicreg_covariance_by_hand():
    # rows (1, 2), (-1, -2), (0, 0): mean 0, cov = [[2, 4], [4, 8]] / 2 = [[1, 2], [2, 4]]
    # off-diagonal squares 2^2 + 2^2 = 8, divided by d = 2 -> 4
    z = t([1.0, 2.0], [-1.0, -2.0], [0.0, 0.0])
    assert float(vicreg_covariance(z)) == pytest.approx(4.0)


def test_total_is_20_5_1_over_anchor_positive_negative():
    g = torch.Generator().manual_seed(1)
    a, p, n = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3))
    options = TripletLossOptions(normalize=False)
    parts = extractor_loss(a, p, n, options)
    cov = vicreg_covariance(a) + vicreg_covariance(p) + vicreg_covariance(n)
    var = vicreg_variance(a) + vicreg_variance(p) + vicreg_variance(n)
    amt = adaptive_margin_triplet_loss(a, p, n)
    assert float(parts.total) == pytest.approx(float(20 * amt + 5 * cov + var))
    assert float(parts.cov) == pytest.approx(float(cov))


def test_normalize_applies_to_triplet_distances_only():
    g = torch.Generator().manual_seed(2)
    a, p, n = (5 * torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3))
    parts = extractor_loss(a, p, n, TripletLossOptions(normalize=True))
    expected = adaptive_margin_triplet_loss(
        F.normalize(a, dim=1), F.normalize(p, dim=1), F.normalize(n, dim=1)
    )
    assert float(parts.amt) == pytest.approx(float(expected))
    assert float(parts.var) == pytest.approx(
        float(vicreg_variance(a) + vicreg_variance(p) + vicreg_variance(n))
    )


def test_random_mining_respects_labels():
    labels = torch.tensor([0, 0, 1, 1, 2])
    a, p, n = mine_triplets(labels, generator=torch.Generator().manual_seed(0))
    # Sample 4 (label 2) has no positive, so it is never an anchor; each other sample's only positive is its pair.
    assert a.tolist() == [0, 1, 2, 3]
    assert p.tolist() == [1, 0, 3, 2]
    assert all(labels[i] != labels[j] for i, j in zip(a.tolist(), n.tolist()))


def test_semihard_mining_by_hand():
    # 1-D positions: label 0 at 0 and 1, label 1 at 1.5 and 5.
    labels = torch.tensor([0, 0, 1, 1])
    z = torch.tensor([[0.0], [1.0], [1.5], [5.0]])
    anchors, _, n = mine_triplets(labels, z)
    assert anchors.tolist() == [0, 1, 2, 3]
    # anchor 0: D(a,p) = 1, negatives at 1.5 and 5 are both farther -> closest farther one: 2
    # anchor 1: D(a,p) = 1, negative 2 is closer (0.5), 3 farther (4) -> 3
    # anchor 2: D(a,p) = 3.5, both negatives closer (1.5, 0.5) -> the farther of them: 0
    # anchor 3: D(a,p) = 3.5, negatives at 5 and 4 both farther -> 1
    assert n.tolist() == [2, 3, 0, 1]


def test_mining_with_one_label_gives_nothing():
    a, p, n = mine_triplets(torch.tensor([3, 3, 3]))
    assert len(a) == len(p) == len(n) == 0
