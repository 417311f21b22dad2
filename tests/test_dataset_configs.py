"""The shipped dataset configs load, and the format registry matches the config's list."""

import os
from pathlib import Path

import pytest

from fgmd.config import ConfigError, load_config
from fgmd.data.datasets import FORMATS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["mrssid", "vais", "eurosat", "aid10", "custom"])
def test_config_loads(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.data.format in FORMATS


def test_protocol_settings():
    mrssid = load_config(CONFIGS / "mrssid.yaml")
    assert (mrssid.data.train_split, mrssid.data.query_split, mrssid.data.database_split) == (
        "train",
        "test",
        "database",
    )
    assert mrssid.eval.map_at_r == 86 and mrssid.train.lr == 1e-4 and mrssid.model.bits == 32
    assert (mrssid.train.lr_step, mrssid.train.lr_gamma, mrssid.train.epochs, mrssid.train.batch_size) == (
        10,
        0.9,
        200,
        32,
    )
    assert (mrssid.data.image_size, mrssid.data.resize) == (224, 256)
    vais = load_config(CONFIGS / "vais.yaml")
    assert vais.train.lr == 5e-5 and vais.data.modality_config("ir").channels == 1
    eurosat = load_config(CONFIGS / "eurosat.yaml")
    assert eurosat.data.root == os.path.abspath("../shared/data/eurosat_rgb5_mspan")  # relative to the cwd
    assert (eurosat.data.image_size, eurosat.data.resize) == (64, 72)
    assert eurosat.data.modality_config("pan").channels == 1 and eurosat.data.modality_config("ms").channels == 3
    aid10 = load_config(CONFIGS / "aid10.yaml")
    assert aid10.data.root.endswith("shared/data/aid10_mspan") and aid10.data.format == "folder"
    assert (aid10.data.image_size, aid10.data.resize, aid10.data.val_fraction) == (128, 144, 0.1)
    assert aid10.data.modality_config("pan").channels == 1 and aid10.data.modality_config("ms").channels == 3


def test_format_registry_is_what_config_accepts():
    for name in FORMATS:
        assert load_config(
            None, [f"data.format={name}", *(["data.modalities=[visible, ir]"] if name == "vais" else [])]
        )
    with pytest.raises(ConfigError, match="data.format must be one of folder, mrssid, vais, csv"):
        load_config(None, ["data.format=hdf5"])
    with pytest.raises(ConfigError, match="data.vais.labels must be one of basic, fine"):
        load_config(None, ["data.format=vais", "data.modalities=[visible, ir]", "data.vais.labels=coarse"])
    with pytest.raises(ConfigError, match="for VAIS"):
        load_config(None, ["data.format=vais"])
    with pytest.raises(ConfigError, match="model.stem must be one of adapt, replicate"):
        load_config(None, ["model.stem=tile"])
    with pytest.raises(ConfigError, match="model.pretrained must be one of none, imagenet, imagenet_v2"):
        load_config(None, ["model.pretrained=coco"])
    for name, cls in FORMATS.items():
        assert cls.NAME == name
