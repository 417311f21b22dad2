"""`fgmd export --format onnx`: one file per branch, dynamic batch, parity with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deploy_fixtures import run_cli
from fgmd.api import load_model
from fgmd.models.fdfsp import FDFSP

ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime (pip install fgmd[onnx])")
onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx (pip install fgmd[onnx])")


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    from fgmd.cli.main import main

    code = main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--out", str(out), "--check"])
    return out, code


def test_export_writes_one_checked_file_per_branch(exported, tiny_checkpoint):
    out, code = exported
    assert code == 0
    for modality, bands in (("ms", 3), ("pan", 1)):
        model = onnx.load(str(out / f"{modality}.onnx"))
        onnx.checker.check_model(model)
        (image,), (codes,) = model.graph.input, model.graph.output
        assert image.name == "image" and codes.name == "codes"
        dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
        assert dims == ["batch", bands, 32, 32]
        assert not any(node.op_type in ("DFT", "STFT") for node in model.graph.node)  # matmul DFT path
        meta = json.loads((out / f"{modality}.json").read_text())
        assert meta["bits"] == 16 and meta["modality"] == modality and meta["preprocessing"]["center_crop"] == [32, 32]
        assert meta["preprocessing"]["resize"] == [36, 36] and len(meta["preprocessing"]["mean"]) == bands
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and set(parity["branches"]) == {"ms", "pan"}
    for branch in parity["branches"].values():
        assert branch["flip_rate"] <= 0.001 and branch["max_abs_diff"] < 1e-4 and branch["images"] == 48
    assert set(parity["topk_overlap"]) == {"ms->pan", "pan->ms"}
    model, config = load_model(tiny_checkpoint)
    from fgmd.data.datasets import build_dataset
    from fgmd.data.transforms import build_transforms

    images = build_dataset(config.data, "query").images("ms", build_transforms(config.data, train=False)["ms"])
    with torch.no_grad():
        codes = model.encode(torch.stack([images[i]["image"] for i in range(len(images))]), "ms")
    assert (codes >= 0).unique(dim=0).shape[0] > len(images) // 2  # a meaningful comparison: codes vary
    assert all(v >= 0.9 for v in parity["topk_overlap"].values())


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runs_with_any_batch_size_and_matches_pytorch(exported, tiny_checkpoint, batch):
    out, _ = exported
    model, _ = load_model(tiny_checkpoint)
    assert not any(m.use_matmul_dft for m in model.modules() if isinstance(m, FDFSP))  # switched back after export
    for modality, bands in (("ms", 3), ("pan", 1)):
        session = ort.InferenceSession(str(out / f"{modality}.onnx"), providers=["CPUExecutionProvider"])
        images = torch.randn(batch, bands, 32, 32, generator=torch.Generator().manual_seed(batch))
        (codes,) = session.run(None, {"image": images.numpy()})
        with torch.no_grad():
            expected = model.encode(images, modality).numpy()
        assert codes.shape == (batch, 16)
        np.testing.assert_allclose(codes, expected, atol=1e-4, rtol=0)
        assert ((codes >= 0) != (expected >= 0)).mean() <= 0.001


def test_parity_check_fails_with_a_nonzero_exit_above_the_budget(exported, tiny_checkpoint, tiny_dataset, capsys):
    out, _ = exported
    # a negative budget cannot be met: the check must report FAIL and exit 1
    code, stdout, _ = run_cli(
        capsys,
        "export",
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        out,
        "--modality",
        "pan",
        "--check-folder",
        tiny_dataset / "images" / "pan",
        "--check-modality",
        "pan",
        "--check-limit",
        "8",
        "--budget",
        "-1",
    )
    assert code == 1 and "FAIL" in stdout and "pan->pan" in stdout


def test_sidecar_holds_the_full_preprocessing_and_version_1_sidecars_still_check(
    exported, tiny_checkpoint, tiny_dataset, tmp_path
):
    import shutil

    from fgmd.data.preprocess import build_preprocessor
    from fgmd.export import check_onnx

    out, _ = exported
    _, config = load_model(tiny_checkpoint)
    meta = json.loads((out / "pan.json").read_text())
    assert meta["format_version"] == 2
    assert meta["preprocessing"] == build_preprocessor(config.data, "pan").spec()
    # a sidecar of the first layout (no band selection or radiometry recorded) is still read
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(out / "pan.onnx", old / "pan.onnx")
    pre = meta["preprocessing"]
    v1 = {
        **meta,
        "format_version": 1,
        "preprocessing": {
            "channels": pre["channels"],
            "scale": pre["decode"],
            "resize": pre["resize"],
            "resize_mode": pre["resize_mode"],
            "center_crop": pre["center_crop"],
            "mean": pre["mean"],
            "std": pre["std"],
            "normalize": pre["normalize"],
        },
    }
    (old / "pan.json").write_text(json.dumps(v1))
    report = check_onnx(tiny_checkpoint, old, folder=tiny_dataset / "images" / "pan", folder_modality="pan", limit=6)
    assert report.branches["pan"].images == 6 and report.passed
    # a version-2 sidecar whose preprocessing disagrees with the checkpoint is refused
    (old / "pan.json").write_text(json.dumps({**meta, "preprocessing": {**pre, "invert": True}}))
    with pytest.raises(ValueError, match="preprocessing differs"):
        check_onnx(tiny_checkpoint, old, folder=tiny_dataset / "images" / "pan", folder_modality="pan", limit=6)


def test_folder_check_names_the_branch_it_did_not_check(exported, tiny_checkpoint, tiny_dataset, capsys):
    out, _ = exported  # holds ms.onnx and pan.onnx
    code, stdout, _ = run_cli(
        capsys,
        "export",
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        out,
        "--check-folder",
        tiny_dataset / "images" / "pan",
        "--check-modality",
        "pan",
        "--check-limit",
        "8",
    )
    assert code == 0 and "PASS" not in stdout
    assert "PARTIAL: bit flip rate within" in stdout and "NOT CHECKED: ms" in stdout
    assert json.loads((out / "parity.json").read_text())["unchecked"] == ["ms"]


def test_export_takes_overrides_anywhere(exported, tiny_checkpoint, tmp_path, capsys):
    missing = tmp_path / "moved-away"
    code, _, stderr = run_cli(
        capsys,
        "export",
        f"data.root={missing}",
        "--checkpoint",
        tiny_checkpoint,
        "--out",
        tmp_path / "onnx",
        "--modality",
        "pan",
        "--check",
    )
    assert code == 2 and str(missing) in stderr  # the override reached the parity check's dataset
    assert (tmp_path / "onnx" / "pan.onnx").is_file()
