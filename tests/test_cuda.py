"""CUDA paths: device placement, bf16 autocast, checkpoints moving GPU -> CPU, NCCL via torchrun (2 GPUs).

Skipped on machines without a CUDA GPU (CI has none); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

import json

import pytest
import torch

from conftest import tiny_overrides
from fgmd.api import load_model
from fgmd.config import load_config
from fgmd.models import model_from_config
from fgmd.training.trainer import Trainer
from test_distributed import torchrun
from test_training import training_pairs_map

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def exact_float32_matmul():
    """TF32 would make the CPU/GPU comparisons below tolerance games; keep full float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def full_model_config(tmp_path, tiny_dataset, **extra):
    return load_config(None, tiny_overrides(tiny_dataset, tmp_path / "run", **{"model.width_mult": 0.5, **extra}))


def test_encode_on_gpu_matches_cpu(tiny_dataset, tmp_path):
    config = full_model_config(tmp_path, tiny_dataset, **{"model.bits": 64})
    torch.manual_seed(0)
    model = model_from_config(config, load_pretrained=False).eval()
    with torch.no_grad():  # non-trivial FDFSP/ADF gates: perturb their zero-initialised layers
        for name, p in model.named_parameters():
            if ".fdfsp." in name or ".adf." in name:
                p.normal_(0, 0.05)
    images = {"ms": torch.rand(6, 3, 64, 64), "pan": torch.rand(6, 1, 64, 64)}
    with torch.no_grad():
        cpu = {m: model.encode(x, m) for m, x in images.items()}
        model.cuda()
        gpu = {m: model.encode(x.cuda(), m).cpu() for m, x in images.items()}
    for m in images:
        assert gpu[m].dtype == torch.float32
        torch.testing.assert_close(gpu[m], cpu[m], atol=1e-4, rtol=1e-4)


def test_fdfsp_runs_in_float32_under_bf16_autocast(tiny_dataset, tmp_path):
    config = full_model_config(tmp_path, tiny_dataset)
    model = model_from_config(config, load_pretrained=False).cuda().eval()
    sizes = []
    for module in model.encoders["ms"].modules():
        if type(module).__name__ == "FDFSP":
            module.register_forward_hook(
                lambda m, inputs, output: sizes.append((tuple(inputs[0].shape[-2:]), output.dtype))
            )
    x = torch.rand(2, 3, 88, 88, device="cuda")  # FDFSP maps of 11x11 and 3x3: half-precision FFTs refuse odd sizes
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        codes = model.encode(x, "ms")
    assert any(h % 2 for (h, _), _ in sizes), sizes
    assert [dtype for _, dtype in sizes] == [torch.bfloat16] * 3  # computed in float32, handed back in bf16
    assert torch.isfinite(codes).all()
    with torch.no_grad():
        amp_free = model.encode(x, "ms")
    assert (torch.sign(codes.float()) == torch.sign(amp_free)).float().mean() > 0.9


@pytest.mark.parametrize("amp", [False, True])
def test_training_on_gpu_learns_and_its_checkpoint_loads_on_cpu(micro_dataset, tmp_path, amp):
    overrides = tiny_overrides(
        micro_dataset,
        tmp_path / "run",
        **{
            "train.epochs": 60,
            "train.batch_size": 12,
            "train.lr": 3e-3,
            "train.eval_every": 60,
            "data.val_fraction": 0.0,
            "train.device": "cuda",
            "train.amp": str(amp).lower(),
        },
    )
    trainer = Trainer(load_config(None, overrides), progress=False)
    assert next(trainer.model.parameters()).device.type == "cuda"
    initial = training_pairs_map(trainer)
    result = trainer.fit()
    assert training_pairs_map(trainer) > initial + 0.2
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in log)
    model, _ = load_model(result.run_dir / "best.pt")  # CPU by default
    assert next(model.parameters()).device.type == "cpu"
    assert model.encode(torch.rand(1, 1, 32, 32), "pan").shape == (1, 16)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs one GPU per process: 2 GPUs")
def test_torchrun_with_nccl_trains_and_evaluates(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_dataset, run, **{"train.epochs": 1, "train.batch_size": 8, "train.device": "cuda"})
    out = torchrun(2, "train", "--quiet", *overrides)  # (one process would not start a process group)
    assert out.returncode == 0, out.stderr[-3000:]
    out = torchrun(2, "eval", "--quiet", "--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "m.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert 0.0 < json.loads((tmp_path / "m.json").read_text())["mean_map"] <= 1.0
