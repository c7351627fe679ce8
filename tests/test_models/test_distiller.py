# Copyright (c) mmreviewkd contributors. All rights reserved.
"""ReviewKDDistiller: gradients, teacher freezing, warm-up, features, errors."""
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

from helpers.models import PREPROCESSOR, batch
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.models.losses import HCLLoss


def classifier(depth, num_classes=10, in_channels=64, **backbone):
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='mmreviewkd.CifarResNet', depth=depth, **backbone),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(
            type='mmpretrain.LinearClsHead',
            num_classes=num_classes,
            in_channels=in_channels,
            loss=dict(type='mmpretrain.CrossEntropyLoss')))


def build(**kwargs):
    cfg = dict(
        student=classifier(8),
        teacher=classifier(14),
        data_preprocessor=PREPROCESSOR,
        loss_weight=2.0,
        teacher_feats=dict(preact=True))
    cfg.update(kwargs)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return ReviewKDDistiller(**cfg)


def set_epoch(epoch):
    MessageHub.get_current_instance().update_info('epoch', epoch)


@pytest.fixture(autouse=True)
def _epoch_zero():
    set_epoch(0)
    yield
    set_epoch(0)


def test_gradients_reach_student_and_connector_not_teacher():
    model = build()
    model.train()
    inputs, samples = batch()
    losses = model.loss(inputs, samples)
    assert set(losses) >= {'student.loss', 'loss_hcl', 'distill_weight'}
    assert 'loss' not in losses  # the student's CE does not pose as total
    assert losses['loss_hcl'].item() > 0
    # only the distillation term, so the student's gradient comes from HCL
    losses['loss_hcl'].backward()
    for name, p in model.student.backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in model.connector.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in model.teacher.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    # the classifier head is not in the HCL graph
    assert all(p.grad is None for p in model.student.head.parameters())


def test_teacher_stays_in_eval_mode_and_keeps_its_statistics():
    model = build()
    model.train()
    assert model.student.training and model.connector.training
    assert not any(m.training for m in model.teacher.modules())
    stats = {
        k: v.clone()
        for k, v in model.teacher.state_dict().items() if 'running' in k
    }
    model.loss(*batch())
    for k, v in model.teacher.state_dict().items():
        if k in stats:
            torch.testing.assert_close(v, stats[k], msg=k)


@pytest.mark.parametrize('epoch,factor', [(0, 0.0), (1, 0.4), (2, 0.8),
                                          (3, 1.0)])
def test_fractional_warmup_is_used_exactly(epoch, factor):
    model = build(loss_weight=1.0, warmup_epochs=2.5)
    set_epoch(epoch)
    assert model.distill_factor() == pytest.approx(factor)


def test_logged_loss_is_the_optimised_sum_of_the_logged_terms():
    """``loss`` in the log is what is optimised: the student's CE plus
    ``loss_hcl``; the per-level ``loss_hcl.<i>`` add up to ``loss_hcl`` and
    are not counted twice."""
    set_epoch(5)
    model = build(loss_weight=2.0, warmup_epochs=0)
    model.train()
    losses = model.loss(*batch())
    total, log_vars = model.parse_losses(losses)
    levels = [k for k in log_vars if k.startswith('loss_hcl.')]
    assert levels == [f'loss_hcl.{i}' for i in range(4)]  # 3 stages + pool
    assert sum(log_vars[k].item() for k in levels) == pytest.approx(
        log_vars['loss_hcl'].item(), rel=1e-5)
    terms = log_vars['student.loss'].item() + log_vars['loss_hcl'].item()
    assert log_vars['loss'].item() == pytest.approx(terms, rel=1e-6)
    assert total.item() == pytest.approx(terms, rel=1e-6)
    assert log_vars['loss_hcl'].item() > 0.1 * log_vars['loss'].item()
    # the loss that is optimised reaches the connector
    total.backward()
    assert all(p.grad is not None for p in model.connector.parameters())


@pytest.mark.parametrize('epoch,factor', [(0, 0.0), (1, 0.05), (10, 0.5),
                                          (19, 0.95), (20, 1.0), (100, 1.0)])
def test_warmup_factor_per_epoch(epoch, factor):
    model = build(loss_weight=0.6, warmup_epochs=20)
    set_epoch(epoch)
    assert model.distill_factor() == pytest.approx(0.6 * factor)


def test_loss_hcl_value_is_weight_times_warmup_times_hcl():
    model = build(loss_weight=3.0, warmup_epochs=4)
    model.train()
    inputs, samples = batch()
    set_epoch(0)
    losses = model.loss(inputs, samples)
    assert losses['loss_hcl'].item() == 0.0
    assert losses['distill_weight'].item() == 0.0
    # the connector still takes part in the graph (DDP needs every param)
    losses['loss_hcl'].backward()
    assert all(p.grad is not None for p in model.connector.parameters())

    set_epoch(2)
    model.eval()  # fixed BN statistics: the reference below sees the same
    losses = model.loss(inputs, samples)
    model.student.extract_feat(inputs)
    s_feats = model.student_tap.pop()
    with torch.no_grad():
        model.teacher.extract_feat(inputs)
    t_feats = model.teacher_tap.pop()
    expected = HCLLoss()(model.connector(s_feats), t_feats) * 3.0 * 0.5
    torch.testing.assert_close(losses['loss_hcl'], expected)
    assert losses['distill_weight'].item() == pytest.approx(1.5)


def test_zero_loss_weight_is_reported_not_silent():
    model = build(loss_weight=0.0)
    losses = model.loss(*batch())
    assert losses['distill_weight'].item() == 0.0
    assert losses['loss_hcl'].item() == 0.0


