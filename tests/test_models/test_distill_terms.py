# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Extra distillation terms of ReviewKDDistiller: inputs, gradients,
weights and warm-up, teacher logits only on demand, bad configs."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

from helpers.models import PREPROCESSOR, batch, classifier
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.utils.errors import ConfigError

KD = dict(loss=dict(type='KDLoss', tau=4.0), inputs='logits')
FITNET = dict(
    connector=dict(type='FitNetRegressor'),
    loss=dict(type='FitNetLoss'),
    inputs='stages.1',
    loss_weight=3.0)
ABF_L2 = dict(
    loss=dict(type='HCLLoss', pool_sizes=()),
    inputs=('abf', 'feats'),
    loss_weight=0.5)


def build(**kwargs):
    cfg = dict(
        student=classifier(8),
        teacher=classifier(14),
        data_preprocessor=PREPROCESSOR,
        loss_weight=2.0)
    cfg.update(kwargs)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ReviewKDDistiller(**cfg)
    model.train()
    return model


def set_epoch(epoch):
    MessageHub.get_current_instance().update_info('epoch', epoch)


@pytest.fixture(autouse=True)
def _epoch_zero():
    set_epoch(0)
    yield
    set_epoch(0)


def grads_of(module):
    return {
        n: p.grad is not None and p.grad.abs().sum().item() > 0
        for n, p in module.named_parameters()
    }


def test_every_term_sends_its_gradient_to_its_own_parameters_only():
    model = build(distill_terms=dict(kd=KD, fitnet=FITNET, abf=ABF_L2))
    inputs, samples = batch()
    losses = model.loss(inputs, samples)
    assert {'loss_hcl', 'loss_kd', 'loss_fitnet', 'loss_abf',
            'distill_weight.kd', 'distill_weight.fitnet'} <= set(losses)
    regressor = model.distill_terms['fitnet'].connector
    student = model.student
    for key, reaches, misses in (
        ('loss_kd', [student.head, student.backbone.layer3],
         [model.connector, regressor]),
        ('loss_fitnet', [regressor, student.backbone.layer2],
         [student.backbone.layer3, student.head, model.connector]),
        ('loss_abf', [model.connector, student.backbone.layer3],
         [student.head, regressor]),
    ):
        model.zero_grad(set_to_none=True)
        losses[key].backward(retain_graph=True)
        for part in reaches:
            assert any(grads_of(part).values()), key
        for part in misses:
            assert not any(grads_of(part).values()), key
        assert all(p.grad is None for p in model.teacher.parameters()), key


def test_term_value_is_weight_times_loss_of_the_named_inputs():
    model = build(
        distill_terms=dict(kd=dict(KD, loss_weight=0.9)),
        connector=None)
    inputs, samples = batch()
    losses = model.loss(inputs, samples)
    assert 'loss_hcl' not in losses and model.connector is None
    with torch.no_grad():
        s = model.student.head(model.student.extract_feat(inputs))
        t = model.teacher.head(model.teacher.extract_feat(inputs))
    # Hinton's KD at temperature 4, written out
    p_t = F.softmax(t / 4, dim=1)
    kd = (p_t * (p_t.log() - F.log_softmax(s / 4, dim=1))).sum(1).mean() * 16
    torch.testing.assert_close(losses['loss_kd'].detach(), 0.9 * kd)
    assert losses['distill_weight.kd'].item() == pytest.approx(0.9)


def test_task_loss_weight_scales_the_student_losses():
    inputs, samples = batch()
    plain = build(distill_terms=dict(kd=KD), connector=None)
    scaled = build(
        distill_terms=dict(kd=KD), connector=None, task_loss_weight=0.1)
    scaled.load_state_dict(plain.state_dict())
    a = plain.loss(inputs, samples)['student.loss']
    b = scaled.loss(inputs, samples)['student.loss']
    torch.testing.assert_close(b, 0.1 * a)


def count_calls(module):
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_teacher_logits_only_when_an_active_term_reads_them():
    inputs, samples = batch()
    model = build()
    calls = count_calls(model.teacher.head)
    model.loss(inputs, samples)
    assert not calls  # ReviewKD alone: teacher backbone + neck only
    model = build(distill_terms=dict(kd=dict(KD, warmup_epochs=2)))
    calls = count_calls(model.teacher.head)
    losses = model.loss(inputs, samples)  # epoch 0: KD warming up from 0
    assert not calls and losses['loss_kd'].item() == 0
    set_epoch(1)
    losses = model.loss(inputs, samples)
    assert len(calls) == 1 and losses['loss_kd'].item() > 0
    assert losses['distill_weight.kd'].item() == pytest.approx(0.5)


