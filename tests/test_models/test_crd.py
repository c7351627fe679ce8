# Copyright (c) mmreviewkd contributors. All rights reserved.
"""CRDLoss: embedding, memory bank, negative sampling, NCE value, errors."""
import math

import pytest
import torch
from mmpretrain.structures import DataSample

from mmreviewkd.models.losses.crd import CRDLoss
from mmreviewkd.utils.errors import ConfigError


def samples(indices, labels):
    return [
        DataSample(metainfo=dict(sample_idx=i)).set_gt_label(y)
        for i, y in zip(indices, labels)
    ]


def unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def explicit_crd(loss_fn, s, t, idx, neg, mem_s, mem_t, z=None):
    """RepDistiller's CRD written out with Python loops in float64.

    Returns (loss, z_s, z_t); z is estimated from these scores if None."""
    tau, n_data = loss_fn.tau, loss_fn.num_data
    ws, bs = loss_fn.embed_s.weight.double(), loss_fn.embed_s.bias.double()
    wt, bt = loss_fn.embed_t.weight.double(), loss_fn.embed_t.bias.double()
    emb_s = [unit((ws @ x.double() + bs).tolist()) for x in s.flatten(1)]
    emb_t = [unit((wt @ x.double() + bt).tolist()) for x in t.flatten(1)]

    def scores(emb, bank):
        out = []
        for b, e in enumerate(emb):
            rows = [idx[b]] + list(neg[b])
            out.append([
                math.exp(sum(p * q for p, q in zip(bank[r].tolist(), e)) /
                         tau) for r in rows
            ])
        return out

    p_s = scores(emb_s, mem_t.double())  # student vs teacher bank
    p_t = scores(emb_t, mem_s.double())
    if z is None:
        z = [
            sum(map(sum, p)) / (len(p) * len(p[0])) * n_data
            for p in (p_s, p_t)
        ]
    total = 0.0
    for p, zz in zip((p_s, p_t), z):
        k = len(p[0]) - 1
        noise = k / n_data
        acc = 0.0
        for row in p:
            row = [v / zz for v in row]
            acc += math.log(row[0] / (row[0] + noise + 1e-7))
            acc += sum(math.log(noise / (v + noise + 1e-7)) for v in row[1:])
        total += -acc / len(p)
    return total, z, emb_s, emb_t


def test_embed_is_linear_then_l2_normalised_and_accepts_4d():
    torch.manual_seed(0)
    loss_fn = CRDLoss(5, 7, num_data=10, feat_dim=4)
    x = torch.randn(3, 5)
    ref = [unit((loss_fn.embed_s.weight.double() @ r.double() +
                 loss_fn.embed_s.bias.double()).tolist()) for r in x]
    got = loss_fn.embed(x, student=True)
    assert got.tolist() == [pytest.approx(r, rel=1e-5) for r in ref]
    torch.testing.assert_close(
        loss_fn.embed(x.view(3, 5, 1, 1), student=True), got)


def test_memory_initialisation_and_buffers_in_state_dict():
    loss_fn = CRDLoss(5, 7, num_data=200, feat_dim=12)
    stdv = 1 / math.sqrt(12 / 3)
    mem = loss_fn.memory
    for bank in (mem.memory_s, mem.memory_t):
        assert bank.shape == (200, 12)
        assert bank.abs().max() <= stdv and bank.min() < -0.9 * stdv
    assert (mem.labels == -1).all() and (mem.z == -1).all()
    keys = set(loss_fn.state_dict())
    assert {
        'memory.memory_s', 'memory.memory_t', 'memory.labels', 'memory.z'
    } <= keys


def test_nce_value_two_steps_memory_update_and_fixed_z():
    torch.manual_seed(0)
    loss_fn = CRDLoss(5, 6, num_data=12, feat_dim=4, num_negatives=3,
                      loss_weight=0.8)
    s = torch.randn(2, 5)
    t = torch.randn(2, 6)
    idx = [3, 7]
    neg = [[0, 1, 9], [3, 11, 11]]
    mem_s0 = loss_fn.memory.memory_s.clone()
    mem_t0 = loss_fn.memory.memory_t.clone()
    ref, z, emb_s, emb_t = explicit_crd(loss_fn, s, t, idx, neg, mem_s0,
                                        mem_t0)
    loss = loss_fn(s, t, indices=idx, negatives=torch.tensor(neg))
    assert loss.item() == pytest.approx(0.8 * ref, rel=1e-5)
    assert loss_fn.memory.z.tolist() == pytest.approx(z, rel=1e-5)
    # rows 3 and 7 updated with momentum 0.5 and renormalised, no other row
    for bank, old, emb in ((loss_fn.memory.memory_s, mem_s0, emb_s),
                           (loss_fn.memory.memory_t, mem_t0, emb_t)):
        for b, row in enumerate(idx):
            expect = unit([
                0.5 * o + 0.5 * e for o, e in zip(old[row].tolist(), emb[b])
            ])
            assert bank[row].tolist() == pytest.approx(expect, rel=1e-5)
        others = [r for r in range(12) if r not in idx]
        torch.testing.assert_close(bank[others], old[others])
    # second step: Z stays, scores read the updated banks
    z_before = loss_fn.memory.z.clone()
    s2, t2 = torch.randn(2, 5), torch.randn(2, 6)
    ref2, *_ = explicit_crd(loss_fn, s2, t2, [7, 0], [[3, 3, 5], [1, 2, 7]],
                            loss_fn.memory.memory_s.clone(),
                            loss_fn.memory.memory_t.clone(),
                            z=z_before.tolist())
    loss2 = loss_fn(s2, t2, indices=[7, 0],
                    negatives=torch.tensor([[3, 3, 5], [1, 2, 7]]))
    assert loss2.item() == pytest.approx(0.8 * ref2, rel=1e-5)
    torch.testing.assert_close(loss_fn.memory.z, z_before)


