"""`fgmd index`: split and folder archives, chunked resumable encoding, unreadable images, appending."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deploy_fixtures import image_folder, run_cli
from fgmd.api import load_model
from fgmd.codes import pack_codes
from fgmd.data.datasets import build_dataset
from fgmd.data.transforms import build_transforms
from fgmd.evaluation.evaluate import encode_images
from fgmd.retrieval import Index, IndexFileError, encode_archive
from fgmd.retrieval.encode_archive import ArchiveError, build_index
from fgmd.retrieval.identity import identity_mismatches, weights_sha256


def images_class_names(config):
    return list(build_dataset(config.data, "database").class_names)


def test_index_a_split_round_trip(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "db.fgidx"
    code, stdout, stderr = run_cli(
        capsys,
        "index",
        "--checkpoint",
        tiny_checkpoint,
        "--modality",
        "pan",
        "--split",
        "database",
        "--out",
        out,
        "--workers",
        "0",
        "--quiet",
    )
    assert code == 0, stderr
    assert "36 pan images" in stdout
    index = Index.load(out)
    model, config = load_model(tiny_checkpoint)
    images = build_dataset(config.data, "database").images("pan", build_transforms(config.data, train=False)["pan"])
    assert list(index.ids) == images.ids and index.modality == "pan" and index.bits == 16
    np.testing.assert_array_equal(index.labels, images.labels.numpy().astype(np.uint8))
    np.testing.assert_array_equal(index.codes, pack_codes(encode_images(model, images, batch_size=7)))
    assert len(np.unique(index.codes, axis=0)) > len(index) // 2  # the codes depend on the image
    identity = index.encoder
    assert set(identity) == {"config", "weights_sha256", "modality", "bits", "preprocessing"}
    assert identity["preprocessing"]["channels"] == 1 and identity["preprocessing"]["version"] == 1
    # an index written before the preprocessing spec was stored still matches its encoder
    old = {k: v for k, v in identity.items() if k != "preprocessing"}
    assert identity_mismatches(old, identity) == []
    assert identity["weights_sha256"] == weights_sha256(model.encoders["pan"])
    assert identity["config"] == config.to_dict()
    assert not (tmp_path / "db.fgidx.parts").exists()  # merged and cleaned up
    # the archive root (absolute), each item's file relative to it, and the class names
    assert index.root == os.path.abspath(config.data.root)
    assert [index.file_of(i) for i in range(len(index))] == [os.path.abspath(r.paths["pan"]) for r in images.records]
    assert not any(p.startswith("/") for p in index.paths) and index.class_names == images_class_names(config)
    # the encoder identity of the other branch or another checkpoint does not match
    assert identity_mismatches(identity, {**identity, "weights_sha256": weights_sha256(model.encoders["ms"])})

    code, _, stderr = run_cli(
        capsys,
        "index",
        "--checkpoint",
        tiny_checkpoint,
        "--modality",
        "pan",
        "--split",
        "database",
        "--out",
        out,
        "--quiet",
    )
    assert code == 2 and "--append" in stderr and "Traceback" not in stderr


def test_index_a_folder_ids_are_relative_paths(tiny_dataset, tiny_checkpoint, tmp_path, capsys):
    folder = image_folder(tiny_dataset, tmp_path / "imgs", count=7, nested=True)
    code, _, stderr = run_cli(
        capsys,
        "index",
        "--checkpoint",
        tiny_checkpoint,
        "--modality",
        "pan",
        "--folder",
        folder,
        "--out",
        tmp_path / "x.fgidx",
        "--quiet",
    )
    assert code == 2 and "--recursive" in stderr  # images only in subfolders
    code, _, stderr = run_cli(
        capsys,
        "index",
        "--checkpoint",
        tiny_checkpoint,
        "--modality",
        "pan",
        "--folder",
        folder,
        "--recursive",
        "--out",
        tmp_path / "x.fgidx",
        "--quiet",
        "--workers",
        "0",
    )
    assert code == 0, stderr
    index = Index.load(tmp_path / "x.fgidx")
    files = sorted(folder.rglob("*.png"))
    assert list(index.ids) == sorted(p.relative_to(folder).with_suffix("").as_posix() for p in files)
    assert index.ids[0].startswith("group0/") and index.labels is None
    assert index.root == str(folder.resolve()) and index.class_names is None
    assert list(index.paths) == sorted(p.relative_to(folder).as_posix() for p in files)
    # two files with one id
    (folder / "group0" / f"{index.ids[0].split('/')[1]}.jpg").write_bytes(b"x")
    with pytest.raises(ArchiveError, match="two images have the id"):
        encode_archive.folder_source(folder, recursive=True)


def test_chunked_indexing_resumes_after_a_kill(tiny_dataset, tiny_checkpoint, other_checkpoint, tmp_path, monkeypatch):
    folder = image_folder(tiny_dataset, tmp_path / "imgs", count=17)
    reference = build_index(
        tiny_checkpoint, "pan", tmp_path / "ref.fgidx", folder=folder, chunk_size=100, num_workers=0, progress=False
    )
    assert reference.count == 17 and reference.chunks_encoded == 1

    out = tmp_path / "a.fgidx"
    write_chunk, written = encode_archive._write_chunk, []

    def killed_after_two(*args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt  # the process dies while encoding chunk 2
        written.append(args[0])
        return write_chunk(*args, **kwargs)

    monkeypatch.setattr(encode_archive, "_write_chunk", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny_checkpoint, "pan", out, folder=folder, chunk_size=5, num_workers=2, progress=False)
    monkeypatch.setattr(encode_archive, "_write_chunk", write_chunk)
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "a.fgidx.parts").iterdir()) == [
        "chunk-000000.fgidx",
        "chunk-000001.fgidx",
    ]

    # another checkpoint refuses to reuse those chunks
    with pytest.raises(ArchiveError, match="another encoder"):
        build_index(other_checkpoint, "pan", out, folder=folder, chunk_size=5, num_workers=0, progress=False)

    result = build_index(
        tiny_checkpoint, "pan", out, folder=folder, chunk_size=5, num_workers=0, progress=False, keep_parts=True
    )
    assert (result.chunks_reused, result.chunks_encoded, result.count) == (2, 2, 17)
    index, ref = Index.load(out), Index.load(tmp_path / "ref.fgidx")
    assert list(index.ids) == list(ref.ids)
    np.testing.assert_array_equal(index.codes, ref.codes)
    assert index.encoder == ref.encoder

    # everything done: a rerun (with --overwrite) reuses all chunks; a changed chunk is redone
    (folder / f"{index.ids[12]}.png").rename(folder / "zzz_renamed.png")
    again = build_index(
        tiny_checkpoint, "pan", out, folder=folder, chunk_size=5, num_workers=0, progress=False, overwrite=True
    )
    assert (again.chunks_reused, again.chunks_encoded) == (2, 2)  # chunks 2 and 3 changed
    assert Index.load(out).ids[-1] == "zzz_renamed"
    assert not (tmp_path / "a.fgidx.parts").exists()


def test_unreadable_image_is_an_error_unless_skipped_explicitly(tiny_dataset, tiny_checkpoint, tmp_path, capsys):
    folder = image_folder(tiny_dataset, tmp_path / "imgs", count=6)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    image_folder(tiny_dataset, tmp_path / "rgb", modality="ms", count=1)
    rgb = next((tmp_path / "rgb").iterdir())
    rgb.rename(folder / "colour.png")  # 3 bands for the 1-band pan encoder
    out = tmp_path / "x.fgidx"
    args = [
        "index",
        "--checkpoint",
        tiny_checkpoint,
        "--modality",
        "pan",
        "--folder",
        folder,
        "--out",
        out,
        "--quiet",
        "--workers",
        "2",
    ]
    code, _, stderr = run_cli(capsys, *args)
    assert code == 2 and "broken.png" in stderr and "--skip-unreadable" in stderr and "Traceback" not in stderr
    assert not out.exists()

    code, stdout, stderr = run_cli(capsys, *args, "--skip-unreadable")
    assert code == 0, stderr
    assert "skipped 2 unreadable image(s)" in stdout
    listing = (tmp_path / "x.fgidx.skipped.txt").read_text().splitlines()
    assert [line.split("\t")[0].rsplit("/", 1)[1] for line in listing] == ["broken.png", "colour.png"]
    assert "band" in listing[1]
    index = Index.load(out)
    assert len(index) == 6 and "broken" not in list(index.ids) and "colour" not in list(index.ids)


def test_append_encodes_only_new_ids_and_checks_the_encoder(
    tiny_dataset, tiny_checkpoint, other_checkpoint, tmp_path, capsys
):
    folder = image_folder(tiny_dataset, tmp_path / "imgs", count=10)
    out = tmp_path / "x.fgidx"
    first = build_index(tiny_checkpoint, "pan", out, folder=folder, num_workers=0, progress=False)
    old_ids = list(Index.load(out).ids)
    image_folder(tiny_dataset, folder, count=16)  # 6 more
    code, stdout, stderr = run_cli(
        capsys,
        "index",
        "--checkpoint",
        tiny_checkpoint,
        "--modality",
        "pan",
        "--folder",
        folder,
        "--out",
        out,
        "--append",
        "--quiet",
        "--workers",
        "0",
    )
    assert code == 0, stderr
    assert "16 pan images (6 new, 10 already indexed)" in stdout
    index = Index.load(out)
    full = build_index(tiny_checkpoint, "pan", tmp_path / "full.fgidx", folder=folder, num_workers=0, progress=False)
    reference = Index.load(full.path)
    assert first.count == 10 and list(index.ids)[:10] == old_ids and sorted(index.ids) == list(reference.ids)
    by_id = dict(zip(reference.ids, reference.codes))
    np.testing.assert_array_equal(index.codes, np.stack([by_id[i] for i in index.ids]))

    code, _, stderr = run_cli(
        capsys,
        "index",
        "--checkpoint",
        other_checkpoint,
        "--modality",
        "pan",
        "--folder",
        folder,
        "--out",
        out,
        "--append",
        "--quiet",
    )
    assert code == 2 and "another encoder" in stderr and "weights_sha256" in stderr
    with pytest.raises(IndexFileError):  # sanity: a damaged file is refused on append too
        out.write_bytes(out.read_bytes()[:-3])
        build_index(tiny_checkpoint, "pan", out, folder=folder, append=True, num_workers=0, progress=False)


def test_weights_hash_sees_buffers(tiny_checkpoint):
    model, _ = load_model(tiny_checkpoint)
    encoder = model.encoders["pan"]
    before = weights_sha256(encoder)
    bn = next(m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean[0] += 1e-3
    assert weights_sha256(encoder) != before


def test_a_run_initialised_from_imagenet_is_indexed_searched_and_evaluated_without_any_weights(
    tiny_dataset, tmp_path, monkeypatch, capsys
):
    """Checkpoint weights replace the ImageNet initialisation: no caller may fetch or read it."""
    import fgmd
    from conftest import tiny_overrides
    from fgmd.config import load_config
    from fgmd.models import load_run, model_from_config, pretrained
    from fgmd.runtime.checkpoint import save_checkpoint

    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path / "run", **{"model.width_mult": 1.0}))
    model = model_from_config(config, load_pretrained=False).eval()
    config = config.with_overrides(["model.pretrained=imagenet"])
    checkpoint = save_checkpoint(
        tmp_path / "run" / "best.pt",
        {"config": config.to_dict(), "model": model.state_dict(), "epoch": 0, "class_names": []},
    )

    def no_weights(*args, **kwargs):
        raise AssertionError("ImageNet weights were asked for")

    monkeypatch.setattr(pretrained, "pretrained_state_dict", no_weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # nothing cached either

    loaded, loaded_config, _ = load_run(checkpoint)
    assert loaded_config.model.pretrained == "imagenet"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    out = tmp_path / "db.fgidx"
    code, _, stderr = run_cli(
        capsys,
        "index",
        "--checkpoint",
        checkpoint,
        "--modality",
        "pan",
        "--split",
        "database",
        "--out",
        out,
        "--workers",
        "0",
        "--quiet",
    )
    assert code == 0, stderr
    images = build_dataset(config.data, "database").images("pan", build_transforms(config.data, train=False)["pan"])
    np.testing.assert_array_equal(Index.load(out).codes, pack_codes(encode_images(model, images, batch_size=9)))
    results = fgmd.search_images(out, checkpoint, split="query", modality="ms", k=3, num_workers=0)
    assert len(results) > 0 and all(len(r.ids) == 3 for r in results)
    metrics = fgmd.evaluate_checkpoint(checkpoint, out=tmp_path / "metrics.json")
    assert 0 <= metrics["mean"]["map"] <= 1
    fgmd.load_model(checkpoint)


def test_index_evaluation_and_api_codes_are_equal_with_band_selection_and_percentile_scaling(tiny_dataset, tmp_path):
    """One preprocessing path: index, evaluation and fgmd.encode_files feed the encoder the same tensors."""
    import fgmd
    from conftest import tiny_overrides
    from fgmd.config import load_config
    from fgmd.data.io import read_image
    from fgmd.data.preprocess import build_preprocessor
    from fgmd.models import model_from_config
    from fgmd.runtime.checkpoint import save_checkpoint

    modality = (
        "{ms: {channels: 2, bands: [2, 0], scaling: percentile, scale_low: [0.2, 0.1], scale_high: [0.6, 0.7]},"
        " pan: {channels: 1, scaling: percentile, scale_low: [0.1], scale_high: [0.8], invert: true}}"
    )
    config = load_config(None, tiny_overrides(tiny_dataset, tmp_path / "run", **{"data.modality": modality}))
    model = model_from_config(config, load_pretrained=False)
    split = build_dataset(config.data, "database")
    inputs = split.images("ms", build_preprocessor(config.data, "ms"))
    with torch.no_grad():  # BatchNorm statistics of these inputs, so the codes depend on the image
        for norm in model.modules():
            if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                norm.momentum = None
        model.train()
        model.encode(torch.stack([inputs[i]["image"] for i in range(len(inputs))]), "ms")
    model.eval()
    checkpoint = save_checkpoint(
        tmp_path / "run" / "best.pt", {"config": config.to_dict(), "model": model.state_dict()}
    )

    out = tmp_path / "ms.fgidx"
    build_index(checkpoint, "ms", out, split="database", num_workers=0, progress=False, device="cpu")
    index = Index.load(out)
    evaluation = pack_codes(encode_images(model, inputs, batch_size=5))
    api = pack_codes(fgmd.encode_files(model, config, [r.paths["ms"] for r in inputs.records], "ms", batch_size=7))
    np.testing.assert_array_equal(index.codes, evaluation)
    np.testing.assert_array_equal(index.codes, api)
    assert len(np.unique(index.codes, axis=0)) > 1
    assert index.encoder["preprocessing"] == build_preprocessor(config.data, "ms").spec()
    assert index.encoder["preprocessing"]["bands"] == [2, 0] and index.encoder["preprocessing"]["scale_low"] == [
        0.2,
        0.1,
    ]
    # the stretch matters: the same bands without it give other codes
    transform = build_preprocessor(config.data, "ms").transform
    plain = torch.stack([transform(read_image(r.paths["ms"], [2, 0])) for r in inputs.records])
    assert not np.array_equal(pack_codes(model.encode(plain, "ms")), index.codes)
