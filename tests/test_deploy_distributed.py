"""`torchrun -m fgmd index`: sharded encoding gives the single-process index."""

from __future__ import annotations

import numpy as np

from fgmd.retrieval import Index
from fgmd.retrieval.encode_archive import build_index
from test_distributed import torchrun


def test_two_process_index_equals_one_process(tiny_checkpoint, tmp_path):
    single = build_index(
        tiny_checkpoint, "pan", tmp_path / "one.fgidx", split="database", chunk_size=5, num_workers=0, progress=False
    )
    out = tmp_path / "two.fgidx"
    run = torchrun(
        2,
        "index",
        "--checkpoint",
        str(tiny_checkpoint),
        "--modality",
        "pan",
        "--split",
        "database",
        "--out",
        str(out),
        "--chunk-size",
        "5",
        "--workers",
        "0",
        "--quiet",
        "--device",
        "cpu",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote") == 1  # rank 0 reports
    one, two = Index.load(single.path), Index.load(out)
    assert len(two) == 36 and list(two.ids) == list(one.ids)  # same order, no duplicates, no gaps
    np.testing.assert_array_equal(two.codes, one.codes)
    np.testing.assert_array_equal(two.labels, one.labels)
    assert two.encoder == one.encoder
    assert out.read_bytes() == single.path.read_bytes()  # the very same file
    assert not (tmp_path / "two.fgidx.parts").exists()
