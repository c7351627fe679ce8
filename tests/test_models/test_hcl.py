# Copyright (c) mmreviewkd contributors. All rights reserved.
import pytest
import torch

from mmreviewkd.models import HCLLoss


def checker(height, width=None, a=1.0, b=2.0, n=2, c=3):
    """T = a + b * (+1/-1 checkerboard): every 2x2 (or coarser) average pool
    of the checkerboard is 0, so the pooled T equals a everywhere, while the
    full MSE against 0 is a^2 + b^2 (cross term averages out)."""
    width = width or height
    ii, jj = torch.meshgrid(
        torch.arange(height), torch.arange(width), indexing='ij')
    board = 1.0 - 2.0 * ((ii + jj) % 2).float()
    return (a + b * board).expand(n, c, height, width).clone()


# hand-computed with a=1, b=2, S=0:
#   H=1: no pooling (4, 2, 1 all >= 1): MSE = (a + b)^2 = 9
#   H=2: pool 1 (w .5): (5 + .5 * 1) / 1.5
#   H=4: pool 2, 1 (w .5, .25): (5 + .75) / 1.75
#   H=8: pool 4, 2, 1 (w .5, .25, .125): (5 + .875) / 1.875
EXPECTED = {1: 9.0, 2: 5.5 / 1.5, 4: 5.75 / 1.75, 8: 5.875 / 1.875}


@pytest.mark.parametrize('height', [1, 2, 4, 8])
def test_hcl_single_level_hand_computed(height):
    t = checker(height)
    s = torch.zeros_like(t)
    loss = HCLLoss()([s], [t])
    assert loss.item() == pytest.approx(EXPECTED[height], rel=1e-6)


def test_hcl_multi_level_sum_and_weight():
    heights = [8, 4, 2, 1]
    ts = [checker(h) for h in heights]
    ss = [torch.zeros_like(t) for t in ts]
    loss = HCLLoss(loss_weight=0.6)(ss, ts)
    # 0.6 * (47/15 + 23/7 + 11/3 + 9)
    assert loss.item() == pytest.approx(
        0.6 * (5.875 / 1.875 + 5.75 / 1.75 + 5.5 / 1.5 + 9.0), rel=1e-6)


def test_hcl_skips_pool_sizes_by_height_not_width():
    # H=2, W=8: only the 1x1 pool is used (4 and 2 are >= H)
    t = checker(2, 8)
    loss = HCLLoss()([torch.zeros_like(t)], [t])
    assert loss.item() == pytest.approx(5.5 / 1.5, rel=1e-6)


@pytest.mark.parametrize('size', [(8, 8), (6, 10), (7, 5), (12, 8), (3, 3)])
def test_hcl_matches_reference_formula_on_random_data(size):
    """The spec's formula written out (pool S and T separately, from the
    full maps), values and gradients; sizes whose pooling bins do and do not
    nest."""
    torch.manual_seed(0)
    s = torch.randn(2, 4, *size, requires_grad=True)
    t = torch.randn(2, 4, *size)
    ref = ((s - t)**2).mean()
    total, w = 1.0, 1.0
    for pool in (4, 2, 1):
        if pool >= size[0]:
            continue
        w /= 2
        ps = torch.nn.functional.adaptive_avg_pool2d(s, pool)
        pt = torch.nn.functional.adaptive_avg_pool2d(t, pool)
        ref = ref + w * ((ps - pt)**2).mean()
        total += w
    ref = ref / total
    loss = HCLLoss()([s], [t])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    grad, = torch.autograd.grad(loss, s)
    ref_grad, = torch.autograd.grad(ref, s)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-8)


def test_hcl_fp32_under_autocast():
    torch.manual_seed(0)
    s = torch.randn(2, 4, 8, 8, dtype=torch.bfloat16)
    t = torch.randn(2, 4, 8, 8, dtype=torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = HCLLoss()([s], [t])
    assert loss.dtype == torch.float32
    ref = HCLLoss()([s.float()], [t.float()])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_hcl_rejects_bad_input():
    with pytest.raises(ValueError, match='loss_weight'):
        HCLLoss(loss_weight=-1)
    with pytest.raises(ValueError, match='levels'):
        HCLLoss()([torch.zeros(1, 1, 2, 2)], [])
    with pytest.raises(ValueError, match='shape'):
        HCLLoss()([torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 2, 2, 2)])


def _hcl_float64(s, t):
    """The spec's formula in float64 (pool S and T separately)."""
    s, t = s.double(), t.double()
    ref, total, w = ((s - t)**2).mean(), 1.0, 1.0
    for pool in (4, 2, 1):
        if pool >= s.shape[2]:
            continue
        w /= 2
        ps = torch.nn.functional.adaptive_avg_pool2d(s, pool)
        pt = torch.nn.functional.adaptive_avg_pool2d(t, pool)
        ref = ref + w * ((ps - pt)**2).mean()
        total += w
    return ref / total


def test_hcl_value_accurate_at_coco_p2_size():
    """The logged value at a COCO P2 level (256 x 200 x 336) is within 1e-6
    (relative) of a float64 reference, from fp32 inputs."""
    torch.manual_seed(0)
    t = torch.randn(1, 256, 200, 336) * 3 + 1
    s = t + 0.05 * torch.randn_like(t) + 0.01
    loss = HCLLoss()([s], [t])
    assert loss.dtype == torch.float32
    ref = _hcl_float64(s, t).item()
    assert abs(loss.item() - ref) / ref < 1e-6


def test_hcl_per_level_losses_sum_to_the_loss():
    torch.manual_seed(0)
    ss = [torch.randn(2, 3, h, h) for h in (8, 4, 1)]
    ts = [torch.randn(2, 3, h, h) for h in (8, 4, 1)]
    hcl = HCLLoss(loss_weight=0.5)
    levels = hcl(ss, ts, per_level=True)
    assert len(levels) == 3
    for level, s, t in zip(levels, ss, ts):
        assert level.item() == pytest.approx(
            0.5 * _hcl_float64(s, t).item(), rel=1e-6)
    assert hcl(ss, ts).item() == pytest.approx(
        sum(v.item() for v in levels), rel=1e-6)


def test_hcl_rejects_non_numeric_loss_weight():
    with pytest.raises(
            ValueError, match=r"loss_weight must be >= 0, got '0.6' \(a"):
        HCLLoss(loss_weight='0.6')