def test_terms_off_in_warmup_keep_their_parameters_in_the_graph():
    model = build(distill_terms=dict(fitnet=dict(FITNET, warmup_epochs=1)),
                  warmup_epochs=1)
    losses = model.loss(*batch())
    assert losses['loss_fitnet'].item() == 0 and losses['loss_hcl'] == 0
    (losses['loss_fitnet'] + losses['loss_hcl']).backward()
    for part in (model.distill_terms['fitnet'], model.connector):
        for name, p in part.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() == 0, name


def test_parse_losses_sums_every_term_once():
    model = build(distill_terms=dict(kd=KD, abf=ABF_L2))
    losses = model.loss(*batch())
    total, log_vars = model.parse_losses(losses)
    expected = sum(losses[k] for k in ('student.loss', 'loss_hcl',
                                       'loss_kd', 'loss_abf'))
    torch.testing.assert_close(total, expected)
    assert 'distill_weight.kd' in log_vars


@pytest.mark.parametrize('kwargs,match', [
    (dict(connector=None), 'nothing to distil'),
    (dict(distill_terms=dict(kd=dict(KD, inputs=('logits', 'abf')))),
     'student\'s connector output'),
    (dict(distill_terms=dict(kd=dict(KD, inputs='logit'))), 'inputs must'),
    (dict(distill_terms=dict(kd=dict(KD, weight=1.0))), 'unknown keys'),
    (dict(distill_terms=dict(kd=dict(KD, loss_weight='1'))),
     'kd.loss_weight must be >= 0'),
    (dict(distill_terms=dict(hcl=KD)), 'other than "hcl"'),
    (dict(distill_terms=dict(kd=dict(inputs='logits'))), 'with a `loss`'),
    (dict(connector=None, distill_terms=dict(a=dict(ABF_L2))),
     'abf needs the ReviewKD connector'),
    (dict(distill_terms=dict(kd=dict(KD, inputs='feats.7'))),
     'does not have'),
])
def test_bad_terms_fail_with_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        build(**kwargs)
    assert '\n' not in str(info.value)


def test_pooled_and_stage_inputs_select_the_right_levels():
    seen = {}

    def record(name):
        def hook(module, args, output):
            seen[name] = [tuple(a.shape) if torch.is_tensor(a) else
                          [tuple(x.shape) for x in a] for a in args[:2]]
        return hook

    model = build(distill_terms=dict(
        p=dict(loss=dict(type='KDLoss'), inputs='pooled'),
        s=dict(loss=dict(type='HCLLoss'), inputs='stages')))
    model.distill_terms['p'].loss.register_forward_hook(record('p'))
    model.distill_terms['s'].loss.register_forward_hook(record('s'))
    model.loss(*batch())
    assert seen['p'] == [(4, 64), (4, 64)]
    stages = [(4, 16, 32, 32), (4, 32, 16, 16), (4, 64, 8, 8)]
    assert seen['s'] == [stages, stages]


def test_describe_levels_lists_the_terms():
    model = build(distill_terms=dict(kd=dict(KD, loss_weight=0.9),
                                     fitnet=FITNET))
    text = model.describe_levels()
    assert 'term loss_kd: student logits -> teacher logits, KDLoss, ' \
        'weight 0.9, warm-up 0 epochs' in text
    assert 'term loss_fitnet: student stages.1 -> teacher stages.1, ' \
        'FitNetRegressor + FitNetLoss, weight 3' in text


def test_a_term_set_to_none_is_removed_and_a_list_is_refused():
    model = build(distill_terms=dict(kd=KD, fitnet=None))
    assert list(model.distill_terms) == ['kd']
    with pytest.raises(ConfigError, match='must be a dict of named terms'):
        build(distill_terms=[KD])


def test_a_zero_weight_says_the_term_is_off():
    import logging

    from mmengine.logging import MMLogger
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        build(loss_weight=0.0, distill_terms=dict(kd=dict(KD, loss_weight=0)))
    finally:
        logger.removeHandler(handler)
    assert any('loss_weight, distill_terms.kd.loss_weight = 0: that '
               'distillation term is off' in m for m in messages)
