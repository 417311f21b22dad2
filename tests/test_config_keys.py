"""Every config key is documented (docs/CONFIG.md is current), templates load, `fgmd config`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fgmd.cli.config_keys import KEYS, config_keys, keys_markdown, template
from fgmd.cli.main import main
from fgmd.config import Config

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"


def test_every_key_has_a_meaning_and_the_doc_is_current():
    keys = [key for key, _ in config_keys()]
    assert set(keys) == set(KEYS) and len(keys) == len(set(keys))
    assert all(text.strip() for text in KEYS.values())
    assert DOC.read_text(encoding="utf-8") == keys_markdown(), "regenerate: fgmd config keys > docs/CONFIG.md"
    for key in ("data.root", "model.bits", "data.modality.<m>.channels", "data.mrssid.suffix", "eval.batch_size"):
        assert f"| `{key}` |" in DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("data_format", ["folder", "csv", "mrssid", "vais"])
def test_templates_are_valid_configs_at_the_defaults(data_format):
    loaded = Config.from_dict(yaml.safe_load(template(data_format)))
    assert loaded.data.format == data_format
    defaults = Config().to_dict()
    got = loaded.to_dict()
    for section in ("model", "loss", "train", "eval"):
        assert got[section] == defaults[section]
    # band counts are left to inference from the images (0), for both modalities
    assert [loaded.data.modality_config(m).channels for m in loaded.data.modalities] == [0, 0]


def test_config_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["config", "show", "model.bits=64", "data.root=data/x"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["bits"] == 64 and shown["data"]["root"] == str(tmp_path / "data" / "x")
    assert main(["config", "template", "--format", "csv", "--out", "my.yaml"]) == 0
    assert "fgmd train --config my.yaml" in capsys.readouterr().out
    assert Config.from_dict(yaml.safe_load((tmp_path / "my.yaml").read_text())).data.format == "csv"
    assert main(["config", "template", "--out", "my.yaml"]) == 2 and "exists" in capsys.readouterr().err
    assert main(["config", "keys"]) == 0 and capsys.readouterr().out == keys_markdown()
