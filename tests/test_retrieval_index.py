"""fgmd.retrieval.Index: contents, file format integrity, atomic writes, search."""

import json
import os
import struct

import numpy as np
import pytest
import torch

from fgmd.codes import pack_codes
from fgmd.retrieval import Index, IndexFileError
from fgmd.retrieval.backends import faiss_available
from fgmd.retrieval.index_file import MAGIC

ENCODER = {
    "config": {"bits": 32, "backbone": "mobilenet_v2", "sizes": (1, 2)},
    "weights_sha256": "ab" * 32,
    "modality": "pan",
    "bits": 32,
}


def make_items(n, bits=32, num_labels=6, seed=0, prefix="img"):
    rng = np.random.default_rng(seed)
    codes = rng.standard_normal((n, bits)).astype(np.float32)
    codes[0, :3] = 0.0  # sign rule: 0 -> bit 1
    ids = [f"{prefix}_{i:05d}_é" for i in range(n)]
    labels = (rng.random((n, num_labels)) < 0.3).astype(np.float32)
    return codes, ids, labels


@pytest.fixture
def index():
    codes, ids, labels = make_items(200)
    return Index(32, "pan", ENCODER, codes, ids, labels)


def test_contents(index):
    codes, ids, labels = make_items(200)
    assert len(index) == 200 and index.bits == 32 and index.modality == "pan"
    np.testing.assert_array_equal(index.codes, pack_codes(codes))
    assert index.ids[0] == ids[0] and index.ids[-1] == ids[-1]
    assert list(index.ids) == ids and index.ids[3:5] == ids[3:5] and index.ids[np.array([7, 2])] == [ids[7], ids[2]]
    np.testing.assert_array_equal(index.labels, labels)
    assert index.labels.dtype == np.uint8 and index.num_labels == 6
    assert index.encoder["config"]["sizes"] == [1, 2]  # stored as plain JSON
    with pytest.raises(ValueError):
        index.codes[0, 0] = 1  # read-only views


def test_round_trip(tmp_path, index):
    path = index.save(tmp_path / "archive.fgmdidx")
    loaded = Index.load(path, expect_bits=32, expect_modality="pan", expect_encoder={"weights_sha256": "ab" * 32})
    assert len(loaded) == len(index) and loaded.bits == 32 and loaded.modality == "pan"
    np.testing.assert_array_equal(loaded.codes, index.codes)
    assert list(loaded.ids) == list(index.ids)
    np.testing.assert_array_equal(loaded.labels, index.labels)
    assert loaded.encoder == index.encoder
    queries = make_items(7, seed=9)[0]
    result, expected = loaded.search(queries, 10, "numpy"), index.search(queries, 10, "numpy")
    np.testing.assert_array_equal(result.indices, expected.indices)


def test_round_trip_without_labels_and_empty(tmp_path):
    codes, ids, _ = make_items(5)
    Index(32, "ms", {}, torch.from_numpy(codes), ids).save(tmp_path / "a.idx")
    loaded = Index.load(tmp_path / "a.idx")
    assert loaded.labels is None and loaded.num_labels is None and list(loaded.ids) == ids
    Index(32, "ms", {}).save(tmp_path / "empty.idx")
    empty = Index.load(tmp_path / "empty.idx")
    assert len(empty) == 0 and list(empty.ids) == []
    assert empty.search(codes, 3).indices.shape == (5, 0)
    assert [len(hits.indices) for hits in empty.radius_search(codes, 3)] == [0] * 5


def test_append_save_load(tmp_path, index):
    path = tmp_path / "archive.fgmdidx"
    index.save(path)
    codes, ids, labels = make_items(50, seed=1, prefix="new")
    Index.load(path).add(codes, ids, labels).save(path)
    loaded = Index.load(path)
    assert len(loaded) == 250 and list(loaded.ids)[200:] == ids
    np.testing.assert_array_equal(loaded.codes[200:], pack_codes(codes))
    np.testing.assert_array_equal(loaded.labels[:200], index.labels)
    np.testing.assert_array_equal(loaded.labels[200:], labels)


