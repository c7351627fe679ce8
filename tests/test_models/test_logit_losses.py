# Copyright (c) mmreviewkd contributors. All rights reserved.
"""KDLoss and DKDLoss against values written out with plain python math."""
import math

import pytest
import torch

from mmreviewkd.models.losses.dkd import DKDLoss
from mmreviewkd.models.losses.kd import KDLoss
from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

STUDENT = [[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]]
TEACHER = [[2.0, 0.5, 1.0], [0.3, -2.0, 1.5]]


def softmax(row, tau):
    exps = [math.exp(v / tau) for v in row]
    return [e / sum(exps) for e in exps]


def kl(p, q):
    """KL(p || q) of two lists of probabilities."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def kd_by_hand(student, teacher, tau):
    per_sample = [
        kl(softmax(t, tau), softmax(s, tau))
        for s, t in zip(student, teacher)
    ]
    return sum(per_sample) / len(per_sample) * tau**2


def dkd_by_hand(student, teacher, labels, alpha, beta, tau):
    """TCKD and NCKD written out: binary (target, rest) distributions, and
    the distributions renormalised over the non-target classes."""
    total = 0.0
    for s, t, y in zip(student, teacher, labels):
        p_s, p_t = softmax(s, tau), softmax(t, tau)
        tckd = kl([p_t[y], 1 - p_t[y]], [p_s[y], 1 - p_s[y]])
        q_s = [p / (1 - p_s[y]) for k, p in enumerate(p_s) if k != y]
        q_t = [p / (1 - p_t[y]) for k, p in enumerate(p_t) if k != y]
        total += alpha * tckd + beta * kl(q_t, q_s)
    return total / len(labels) * tau**2


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_kd_hand_computed(tau):
    loss = KDLoss(tau=tau)(torch.tensor(STUDENT), torch.tensor(TEACHER))
    assert loss.item() == pytest.approx(
        kd_by_hand(STUDENT, TEACHER, tau), rel=1e-5)


def test_kd_loss_weight_zero_and_positive():
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    assert KDLoss()(t, t).item() == pytest.approx(0.0, abs=1e-7)
    assert KDLoss()(s, t).item() > 0
    assert KDLoss(loss_weight=0.25)(s, t).item() == pytest.approx(
        0.25 * kd_by_hand(STUDENT, TEACHER, 4.0), rel=1e-5)


def test_kd_gradients_reach_student_only():
    s = torch.tensor(STUDENT, requires_grad=True)
    t = torch.tensor(TEACHER, requires_grad=True)
    KDLoss()(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    # d/dz_s of tau^2/N * KL = tau/N * (p_s - p_t) with p = softmax(z/tau)
    for n in range(2):
        p_s, p_t = softmax(STUDENT[n], 4.0), softmax(TEACHER[n], 4.0)
        for k in range(3):
            expected = 4.0 / 2 * (p_s[k] - p_t[k])
            assert s.grad[n, k].item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize('alpha,beta,tau', [(1.0, 1.0, 1.0),
                                            (1.0, 8.0, 4.0),
                                            (0.5, 2.0, 2.0)])
def test_dkd_hand_computed(alpha, beta, tau):
    labels = [2, 0]
    loss = DKDLoss(alpha=alpha, beta=beta, tau=tau)(
        torch.tensor(STUDENT), torch.tensor(TEACHER),
        labels=torch.tensor(labels))
    assert loss.item() == pytest.approx(
        dkd_by_hand(STUDENT, TEACHER, labels, alpha, beta, tau), rel=1e-5)


def test_dkd_decomposes_kd():
    """Per sample: KD = TCKD + (1 - p^t_y) * NCKD (the DKD paper's Eq. 4)."""
    tau = 4.0
    for s, t, y in zip(STUDENT, TEACHER, [1, 2]):
        s, t = torch.tensor([s]), torch.tensor([t])
        y = torch.tensor([y])
        tckd = DKDLoss(alpha=1.0, beta=0.0, tau=tau)(s, t, labels=y)
        nckd = DKDLoss(alpha=0.0, beta=1.0, tau=tau)(s, t, labels=y)
        p_ty = torch.softmax(t / tau, dim=1)[0, y].item()
        kd = KDLoss(tau=tau)(s, t)
        assert kd.item() == pytest.approx(
            tckd.item() + (1 - p_ty) * nckd.item(), rel=1e-5)


def test_dkd_zero_for_identical_and_gradients():
    t = torch.tensor(TEACHER)
    labels = torch.tensor([0, 1])
    assert DKDLoss()(t, t, labels=labels).item() == pytest.approx(
        0.0, abs=1e-6)
    s = torch.tensor(STUDENT, requires_grad=True)
    t.requires_grad_(True)
    loss = DKDLoss()(s, t, labels=labels)
    assert loss.item() > 0
    loss.backward()
    assert s.grad.abs().sum() > 0 and t.grad is None


def test_dkd_reads_data_samples():
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(2), DataSample().set_gt_label(0)]
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    expected = DKDLoss()(s, t, labels=torch.tensor([2, 0]))
    assert DKDLoss()(s, t, data_samples=samples).item() == pytest.approx(
        expected.item(), rel=1e-6)
    # one-hot scores (to_onehot without batch augments) are fine
    for ds, y in zip(samples, [2, 0]):
        ds.set_gt_score(torch.nn.functional.one_hot(torch.tensor(y), 3))
    assert DKDLoss()(s, t, data_samples=samples).item() == pytest.approx(
        expected.item(), rel=1e-6)
    # mixup soft labels
    samples[0].set_gt_score(torch.tensor([0.3, 0.0, 0.7]))
    with pytest.raises(ConfigError, match='Mixup'):
        DKDLoss()(s, t, data_samples=samples)
    samples[0].set_gt_score(torch.tensor([0.3, 0.0, 1.0]))
    with pytest.raises(ConfigError, match='Mixup'):
        DKDLoss()(s, t, data_samples=samples)
    with pytest.raises(ConfigError, match='gt_label'):
        DKDLoss()(s, t, data_samples=[DataSample(), DataSample()])
    with pytest.raises(ConfigError, match='labels'):
        DKDLoss()(s, t)
    with pytest.raises(ConfigError, match='labels'):
        DKDLoss()(s, t, labels=torch.tensor([3, 0]))


@pytest.mark.parametrize('cfg', [
    dict(type='mmreviewkd.KDLoss', tau=0),
    dict(type='mmreviewkd.KDLoss', loss_weight=-1.0),
    dict(type='mmreviewkd.KDLoss', tau='4'),
    dict(type='mmreviewkd.DKDLoss', beta=True),
    dict(type='mmreviewkd.DKDLoss', alpha=float('nan')),
])
def test_bad_numbers_raise(cfg):
    with pytest.raises(ConfigError):
        MODELS.build(cfg)


def test_registry_builds():
    kd = MODELS.build(dict(type='mmreviewkd.KDLoss', tau=2.0, loss_weight=0.9))
    assert isinstance(kd, KDLoss) and kd.tau == 2.0 and kd.loss_weight == 0.9
    dkd = MODELS.build(dict(type='mmreviewkd.DKDLoss'))
    assert isinstance(dkd, DKDLoss)
    assert (dkd.alpha, dkd.beta, dkd.tau) == (1.0, 8.0, 4.0)
    with pytest.raises(ConfigError, match='shape'):
        kd(torch.zeros(2, 3), torch.zeros(2, 4))
