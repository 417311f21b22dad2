"""ADF: identity at init, correct dynamic filtering once trained; GatedPool."""

import pytest
import torch
import torch.nn.functional as F

from fgmd.models import ADF, GatedPool


def randomise(module: ADF, seed: int = 0) -> None:
    """Give the zero-initialised parameters (gamma, gate) random values (in place)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in (module.gamma, module.gate.weight, module.gate.bias):
            param.copy_(0.5 * torch.randn(param.shape, generator=gen))


def reference_filter(module: ADF, x: torch.Tensor) -> torch.Tensor:
    """The dynamic filter written with unfold: V[b,c,p] = Σ_t S[b,t,p] K[b,c,t] U[b,c,p+o_t]."""
    batch, channels, height, width = x.shape
    spatial = torch.softmax(module.spatial_kernel(x), dim=1)  # [B, 9, H, W]
    per_channel = torch.softmax(module.channel_kernel(x.mean((2, 3))).view(batch, channels, 9), dim=2)
    patches = F.unfold(x, kernel_size=3, padding=1).view(batch, channels, 9, height, width)
    return (spatial[:, None] * per_channel[..., None, None] * patches).sum(2)


def test_identity_and_uniform_gate_at_init():
    module = ADF(16)
    x = torch.randn(2, 16, 7, 5)
    features, gate = module(x)
    torch.testing.assert_close(features, x, atol=0, rtol=0)
    assert gate.shape == (2, 1, 7, 5)
    torch.testing.assert_close(gate, torch.full_like(gate, 0.5))


def test_shift_and_add_matches_unfold_reference():
    module = ADF(16)
    randomise(module)
    x = torch.randn(2, 16, 7, 5)
    features, gate = module(x)
    expected = x + module.gamma * reference_filter(module, x)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gate, torch.sigmoid(module.gate(expected)), atol=1e-6, rtol=1e-6)
    assert (features - x).abs().max() > 1e-3
    assert gate.std() > 1e-3


def test_gradients_reach_every_parameter():
    module = ADF(16)
    randomise(module)
    features, gate = module(torch.randn(2, 16, 7, 7))
    (features.square().sum() + gate.sum()).backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_gated_pool():
    pool = GatedPool()
    features = torch.randn(3, 8, 7, 7)
    mean = features.mean(dim=(2, 3))
    torch.testing.assert_close(pool(features), mean)
    torch.testing.assert_close(pool(features, torch.full((3, 1, 7, 7), 0.5)), mean, atol=1e-5, rtol=1e-5)
    gate = torch.zeros(3, 1, 7, 7)
    gate[:, :, 2, 4] = 1.0  # a one-hot gate selects that position
    torch.testing.assert_close(pool(features, gate), features[:, :, 2, 4], atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    module = ADF(16).eval()
    randomise(module)
    x = torch.randn(2, 16, 7, 7)
    path = tmp_path / "adf.onnx"
    torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"])
    features, gate = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})
    expected = module.eval()(x)
    torch.testing.assert_close(torch.from_numpy(features), expected[0].detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.from_numpy(gate), expected[1].detach(), atol=1e-5, rtol=1e-5)


def test_gate_features_variant_scales_by_twice_the_gate():
    torch.manual_seed(1)
    plain, gated = ADF(16), ADF(16, gate_features=True)
    gated.load_state_dict(plain.state_dict())
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(gated(x)[0], x, atol=0, rtol=0)  # 2G = 1 at init: still the identity
    randomise(plain)
    gated.load_state_dict(plain.state_dict())
    features, gate = plain(x)
    gated_features, gated_gate = gated(x)
    torch.testing.assert_close(gated_gate, gate)
    torch.testing.assert_close(gated_features, features * 2 * gate)
    assert (gated_features - features).abs().max() > 1e-2
