import torch

from fgmd.training.damd import DAMD, ChannelAttention, SpatialAttention, semantic_distillation, spatial_distillation

CHANNELS = (4, 6, 8, 10, 12)
SIZES = (16, 8, 4, 2, 1)


def level_maps(batch, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(batch, c, s, s, generator=g).requires_grad_(requires_grad) for c, s in zip(CHANNELS, SIZES)
    )


def test_semantic_and_spatial_bounds_hold_for_opposite_maps():
    torch.manual_seed(0)
    s = torch.rand(3, 8, 5, 5) + 0.1
    t = -s  # opposite directions: the largest possible normalised distance
    rho_c = ChannelAttention(8)(t)
    rho_p = SpatialAttention(8)(t)
    sem = semantic_distillation(s, t, rho_c)
    spa = spatial_distillation(s, t, rho_p)
    assert sem <= 4 / 25 + 1e-6 and sem > 4 / 25 * 0.99  # the bound is reached here
    assert spa <= 4 / 8 + 1e-6 and spa > 4 / 8 * 0.99
    assert torch.allclose(rho_c.sum(1), torch.ones(3)) and torch.allclose(rho_p.sum(1), torch.ones(3))


def test_identical_maps_give_zero_and_random_maps_stay_within_bounds():
    damd = DAMD(CHANNELS)
    a = level_maps(2)
    loss, parts = damd(a, a)
    assert loss.item() < 1e-10
    b = level_maps(2, seed=1)
    loss, parts = damd(a, b)
    sem_bound = 2 * sum(4 / (SIZES[i] ** 2) for i in (2, 3, 4))
    spa_bound = 2 * sum(4 / CHANNELS[i] for i in (0, 1, 2))
    assert 0 < parts["damd_semantic"] <= sem_bound
    assert 0 < parts["damd_spatial"] <= spa_bound


def test_batch_size_one_works():
    loss, _ = DAMD(CHANNELS)(level_maps(1), level_maps(1, seed=3))
    assert loss.shape == () and torch.isfinite(loss)


def test_no_gradient_reaches_the_teacher_from_its_own_direction():
    damd = DAMD(CHANNELS)
    student = level_maps(2, requires_grad=True)
    teacher = level_maps(2, requires_grad=True, seed=5)
    sem, spa = damd.one_way(student, teacher)
    (sem + spa).backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for i, s in enumerate(student) if i in (0, 1, 2, 3, 4))
    # the attention modules are trained by the same optimiser
    assert all(p.grad is not None for p in damd.parameters())


def test_symmetric_loss_sends_gradient_to_both_branches():
    a = level_maps(2, requires_grad=True)
    b = level_maps(2, requires_grad=True, seed=9)
    loss, _ = DAMD(CHANNELS)(a, b)
    loss.backward()
    assert all(x.grad is not None for x in a + b)
