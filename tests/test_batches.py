"""The batched training data path against the per-image transform it replaces."""

import pytest
import torch

from conftest import tiny_overrides
from fgmd.config import load_config
from fgmd.data.transforms import CropParams, build_transforms
from fgmd.training.batches import Crops, crop_flip, draw_crops, epoch_order
from fgmd.training.trainer import Trainer


def reference_crop_flip(image: torch.Tensor, top: int, left: int, flip: bool, size: int) -> torch.Tensor:
    out = image[:, top : top + size, left : left + size]
    return out.flip(-1) if flip else out


def test_crop_flip_equals_slicing_and_flipping_each_image():
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(7, 4, 11, 11, generator=generator)
    crops = draw_crops(7, slack=11 - 6, hflip=True, generator=generator)
    assert crops.flip.any() and not crops.flip.all()  # both branches are exercised
    batched = crop_flip(images, crops, 6)
    assert batched.shape == (7, 4, 6, 6)
    assert batched.is_contiguous(memory_format=torch.channels_last)
    for i in range(7):
        expected = reference_crop_flip(images[i], int(crops.top[i]), int(crops.left[i]), bool(crops.flip[i]), 6)
        assert torch.equal(batched[i], expected), i
    rows = torch.tensor([6, 0, 0, 3, 1, 2, 5])  # gathering rows straight from a store
    picked = crop_flip(images, crops, 6, rows)
    for i, row in enumerate(rows.tolist()):
        expected = reference_crop_flip(images[row], int(crops.top[i]), int(crops.left[i]), bool(crops.flip[i]), 6)
        assert torch.equal(picked[i], expected), i


def test_draw_crops_covers_the_slack_and_respects_hflip_off():
    generator = torch.Generator().manual_seed(0)
    crops = draw_crops(4000, slack=4, hflip=True, generator=generator)
    assert set(crops.top.tolist()) == set(range(5)) == set(crops.left.tolist())
    assert 0.45 < crops.flip.float().mean() < 0.55
    assert not draw_crops(50, 4, hflip=False, generator=generator).flip.any()


@pytest.mark.parametrize("count, world_size", [(10, 1), (10, 3), (12, 4), (1, 3), (2, 7)])
def test_epoch_order_equals_distributed_sampler(count, world_size):
    from torch.utils.data.distributed import DistributedSampler

    for rank in range(world_size):
        sampler = DistributedSampler(range(count), num_replicas=world_size, rank=rank, shuffle=True, seed=5)
        assert epoch_order(count, seed=5, rank=rank, world_size=world_size).tolist() == list(sampler)
    assert sorted(epoch_order(count, seed=5).tolist()) == list(range(count))
    assert not torch.equal(epoch_order(50, seed=5), epoch_order(50, seed=6))


@pytest.fixture
def trainer(tiny_dataset, tmp_path):
    overrides = tiny_overrides(tiny_dataset, tmp_path / "run", **{"train.batch_size": 5})
    return Trainer(load_config(None, overrides), progress=False)


def test_triplet_batches_equal_the_per_image_training_transform(trainer):
    """Each image of a batch equals ModalityTransform(train=True) of the decoded file, replaying the draws."""
    pairs, data = trainer.train_set, trainer.config.data
    n = len(pairs)
    positives = {m: torch.randperm(n, generator=torch.Generator().manual_seed(1)) for m in trainer.modalities}
    negatives = {m: torch.randperm(n, generator=torch.Generator().manual_seed(2)) for m in trainer.modalities}
    batches = trainer.batches(epoch=3, positives=positives, negatives=negatives)
    transforms = build_transforms(data, train=True)
    replay = torch.Generator().manual_seed(batches.generator.initial_seed())
    slack = data.resize - data.image_size
    checked = 0
    for number, batch in enumerate(batches):
        if number == 2:
            break
        size = len(batch.index)
        anchor = draw_crops(size, slack, data.hflip, replay)
        for m in trainer.modalities:
            other = draw_crops(2 * size, slack, data.hflip, replay)
            crops = Crops(
                *(
                    torch.cat(p)
                    for p in zip((anchor.top, anchor.left, anchor.flip), (other.top, other.left, other.flip))
                )
            )
            rows = torch.cat([batch.index, positives[m][batch.index], negatives[m][batch.index]])
            for j, row in enumerate(rows.tolist()):
                params = CropParams(int(crops.top[j]), int(crops.left[j]), bool(crops.flip[j]))
                expected = transforms[m](pairs.load(pairs.pairs[row], m), params)
                assert torch.equal(batch.images[m][j], expected), (m, j)
                assert torch.equal(batch.labels[m][j], pairs.labels[row])
                checked += 1
    assert checked == 2 * 2 * 3 * 5  # two batches, two modalities, anchors + positives + negatives


def test_triplet_batches_are_reproducible_from_the_epoch_seed(trainer):
    n = len(trainer.train_set)
    mined = {m: torch.arange(n).roll(1) for m in trainer.modalities}
    first = [b.images for b in trainer.batches(1, mined, mined)]
    again = [b.images for b in trainer.batches(1, mined, mined)]
    other = [b.images for b in trainer.batches(2, mined, mined)]
    assert all(torch.equal(a[m], b[m]) for a, b in zip(first, again) for m in a)
    assert not all(torch.equal(a[m], b[m]) for a, b in zip(first, other) for m in a)


def test_eval_batch_equals_the_per_image_evaluation_transform(trainer):
    """BatchNorm recalibration reads centre crops from the store: the same tensors as the evaluation transform."""
    transforms = build_transforms(trainer.config.data, train=False)
    index = torch.tensor([0, 3, 4])
    batch = trainer.eval_batch(index)
    for m in trainer.modalities:
        expected = torch.stack(
            [transforms[m](trainer.train_set.load(trainer.train_set.pairs[i], m)) for i in index.tolist()]
        )
        assert torch.equal(batch[m], expected), m


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_on_a_cuda_device_equal_the_host_batches(tiny_dataset, tmp_path):
    """The device data path (store and augmentation on the GPU) gives the host path's batches, with no host sync."""
    made = {}
    for device in ("cpu", "cuda"):
        overrides = tiny_overrides(tiny_dataset, tmp_path / device, **{"train.device": device})
        trainer = Trainer(load_config(None, overrides), progress=False)
        assert trainer.images.device.type == device
        n = len(trainer.train_set)
        mined = {m: torch.arange(n).flip(0) for m in trainer.modalities}
        batches = iter(trainer.batches(0, mined, mined))
        made[device] = [next(batches).images]
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("error")  # any synchronising copy inside a batch raises
            try:
                made[device] += [b.images for b in batches]
            finally:
                torch.cuda.set_sync_debug_mode("default")
        else:
            made[device] += [b.images for b in batches]
    for host, gpu in zip(made["cpu"], made["cuda"]):
        for m in host:
            torch.testing.assert_close(gpu[m].cpu(), host[m], rtol=0, atol=1e-5)