def test_add_invalidates_cached_backends(index):
    codes, ids, labels = make_items(3, seed=5, prefix="late")
    before = index.search(codes, 1, "numpy")
    index.add(codes, ids, labels)
    after = index.search(codes, 1, "numpy")
    assert before.distances.max() > 0
    assert after.indices[:, 0].tolist() == [200, 201, 202] and after.distances.max() == 0


def test_add_rejects_bad_items(index):
    codes, ids, labels = make_items(3, seed=2, prefix="x")
    with pytest.raises(ValueError, match="already in the index"):
        index.add(codes, ["img_00001_é", "x1", "x2"], labels)
    with pytest.raises(ValueError, match="duplicate ids"):
        index.add(codes, ["x1", "x1", "x2"], labels)
    with pytest.raises(ValueError, match="newlines"):
        index.add(codes, ["x1", "x\n2", "x3"], labels)
    with pytest.raises(ValueError, match="3 codes but 2 ids"):
        index.add(codes, ids[:2], labels)
    with pytest.raises(ValueError, match="pass labels"):
        index.add(codes, ids)
    with pytest.raises(ValueError, match="multi-hot"):
        index.add(codes, ids, labels * 2)
    with pytest.raises(ValueError, match="classes"):
        index.add(codes, ids, labels[:, :4])
    with pytest.raises(ValueError, match="width 48"):
        index.add(np.ones((3, 48)), ids, labels)
    assert len(index) == 200  # nothing was half-added
    with pytest.raises(ValueError, match="bits=64"):
        Index(32, "pan", {"bits": 64})


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, index, monkeypatch):
    path = tmp_path / "archive.fgmdidx"
    index.save(path)
    index.save(path)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["archive.fgmdidx"]
    original = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    codes, ids, labels = make_items(3, seed=3, prefix="y")
    with pytest.raises(OSError, match="disk on fire"):
        index.add(codes, ids, labels).save(path)
    assert sorted(os.listdir(tmp_path)) == ["archive.fgmdidx"]
    assert path.read_bytes() == original


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_corrupted_payload_is_detected(tmp_path, index):
    path = index.save(tmp_path / "archive.fgmdidx")
    flip_byte(path, path.stat().st_size - 10)
    with pytest.raises(IndexFileError, match="archive.fgmdidx: payload checksum mismatch"):
        Index.load(path)
    assert len(Index.load(path, verify=False)) == 200  # the caller may opt out


def test_corrupted_metadata_is_detected(tmp_path, index):
    path = index.save(tmp_path / "archive.fgmdidx")
    flip_byte(path, 64 + 5)
    with pytest.raises(IndexFileError, match="archive.fgmdidx: metadata checksum mismatch"):
        Index.load(path)


@pytest.mark.parametrize("keep", [5, 40, 100, -1])
def test_truncated_file_is_detected(tmp_path, index, keep):
    path = index.save(tmp_path / "archive.fgmdidx")
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(IndexFileError, match="archive.fgmdidx: truncated"):
        Index.load(path)


def test_trailing_data_is_detected(tmp_path, index):
    path = index.save(tmp_path / "archive.fgmdidx")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IndexFileError, match="trailing data"):
        Index.load(path)


def test_wrong_magic_and_version(tmp_path, index):
    path = index.save(tmp_path / "archive.fgmdidx")
    data = bytearray(path.read_bytes())
    (tmp_path / "other.bin").write_bytes(b"PK\x03\x04" + bytes(data[4:]))
    with pytest.raises(IndexFileError, match="other.bin: not an fgmd index file"):
        Index.load(tmp_path / "other.bin")
    assert data[:8] == MAGIC
    data[8:12] = struct.pack("<I", 3)
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="archive.fgmdidx: unsupported index format version 3"):
        Index.load(path)


def test_mismatched_expectations(tmp_path, index):
    path = index.save(tmp_path / "archive.fgmdidx")
    with pytest.raises(IndexFileError, match="archive.fgmdidx: the index holds 32-bit codes but 64-bit"):
        Index.load(path, expect_bits=64)
    with pytest.raises(IndexFileError, match="archive.fgmdidx: the index holds modality 'pan' but 'ms'"):
        Index.load(path, expect_modality="ms")
    with pytest.raises(IndexFileError, match="encoder 'weights_sha256'"):
        Index.load(path, expect_encoder={"weights_sha256": "cd" * 32})
    loaded = Index.load(path)
    with pytest.raises(ValueError, match="query codes have width 64"):
        loaded.search(np.ones((2, 64)), 3)


