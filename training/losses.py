"""Extractor losses (M2FNet section 3.3): adaptive-margin triplet loss + VICReg variance and covariance.

L = 20 * L_AMT + 5 * L_cov + 1 * L_var, with L_cov and L_var summed over the anchor, positive and
negative embeddings. Formulas are written out in ../shared/M2FNET.md and followed literally, except that the
default margin flips the sign of one exponent (`TripletLossOptions.margin` says why; "printed" is the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_MAX_EXPONENT = 80.0
"""exp() argument cap: the printed margin grows like exp(4 * D(a,n)) and overflows float32 past D ~ 23
(unnormalised embeddings); exp(80) is finite, and within the normal range of D nothing changes."""


@dataclass
class TripletLossOptions:
    margin: str = "flipped"
    """"printed": m_AM exactly as the paper prints it. "flipped": the dissimilar term's exponent has the
    opposite sign, 2 / exp(4 D(a,n) - 4), so the margin grows as the negative comes closer. As printed, the
    margin grows like exp(4 D(a,n)) and its gradient pulls negatives to D(a,n) ~ 0.31, and a triplet-trained
    face extractor stayed near chance on generated data where "flipped" reached 100% (see the report in
    tests/test_extractor_evidence.py)."""
    hinge: bool = True
    """max(0, L_AMT) per triplet. The paper prints no hinge. With either margin, m_AM >= 2 keeps L_AMT above
    zero whenever D <= 2 (normalised embeddings), so the hinge changes nothing there; it matters only
    with `normalize=False`."""
    normalize: bool = True
    """L2-normalise embeddings before the triplet distances (FaceNet does), so D stays in [0, 2] where the
    exponential margin is meaningful. VICReg terms always see the raw embeddings: they keep the features
    that M2FNet consumes spread out and decorrelated."""
    amt_weight: float = 20.0
    cov_weight: float = 5.0
    var_weight: float = 1.0
    var_eps: float = 1e-4
    """Inside the square root of VICReg's variance term (VICReg's value)."""


@dataclass
class LossParts:
    total: torch.Tensor
    amt: torch.Tensor
    cov: torch.Tensor
    var: torch.Tensor


def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise Euclidean distance; the 1e-12 keeps the gradient finite when two embeddings coincide."""
    return torch.sqrt(((x - y) ** 2).sum(dim=-1) + 1e-12)


def adaptive_margin(d_ap: torch.Tensor, d_an: torch.Tensor, margin: str = "flipped") -> torch.Tensor:
    """printed: m_AM = 1 + 2 / exp(4 D(a,p)) + 1 + 2 / exp(-4 D(a,n) + 4);
    flipped: m_AM = 1 + 2 / exp(4 D(a,p)) + 1 + 2 / exp(4 D(a,n) - 4)."""
    m_sim = 1 + 2 / torch.exp(4 * d_ap)
    if margin == "printed":
        m_dissim = 1 + 2 / torch.exp(torch.clamp(-4 * d_an + 4, min=-_MAX_EXPONENT))
    elif margin == "flipped":
        m_dissim = 1 + 2 / torch.exp(4 * d_an - 4)
    else:
        raise ValueError(f"unknown margin {margin!r} (expected 'printed' or 'flipped')")
    return m_sim + m_dissim


def adaptive_margin_triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    hinge: bool = True,
    margin: str = "flipped",
) -> torch.Tensor:
    """Mean over triplets of D(a,p) - (D(a,n) + D(p,n)) / 2 + m_AM (hinged at 0 when `hinge`)."""
    d_ap, d_an, d_pn = distance(anchor, positive), distance(anchor, negative), distance(positive, negative)
    loss = d_ap - (d_an + d_pn) / 2 + adaptive_margin(d_ap, d_an, margin)
    return (torch.relu(loss) if hinge else loss).mean()


def vicreg_variance(z: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """mean over dimensions of relu(1 - sqrt(var + eps)), variance over the batch (unbiased, as VICReg)."""
    return torch.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances divided by the dimension (VICReg)."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    off_diagonal = cov - torch.diag(torch.diag(cov))
    return (off_diagonal**2).sum() / d


def extractor_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    options: TripletLossOptions | None = None,
) -> LossParts:
    o = options or TripletLossOptions()
    triplet = (
        [F.normalize(x, dim=-1) for x in (anchor, positive, negative)]
        if o.normalize
        else [anchor, positive, negative]
    )
    amt = adaptive_margin_triplet_loss(*triplet, hinge=o.hinge, margin=o.margin)
    cov = sum(vicreg_covariance(x) for x in (anchor, positive, negative))
    var = sum(vicreg_variance(x, o.var_eps) for x in (anchor, positive, negative))
    total = o.amt_weight * amt + o.cov_weight * cov + o.var_weight * var
    return LossParts(total, amt, cov, var)


def mine_triplets(
    labels: torch.Tensor, embeddings: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index triplets (anchor, positive, negative) inside a batch, FaceNet-style: the positive shares the
    anchor's label, the negative does not. Every sample with a same-label partner and some other label
    is an anchor once, with a random positive. With `embeddings`, the negative is semi-hard (the closest
    one farther than the positive, else the farthest of the closer ones: FaceNet's fallback avoids
    collapsing on the hardest); without, it is random."""
    labels = labels.view(-1)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    anchors = torch.nonzero(pos_mask.any(dim=1) & neg_mask.any(dim=1)).view(-1)
    if len(anchors) == 0:
        empty = labels.new_zeros(0)
        return empty, empty, empty
    noise = torch.rand(len(anchors), len(labels), generator=generator, device=labels.device)
    positives = torch.where(pos_mask[anchors], noise, -1.0).argmax(dim=1)
    if embeddings is None:
        noise = torch.rand(len(anchors), len(labels), generator=generator, device=labels.device)
        negatives = torch.where(neg_mask[anchors], noise, -1.0).argmax(dim=1)
        return anchors, positives, negatives
    with torch.no_grad():
        dist = torch.cdist(embeddings, embeddings)[anchors]
        d_ap = dist.gather(1, positives.unsqueeze(1))
        inf = torch.full_like(dist, float("inf"))
        farther = neg_mask[anchors] & (dist > d_ap)
        semi_hard = torch.where(farther, dist, inf).argmin(dim=1)
        closer = torch.where(neg_mask[anchors] & ~farther, dist, -inf).argmax(dim=1)
        negatives = torch.where(farther.any(dim=1), semi_hard, closer)
    return anchors, positives, negatives
