import pytest

from fgmd.config import Config, ConfigError, load_config


def test_defaults_round_trip_through_plain_dict():
    config = Config()
    assert Config.from_dict(config.to_dict()) == config


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  bits: 16\ntrain:\n  lr: 0.001\n")
    config = load_config(path, ["model.bits=64", "data.modalities=[vis, ir]", "train.epochs=3"])
    assert config.model.bits == 64
    assert config.train.lr == 0.001
    assert config.data.modalities == ["vis", "ir"]
    assert config.train.epochs == 3


def test_int_widens_to_float_and_yaml_exponents_without_dot_are_numbers():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    assert load_config(None, ["train.lr=2e-3"]).train.lr == 0.002  # PyYAML reads 2e-3 as a string


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.bitz=32", "unknown key model.bitz"),
        ("model.bits=12", "multiple of 8"),
        ("model.bits=abc", "model.bits: expected an integer"),
        ("train.amp=1", "train.amp: expected true or false"),
        ("data.modalities=[ms]", "two different modalities"),
        ("data.modality.pan.channels=-1", r"channels must be >= 1 \(or 0: inferred\)"),
        ("data.modality.sar.channels=1", "data.modality.sar: not one of"),
        ("data.resize=32", "must be >= data.image_size"),
        ("nonsense", "key.sub=value"),
        ("train.eval_every=0", "train.eval_every must be >= 1"),
        ("train.lr_step=0", "train.lr_step must be >= 1"),
        ("eval.map_at_k=[0]", "eval.map_at_k values must be >= 1"),
        ("eval.map_at_r=-3", "eval.map_at_r must be >= 0"),
        ("eval.select_on=map_tie@7", "eval.select_on must be a reported metric"),
        ("eval.select_on=accuracy", "eval.select_on must be a reported metric"),
    ],
)
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_relative_data_root_is_stored_absolute(tmp_path, monkeypatch):
    from fgmd.training.resume import resume_conflicts

    monkeypatch.chdir(tmp_path)
    config = load_config(None, ["data.root=data/eurosat"])
    assert config.data.root == str(tmp_path / "data" / "eurosat")
    assert load_config(None, ["data.root=/abs/place"]).data.root == "/abs/place"
    assert load_config(None).data.root == ""  # unset stays unset
    # a run written before roots were stored absolute resumes from the same folder ...
    saved = {**config.to_dict(), "data": {**config.to_dict()["data"], "root": "data/eurosat"}}
    assert resume_conflicts(saved, config.to_dict()) == []
    # ... but not with another dataset
    other = load_config(None, ["data.root=data/other"]).to_dict()
    assert resume_conflicts(saved, other) == ["data.root"]


@pytest.mark.parametrize(
    "override",
    [
        "model.fdfsp_levels=[]",
        "model.fdfsp_levels=[0,2]",
        "model.fdfsp_levels=[2,2]",
        "model.fdfsp_levels=[5]",
        "model.fdfsp_levels=[4,2]",
    ],
)
def test_fdfsp_levels_are_checked(override):
    with pytest.raises(ConfigError, match="model.fdfsp_levels"):
        load_config(None, [override])


def test_module_lr_mult_must_be_positive():
    with pytest.raises(ConfigError, match="train.module_lr_mult"):
        load_config(None, ["train.module_lr_mult=0"])
    assert load_config(None, ["train.module_lr_mult=10"]).train.module_lr_mult == 10