def test_metadata_is_documented_json(tmp_path, index):
    path = index.save(tmp_path / "archive.fgmdidx")
    data = path.read_bytes()
    _, version, _, length = struct.unpack("<8sIIQ", data[:24])
    metadata = json.loads(data[64 : 64 + length])
    assert version == metadata["format_version"] == 2
    assert metadata["count"] == 200 and metadata["bits"] == 32 and metadata["num_labels"] == 6
    assert metadata["root"] is None and metadata["class_names"] is None
    assert set(metadata["sections"]) == {"codes", "ids", "labels"}
    assert all(section["offset"] % 64 == 0 for section in metadata["sections"].values())


needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")


@pytest.mark.parametrize("backend", ["numpy", "mih", pytest.param("faiss", marks=needs_faiss)])
def test_index_search_backends_agree(index, backend):
    queries = make_items(9, seed=4)[0]
    expected = index.search(queries, 20, "numpy")
    result = index.search(queries, 20, backend)
    np.testing.assert_array_equal(result.indices, expected.indices)
    np.testing.assert_array_equal(result.distances, expected.distances)
    assert index.backend(backend) is index.backend(backend)  # built once, cached
    for (distances, indices), row in zip(index.radius_search(queries, 12, backend), expected.distances):
        assert (distances <= 12).all() and np.all(np.diff(distances) >= 0)
        assert len(indices) >= (row <= 12).sum()


def test_paths_root_and_class_names_round_trip(tmp_path):
    codes, ids, labels = make_items(5)
    paths = [f"images/pan/{i}.png" for i in ids]
    names = [f"class {c}" for c in range(6)]
    index = Index(
        32, "pan", ENCODER, codes[:3], ids[:3], labels[:3], paths[:3], root=tmp_path / "archive", class_names=names
    )
    index.add(codes[3:], ids[3:], labels[3:], paths[3:])
    loaded = Index.load(index.save(tmp_path / "a.fgidx"))
    assert loaded.root == str(tmp_path / "archive") and os.path.isabs(loaded.root)
    assert list(loaded.paths) == paths and loaded.class_names == names
    assert loaded.file_of(4) == os.path.join(str(tmp_path / "archive"), "images", "pan", f"{ids[4]}.png")
    with pytest.raises(ValueError, match="stores image paths"):
        loaded.add(*make_items(1, prefix="new")[:3])
    plain = Index(32, "pan", ENCODER, codes, ids, labels)
    with pytest.raises(ValueError, match="has no image paths"):
        plain.add(*make_items(1, prefix="new")[:3], ["x.png"])
    assert plain.paths is None and plain.file_of(0) is None
    with pytest.raises(ValueError, match="names 2"):
        Index(32, "pan", ENCODER, codes, ids, labels, class_names=["a", "b"])


def test_version_1_files_still_load(tmp_path, index):
    """A file as fgmd wrote it before paths existed: version 1, no root/class_names keys."""
    path = index.save(tmp_path / "new.fgidx")
    data = path.read_bytes()
    meta_length = struct.unpack("<Q", data[16:24])[0]
    metadata = json.loads(data[64 : 64 + meta_length])
    payload = data[-(metadata["payload_size"]) :]
    del metadata["root"], metadata["class_names"]
    metadata["format_version"] = 1
    meta_bytes = json.dumps(metadata, sort_keys=True).encode()
    import hashlib

    header = struct.pack("<8sIIQ32s8x", MAGIC, 1, 0, len(meta_bytes), hashlib.sha256(meta_bytes).digest())
    head = header + meta_bytes
    head += bytes(-len(head) % 64)
    (tmp_path / "old.fgidx").write_bytes(head + payload)
    old = Index.load(tmp_path / "old.fgidx")
    assert list(old.ids) == list(index.ids) and old.paths is None and old.root is None and old.class_names is None
    np.testing.assert_array_equal(old.codes, index.codes)
