"""Module diagnostics (fgmd.evaluation.diagnostics): each number on a hand-built case or against
a slow obvious reference, then the whole pipeline on a tiny trained run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from fgmd.config import ModelConfig, load_config
from fgmd.evaluation.diagnostics import (
    band_gain_stats,
    damd_attention,
    diagnose_checkpoint,
    diagnose_model,
    gate_contrast,
    gate_entropy,
    gate_target_share,
    high_band_share,
    identity_distance,
    loss_terms,
    probe_encoder,
    radial_power_spectrum,
    read_masks,
    write_diagnostics,
)
from fgmd.models import build_model
from fgmd.models.encoder import ModalityEncoder
from fgmd.models.fdfsp import FDFSP
from fgmd.training.damd import DAMD
from fgmd.training.trainer import fit

CONFIG = ModelConfig(bits=16, width_mult=0.25, head_hidden=32)


def _encoder(in_channels: int = 3) -> ModalityEncoder:
    torch.manual_seed(0)
    return ModalityEncoder(CONFIG, in_channels).eval()


# --------------------------------------------------------------------------- spectra


def _slow_radial_spectrum(maps: torch.Tensor):
    """Per frequency, by loops: ring round(r * min(H, W)), mean |X|² and mean radius per ring."""
    height, width = maps.shape[-2:]
    n = min(height, width)
    spectrum = np.fft.fft2(maps.numpy().astype(np.float64), norm="ortho")
    power = (np.abs(spectrum) ** 2).mean(axis=(0, 1))
    rings: dict[int, list[tuple[float, float]]] = {}
    for ky in range(height):
        for kx in range(width):
            fy = (ky if ky <= (height - 1) // 2 else ky - height) / height
            fx = (kx if kx <= (width - 1) // 2 else kx - width) / width
            r = math.hypot(fy, fx)
            rings.setdefault(int(np.round(r * n)), []).append((r, power[ky, kx]))
    radius = [np.mean([r for r, _ in rings[k]]) if k in rings else k / n for k in range(max(rings) + 1)]
    mean = [np.mean([p for _, p in rings[k]]) if k in rings else np.nan for k in range(max(rings) + 1)]
    return np.array(radius), np.array(mean)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 6, 10), (3, 1, 7, 5)])
def test_radial_spectrum_equals_a_loop_over_frequencies(shape):
    maps = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    radius, power = radial_power_spectrum(maps)
    slow_radius, slow_power = _slow_radial_spectrum(maps)
    np.testing.assert_allclose(radius.numpy(), slow_radius, atol=1e-12)
    np.testing.assert_allclose(power.numpy(), slow_power, rtol=1e-10, equal_nan=True)


def test_radial_spectrum_of_a_sinusoid_peaks_at_its_frequency():
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    wave = torch.cos(2 * math.pi * (3 * x + 4 * y) / 16)  # |f| = 5/16 cycles per pixel
    radius, power = radial_power_spectrum(wave[None, None])
    peak = int(torch.argmax(power))
    assert peak == 5 and abs(float(radius[peak]) - 5 / 16) < 0.5 / 16  # ring 5 (radius = its members' mean)
    # Parseval: all the energy (sum of x² = 128) sits in the two frequencies ±(3, 4) of that ring
    members = sum(
        1 for ky in range(16) for kx in range(16) if round(math.hypot(min(ky, 16 - ky), min(kx, 16 - kx))) == 5
    )
    assert float(power[peak]) * members == pytest.approx(float(wave.double().square().sum()), rel=1e-6)
    assert float(power[torch.arange(len(power)) != peak].max()) < 1e-9 * float(power[peak])


def test_high_band_share_matches_the_fdfsp_high_mask():
    _, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    nyquist = torch.cos(math.pi * x)[None, None]  # f = 0.5 cycles per pixel: all in the high band
    slow = torch.cos(2 * math.pi * x / 8)[None, None]  # f = 1/8: below 0.25, none in the high band
    assert high_band_share(nyquist) == pytest.approx(1.0)
    assert high_band_share(slow) == pytest.approx(0.0, abs=1e-12)
    maps = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(2))
    spectrum = np.abs(np.fft.fft2(maps.numpy().astype(np.float64), norm="ortho")) ** 2
    high = total = 0.0
    for ky in range(6):
        for kx in range(7):
            if ky == kx == 0:
                continue
            fy, fx = min(ky, 6 - ky) / 6, min(kx, 7 - kx) / 7
            mask = max(0.0, 2 * min(1.0, math.hypot(fy, fx) / 0.5) - 1)
            high += mask * spectrum[..., ky, kx].sum()
            total += spectrum[..., ky, kx].sum()
    assert high_band_share(maps) == pytest.approx(high / total, rel=1e-6)


# --------------------------------------------------------------------------- ADF gate


def test_gate_statistics_of_hand_built_gates():
    uniform = torch.full((1, 1, 4, 4), 0.5)
    assert float(gate_contrast(uniform)[0]) == pytest.approx(0.0, abs=1e-7)
    assert float(gate_entropy(uniform)[0]) == pytest.approx(1.0)
    one_hot = torch.zeros(1, 1, 4, 4)
    one_hot[0, 0, 1, 2] = 1.0
    assert float(gate_entropy(one_hot)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(gate_contrast(one_hot)[0]) == pytest.approx(math.sqrt(15), rel=1e-6)  # std/mean of 1 in 16
    half = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert float(gate_entropy(half)[0]) == pytest.approx(0.5)  # log 2 / log 4


def test_gate_target_share_with_a_known_region():
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, :8, :8] = 1.0  # the target is the top-left quarter (2x2 of the 4x4 gate cells)
    gate = torch.full((2, 1, 4, 4), 1e-9)
    gate[0, :, :2, :2] = 1.0  # image 0: the gate is 1 on the target, ~0 elsewhere
    gate[1] = 0.5  # image 1: uniform
    mass, area = gate_target_share(gate, mask)
    assert area.tolist() == pytest.approx([0.25, 0.25])
    assert float(mass[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(mass[1]) == pytest.approx(0.25)
    partial = torch.zeros(1, 1, 16, 16)
    partial[:, :, :2, :4] = 1.0  # half of gate cell (0, 0) is target
    mass, area = gate_target_share(torch.ones(1, 1, 4, 4), partial)
    assert float(area[0]) == pytest.approx(0.5 / 16)


# --------------------------------------------------------------------------- FDFSP gains


def test_band_gains_are_one_at_init_and_follow_the_mlp():
    block = FDFSP(channels=4, in_channels=2)
    x = torch.randn(3, 4, 8, 8)
    assert torch.equal(block.band_gains(x), torch.ones(3, 4, 3))
    with torch.no_grad():
        block.gain_mlp[-1].bias.fill_(0.7)  # weight still zero: every gain is 2 sigmoid(0.7)
    assert torch.allclose(block.band_gains(x), torch.full((3, 4, 3), 2 * torch.sigmoid(torch.tensor(0.7)).item()))


def test_band_gains_are_the_gains_forward_applies():
    """With the static kernel and the recovery at zero, FDFSP(x) = irfft2(Σ_k g_k M_k X̂): computed
    here by hand from band_gains, on the torch.fft path and on the small-map (Kronecker) path."""
    from fgmd.models.fdfsp import band_masks

    torch.manual_seed(3)
    block = FDFSP(channels=4, in_channels=2)
    with torch.no_grad():
        for parameter in block.gain_mlp.parameters():
            parameter.normal_(0, 0.5)
    for size in (6, 12):  # 36 px takes the Kronecker DFT, 144 px torch.fft
        x = torch.randn(2, 4, size, size)
        gains = block.band_gains(x)  # [B, C, 3]
        masks, _ = band_masks(size, size, torch.device("cpu"))
        response = (gains @ masks).reshape(2, 4, size, size // 2 + 1)
        expected = torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho") * response, s=(size, size), norm="ortho")
        got = block(x, torch.zeros(2, 2, 2 * size, 2 * size))
        assert torch.allclose(got, expected, atol=1e-5), size
        assert not torch.allclose(gains, torch.ones_like(gains))


def test_band_gain_stats_by_hand():
    gains = torch.tensor(
        [[[1.0, 1.0, 0.5], [1.0, 1.0, 1.5]], [[1.0, 2.0, 1.0], [1.0, 0.0, 1.0]]]
    )  # [2 images, 2 ch, 3]
    stats = band_gain_stats(gains)
    assert stats["mean"] == pytest.approx([1.0, 1.0, 1.0])
    assert stats["std_images"] == pytest.approx([0.0, 0.0, 0.0])  # each image's channel mean is 1
    assert stats["std_channels"] == pytest.approx([0.0, 0.5, 0.25])  # channel means 1.5 / 0.5 (mid), 0.75 / 1.25 (high)
    assert stats["min"] == pytest.approx([1.0, 0.0, 0.5]) and stats["max"] == pytest.approx([1.0, 2.0, 1.5])


# --------------------------------------------------------------------------- probing and identity


def test_probe_captures_the_maps_around_each_module():
    encoder = _encoder()
    x = torch.randn(3, 3, 64, 64)
    probe = probe_encoder(encoder, x, batch_size=2)  # two forward passes, concatenated
    with torch.no_grad():
        output = encoder(x)
    for got, want in zip(probe.levels, output.features):
        assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(probe.fdfsp_out[2], output.features[2], atol=1e-6)
    assert torch.allclose(probe.fdfsp_out[4], probe.adf_in, atol=1e-6)  # ADF follows FDFSP on L4
    assert probe.fdfsp_stage_input[3].shape[-1] == 2 * probe.fdfsp_in[3].shape[-1]
    assert probe.gate.shape == (3, 1, 2, 2) and probe.final.shape[1] == encoder.trunk.out_channels


def test_identity_distance_is_zero_at_init_and_grows_when_perturbed():
    encoder = _encoder()
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    rows = identity_distance(encoder, probe_encoder(encoder, x))
    assert [r["module"] for r in rows] == ["FDFSP L2", "FDFSP L3", "FDFSP L4", "ADF L4", "ADF pooling"]
    assert all(r["parameter_rms"] in (0.0, None) for r in rows)
    assert all(r["output_change"] < 1e-5 for r in rows), rows
    with torch.no_grad():
        encoder.fdfsp["3"].kernel.normal_(0, 0.1)
        encoder.adf.gamma.fill_(0.5)
        encoder.adf.gate.weight.normal_(0, 1.0)
    after = {r["module"]: r for r in identity_distance(encoder, probe_encoder(encoder, x))}
    assert after["FDFSP L3"]["parameter_rms"] > 0.01 and after["FDFSP L3"]["output_change"] > 1e-3
    assert after["FDFSP L2"]["output_change"] < 1e-5  # untouched block stays at identity
    assert after["ADF L4"]["output_change"] > 1e-3
    # the relative change is ||after - before|| / ||before||, checked on the raw maps
    probe = probe_encoder(encoder, x)
    expected = (probe.fdfsp_out[3] - probe.fdfsp_in[3]).norm() / probe.fdfsp_in[3].norm()
    assert after["FDFSP L3"]["output_change"] == pytest.approx(float(expected), rel=1e-5)


def test_pooling_row_compares_gated_with_average_pooling():
    encoder = _encoder()
    probe = probe_encoder(encoder, torch.randn(1, 3, 64, 64))
    probe.final = torch.tensor([[[[1.0, 3.0], [1.0, 3.0]]]])  # one channel, mean 2
    probe.gate = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # all weight on the 1s
    pooling = {r["module"]: r for r in identity_distance(encoder, probe)}["ADF pooling"]
    assert pooling["output_change"] == pytest.approx(0.5, rel=1e-5)  # |1 - 2| / 2
    probe.gate = torch.full((1, 1, 2, 2), 0.3)
    assert {r["module"]: r for r in identity_distance(encoder, probe)}["ADF pooling"]["output_change"] < 1e-6


def test_baseline_encoder_has_no_module_rows():
    torch.manual_seed(0)
    encoder = ModalityEncoder(ModelConfig(bits=16, width_mult=0.25, head_hidden=32, fdfsp=False, adf=False), 1).eval()
    probe = probe_encoder(encoder, torch.randn(2, 1, 64, 64))
    assert identity_distance(encoder, probe) == [] and probe.gate is None and probe.fdfsp_in == {}


# --------------------------------------------------------------------------- DAMD and the log


def test_damd_attention_is_what_the_modules_compute():
    encoder = _encoder()
    probe = probe_encoder(encoder, torch.randn(2, 3, 64, 64))
    damd = DAMD(encoder.level_channels)
    attention = damd_attention(damd, probe.levels)
    assert sorted(attention["spatial"]) == [0, 1, 2] and sorted(attention["channel"]) == [2, 3, 4]
    for level, maps in attention["spatial"].items():
        assert maps.shape == (2, *probe.levels[level].shape[-2:])
        assert torch.allclose(maps.flatten(1).sum(1), torch.ones(2), atol=1e-5)
    with torch.no_grad():
        expected = damd.channel_attention[1](probe.levels[3])
    assert torch.allclose(attention["channel"][3], expected)


def test_loss_terms_from_log_records():
    log = [
        {"epoch": 0, "lr": 0.1, "time_s": 3.0, "damd": 0.5, "damd_weighted": 0.05, "val": {"mean_map": 0.3}},
        {"epoch": 1, "lr": 0.1, "time_s": 2.0, "damd": 0.4, "damd_weighted": 0.04, "triplet": 0.2},
    ]
    terms = loss_terms(log)
    assert set(terms) == {"damd", "damd_weighted", "triplet"}
    assert terms["damd"] == [0.5, 0.4] and math.isnan(terms["triplet"][0])


# --------------------------------------------------------------------------- end to end


def test_diagnose_model_and_figures_on_a_random_model(tmp_path):
    torch.manual_seed(0)
    model = build_model(CONFIG, {"ms": 3, "pan": 1})
    images = {"ms": torch.rand(3, 3, 64, 64), "pan": torch.rand(3, 1, 64, 64)}
    masks = torch.zeros(3, 1, 64, 64)
    masks[:, :, 16:48, 16:48] = 1.0
    diagnostics = diagnose_model(model, images, masks=masks, damd=DAMD(model.level_channels), damd_pairs=2)
    assert model.training  # restored
    assert diagnostics.gate_stats["pan"]["area_share"] == pytest.approx([0.25] * 3)
    assert diagnostics.gate_stats["ms"]["target_share"] == pytest.approx([0.25] * 3, abs=1e-6)  # uniform gate at init
    assert diagnostics.band_gains["ms"][2]["mean"] == pytest.approx([1.0, 1.0, 1.0])
    entry = diagnostics.spectra["pan"][3]
    assert entry["size"] == [4, 4] and entry["with"] == pytest.approx(entry["without"], rel=1e-4)
    paths = write_diagnostics(diagnostics, tmp_path / "d", images, masks)
    assert set(paths) == {"gates", "band_gains", "spectra", "damd_attention", "identity", "json"}
    summary = json.loads(paths["json"].read_text())
    assert summary["adf_gate"]["ms"]["entropy"] == pytest.approx(1.0)
    assert summary["fdfsp_spectra"]["ms"]["L2"]["high_with"] == pytest.approx(
        summary["fdfsp_spectra"]["ms"]["L2"]["high_without"], rel=1e-4
    )
    for name in ("gates", "spectra", "identity"):
        assert paths[name].stat().st_size > 10_000


@pytest.fixture(scope="module")
def tiny_run(micro_dataset, tmp_path_factory):
    """A full FG-MD run of 1 epoch at 64 px on the generated data (which has masks/)."""
    run = tmp_path_factory.mktemp("diag") / "run"
    config = load_config(
        None,
        tiny_overrides(
            micro_dataset, run, **{"train.epochs": 1, "data.image_size": 64, "data.resize": 68, "data.val_fraction": 0}
        ),
    )
    fit(config, progress=False)
    return config, run


def test_diagnose_checkpoint_of_a_tiny_run_reads_masks_and_damd(tiny_run):
    config, run = tiny_run
    result = diagnose_checkpoint(run / "best.pt", num_images=6)
    assert result.masks is not None and result.masks.shape == (6, 1, 64, 64)
    assert result.images["pan"].shape == (6, 1, 64, 64) and float(result.images["pan"].max()) <= 1.0
    direct = read_masks(config.data, ["ship_0"])
    assert direct is not None and 0.0 < float(direct.mean()) < 1.0
    d = result.diagnostics
    assert "target_share" in d.gate_stats["ms"] and d.damd_channel is not None
    assert any("last.pt" in note for note in d.notes)
    assert len(d.terms["damd"]) == 1
    rows = {r["module"]: r for r in d.identity["ms"]}
    assert rows["FDFSP L2"]["parameter_rms"] > 0  # one epoch of Adam moves the zero-initialised parameters


def test_report_and_cli_write_the_diagnostics(tiny_run, tmp_path):
    from fgmd.cli.main import main
    from fgmd.evaluation.report import generate_report

    _, run = tiny_run
    page = generate_report(run, out_dir=tmp_path / "report", num_queries=2, top_k=3)
    text = page.read_text()
    assert "## Module diagnostics" in text and "| FDFSP L2 |" in text and "gate mass on target" in text
    for name in (
        "adf_gates.png",
        "fdfsp_spectra.png",
        "fdfsp_band_gains.png",
        "identity_distance.png",
        "damd_attention.png",
    ):
        assert (tmp_path / "report" / name).stat().st_size > 5_000 and f"({name})" in text
    summary = json.loads((tmp_path / "report" / "diagnostics.json").read_text())
    assert set(summary["identity_distance"]) == {"ms", "pan"}
    assert main(["diagnose", str(run / "best.pt"), "--images", "3", "--out", str(tmp_path / "cli")]) == 0
    assert (
        json.loads((tmp_path / "cli" / "diagnostics.json").read_text())["adf_gate"]["pan"][
            "entropy_per_image"
        ].__len__()
        == 3
    )
