import pytest
import torch

from fgmd.config import LossConfig
from fgmd.training.objective import FGMDObjective, classification_loss, quantization_loss, triplet_loss

LEVELS = (4, 6, 8, 10, 12)


def test_triplet_loss_hand_cases():
    a = torch.tensor([[1.0, 0.0]])
    # positive equals the anchor, negative orthogonal: 0 - sqrt(2) + 0.25 < 0 -> 0
    assert triplet_loss(a, a, torch.tensor([[0.0, 1.0]]), 0.25).item() == pytest.approx(0.0, abs=1e-6)
    # negative equals the anchor, positive opposite: 2 - 0 + 0.25
    assert triplet_loss(a, -a, a, 0.25).item() == pytest.approx(2.25, abs=1e-5)
    # codes are L2-normalised first: scale does not matter
    assert triplet_loss(3 * a, -a, 0.5 * a, 0.25).item() == pytest.approx(2.25, abs=1e-5)


def test_quantization_and_classification_hand_cases():
    assert quantization_loss(torch.tensor([[1.0, -1.0], [0.0, 0.5]])).item() == pytest.approx((0 + 0 + 1 + 0.25) / 4)
    logits = torch.tensor([[0.0, 0.0]])
    assert classification_loss(logits, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        torch.log(torch.tensor(2.0)).item()
    )
    # multi-hot spreads the target evenly; same result here because logits are uniform
    assert classification_loss(logits, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(
        torch.log(torch.tensor(2.0)).item()
    )


def batch(b=4, bits=16, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    codes = {m: torch.tanh(torch.randn(3 * b, bits, generator=g)).requires_grad_() for m in ("ms", "pan")}
    labels = {
        m: torch.nn.functional.one_hot(torch.randint(0, classes, (3 * b,), generator=g), classes).float() for m in codes
    }
    sizes = (8, 4, 4, 2, 1)
    feats = {
        m: tuple(torch.randn(b, c, s, s, generator=g, requires_grad=True) for c, s in zip(LEVELS, sizes)) for m in codes
    }
    return codes, labels, feats


def test_terms_are_logged_unweighted_and_weighted_and_sum_to_total():
    config = LossConfig(damd_weight=0.1, triplet_weight=2.0)
    objective = FGMDObjective(config, bits=16, num_classes=3, level_channels=LEVELS)
    codes, labels, feats = batch()
    total, tensors = objective(codes, labels, feats)
    assert all(t.dim() == 0 and not t.requires_grad for t in tensors.values())  # detached, read once per epoch
    terms = {name: float(t) for name, t in tensors.items()}
    for name in ("classification", "quantization", "triplet", "damd"):
        assert name in terms and f"{name}_weighted" in terms
    assert terms["triplet_weighted"] == pytest.approx(2.0 * terms["triplet"])
    assert terms["damd_weighted"] == pytest.approx(0.1 * terms["damd"])
    assert terms["damd"] == pytest.approx(terms["damd_semantic"] + terms["damd_spatial"], rel=1e-5)
    weighted = sum(terms[f"{n}_weighted"] for n in ("classification", "quantization", "triplet", "damd"))
    assert total.item() == pytest.approx(weighted, rel=1e-5)
    total.backward()
    assert objective.projection.weight.grad is not None


def test_projection_is_orthogonal_and_bias_free():
    objective = FGMDObjective(LossConfig(), bits=32, num_classes=6, level_channels=LEVELS)
    w = objective.projection.weight
    assert objective.projection.bias is None
    assert torch.allclose(w @ w.T, torch.eye(6), atol=1e-5)


def test_damd_switch_removes_the_term_and_its_modules():
    objective = FGMDObjective(LossConfig(damd=False), bits=16, num_classes=3, level_channels=LEVELS)
    codes, labels, _ = batch()
    _, terms = objective(codes, labels, None)
    assert "damd" not in terms and objective.damd is None
    assert sum(p.numel() for p in objective.parameters()) == 16 * 3
