"""`fgmd export --precision fp16|int8`: reduced-precision encoders and the check of their cost."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deploy_fixtures import run_cli
from fgmd.api import evaluate_checkpoint, load_model
from fgmd.data.datasets import build_dataset
from fgmd.data.transforms import build_transforms

ort = pytest.importorskip("onnxruntime", reason="precision export tests need onnxruntime (pip install fgmd[onnx])")
onnx = pytest.importorskip("onnx", reason="precision export tests need onnx (pip install fgmd[onnx])")


def split_images(config, split: str, modality: str) -> torch.Tensor:
    images = build_dataset(config.data, split).images(modality, build_transforms(config.data, train=False)[modality])
    return torch.stack([images[i]["image"] for i in range(len(images))])


@pytest.fixture(scope="module")
def int8_export(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    from fgmd.cli.main import main

    code = main(
        [
            "export",
            "--checkpoint",
            str(tiny_checkpoint),
            "--out",
            str(out),
            "--precision",
            "int8",
            "--calibration-images",
            "20",
            "--check",
            "--max-map-drop",
            "1",
            "--budget",
            "1",
        ]
    )
    return out, code


def test_int8_export_is_quantized_loads_and_gives_codes_of_the_right_shape(int8_export, tiny_checkpoint):
    out, code = int8_export
    assert code == 0
    model, config = load_model(tiny_checkpoint)
    train_size = len(build_dataset(config.data, config.data.train_split))
    for modality, bands in (("ms", 3), ("pan", 1)):
        graph = onnx.load(str(out / f"{modality}.onnx")).graph
        ops = {node.op_type for node in graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)  # int8 weights
        assert [i.type.tensor_type.elem_type for i in graph.input] == [onnx.TensorProto.FLOAT]  # float32 in
        meta = json.loads((out / f"{modality}.json").read_text())
        assert meta["precision"] == "int8"
        assert meta["quantization"]["calibration_images_used"] == min(20, train_size)
        session = ort.InferenceSession(str(out / f"{modality}.onnx"), providers=["CPUExecutionProvider"])
        for batch in (1, 5):
            images = split_images(config, "query", modality)[:batch]
            (codes,) = session.run(None, {"image": images.numpy()})
            assert codes.shape == (batch, 16) and codes.dtype == np.float32
            assert np.all(np.abs(codes) <= 1)


def test_int8_check_figures_come_from_real_encodings(int8_export, tiny_checkpoint):
    """The sidecar's agreement figures equal a recomputation from PyTorch and onnxruntime codes."""
    out, _ = int8_export
    model, config = load_model(tiny_checkpoint)
    report = json.loads((out / "parity.json").read_text())
    for modality in ("ms", "pan"):
        images = torch.cat([split_images(config, s, modality) for s in ("query", "database")])
        with torch.no_grad():
            reference = model.encode(images, modality).numpy()
        session = ort.InferenceSession(str(out / f"{modality}.onnx"), providers=["CPUExecutionProvider"])
        (codes,) = session.run(None, {"image": images.numpy()})
        flips = (codes >= 0) != (reference >= 0)
        check = json.loads((out / f"{modality}.json").read_text())["check"]
        assert check["images"] == len(images) and check["bits_compared"] == flips.size
        assert check["bits_flipped"] == int(flips.sum())
        assert check["bit_agreement"] == pytest.approx(1 - flips.mean())
        assert check["code_change_rate"] == pytest.approx(flips.any(axis=1).mean())
        assert check["max_abs_diff"] == pytest.approx(float(np.abs(codes - reference).max()), rel=1e-5)
        assert check["max_abs_diff"] > 1e-4  # really quantized: not the float32 graph
        assert report["branches"][modality]["bits_flipped"] == check["bits_flipped"]
    # the fp32 reference mAP is the evaluation's mAP of the same checkpoint (same images, same metric)
    metrics = evaluate_checkpoint(tiny_checkpoint, out=out / "metrics.json")
    assert set(report["map"]) == {"ms->pan", "pan->ms"}
    for direction, values in report["map"].items():
        assert values["pytorch"] == pytest.approx(metrics["directions"][direction]["map"], abs=1e-9)
        assert values["pytorch_tie"] == pytest.approx(metrics["directions"][direction]["map_tie"], abs=1e-9)
        assert 0 < values["onnx"] <= 1 and 0 < values["onnx_tie"] <= 1


def test_keep_fp32_groups_leave_those_nodes_unquantized(tiny_checkpoint, tmp_path):
    from fgmd.export.onnx import export_checkpoint
    from fgmd.export.precision import QuantizationOptions

    (branch,) = export_checkpoint(
        tiny_checkpoint,
        tmp_path,
        modalities=["pan"],
        precision="int8",
        quantization=QuantizationOptions(calibration_images=8, per_channel=True, keep_fp32=("head", "fdfsp")),
    )
    graph = onnx.load(str(branch.onnx)).graph
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {init.name for init in graph.initializer}
    head = [n for n in graph.node if "/head/" in n.name and n.op_type in ("MatMul", "Gemm")]
    fdfsp = [n for n in graph.node if "/fdfsp." in n.name and n.op_type == "MatMul"]
    trunk = [n for n in graph.node if n.op_type == "Conv" and "/fdfsp." not in n.name]
    assert head and fdfsp and trunk

    def quantized_weight(node) -> bool:
        """An input is a dequantized constant (the activations of an excluded node may still come
        through a DequantizeLinear: the previous, quantized node's output)."""
        return any(
            (p := producers.get(i)) is not None and p.op_type == "DequantizeLinear" and p.input[0] in initializers
            for i in node.input
        )

    assert not any(quantized_weight(n) for n in head + fdfsp)
    assert all(quantized_weight(n) for n in trunk)
    meta = json.loads(branch.sidecar.read_text())
    assert meta["quantization"]["per_channel"] and meta["quantization"]["keep_fp32"] == ["head", "fdfsp"]
    assert meta["quantization"]["nodes_kept_fp32"] >= len(head) + len(fdfsp)


def test_fp16_export_runs_on_the_cpu_and_stays_close(tiny_checkpoint, tmp_path, capsys):
    code, stdout, _ = run_cli(
        capsys, "export", "--checkpoint", tiny_checkpoint, "--out", tmp_path, "--precision", "fp16", "--modality", "pan"
    )
    assert code == 0 and "fp16" in stdout
    graph = onnx.load(str(tmp_path / "pan.onnx")).graph
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
    assert not any(
        init.data_type == onnx.TensorProto.FLOAT and init.dims and np.prod(init.dims) > 64 for init in graph.initializer
    )  # no large float32 weight left
    model, config = load_model(tiny_checkpoint)
    images = split_images(config, "query", "pan")[:6]
    session = ort.InferenceSession(str(tmp_path / "pan.onnx"), providers=["CPUExecutionProvider"])
    (codes,) = session.run(None, {"image": images.numpy()})
    with torch.no_grad():
        reference = model.encode(images, "pan").numpy()
    assert codes.dtype == np.float32 and codes.shape == (6, 16)
    assert 0 < np.abs(codes - reference).max() < 0.05
    assert json.loads((tmp_path / "pan.json").read_text())["precision"] == "fp16"


def test_unknown_keep_fp32_group_is_refused():
    from fgmd.export.precision import QuantizationOptions

    with pytest.raises(ValueError, match="bogus"):
        QuantizationOptions(keep_fp32=("bogus",))
