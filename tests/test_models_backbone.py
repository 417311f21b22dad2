"""MobileNetV2 trunk levels, hash head and stem adaptation."""

import pytest
import torch
import torch.nn.functional as F

from fgmd.models import HashHead
from fgmd.models.backbone import MobileNetV2Trunk, adapt_stem, adapt_stem_weight


@pytest.fixture(scope="module")
def stem_weight():
    return torch.randn(32, 3, 3, 3, generator=torch.Generator().manual_seed(0))


def test_one_band_is_the_sum_of_rgb_filters(stem_weight):
    adapted = adapt_stem_weight(stem_weight, 1)
    assert adapted.shape == (32, 1, 3, 3)
    torch.testing.assert_close(adapted, stem_weight.sum(1, keepdim=True))
    gray = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(
        F.conv2d(gray, adapted), F.conv2d(gray.expand(-1, 3, -1, -1), stem_weight), atol=1e-5, rtol=1e-5
    )


def test_three_bands_unchanged(stem_weight):
    torch.testing.assert_close(adapt_stem_weight(stem_weight, 3), stem_weight, atol=0, rtol=0)


@pytest.mark.parametrize("bands", [2, 4, 6, 8])
def test_band_constant_images_match_the_rgb_stem(stem_weight, bands):
    adapted = adapt_stem_weight(stem_weight, bands)
    assert adapted.shape == (32, bands, 3, 3)
    plane = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(
        F.conv2d(plane.expand(-1, bands, -1, -1), adapted),
        F.conv2d(plane.expand(-1, 3, -1, -1), stem_weight),
        atol=1e-5,
        rtol=1e-5,
    )


def test_multiples_of_three_repeat_and_rescale(stem_weight):
    adapted = adapt_stem_weight(stem_weight, 6)
    torch.testing.assert_close(adapted, stem_weight.repeat(1, 2, 1, 1) * 0.5)
    adapted = adapt_stem_weight(stem_weight, 4)  # R G B R: the two R copies share R
    torch.testing.assert_close(adapted[:, 0], stem_weight[:, 0] / 2)
    torch.testing.assert_close(adapted[:, 1:3], stem_weight[:, 1:3])


def test_adapt_stem_modes():
    trunk = MobileNetV2Trunk()
    original = trunk.features[0][0].weight.detach().clone()
    assert adapt_stem(trunk.features, 4, "adapt") == 4
    conv = trunk.features[0][0]
    assert conv.in_channels == 4 and conv.stride == (2, 2)
    torch.testing.assert_close(conv.weight.detach(), adapt_stem_weight(original, 4))
    with pytest.raises(ValueError, match="already adapted"):
        adapt_stem(trunk.features, 1, "adapt")

    trunk = MobileNetV2Trunk()
    assert adapt_stem(trunk.features, 1, "replicate") == 3
    assert trunk.features[0][0].in_channels == 3
    with pytest.raises(ValueError, match="only handles 1-band"):
        adapt_stem(trunk.features, 4, "replicate")
    with pytest.raises(ValueError, match="stem mode"):
        adapt_stem(trunk.features, 1, "copy")


@pytest.mark.parametrize("width,channels,last", [(1.0, (16, 24, 32, 96, 320), 1280), (0.5, (8, 16, 16, 48, 160), 1280)])
def test_trunk_levels(width, channels, last):
    trunk = MobileNetV2Trunk(width)
    assert trunk.level_channels == channels
    assert trunk.out_channels == last
    x = torch.randn(1, 3, 64, 64)
    for level in range(5):
        x = trunk.forward_level(level, x)
        assert x.shape == (1, channels[level], 64 >> (level + 1), 64 >> (level + 1))


def test_hash_head():
    head = HashHead(1280, 48)
    codes = head(torch.randn(4, 1280))
    assert codes.shape == (4, 48) and codes.abs().max() < 1
    head.eval()
    assert head(torch.randn(1, 1280)).shape == (1, 48)