def test_features_follow_the_recipe():
    """Student post-ReLU stages, teacher pre-activation stages, pooled last."""
    model = build()
    model.eval()
    inputs, _ = batch(2)
    model.student.extract_feat(inputs)
    s_feats = model.student_tap.pop()
    model.teacher.extract_feat(inputs)
    t_feats = model.teacher_tap.pop()
    assert [tuple(f.shape[1:]) for f in s_feats] == [(16, 32, 32),
                                                     (32, 16, 16),
                                                     (64, 8, 8), (64, 1, 1)]
    assert [tuple(f.shape) for f in t_feats] == \
        [tuple(f.shape) for f in s_feats]
    assert all((f >= 0).all() for f in s_feats)  # post-activation
    assert all((f < 0).any() for f in t_feats[:3])  # pre-activation
    # the pooled level is the mean of the final (activated) feature map
    final = model.teacher.backbone(inputs)[-1]
    torch.testing.assert_close(t_feats[-1],
                               final.mean((2, 3), keepdim=True))


def test_channel_inference_and_checked_overrides():
    model = build(student=classifier(8, base_channels=32, in_channels=128),
                  teacher=classifier(14))
    assert model.connector.in_channels == [32, 64, 128, 128]
    assert model.connector.out_channels == [16, 32, 64, 64]
    assert model.connector.mid_channels == 128
    ok = build(connector=dict(
        type='ABFConnector', in_channels=[16, 32, 64, 64],
        out_channels=[16, 32, 64, 64], mid_channels=32))
    assert ok.connector.mid_channels == 32
    with pytest.raises(ValueError, match=r'in_channels=\[16, 32, 64, 32\] '
                       r'contradicts the student'):
        build(connector=dict(
            type='ABFConnector', in_channels=[16, 32, 64, 32]))


def test_teacher_checkpoint_is_loaded_strictly(tmp_path):
    teacher = build().teacher
    good = tmp_path / 'teacher.pth'
    state = {k: torch.randn_like(v.float()).to(v.dtype)
             for k, v in teacher.state_dict().items()}
    torch.save(dict(meta={}, state_dict=state), good)
    model = build(teacher_ckpt=str(good))
    for k, v in model.teacher.state_dict().items():
        torch.testing.assert_close(v, state[k])
    model.init_weights()  # the runner calls it: must not overwrite
    for k, v in model.teacher.state_dict().items():
        torch.testing.assert_close(v, state[k])

    with pytest.raises(FileNotFoundError, match='does not exist'):
        build(teacher_ckpt=str(tmp_path / 'missing.pth'))
    other = tmp_path / 'other.pth'
    torch.save(build(teacher=classifier(20)).teacher.state_dict(), other)
    with pytest.raises(RuntimeError, match='unexpected keys: backbone'):
        build(teacher_ckpt=str(other))
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(RuntimeError, match='truncated or not a PyTorch'):
        build(teacher_ckpt=str(truncated))


@pytest.mark.parametrize('kwargs,match', [
    (dict(loss_weight=-1.0), 'loss_weight must be >= 0'),
    (dict(warmup_epochs=-2), 'warmup_epochs must be >= 0'),
    (dict(loss_weight='0.6'), "loss_weight must be >= 0, got '0.6'"),
    (dict(warmup_epochs='20'), "warmup_epochs must be >= 0, got '20'"),
    (dict(student_feats=dict(prea=True)), 'unknown keys'),
])
def test_bad_arguments_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        build(**kwargs)
    assert '\n' not in str(info.value)


def test_predict_and_tensor_modes_use_the_student_alone():
    model = build()
    model.eval()
    inputs, samples = batch(2)
    called = []
    handle = model.teacher.backbone.register_forward_hook(
        lambda *a: called.append(1))
    out = model(inputs, samples, mode='predict')
    torch.testing.assert_close(
        torch.stack([o.pred_score for o in out]),
        torch.stack([o.pred_score for o in model.student.predict(
            inputs, samples)]))
    handle.remove()
    assert not called


@pytest.mark.parametrize('epoch', [0, 5])
def test_batch_of_one_skips_only_the_distillation_term(epoch):
    """A last batch of one sample: BN cannot normalise the 1x1 pooled level,
    so the step trains the student alone (logged as weight 0) instead of
    crashing; every connector parameter stays in the graph (DDP)."""
    set_epoch(epoch)
    model = build(warmup_epochs=2)
    model.train()
    inputs, samples = batch(n=1)
    losses = model.loss(inputs, samples)
    assert losses['loss_hcl'].item() == 0.0
    assert losses['distill_weight'].item() == 0.0
    assert losses['student.loss'].item() > 0
    # the per-level keys are logged as zeros (same running-mean windows)
    assert [losses[f'loss_hcl.{i}'].item() for i in range(4)] == [0.0] * 4
    total, _ = model.parse_losses(losses)
    total.backward()
    assert all(p.grad is not None for p in model.connector.parameters())
    assert any(p.grad.abs().sum() > 0
               for p in model.student.parameters() if p.grad is not None)
    # two samples distil as usual
    losses = model.loss(*batch(n=2))
    assert (losses['loss_hcl'].item() > 0) == (epoch > 0)


def test_connector_and_loss_dicts_without_type_use_the_defaults():
    """``--cfg-options model.connector.mid_channels=32`` on a config that
    states no connector gives a dict without ``type``."""
    model = build(connector=dict(mid_channels=32),
                  distill_loss=dict(pool_sizes=(2, 1)))
    assert type(model.connector).__name__ == 'ABFConnector'
    assert model.connector.mid_channels == 32
    assert type(model.distill_loss).__name__ == 'HCLLoss'
    assert model.distill_loss.pool_sizes == (2, 1)
