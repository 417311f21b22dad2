"""Pretrained trunk weights: local files (torchvision and timm names), stem adaptation, errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torchvision.models import mobilenet_v2

from fgmd.config import ConfigError, ModelConfig, load_config
from fgmd.models import PretrainedWeightsError, build_model
from fgmd.models.backbone import MobileNetV2Trunk
from fgmd.models.pretrained import load_pretrained_trunk

STEM = "features.0.0.weight"
# timm mobilenetv2_100: blocks per stage (ds, then inverted residuals); features[1..17] in order.
TIMM_STAGE_DEPTHS = (1, 2, 3, 4, 3, 3, 1)


def to_timm(state: dict) -> dict:
    """torchvision MobileNetV2 names -> timm ``mobilenetv2_100`` names (written independently of fgmd)."""
    blocks = [(s, j) for s, depth in enumerate(TIMM_STAGE_DEPTHS) for j in range(depth)]
    ds = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
    ir = {
        "conv.0.0": "conv_pw",
        "conv.0.1": "bn1",
        "conv.1.0": "conv_dw",
        "conv.1.1": "bn2",
        "conv.2": "conv_pwl",
        "conv.3": "bn3",
    }
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "classifier":
            out["classifier." + parts[-1]] = value
            continue
        index = int(parts[1])
        if index == 0:
            out[("conv_stem." if parts[2] == "0" else "bn1.") + parts[-1]] = value
        elif index == 18:
            out[("conv_head." if parts[2] == "0" else "bn2.") + parts[-1]] = value
        else:
            stage, j = blocks[index - 1]
            table = ds if index == 1 else ir
            for tv_name, timm_name in table.items():
                prefix = f"features.{index}.{tv_name}."
                if key.startswith(prefix):
                    out[f"blocks.{stage}.{j}.{timm_name}.{key[len(prefix) :]}"] = value
                    break
            else:
                raise AssertionError(key)
    return out


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """A randomly initialised torchvision MobileNetV2 state dict (classifier included) and its file."""
    torch.manual_seed(123)
    model = mobilenet_v2(weights=None)
    for module in model.modules():  # non-trivial BN statistics, so a wrong mapping cannot pass
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    state = model.state_dict()
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2-fake.pth"
    torch.save(state, path)
    return state, path


def trunk_weights(encoder) -> dict:
    return {k: v for k, v in encoder.trunk.state_dict().items()}


def test_torchvision_file_loads_into_both_branches_with_adapted_stems(imagenet_like, tmp_path):
    state, path = imagenet_like
    config = ModelConfig(bits=16, pretrained="imagenet", pretrained_path=str(path))
    model = build_model(config, {"ms": 4, "pan": 1})
    ms, pan = model.encoders["ms"], model.encoders["pan"]
    for key, value in trunk_weights(pan).items():
        if key != STEM:
            assert torch.equal(value, state[key]), key
            assert torch.equal(value, trunk_weights(ms)[key]), key
    rgb = state[STEM]  # [32, 3, 3, 3]
    torch.testing.assert_close(pan.trunk.features[0][0].weight, rgb.sum(1, keepdim=True))
    # 4 bands: RGB filters repeated cyclically (R, G, B, R), each R copy halved.
    expected_ms = torch.stack([rgb[:, 0] / 2, rgb[:, 1], rgb[:, 2], rgb[:, 0] / 2], dim=1)
    torch.testing.assert_close(ms.trunk.features[0][0].weight, expected_ms)
    # Everything that is not the stem (trunk, FDFSP, ADF, head) starts identical in both branches.
    ms_state, pan_state = ms.state_dict(), pan.state_dict()
    for key in ms_state:
        if key != "trunk." + STEM:
            assert torch.equal(ms_state[key], pan_state[key]), key


def test_three_band_stem_is_the_file_stem(imagenet_like):
    state, path = imagenet_like
    model = build_model(ModelConfig(bits=16, pretrained="imagenet", pretrained_path=str(path)), {"rgb": 3, "ir": 1})
    assert torch.equal(model.encoders["rgb"].trunk.features[0][0].weight, state[STEM])


@pytest.mark.parametrize("variant", ["timm", "module_prefix", "wrapped", "timm_model_prefix"])
def test_key_name_variants_load_the_same_weights(imagenet_like, tmp_path, variant):
    state, _ = imagenet_like
    if variant == "timm":
        saved = to_timm(state)
    elif variant == "module_prefix":
        saved = {"module." + k: v for k, v in state.items()}
    elif variant == "wrapped":
        saved = {"state_dict": {"model." + k: v for k, v in state.items()}, "epoch": 90}
    else:
        saved = {"model." + k: v for k, v in to_timm(state).items()}
    path = tmp_path / f"{variant}.pth"
    torch.save(saved, path)
    trunk = MobileNetV2Trunk(1.0)
    load_pretrained_trunk(trunk, "imagenet", str(path))
    for key, value in trunk.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_mismatched_files_are_clear_errors(imagenet_like, tmp_path):
    state, _ = imagenet_like
    broken = dict(state)
    del broken["features.5.conv.1.0.weight"]
    broken["features.5.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(
        PretrainedWeightsError,
        match=r"missing 1: features\.5\.conv\.1\.0\.weight.*unexpected 1: features\.5\.extra\.weight",
    ):
        load_pretrained_trunk(MobileNetV2Trunk(1.0), "imagenet", str(path))
    narrow = tmp_path / "narrow.pth"
    torch.save(mobilenet_v2(weights=None, width_mult=0.5).state_dict(), narrow)
    with pytest.raises(PretrainedWeightsError, match="wrong shape"):
        load_pretrained_trunk(MobileNetV2Trunk(1.0), "imagenet", str(narrow))
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        load_pretrained_trunk(MobileNetV2Trunk(1.0), "imagenet", str(tmp_path / "absent.pth"))
    with pytest.raises(PretrainedWeightsError, match="width_mult=1.0"):
        load_pretrained_trunk(MobileNetV2Trunk(0.5), "imagenet", str(path), width_mult=0.5)


def test_offline_download_error_says_how_to_provide_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty cache

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsError) as info:
        build_model(ModelConfig(bits=16, pretrained="imagenet"), {"ms": 3, "pan": 1})
    message = str(info.value)
    assert "mobilenet_v2-b0353104.pth" in message and "model.pretrained_path" in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in message
    assert "name resolution" in message and "model.pretrained=none" in message


def test_cached_download_is_used_without_network(imagenet_like, tmp_path, monkeypatch):
    state, _ = imagenet_like
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / "mobilenet_v2-7ebf99e0.pth")  # the IMAGENET1K_V2 file name

    def offline(*args, **kwargs):
        raise AssertionError("must not download when the file is cached")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    trunk = MobileNetV2Trunk(1.0)
    load_pretrained_trunk(trunk, "imagenet_v2")
    assert torch.equal(trunk.state_dict()[STEM], state[STEM])


def test_config_keys_and_overrides(imagenet_like):
    _, path = imagenet_like
    config = load_config(None, ["model.pretrained=imagenet", f"model.pretrained_path={path}", "train.track_test=true"])
    assert config.model.pretrained == "imagenet" and config.model.pretrained_path == str(path)
    assert config.train.track_test is True
    defaults = load_config(None)
    assert (
        defaults.model.pretrained == "none" and defaults.model.pretrained_path == "" and not defaults.train.track_test
    )
    with pytest.raises(ConfigError, match="model.pretrained must be one of"):
        load_config(None, ["model.pretrained=imagenet21k"])
    with pytest.raises(ConfigError, match="width_mult=1.0"):
        load_config(None, ["model.pretrained=imagenet", "model.width_mult=0.5"])
    with pytest.raises(ConfigError, match="set model.pretrained=imagenet"):
        load_config(None, [f"model.pretrained_path={path}"])
    with pytest.raises(ConfigError, match="train.track_test"):
        load_config(None, ["train.track_test=maybe"])