def test_sample_override_hook_is_used():
    loss_fn = CRDLoss(3, 3, num_data=6, feat_dim=2, num_negatives=2)
    seen = []

    def fixed(indices):
        seen.append(indices.tolist())
        return torch.tensor([[5, 4]] * indices.numel())

    loss_fn._sample = fixed
    s, t = torch.randn(2, 3), torch.randn(2, 3)
    mem_s, mem_t = (loss_fn.memory.memory_s.clone(),
                    loss_fn.memory.memory_t.clone())
    ref, *_ = explicit_crd(loss_fn, s, t, [0, 1], [[5, 4]] * 2, mem_s, mem_t)
    assert loss_fn(s, t, indices=[0, 1]).item() == pytest.approx(ref,
                                                                 rel=1e-5)
    assert seen == [[0, 1]]


def test_uniform_negatives_exclude_only_the_positive():
    torch.manual_seed(0)
    loss_fn = CRDLoss(3, 3, num_data=6, feat_dim=2, num_negatives=600,
                      neg_sampling='uniform')
    pos = torch.tensor([0, 3, 5])
    neg = loss_fn.memory.sample(pos)
    assert neg.shape == (3, 600)
    for row, p in zip(neg.tolist(), pos.tolist()):
        assert set(row) == set(range(6)) - {p}


def test_other_class_negatives_avoid_known_same_class():
    torch.manual_seed(0)
    loss_fn = CRDLoss(3, 3, num_data=40, feat_dim=2, num_negatives=500)
    mem = loss_fn.memory
    # labels known for 0..29 (class = i % 3), unknown for 30..39
    mem.labels[:30] = torch.arange(30) % 3
    pos = torch.tensor([0, 4, 35])
    neg = mem.sample(pos)
    for row, p in zip(neg.tolist(), pos.tolist()):
        assert p not in row
        if p < 30:
            assert all(r >= 30 or r % 3 != p % 3 for r in row)
            assert any(r >= 30 for r in row)  # unknown labels allowed
        else:  # unknown anchor label: anything but itself
            assert set(row) == set(range(40)) - {p}


def test_other_class_fallback_and_impossible_case():
    torch.manual_seed(0)
    loss_fn = CRDLoss(3, 3, num_data=200, feat_dim=2, num_negatives=50)
    mem = loss_fn.memory
    mem.labels.zero_()
    mem.labels[123] = 1  # the only other-class sample: rejection exhausts
    neg = mem.sample(torch.tensor([5, 123]))
    assert (neg[0] == 123).all()
    assert (neg[1] != 123).all()
    mem.labels[123] = 0
    with pytest.raises(ConfigError, match='uniform'):
        mem.sample(torch.tensor([5]))


def test_data_samples_give_indices_and_labels():
    torch.manual_seed(0)
    loss_fn = CRDLoss(4, 5, num_data=30, feat_dim=3, num_negatives=8)
    loss = loss_fn(torch.randn(3, 4), torch.randn(3, 5),
                   data_samples=samples([2, 17, 29], [4, 1, 4]))
    assert torch.isfinite(loss)
    labels = loss_fn.memory.labels
    assert labels[[2, 17, 29]].tolist() == [4, 1, 4]
    assert (labels[[i for i in range(30) if i not in (2, 17, 29)]] == -1).all()


def test_index_errors():
    loss_fn = CRDLoss(4, 5, num_data=30, feat_dim=3, num_negatives=8)
    s, t = torch.randn(2, 4), torch.randn(2, 5)
    with pytest.raises(ConfigError, match='num_data'):
        loss_fn(s, t, data_samples=samples([3, 30], [0, 1]))
    with pytest.raises(ConfigError, match='sample_idx'):
        loss_fn(s, t, data_samples=[DataSample().set_gt_label(0)] * 2)
    with pytest.raises(ConfigError, match='sample_idx'):
        loss_fn(s, t)
    with pytest.raises(ConfigError, match='num_data'):
        CRDLoss(4, 5, num_data=None)
    with pytest.raises(ConfigError, match='neg_sampling'):
        CRDLoss(4, 5, num_data=10, neg_sampling='relax')


def test_gradients_reach_student_and_both_embeddings_not_teacher():
    torch.manual_seed(0)
    loss_fn = CRDLoss(4, 5, num_data=30, feat_dim=3, num_negatives=8)
    s = torch.randn(3, 4, 1, 1, requires_grad=True)
    t = torch.randn(3, 5, requires_grad=True)
    loss_fn(s, t, indices=[0, 1, 2], labels=[0, 1, 2]).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    for name, p in loss_fn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(not b.requires_grad for b in loss_fn.buffers())
